"""The Slurm profile (slurm/config.yaml) on a real Slurm cluster, and its dry run.

`test_profile_dry_run_routes_gpu_jobs` needs no cluster: it dry-runs the paper grid with
`--profile slurm` from the repository root and checks the resources each job would ask for.

The tests marked `slurm` need the one-node cluster that `.ci/slurm-up` starts (partitions `cpu`
and `gpu`, 2 fake GPUs, no slurmdbd). They copy the workflow into a temporary directory and run
the whole smoke grid (tiny world, base + Safe-DPO + Safe-NCA, every benchmark, judge, lm-eval,
metrics and report) twice: once through Slurm with

    snakemake --profile slurm --profile tests/slurm-overlay \\
        --configfile config/config.yaml tests/configs/smoke.yaml slurm-gpus.yaml

and once locally with `--cores 2`. `slurm-gpus.yaml` gives the judge training and validation
one GPU each and the training jobs two GPUs each, so the run has CPU jobs and GPU jobs, two of
them ready at once. The tests then check that every GPU job ran as its own Slurm job and the
short CPU jobs in the profile's job groups (fewer submissions than jobs), that GPU jobs asked
sbatch for GPUs on the GPU partition and never exceeded the gpu_jobs cap, that a two-GPU training
job ran its script once as one task that launched two data-parallel ranks, and that both runs
produced the same files (all but those that record wall-clock time). They skip when no Slurm
node is up, and they stop nothing but the jobs they submitted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
SMOKE = REPO / "tests" / "configs" / "smoke.yaml"
PAPER = REPO / "config" / "paper.yaml"
OVERLAY = REPO / "tests" / "slurm-overlay"
# What a copy of the workflow needs; the rest (venvs, results, .git) stays behind.
WORKFLOW_PARTS = ["workflow", "rules", "envs", "config", "src", "slurm", "tests/configs",
                  "tests/slurm-overlay"]
PROFILE = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
SLURM_LOGDIR = PROFILE["slurm-logdir"]
GPU_ROUTED = {rule for rule, res in PROFILE.get("set-resources", {}).items()
              if res.get("slurm_partition") == "gpu"}
SLURM_TIMEOUT_S = 3600  # the whole smoke grid through Slurm (slow CI machines are 2.5x slower)
LOCAL_TIMEOUT_S = 1800  # the same grid with --cores 2
# The config layer that gives the smoke grid GPU jobs (keyed as in rules/common.smk `res`): the
# per-judge `judge` resources cover judge_<name> and validate_judge, which slurm/config.yaml sends
# to the GPU partition. The two world_judge_model jobs are ready at the same moment, so only the
# gpu_jobs cap keeps them apart; the profile does not route these tiny-world rules, so this layer
# names their partition.
UNTIL: list[str] = []  # the whole smoke grid, report included
TRAIN_GPUS = 2
GPU_LAYER = {
    "resources": {"world_model": {"gpu": 1, "cpus_per_gpu": 1, "slurm_partition": "gpu"},
                  # The fallback partition of the judge family (the refusal judge's), which a
                  # judge's own slurm_partition needs (checks: partitions have a rule-level fallback).
                  "judge": {"slurm_partition": "cpu"},
                  # Two GPUs per training job: one Slurm task, two data-parallel ranks (gloo on CPU).
                  "train": {"gpu": TRAIN_GPUS, "cpus_per_gpu": 1}},
    # The two model-based judges get a GPU (judge_llama_guard is routed to the GPU partition by
    # the profile, judge_toxicity, a CPU job in the paper grid, by this layer); the refusal judge
    # stays a CPU job.
    "judges": {"llama_guard": {"resources": {"judge": {"gpu": 1, "cpus_per_gpu": 1}}},
               "toxicity": {"resources": {"judge": {"gpu": 1, "cpus_per_gpu": 1, "slurm_partition": "gpu"}}}},
}
# A --configfile replaces the embedded default config, so it comes first (see smoke.yaml).
CONFIGS = ["--configfile", "config/config.yaml", "tests/configs/smoke.yaml", "slurm-gpus.yaml"]
# Outputs that legitimately differ between two runs: logs, timings, Snakemake's markers.
NOT_COMPARED = ("logs", "benchmarks_tsv")

# A job block; inside a group job's listing ("Group job <name> (jobs in lexicogr. order):") the
# blocks are indented by four more spaces.
JOB_HEADER = re.compile(r"^( {4})?(localrule|rule) (\w+):$")
JOB_FIELD = re.compile(r"^( {4})? {4}(jobid|resources): (.*)$")
GROUP_HEADER = re.compile(r"Group job (\w+) \(jobs in lexicogr\. order\):$")
# A job's Snakemake id is a number; a group job's is a UUID.
SUBMITTED = re.compile(
    r"Job ([\w-]+) has been submitted with SLURM jobid (\d+) \(log: (.+)\)\.$", re.M)
PROFILE_GROUPS = dict(g.split("=", 1) for g in PROFILE.get("groups", []))
# Groups of GPU-routed rules only (the grid cells' generation and model judges): their members may
# use GPUs, each run as its own `srun --gpus` step inside the group job's allocation.
GPU_GROUPS = {g for g in set(PROFILE_GROUPS.values())
              if all(rule in GPU_ROUTED for rule, group in PROFILE_GROUPS.items() if group == g)}
# Groups of one rule's grid cells (`<name>_cells`): bulk jobs (GPU cells, or the toxicity judge's
# multi-threaded CPU cells) batched per submission, not the small one-thread jobs of the other groups.
CELL_GROUPS = {g for g in set(PROFILE_GROUPS.values()) if g.endswith("_cells")
               and len({rule for rule, group in PROFILE_GROUPS.items() if group == g}) == 1}
SBATCH_CALL = re.compile(r"^sbatch call: (sbatch .*)$", re.M)


@dataclass
class Job:
    """One job block of Snakemake's output (`rule x:` / `localrule x:` and its fields)."""

    rule: str
    local: bool
    jobid: int = -1
    resources: dict[str, str] = field(default_factory=dict)
    group: str | None = None  # the job group it was submitted in

    @property
    def gpus(self) -> int:
        return int(self.resources.get("gpu", 0) or 0)


def parse_jobs(output: str) -> dict[int, Job]:
    """Job blocks of a Snakemake log by Snakemake job id (the last block wins), with the group
    of those listed under a group job."""
    jobs: dict[int, Job] = {}
    job = group = None
    for line in output.splitlines():
        if m := GROUP_HEADER.search(line):
            group, job = m[1], None
        elif m := JOB_HEADER.match(line):
            job = Job(rule=m[3], local=m[2] == "localrule", group=group if m[1] else None)
        elif job is not None and (m := JOB_FIELD.match(line)):
            if m[2] == "jobid":
                job.jobid = int(m[3])
                jobs[job.jobid] = job
            else:
                job.resources = dict(kv.split("=", 1) for kv in m[3].split(", ") if "=" in kv)
        elif line.strip() and not line.startswith("    ") and not line.lstrip().startswith("["):
            # Another thread's line (--verbose: "General args", "sbatch call") may fall inside a
            # group's listing: it ends the job block, not the group (an indented job header occurs
            # only in a group's listing, and each listing starts with its own header).
            job = None
    return jobs


def scontrol_job(slurm_id: str) -> dict[str, str]:
    """`scontrol show job` as key=value pairs (finished jobs stay MinJobAge=600 s)."""
    out = subprocess.run(["scontrol", "-o", "show", "job", slurm_id], capture_output=True,
                         text=True, check=True).stdout
    return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)


def slurm_node_up() -> str | None:
    """None when a Slurm node with partitions cpu and gpu is up, else why not."""
    if shutil.which("sinfo") is None:
        return "no sinfo on PATH (start a cluster with .ci/slurm-up)"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%R %T"], capture_output=True, text=True,
                             timeout=20).stdout
    except (subprocess.SubprocessError, OSError) as e:
        return f"sinfo failed: {e}"
    if not out.strip():
        return "sinfo reached no Slurm controller; run .ci/slurm-up"
    states = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
    if not {"cpu", "gpu"} <= states.keys():
        return f"no partitions cpu and gpu (sinfo: {out.strip()!r}); run .ci/slurm-up"
    if not any(s.rstrip("*~#").startswith(("idle", "mix", "alloc")) for s in states.values()):
        return f"no Slurm node up (sinfo: {out.strip()!r}); run .ci/slurm-up"
    return None


def copy_workflow(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".snakemake", "results",
                                    "logs", "benchmarks")
    for part in WORKFLOW_PARTS:
        if (REPO / part).is_dir():
            shutil.copytree(REPO / part, dest / part, ignore=ignore)
    (dest / "slurm-gpus.yaml").write_text(yaml.safe_dump(GPU_LAYER))
    return dest


# Files that carry wall-clock facts (the report's date and cost table, TRL's train_runtime);
# everything else a run writes, model weights included, must be byte-identical.
TIMED = {"report.html", "train.json"}


def result_files(workdir: Path) -> dict[str, bytes]:
    """Every deterministic file under results/ (not logs, benchmarks or TIMED), by relative path."""
    root = workdir / "results"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).parts[0] not in NOT_COMPARED
            and not p.name.startswith(".snakemake") and p.name not in TIMED
            and p.parent.suffix != ".tasks"}  # lm-eval task YAMLs hold absolute data paths


def run_with_deadline(cmd: list[str], cwd: Path, timeout: int, log: Path):
    """Run `cmd`, interrupting it (as Ctrl-C does, so Snakemake cancels its Slurm jobs) and
    then killing it when it outlives `timeout`. Returns (returncode or None, output, seconds)."""
    start = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            rc = None
    return rc, log.read_text(), time.monotonic() - start


def tail(text: str, n: int = 60) -> str:
    return "\n".join(text.splitlines()[-n:])


@dataclass
class SmokeRuns:
    slurm_dir: Path
    slurm_output: str
    slurm_seconds: float
    local_dir: Path
    local_output: str
    jobs: dict[int, Job]
    # Snakemake job id (a group job's UUID) -> (Slurm job id, Slurm log)
    submitted: dict[int | str, tuple[str, Path]]
    sbatch_calls: list[str]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> SmokeRuns:
    for path in (SNAKEFILE, SMOKE):
        if not path.exists():
            pytest.skip(f"{path.relative_to(REPO)} does not exist yet")
    if why := slurm_node_up():
        pytest.skip(why)

    # Both copies up front, so both runs see the same code even while the repo changes.
    slurm_dir = copy_workflow(tmp_path_factory.mktemp("slurm-run"))
    local_dir = copy_workflow(tmp_path_factory.mktemp("local-run"))
    cmd = ["snakemake", "--profile", "slurm", "--profile", "tests/slurm-overlay", *CONFIGS,
           *UNTIL, "--verbose"]
    rc, out, secs = run_with_deadline(cmd, slurm_dir, SLURM_TIMEOUT_S,
                                      slurm_dir / "snakemake-slurm.log")
    submitted = {(int(m[1]) if m[1].isdigit() else m[1]): (m[2], Path(m[3])) for m in SUBMITTED.finditer(out)}
    if rc != 0:
        # Cancel whatever this run submitted and Snakemake left behind; nothing else.
        ids = [sid for sid, _ in submitted.values()]
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True)
        state = "timed out after %ds" % SLURM_TIMEOUT_S if rc is None else f"exited {rc}"
        pytest.fail(f"Slurm run {state}:\n{tail(out)}")

    cmd = ["snakemake", "--cores", "2", *CONFIGS, *UNTIL]
    rc, local_out, local_secs = run_with_deadline(cmd, local_dir, LOCAL_TIMEOUT_S,
                                                  local_dir / "snakemake-local.log")
    if rc != 0:
        pytest.fail(f"local run exited {rc}:\n{tail(local_out)}")
    print(f"Slurm run {secs:.0f} s, local run {local_secs:.0f} s")  # shown with pytest -s

    return SmokeRuns(slurm_dir=slurm_dir, slurm_output=out, slurm_seconds=secs,
                     local_dir=local_dir, local_output=local_out, jobs=parse_jobs(out),
                     submitted=submitted, sbatch_calls=SBATCH_CALL.findall(out))


def sbatch_call_for(smoke: SmokeRuns, log: Path) -> str:
    """The sbatch command line whose --output lies in the directory of this Slurm log."""
    calls = [c for c in smoke.sbatch_calls if f"--output {log.parent}/%j.log " in c]
    assert len(calls) >= 1, f"no sbatch call logged for {log}"
    return calls[-1]


@pytest.mark.slurm
def test_every_job_ran_once_and_short_cpu_jobs_shared_submissions(smoke: SmokeRuns):
    remote = {jid: job for jid, job in smoke.jobs.items() if not job.local}
    assert remote, "the smoke grid scheduled no non-local jobs"
    single = {jid: job for jid, job in remote.items() if job.group is None}
    grouped = {jid: job for jid, job in remote.items() if job.group is not None}
    # Exactly the profile's grouped rules went into groups; only a group of GPU-routed rules
    # holds jobs that use a GPU.
    assert {job.rule for job in grouped.values()} == {
        rule for rule in PROFILE_GROUPS if any(j.rule == rule for j in remote.values())}
    assert all(job.group == PROFILE_GROUPS[job.rule] and (job.gpus == 0 or job.group in GPU_GROUPS | CELL_GROUPS)
               for job in grouped.values()), sorted((j.rule, j.group, j.gpus) for j in grouped.values())
    group_submissions = {k: v for k, v in smoke.submitted.items() if isinstance(k, str)}
    # Every ungrouped job was submitted exactly once, each group job once, and nothing else.
    assert set(smoke.submitted) == set(single) | set(group_submissions)
    assert len(smoke.sbatch_calls) == len(smoke.submitted)
    slurm_ids = [sid for sid, _ in smoke.submitted.values()]
    assert len(set(slurm_ids)) == len(slurm_ids)
    # Fewer submissions than jobs: the closing note quotes these two numbers.
    print(f"{len(remote)} jobs ran in {len(smoke.submitted)} Slurm submissions "
          f"({len(grouped)} jobs in {len(group_submissions)} group jobs)")
    assert len(group_submissions) < len(grouped)
    assert len(smoke.submitted) < len(remote)

    logdir = smoke.slurm_dir / SLURM_LOGDIR
    logs = sorted(logdir.rglob("*.log"))
    assert len(logs) == len(smoke.submitted), f"expected one Slurm log per submission in {logdir}"
    ran_in_groups: list[str] = []
    for jid, (sid, log) in smoke.submitted.items():
        assert log.name == f"{sid}.log"
        info = scontrol_job(sid)
        text = log.read_text()
        if jid in single:
            rule = single[jid].rule
            assert log.relative_to(logdir).parts[0] == f"rule_{rule}"
            # The log is the job's own output: Snakemake's jobstep ran exactly this rule.
            assert f"(Rule: {rule})" in text, f"{log} does not show rule {rule} finish"
            assert info["Comment"].startswith(f"rule_{rule}")
        else:
            assert log.relative_to(logdir).parts[0].startswith("group_")
            # The group job's own Snakemake dispatches each of its jobs ("rule X:"; each runs as
            # "localrule X:" in a nested Snakemake).
            ran_in_groups += re.findall(r"^rule (\w+):$", text, re.M)
        assert (info["JobState"], info["ExitCode"]) == ("COMPLETED", "0:0"), (jid, info)
    assert sorted(ran_in_groups) == sorted(job.rule for job in grouped.values())


@pytest.mark.slurm
def test_gpu_jobs_ask_sbatch_for_gpus_on_the_gpu_partition(smoke: SmokeRuns):
    remote = {jid: job for jid, job in smoke.jobs.items() if not job.local and job.group is None}
    gpu_jobs = {jid for jid, job in remote.items() if job.gpus > 0}
    assert gpu_jobs, "the smoke grid has no GPU jobs"
    for jid, job in remote.items():
        sid, log = smoke.submitted[jid]
        call = sbatch_call_for(smoke, log)
        info = scontrol_job(sid)
        if jid in gpu_jobs:
            assert f" --gpus={job.gpus}" in call, call
            assert info.get("TresPerJob") == f"gres:gpu:{job.gpus}", info
            assert info["Partition"] == "gpu", f"{job.rule}: set-resources in slurm/config.yaml"
            assert job.resources.get("gpu_jobs") == "1", job.resources
        else:
            assert "--gpus" not in call, call
            # The profile routes the rules that run on GPUs in the paper grid to the GPU
            # partition by name (set-resources); in the smoke grid some of them use no GPU.
            expected = "gpu" if job.rule in GPU_ROUTED else "cpu"
            assert info["Partition"] == expected, (job.rule, info["Partition"])


@pytest.mark.slurm
def test_gpu_jobs_respect_the_gpu_jobs_cap(smoke: SmokeRuns):
    cap = yaml.safe_load((OVERLAY / "config.yaml").read_text())["resources"]["gpu_jobs"]
    spans = []
    for jid, (sid, _) in smoke.submitted.items():
        info = scontrol_job(sid)
        # A job that uses a GPU, or a group job (a UUID) whose allocation holds GPUs.
        if (smoke.jobs[jid].gpus > 0) if isinstance(jid, int) else "gpu" in info.get("TresPerJob", ""):
            spans.append((datetime.fromisoformat(info["StartTime"]),
                          datetime.fromisoformat(info["EndTime"])))
    # Most GPU jobs running at once, counting [start, end) in Slurm's whole seconds.
    events = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert 1 <= peak <= cap, spans


@pytest.mark.slurm
def test_a_two_gpu_training_job_runs_once_with_two_ranks(smoke: SmokeRuns):
    """gpu: 2 is one Slurm task with two GPUs whose script runs once and launches two
    data-parallel ranks (plugin issues #316, #459), writing one adapter and the global batch."""
    train = {jid: job for jid, job in smoke.jobs.items() if job.rule == "train"}
    assert train, "the smoke grid has no training job"
    settings = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["training"]
    configured = settings["per_device_train_batch_size"] * settings["gradient_accumulation_steps"]
    for jid, job in train.items():
        assert job.gpus == TRAIN_GPUS, job.resources
        sid, slurm_log = smoke.submitted[jid]
        call = sbatch_call_for(smoke, slurm_log)
        assert f" --gpus={TRAIN_GPUS}" in call and "--ntasks-per-gpu" not in call, call
        assert scontrol_job(sid)["NumTasks"] == "1"
    # The training script's own logs: one launch each, two ranks each reporting its steps.
    logs = sorted((smoke.slurm_dir / "results" / "logs" / "models" / "tiny").glob("*/train.log"))
    assert len(logs) == len(train)
    for log in logs:
        text = log.read_text()
        assert text.count(f"safealign: launching {TRAIN_GPUS} data-parallel processes") == 1, log
        # (not anchored: a rank's line may follow tqdm's carriage return)
        assert len(re.findall(r"safealign: \d+ optimizer steps run in this job", text)) == TRAIN_GPUS, log
        variant_dir = smoke.slurm_dir / "results" / "models" / "tiny" / log.parent.name
        assert len(list((variant_dir / "adapter").glob("*.safetensors"))) == 1
        batch = json.loads((variant_dir / "train.json").read_text())["batch"]
        # The method's global batch is kept: each of the two ranks takes half.
        assert batch == {"processes": TRAIN_GPUS, "global_batch_size": configured,
                         "per_device_train_batch_size": configured // TRAIN_GPUS,
                         "gradient_accumulation_steps": 1}, batch


@pytest.mark.slurm
def test_slurm_outputs_equal_local_outputs(smoke: SmokeRuns):
    slurm, local = result_files(smoke.slurm_dir), result_files(smoke.local_dir)
    assert any(name.endswith("validation.json") for name in slurm), sorted(slurm)
    assert "metrics.csv" in slurm and any(n.endswith("adapter_model.safetensors") for n in slurm)
    assert sorted(slurm) == sorted(local)
    differ = [name for name in slurm if slurm[name] != local[name]]
    assert not differ, f"Slurm and local runs wrote different {differ}"
    # The Slurm jobs ran cold, the local run's in forks of the warm server (safealign.warm): the
    # equal bytes above also show that running warm changes no result.
    from safealign.warm import warm_logs

    local_warm = warm_logs(smoke.local_dir / "results")
    assert not warm_logs(smoke.slurm_dir / "results")
    assert any(p.endswith("train.log") for p in local_warm) and any(p.startswith("generations") for p in local_warm)


def test_profile_dry_run_routes_gpu_jobs():
    """`snakemake --profile slurm -n` on the paper grid: GPU jobs ask for GPUs, count against
    gpu_jobs and go to the GPU partition; CPU jobs do neither."""
    for path in (SNAKEFILE, PAPER):
        if not path.exists():
            pytest.skip(f"{path.relative_to(REPO)} does not exist yet")
    cmd = ["snakemake", "--profile", "slurm", "-n", "--configfile", "config/paper.yaml"]
    if shutil.which("conda") is None:
        # The profile deploys conda envs, and Snakemake asks conda for its version even in a
        # dry run; without conda, check the resources only.
        cmd += ["--software-deployment-method", "env-modules"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, tail(out)
    jobs = [job for job in parse_jobs(out).values() if job.rule != "all"]
    gpu = [job for job in jobs if job.gpus > 0]
    assert gpu, "no job in the paper grid asks for a GPU"
    for job in gpu:
        res = job.resources
        assert res["gpu_jobs"] == "1", (job.rule, res)
        assert res["slurm_partition"] == "gpu", (job.rule, res)
        assert int(res["runtime"]) > 0 and int(res["mem_mb"]) > 0, (job.rule, res)
    for job in jobs:
        if job.gpus == 0:
            assert job.resources.get("slurm_partition") == "cpu", (job.rule, job.resources)
            assert job.resources.get("gpu_jobs", "0") == "0", (job.rule, job.resources)
    # The per-rule GPU defaults of the config reach the jobs: the GPUs and GPU model each rule's
    # resources name (none by default: any GPU of the partition, A100 or H100), the toxicity
    # judge's CPUs.
    from safealign.configload import load_config
    from safealign.dag import Dag

    cfg = load_config(yaml.safe_load(PAPER.read_text()), [PAPER], lock=False)
    dag, families = Dag(cfg), rule_families()
    for job in jobs:
        if job.rule not in families and not job.rule.startswith("judge_"):
            continue  # a local rule without resources (nltk_data)
        family, judge = families.get(job.rule) or ("judge", job.rule.removeprefix("judge_"))
        wildcards = SimpleNamespace(model=next(iter(cfg["models"])))
        assert job.gpus == dag.resource(family, "gpu", wildcards, 1, judge), (job.rule, job.resources)
        assert job.resources.get("gpu_model", "") == dag.resource(family, "gpu_model", wildcards, 1, judge)
    toxicity = [job for job in jobs if job.rule == "judge_toxicity"]
    assert toxicity and all(job.gpus == cfg["judges"]["toxicity"]["resources"]["judge"]["gpu"] for job in toxicity)


# A job block's fields in a dry run, for the group request test: the first output/input lines and
# the wildcards (within a group job's listing, indented by four more spaces).
DRY_FIELD = re.compile(r"^( {4})? {4}(jobid|resources|threads|input|output|wildcards): (.*)$")


def dry_run_blocks(output: str) -> list[dict]:
    """Every job block of a dry run: rule, group listing it belongs to (a counter per `Group job`
    header), threads, resources, inputs, outputs and wildcards."""
    blocks, block, group, n_groups = [], None, None, 0
    for line in output.splitlines():
        if GROUP_HEADER.search(line):
            n_groups += 1
            group, block = n_groups, None
        elif m := JOB_HEADER.match(line):
            block = {"rule": m[3], "group": group if m[1] else None, "threads": 1, "resources": {},
                     "input": [], "output": [], "wildcards": {}}
            blocks.append(block)
        elif block is not None and (m := DRY_FIELD.match(line)):
            key, value = m[2], m[3]
            if key == "threads":
                block["threads"] = int(value)
            elif key in ("input", "output"):
                block[key] = value.split(", ")
            elif key in ("resources", "wildcards"):
                block[key] = dict(kv.split("=", 1) for kv in value.split(", ") if "=" in kv)
        elif line.strip() and not line.startswith("    ") and not line.lstrip().startswith("["):
            block = None
            if not line.startswith(" "):
                group = None
    return blocks


def rule_families() -> dict[str, tuple[str, str | None]]:
    """Rule name -> (resource family, judge) as the rule files call `res(...)`."""
    out = {}
    for smk in (REPO / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=rule )", smk.read_text())[1:]:
            name = block.split(":")[0].removeprefix("rule ").strip()
            m = re.search(r'\*\*res\("(\w+)"(?:, (\w+))?', block)
            if m and name:
                out[name] = (m[1], m[2])
    return out


def test_profile_group_requests_fit_the_configured_runtimes():
    """`snakemake --profile slurm -n` on the paper grid, each group job's request computed with
    Snakemake's own layered group resources (the `-t` the plugin submits): no job asks for more
    than its rule's configured runtime; a CPU group for no more than one configured runtime per
    rule it holds (its jobs run side by side, not one after another), and its jobs for one thread;
    a group of one rule's cells (GPU_GROUPS, CELL_GROUPS) for no more GPUs than the profile's gpu_jobs cap (as many
    cells side by side as fit in `cores`, each on its own GPUs) and no more than the sum of its
    cells' runtimes."""
    from snakemake.resources import GroupResources

    from safealign.configload import load_config
    from safealign.dag import Dag

    cmd = ["snakemake", "--profile", "slurm", "-n", "--configfile", "config/paper.yaml",
           "--software-deployment-method", "env-modules"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, tail(proc.stdout + proc.stderr)
    blocks = [b for b in dry_run_blocks(proc.stdout + proc.stderr) if b["rule"] != "all"]
    cfg = yaml.safe_load(PAPER.read_text())
    load_config(cfg, [PAPER])
    dag = Dag(cfg)
    families = rule_families()

    def configured(block: dict) -> int:
        rule = block["rule"]
        assert rule in families or rule.startswith("judge_"), f"rule {rule}: no res(...) in rules/*.smk"
        family, judge = families.get(rule) or ("judge", rule.removeprefix("judge_"))
        return int(dag.resource(family, "runtime", SimpleNamespace(**block["wildcards"]), 1, judge))

    for b in blocks:
        assert int(b["resources"]["runtime"]) <= configured(b), (b["rule"], b["wildcards"], b["resources"])
    grouped = [b for b in blocks if b["group"] is not None]
    assert {b["rule"] for b in grouped} == {r for r in PROFILE_GROUPS if any(x["rule"] == r for x in blocks)}
    for b in grouped:
        if PROFILE_GROUPS[b["rule"]] not in GPU_GROUPS | CELL_GROUPS:
            assert b["threads"] == 1 and int(b["resources"]["gpu"]) == 0, (b["rule"], b["threads"])

    cores = PROFILE["cores"]
    constraints = {"_cores": cores, "_nodes": PROFILE["jobs"], **PROFILE.get("resources", {})}
    limits = SimpleNamespace(get=lambda name: SimpleNamespace(value=constraints.get(name)))
    for gid in sorted({b["group"] for b in grouped}):
        members = [b for b in grouped if b["group"] == gid]
        # Snakemake's toposort of a group: levels by the dependencies among its own jobs.
        made = {out: i for i, b in enumerate(members) for out in b["output"]}
        level: dict[int, int] = {}

        def depth(i: int) -> int:
            if i not in level:
                parents = {made[f] for f in members[i]["input"] if f in made}
                level[i] = 1 + max((depth(p) for p in parents), default=-1)
            return level[i]

        levels = [[] for _ in range(1 + max(depth(i) for i in range(len(members))))]
        for i, b in enumerate(members):
            res = {k: int(v) for k, v in b["resources"].items() if v.isdigit() and k in ("mem_mb", "runtime", "gpu")}
            levels[depth(i)].append(SimpleNamespace(resources={**res, "_cores": b["threads"], "_nodes": 1},
                                                    pipe_group=None))
        request = GroupResources.basic_layered(levels, limits, run_local=False,
                                               additive_resources=["runtime"], sortby=["runtime"])
        per_rule = {}
        for b in members:
            per_rule[b["rule"]] = max(per_rule.get(b["rule"], 0), configured(b))
        rules = sorted(per_rule)
        assert request["_cores"] <= cores, (gid, rules, request)
        if PROFILE_GROUPS[members[0]["rule"]] in GPU_GROUPS | CELL_GROUPS:
            assert request.get("gpu", 0) <= constraints["gpu_jobs"], (gid, rules, request)
            assert request["runtime"] <= sum(configured(b) for b in members), (gid, rules, request)
            continue
        assert request["runtime"] <= sum(per_rule.values()), (gid, rules, request, per_rule)


def documented_resource_examples() -> list[tuple[str, dict]]:
    """Every resources mapping with a `slurm_extra` in the docs' YAML blocks (docs/**/*.md) and in
    slurm/config.yaml's commented example, as (where, mapping)."""
    found = []

    def walk(where: str, node) -> None:
        if isinstance(node, dict):
            if "slurm_extra" in node:
                found.append((where, node))
            for value in node.values():
                walk(where, value)

    for md in sorted((REPO / "docs").rglob("*.md")):
        for block in re.findall(r"```yaml\n(.*?)```", md.read_text(), re.S):
            walk(str(md.relative_to(REPO)), yaml.safe_load(block))
    profile = (REPO / "slurm" / "config.yaml").read_text()
    section = profile.split("\ndefault-resources:\n", 1)[1].split("\n\n", 1)[0]
    uncommented = re.sub(r"^(\s*)# (\w+: )", r"\1\2", section, flags=re.M)
    walk("slurm/config.yaml", yaml.safe_load("default-resources:\n" + uncommented))
    return found


def test_documented_slurm_extra_passes_the_plugin():
    """The documented QoS / constraint / slurm_extra example passes the pinned plugin's validation
    of slurm_extra, and its sbatch call carries the QoS and the constraint."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra
    from snakemake_interface_common.exceptions import WorkflowError

    class Resources(dict):
        __getattr__ = dict.get

    def job(resources: dict) -> SimpleNamespace:
        res = Resources({"runtime": 30, "mem_mb": 1000, "_cores": 1, "gpu": 0, **resources})
        return SimpleNamespace(resources=res, threads=1, name="rule", is_group=lambda: False)

    # What the plugin refuses (so this test can tell): a QoS and a constraint inside slurm_extra.
    with pytest.raises(WorkflowError):
        validate_slurm_extra(job({"slurm_extra": "--qos=normal --constraint=a100"}))

    examples = documented_resource_examples()
    assert any(where == "slurm/config.yaml" for where, _ in examples)
    params = {"run_uuid": "u", "slurm_logfile": "log", "comment_str": "c", "account": "-A a",
              "partition": "-p p", "workdir": "."}
    for where, example in examples:
        # Snakemake evaluates a profile's string resource as Python: "'--x'" is the string --x.
        resources = {k: (v[1:-1] if isinstance(v, str) and v[:1] == v[-1:] == "'" else v)
                     for k, v in example.items()}
        validate_slurm_extra(job(resources))
        call = get_submit_command(job(resources), params)
        assert resources["slurm_extra"] in call, (where, call)
        if "qos" in resources:
            assert f"--qos={resources['qos']}" in call.replace("'", ""), (where, call)
        if "constraint" in resources:
            assert f"-C {resources['constraint']}" in call.replace("'", ""), (where, call)
