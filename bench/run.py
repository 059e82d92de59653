#!/usr/bin/env python
"""safealign's benchmark suite (issue 13): where the time goes, measured side by side.

    python bench/run.py                          # every CPU item, this checkout only
    python bench/run.py --baseline main          # ... and the same items on `main`, side by side
    python bench/run.py --only 2,3 --repeats 3 --out bench/results.json
    python bench/run.py --quick                  # smaller sizes, 1 repeat (a few minutes)

Items (bench/README.md, "Benchmarks", has the latest figures and targets):

1. tiny grid, clean checkout to report (``snakemake --cores 2`` in an empty directory), plus the
   import time of each entry point's real job (``python -X importtime``, on that finished run);
2. no-op rerun: ``snakemake -n`` on the finished run of item 1;
3. planning a paper-scale grid: ``snakemake -n`` on bench/paper_grid.py's sizes S, M, L (about
   2,500 / 5,000 / 10,000 jobs), phases from bench/plan_profile.py;
4. batched vs per-prompt generation, tiny model and SmolLM2-135M-Instruct (bench/gen_tokens.py;
   2 threads, 64 prompts a batch, each model at its config's ``generation.max_new_tokens``:
   config.yaml / paper.yaml);
5. vLLM (``$SAFEALIGN_VLLM_PYTHON``, default .venv-vllm) vs transformers on SmolLM2;
6. shared reference log-probs on/off, 5-method grid, tiny model and SmolLM2 + LoRA
   (bench/shared_ref.py);
7. judging throughput per judge type (bench/judge_tp.py);
8. GPU: items 4-7 again with the GPU visible (items 4-7 themselves hide it: CPU figures), item 4
   with vLLM too, and LoRA / QLoRA DPO training tokens/s (bench/train_tp.py); one row saying why
   without CUDA (``--gpu-items-on-cpu`` runs it on the CPU, to test it).

Each measurement runs in its own process. The table shows the median of the runs with min and
max; the JSON (``--out``, default bench/results.json) holds every run, the commands, the machine
(nproc, CPU model) and ``uptime`` before and after. Items 2-7 need item 1's finished run: without
item 1 in ``--only``, ``--grid-dir`` names one (e.g. a previous bench run's
``<tmp>/grid-branch``); with ``--grid-dir``, item 1 times only the entry points' jobs on it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1",
       "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "lm_eval", "vllm", "pandas", "sklearn",
         "scipy", "seaborn", "matplotlib")


# ---------------------------------------------------------------- helpers


def machine() -> dict:
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu or platform.processor(), "python": platform.python_version(),
            "platform": platform.platform()}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def env_for(tree: Path) -> dict:
    return {**os.environ, **ENV, "PYTHONPATH": str(tree / "src")}


def cpu_env() -> dict:
    """Items 4-7's environment: CPU figures also on a host with a GPU (item 8 lets them see it)."""
    return {**env_for(REPO), "CUDA_VISIBLE_DEVICES": ""}


def timed(cmd: list[str] | str, cwd: Path, env: dict, log: Path | None = None, check: bool = True,
          timeout: float | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, CPU seconds of the children, the process) of one command."""
    before = os.times()
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=isinstance(cmd, str),
                          timeout=timeout, check=False)
    wall = time.perf_counter() - t
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {cmd if isinstance(cmd, str) else ' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    if check and proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {cmd}\n{proc.stderr[-3000:]}")
    return wall, cpu, proc


def json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def row(item: str, name: str, unit: str, runs: list[float], target: str = "", met: bool | None = None,
        command: str = "", tree: str = "branch", **extra) -> dict:
    runs = [float(r) for r in runs]
    return {"item": item, "name": name, "tree": tree, "unit": unit, "runs": runs,
            "median": statistics.median(runs) if runs else None, "min": min(runs) if runs else None,
            "max": max(runs) if runs else None, "target": target, "met": met, "command": command, **extra}


def snakemake_cmd(tree: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(tree / "workflow" / "Snakefile"),
            "--configfile", str(tree / "config" / "config.yaml"), *args]


# ---------------------------------------------------------------- item 1: tiny grid and imports


# Item 1's two ways of running the same grid: jobs forked from the warm interpreter (the default
# of a local run, src/safealign/warm.py) and every job its own `python` process (as before it).
MODES = {"warm": {}, "cold": {"SAFEALIGN_WARM": "0"}}

def job_cpu(tree: Path, grid: Path) -> dict:
    """CPU seconds per rule of a finished grid, as the report's cost table counts them
    (safealign.report.cost_tables: the benchmark TSVs, or a warm job's own line in its log). Read
    with the tree's own package (a subprocess): two trees may lay out their jobs differently."""
    code = f"""
import json, sys, yaml
from pathlib import Path
from safealign.configload import load_config
from safealign.dag import Dag
from safealign.report import cost_tables
tree, grid = Path({str(tree)!r}), Path({str(grid)!r})
config_file = tree / "config" / "config.yaml"
config = yaml.safe_load(config_file.read_text())
load_config(config, [str(config_file)], tree / "workflow" / "schemas" / "config.schema.yaml")
d = Dag(config)
per_rule, _ = cost_tables([str(grid / p) for p in d.benchmark_files()], {{}},
                          logs=[str(grid / p) for p in d.job_log_files()])
print(json.dumps({{rule: {{"jobs": int(x.jobs), "cpu_s": round(float(x.cpu_s), 2), "warm_jobs": int(x.warm_jobs)}}
                  for rule, x in per_rule.iterrows()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, **ENV, "PYTHONPATH": str(tree / "src")})
    return json.loads(out.stdout.strip().splitlines()[-1])


def item1(trees: dict[str, Path], work: Path, repeats: int, jobs_only: bool = False,
          modes: tuple[str, ...] = tuple(MODES)) -> list[dict]:
    """The tiny grid from an empty directory, warm and cold, for each tree; with ``jobs_only``
    (``--grid-dir`` given) only the entry points' jobs, on that run."""
    rows, runs = [], {(name, mode): [] for name in trees for mode in modes}
    order = list(runs)
    for r in range(0 if jobs_only else repeats):
        # Alternate the order, so that no run always goes first on a shared machine.
        for name, mode in (order if r % 2 == 0 else list(reversed(order))):
            d = work / (f"grid-{name}" if mode == "warm" else f"grid-{name}-{mode}")
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            wall, cpu, _ = timed(snakemake_cmd(trees[name], "--cores", "2"), d,
                                 {**env_for(trees[name]), **MODES[mode]},
                                 log=work / "logs" / f"grid-{name}-{mode}-{r}.log")
            runs[(name, mode)].append((wall, cpu, job_cpu(trees[name], d)))
    for (name, mode), rs in runs.items():
        if not rs:
            continue
        per_rule = rs[-1][2]
        jobs_cpu = [sum(v["cpu_s"] for v in x[2].values()) for x in rs]
        n_jobs = sum(v["jobs"] for v in per_rule.values()) + 1  # the report's own TSV is no input of it
        rows.append(row("1", f"tiny grid, clean to report ({n_jobs} jobs), {mode}", "s", [w for w, _, _ in rs],
                        target="<= 240 s", met=statistics.median(w for w, _, _ in rs) <= 240, tree=name,
                        command=f"snakemake --cores 2 (empty directory){' SAFEALIGN_WARM=0' if MODES[mode] else ''}",
                        snakemake_tree_cpu_s=[c for _, c, _ in rs], jobs_cpu_s=jobs_cpu, per_rule=per_rule))
        for rule, v in sorted(per_rule.items(), key=lambda kv: -kv[1]["cpu_s"]):
            rows.append(row("1", f"  {mode}: {rule} x {v['jobs']} jobs ({v['warm_jobs']} warm), CPU", "s",
                            [v["cpu_s"]], tree=name, command="results/report.html cost table"))
    for name, tree in trees.items():
        rows += entry_imports(tree, work / f"grid-{name}", work, name)
    return rows


# The job whose real command item 1 times for each entry point (the first in the dry run).
ENTRY_POINTS = ("safealign.world data", "safealign.data.preference", "safealign.data.benchmark",
                "safealign.train.run ref-logps", "safealign.train.run train", "safealign.generate",
                "safealign.judge run", "safealign.judge validate", "safealign.capability.harness",
                "safealign.metrics", "safealign.aggregate", "safealign.report")


def entry_imports(tree: Path, grid: Path, work: Path, name: str) -> list[dict]:
    """Each entry point's real job (from `snakemake -n -p --forceall` on the finished run), run again
    under `python -X importtime` in a copy: wall time, import time and which heavy libraries it loads."""
    _, _, dry = timed(snakemake_cmd(tree, "-n", "-p", "--forceall"), grid, env_for(tree))
    commands = [re.sub(r"^\s*(Shell )?command:\s*", "", line) for line in dry.stdout.splitlines()
                if "python -m safealign" in line]
    # A stage's job is `python -m safealign.job <stage>` (or `python -m safealign.<stage>` in a tree
    # from before the job entry point): both forms are matched.
    scratch = work / f"imports-{name}"
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(grid / "results", scratch / "results", symlinks=True)
    rows = []
    for entry in ENTRY_POINTS:
        stage = entry.removeprefix("safealign.")
        picks = [c for c in commands if f"-m {entry} " in c or f"-m safealign.job {stage} " in c]
        if entry == "safealign.judge run":  # one job per judge type: the model judges cost most
            picks = [next((c for c in picks if f'"type":"{t}"' in c), None)
                     for t in ("llama_guard", "refusal", "toxicity")]
        for cmd in [c for c in picks if c][:3]:
            cmd = cmd.split(" > ", 1)[0].replace("python -m", f"{sys.executable} -X importtime -m", 1)
            wall, cpu, proc = timed(cmd, scratch, env_for(tree), check=False)
            imports, heavy = 0.0, set()
            for line in proc.stderr.splitlines():
                m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( +)(\S+)$", line)
                if m:
                    heavy.add(m[3].split(".")[0])
                    if len(m[2]) == 1:  # a top-level import: its cumulative time counts once
                        imports += int(m[1]) / 1e6
            kind = re.search(r'"type":"(\w+)"', cmd)
            label = entry + (f" ({kind[1]})" if entry == "safealign.judge run" and kind else "")
            rows.append(row("1", f"job: {label}", "s", [wall], tree=name, command=cmd[:300],
                            import_s=round(imports, 3), cpu_s=round(cpu, 3),
                            heavy_imports=sorted(heavy & set(HEAVY)), rc=proc.returncode))
    return rows


# ---------------------------------------------------------------- item 2: no-op rerun


def item2(trees: dict[str, Path], work: Path, repeats: int) -> list[dict]:
    rows = []
    scontrol = shutil.which("scontrol")
    if scontrol:
        wall, _, _ = timed([scontrol, "show", "config"], work, dict(os.environ), check=False, timeout=60)
        rows.append(row("2", "environment: `scontrol show config` (run by snakemake-executor-plugin-slurm "
                             "at every Snakemake start)", "s", [wall], tree="-",
                        command="scontrol show config"))
    runs = {name: [] for name in trees}
    version = []
    for r in range(repeats):
        w, _, _ = timed([sys.executable, "-m", "snakemake", "--version"], work, env_for(REPO))
        version.append(w)
        for name in (list(trees) if r % 2 == 0 else list(reversed(trees))):
            grid = work / f"grid-{name}"
            wall, cpu, proc = timed(snakemake_cmd(trees[name], "-n"), grid, env_for(trees[name]))
            if "Nothing to be done" not in proc.stdout + proc.stderr:
                raise RuntimeError(f"{grid}: snakemake -n has work to do; not a no-op:\n{proc.stdout[-2000:]}")
            runs[name].append((wall, cpu))
    rows.append(row("2", "snakemake's own start-up (`snakemake --version`)", "s", version, tree="-",
                    command="python -m snakemake --version"))
    for name, rs in runs.items():
        med = statistics.median(w for w, _ in rs)
        rows.append(row("2", "no-op rerun (`snakemake -n` on a finished tiny run)", "s", [w for w, _ in rs],
                        target="<= 3 s", met=med <= 3, tree=name, command="snakemake -n",
                        cpu_s=[c for _, c in rs]))
    return rows


# ---------------------------------------------------------------- item 3: planning


def item3(trees: dict[str, Path], work: Path, repeats: int, sizes: list[str]) -> list[dict]:
    rows = []
    for size in sizes:
        overlay = work / f"grid-{size}.yaml"
        timed([sys.executable, str(BENCH / "paper_grid.py"), "--size", size, "--out", str(overlay)], work,
              env_for(REPO))
        results = {name: [] for name in trees}
        for r in range(repeats):
            for name in (list(trees) if r % 2 == 0 else list(reversed(trees))):
                tree = trees[name]
                d = work / f"plan-{size}-{name}"
                d.mkdir(parents=True, exist_ok=True)
                _, _, proc = timed([sys.executable, str(BENCH / "plan_profile.py"), "--", "-s",
                                    str(tree / "workflow" / "Snakefile"), "-d", str(d), "-n", "--configfile",
                                    str(tree / "config" / "paper.yaml"), str(overlay), "--sdm", "env-modules"],
                                   work, env_for(tree))
                results[name].append(json_lines(proc.stdout)[-1])
        for name, rs in results.items():
            jobs = rs[0]["jobs"]
            med = statistics.median(x["total_s"] for x in rs)
            target = "<= 30 s" if size == "L" else ""
            rows.append(row("3", f"plan paper grid {size} ({jobs} jobs), `snakemake -n`", "s",
                            [x["total_s"] for x in rs], target=target, met=(med <= 30) if target else None,
                            tree=name, command=f"snakemake -n --configfile config/paper.yaml {overlay.name} "
                                               "--sdm env-modules", jobs=jobs,
                            cpu_s=[x["total_cpu_s"] for x in rs], phases=rs,
                            max_rss_mb=max(x["max_rss_mb"] for x in rs)))
    # Growth: CPU seconds per 1,000 jobs at each size (constant = linear).
    for name in trees:
        mine = [r for r in rows if r["tree"] == name]
        per_k = [(r["jobs"], statistics.median(r["cpu_s"]) * 1000 / r["jobs"]) for r in mine]
        if len(per_k) >= 2:
            rows.append(row("3", "planning growth: CPU s per 1,000 jobs, largest / smallest size", "x",
                            [per_k[-1][1] / per_k[0][1]], target="close to 1 (linear)",
                            met=per_k[-1][1] / per_k[0][1] <= 1.3, tree=name,
                            command="item 3's runs", per_1000_jobs={str(j): round(v, 3) for j, v in per_k}))
    return rows


# ---------------------------------------------------------------- items 4-7: model work


def smollm2(work: Path) -> Path | None:
    out = REPO / "results" / "bench" / "smollm2-135m-instruct"
    if not (out / "config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        _, _, proc = timed([sys.executable, str(BENCH / "gen_tokens.py"), "--convert-smollm2", str(out)], work,
                           env_for(REPO), log=work / "logs" / "smollm2-convert.log", check=False)
        if proc.returncode != 0:
            return None
    return out


def item4(work: Path, grid: Path, repeats: int, quick: bool, env: dict,
          backends: tuple[str, ...] = ("transformers",)) -> list[dict]:
    import yaml

    rows = []
    prompts = grid / "results" / "prompts" / "alert.jsonl"
    # Each model generates as its config does (generation.max_new_tokens): the tiny model as the
    # embedded default (32 tokens), SmolLM2 standing in for the paper's model as config/paper.yaml
    # (70, the paper team's ALERT setting). Both batch 64 prompts (the embedded default's batch size;
    # paper.yaml's is 256), on both cores, as the targets say. One SmolLM2 prompt at a time takes about
    # 4 s and varies little (it is bound by reading the weights, whatever the prompt), so that arm
    # runs once, on the first 32 of the same prompts; the batched runs, which vary more, `repeats` times.
    # The tiny model's batched call takes about 0.15 s, where this shared machine's noise shows most:
    # 3 x `repeats` of those.
    new_tokens = {name: yaml.safe_load((REPO / "config" / name).read_text())["generation"]["max_new_tokens"]
                  for name in ("config.yaml", "paper.yaml")}
    models = [("tiny world base", grid / "results" / "models" / "tiny" / "base", 64, 64, new_tokens["config.yaml"],
               3 * repeats, repeats)]
    smol = smollm2(work)
    if smol is not None:
        models.append(("SmolLM2-135M-Instruct", smol, 8 if quick else 64, 8 if quick else 32,
                       16 if quick else new_tokens["paper.yaml"], repeats, 1))
    for (label, model, n, n_single, tokens, batched_reps, single_reps), backend in itertools.product(models,
                                                                                                      backends):
        python = sys.executable if backend == "transformers" else vllm_python()
        if python is None:
            rows.append(row("4", f"{label}: vLLM batched vs per-prompt: skipped (no vLLM venv)", "", []))
            continue
        res, commands = {}, []
        for prompts_n, batch, reps in ((n, n, batched_reps), (n_single, 1, single_reps)):
            cmd = [python, str(BENCH / "gen_tokens.py"), "--backend", backend, "--model", str(model), "--prompts",
                   str(prompts), "--n", str(prompts_n), "--batch-sizes", str(batch), "--repeats", str(reps),
                   "--max-new-tokens", str(tokens), "--threads", "2"]
            _, _, proc = timed(cmd, work, {**env, "VLLM_CPU_KVCACHE_SPACE": "1"},
                               log=work / "logs" / f"gen-{label}-{backend}-{batch}.log")
            res.update({r["batch_size"]: r for r in json_lines(proc.stdout)})
            commands.append(" ".join(cmd[1:]))
        batched, single = res[n], res[1]
        speedup = [b / statistics.median(single["tokens_per_s"]) for b in batched["tokens_per_s"]]
        rows.append(row("4", f"{label}: {backend} batched ({n} prompts x {tokens} new tokens, 2 threads)",
                        "tokens/s", batched["tokens_per_s"], command=commands[0]))
        rows.append(row("4", f"{label}: {backend} one prompt at a time ({n_single} of those prompts)", "tokens/s",
                        single["tokens_per_s"], command=commands[1]))
        rows.append(row("4", f"{label}: {backend} batched / per-prompt (each batched run / the per-prompt median)",
                        "x", speedup, target=">= 10x", met=statistics.median(speedup) >= 10))
    return rows


def vllm_python() -> str | None:
    """The interpreter with vLLM: $SAFEALIGN_VLLM_PYTHON, this checkout's .venv-vllm, the dev machine's,
    or this one's own (a GPU host with the CUDA vllm installed beside the project)."""
    found = os.environ.get("SAFEALIGN_VLLM_PYTHON") or str(REPO / ".venv-vllm" / "bin" / "python")
    if Path(found).is_file():
        return found
    main_venv = Path("/work/main/.venv-vllm/bin/python")  # this project's shared dev machine
    if main_venv.is_file():
        return str(main_venv)
    import importlib.util

    return sys.executable if importlib.util.find_spec("vllm") is not None else None


def item5(work: Path, grid: Path, repeats: int, quick: bool, env: dict) -> list[dict]:
    py, smol = vllm_python(), smollm2(work)
    if py is None or smol is None:
        return [row("5", "vLLM vs transformers on SmolLM2: skipped (no vLLM venv or no SmolLM2 checkpoint)",
                    "", [])]
    n, new_tokens = (16, 16) if quick else (32, 32)
    prompts = grid / "results" / "prompts" / "alert.jsonl"
    out, rows = {}, []
    for backend, python in (("transformers", sys.executable), ("vllm", py)):
        cmd = [python, str(BENCH / "gen_tokens.py"), "--backend", backend, "--model", str(smol), "--prompts",
               str(prompts), "--n", str(n), "--batch-sizes", str(n), "--repeats", str(repeats),
               "--max-new-tokens", str(new_tokens)]
        _, _, proc = timed(cmd, work, {**env, "VLLM_CPU_KVCACHE_SPACE": "1"},
                           log=work / "logs" / f"gen-smollm2-{backend}.log", check=False)
        lines = json_lines(proc.stdout)
        out[backend] = lines[-1]["tokens_per_s"] if lines else None
        rows.append(row("5", f"SmolLM2-135M-Instruct, {n} prompts: {backend}", "tokens/s", out[backend] or [],
                        command=" ".join(cmd[1:]), rc=proc.returncode))
    if out["vllm"] and out["transformers"]:
        rows.append(row("5", "SmolLM2: vLLM / transformers", "x",
                        [v / t for v, t in zip(out["vllm"], out["transformers"])]))
    return rows


def item6(work: Path, grid: Path, repeats: int, env: dict) -> list[dict]:
    rows = []
    smol = smollm2(work)
    # The tiny base once (fixed per-step costs dominate it; about 60 s a run), SmolLM2 with LoRA,
    # the item's subject, `repeats` times (about 115 s a run): 3 of each would pass 30 minutes.
    cases = [("tiny world base, 5 methods", 1, ["--model", str(grid / "results" / "models" / "tiny" / "base"),
                                                "--methods", "5"])]
    if smol is not None:
        # 8 pairs, one optimizer step per method, both cores: a 135M model's DPO step on CPU takes
        # about 15 s with 2 threads (64 pairs at 1 thread took over 20 minutes in all).
        cases.append(("SmolLM2-135M-Instruct + LoRA, 5 methods", repeats,
                      ["--model", str(smol), "--methods", "5", "--pairs", "8", "--epochs", "1",
                       "--target-modules", "q_proj,k_proj,v_proj,o_proj", "--threads", "2"]))
    for label, runs, args in cases:
        cmd = [sys.executable, str(BENCH / "shared_ref.py"), "--config", str(REPO / "config" / "config.yaml"), *args]
        results = []
        for r in range(runs):
            _, _, proc = timed(cmd, work, env, log=work / "logs" / f"shared-ref-{label[:10]}-{r}.log")
            results.append(json_lines(proc.stdout)[-1])
        ratios = [res["ratio"] for res in results]
        rows.append(row("6", f"shared reference log-probs, {label}: shared / per-method training time", "x",
                        ratios, target="<= 0.70", met=statistics.median(ratios) <= 0.70,
                        command=" ".join(cmd[1:]), detail=results))
    return rows


def item7(work: Path, grid: Path, repeats: int, env: dict) -> list[dict]:
    cmd = [sys.executable, str(BENCH / "judge_tp.py"), "--workdir", str(grid), "--repeats", str(repeats)]
    _, _, proc = timed(cmd, work, env, log=work / "logs" / "judge-tp.log")
    rows = []
    for r in json_lines(proc.stdout):
        rows.append(row("7", f"judge {r['judge']} ({r['type']}), {r['responses']} responses, warm",
                        "responses/s", r["responses_per_s"], command=" ".join(cmd[1:]), cold_s=r["cold_s"]))
    return rows


def cuda_device() -> str | None:
    """The CUDA device's name, or None (asked in a child process: this one stays without CUDA)."""
    code = "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env_for(REPO), capture_output=True, text=True,
                             timeout=300, check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[-1] if out else None


def train_tp(work: Path, grid: Path, repeats: int, quick: bool, env: dict) -> list[dict]:
    """Training tokens/s with LoRA and QLoRA (bench/train_tp.py) on SmolLM2 (the tiny base without it)."""
    smol = smollm2(work)
    model, label = ((smol, "SmolLM2-135M-Instruct") if smol is not None
                    else (grid / "results" / "models" / "tiny" / "base", "tiny world base"))
    rows = []
    for peft in ("lora", "qlora"):
        cmd = [sys.executable, str(BENCH / "train_tp.py"), "--model", str(model), "--peft", peft,
               "--pairs", "16" if quick else "64", "--repeats", str(repeats)]
        if smol is not None:
            cmd += ["--target-modules", "q_proj,k_proj,v_proj,o_proj"]
        _, _, proc = timed(cmd, work, env, log=work / "logs" / f"train-tp-{peft}.log")
        res = json_lines(proc.stdout)[-1]
        kind = {"lora": "LoRA", "qlora": "QLoRA"}[peft]
        if "skipped" in res:
            rows.append(row("8", f"{label} DPO training with {kind}: skipped ({res['skipped']})", "", []))
            continue
        rows.append(row("8", f"{label} DPO training with {kind}, {res['pairs']} pairs, one epoch "
                             f"({res['device']})", "tokens/s", res["tokens_per_s"], command=" ".join(cmd[1:]),
                        detail=res))
    return rows


def item8(work: Path, grid: Path, repeats: int, quick: bool, allow_cpu: bool) -> list[dict]:
    """Items 4-7 again with the GPU visible (item 4 with vLLM too), and training tokens/s."""
    device = cuda_device()
    if device is None and not allow_cpu:
        return [row("8", "GPU items (4-7 with vLLM, LoRA / QLoRA training tokens/s): skipped, no CUDA device "
                         "(torch.cuda.is_available() is False)", "", [])]
    where = f"GPU {device}" if device else "CPU, --gpu-items-on-cpu: not GPU figures"
    env = env_for(REPO)  # the GPU visible (items 4-7 hide it)
    rows = [*item4(work, grid, repeats, quick, env, backends=("transformers", "vllm")),
            *item5(work, grid, repeats, quick, env), *item6(work, grid, repeats, env),
            *item7(work, grid, repeats, env), *train_tp(work, grid, repeats, quick, env)]
    for r in rows:  # the CPU targets are not GPU targets: the figures are reported, not judged
        again = f"item {r['item']}: " if r["item"] != "8" else ""
        r.update(item="8", name=f"[{where}] {again}{r['name']}", target="", met=None)
    return rows


# ---------------------------------------------------------------- table and entry point


def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def table(rows: list[dict]) -> str:
    lines = [f"{'item':4} {'tree':8} {'what':70} {'median':>8} {'min':>8} {'max':>8} {'unit':11} {'target':9} met"]
    for r in rows:
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        lines.append(f"{r['item']:4} {r['tree'][:8]:8} {r['name'][:70]:70} {fmt(r['median']):>8} {fmt(r['min']):>8} "
                     f"{fmt(r['max']):>8} {r['unit'][:11]:11} {r['target'][:9]:9} {met}")
    return "\n".join(lines)


def baseline_tree(ref: str, work: Path) -> Path:
    path = work / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), ref], check=True,
                   capture_output=True)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help="comma-separated items, e.g. 2,3 (default: 1-8)")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement (item 1: --grid-repeats)")
    p.add_argument("--grid-repeats", type=int, default=1, help="tiny-grid runs per tree in item 1")
    p.add_argument("--item1-modes", default=",".join(MODES), help="item 1's modes, e.g. warm (default: warm,cold)")
    p.add_argument("--baseline", help="a git ref measured side by side with this checkout (items 1-3)")
    p.add_argument("--grid-dir", type=Path, help="a finished tiny-grid run (with results/) for items 2-7")
    p.add_argument("--sizes", default="S,M,L", help="item 3's grid sizes (bench/paper_grid.py)")
    p.add_argument("--quick", action="store_true", help="1 repeat, planning sizes S,M, fewer prompts and pairs")
    p.add_argument("--gpu-items-on-cpu", action="store_true",
                   help="run item 8 without a GPU (to test it; its figures are then CPU figures)")
    p.add_argument("--work", type=Path, help="scratch directory (default: a new temporary one, kept)")
    p.add_argument("--out", type=Path, default=BENCH / "results.json")
    args = p.parse_args(argv)
    items = set((args.only or "1,2,3,4,5,6,7,8").split(","))
    repeats = 1 if args.quick else args.repeats
    sizes = ["S", "M"] if args.quick and args.sizes == "S,M,L" else args.sizes.split(",")
    work = args.work or Path(tempfile.mkdtemp(prefix="safealign-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    trees = {"branch": REPO}
    if args.baseline:
        trees = {"baseline": baseline_tree(args.baseline, work), "branch": REPO}
    if args.grid_dir is not None or "1" not in items:
        if args.grid_dir is None and items & {"2", "4", "5", "6", "7"}:
            raise SystemExit("items 2, 4-7 need a finished tiny-grid run: include item 1 or pass --grid-dir")
        for name in trees:
            if args.grid_dir is not None and not (work / f"grid-{name}").exists():
                (work / f"grid-{name}").symlink_to(args.grid_dir.resolve())
    print(f"bench: work directory {work}", flush=True)
    report = {"machine": machine(), "uptime_before": uptime(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "argv": sys.argv[1:], "trees": {k: str(v) for k, v in trees.items()}, "rows": []}
    grid = work / "grid-branch"
    steps = [("1", lambda: item1(trees, work, args.grid_repeats, jobs_only=args.grid_dir is not None,
                                 modes=tuple(args.item1_modes.split(",")))),
             ("2", lambda: item2(trees, work, repeats)),
             ("3", lambda: item3(trees, work, repeats, sizes)),
             ("4", lambda: item4(work, grid, repeats, args.quick, cpu_env())),
             ("5", lambda: item5(work, grid, repeats, args.quick, cpu_env())),
             ("6", lambda: item6(work, grid, repeats, cpu_env())),
             ("7", lambda: item7(work, grid, repeats, cpu_env())),
             ("8", lambda: item8(work, grid, repeats, args.quick, args.gpu_items_on_cpu))]
    for item, fn in steps:
        if item not in items:
            continue
        t = time.perf_counter()
        try:
            new = fn()
        except Exception as exc:  # noqa: BLE001 - one failed item must not lose the others
            new = [row(item, f"FAILED: {type(exc).__name__}: {str(exc)[:200]}", "", [])]
        report["rows"] += new
        report.setdefault("item_seconds", {})[item] = round(time.perf_counter() - t, 1)
        print(table(new), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    report["uptime_after"] = uptime()
    args.out.write_text(json.dumps(report, indent=1))
    print("\n" + table(report["rows"]))
    print(f"\nmachine: {report['machine']['nproc']} x {report['machine']['cpu']}; uptime before: "
          f"{report['uptime_before']}; after: {report['uptime_after']}\nwritten: {args.out}")
    if args.baseline:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(trees["baseline"])],
                       check=False, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
