# Every helper of the workflow: grid expansion, input functions, params, resources.
# The grid logic itself lives in src/safealign/grid.py (unit-tested without Snakemake).
import hashlib
import os
from types import SimpleNamespace

# SRC (the package's directory, set in workflow/Snakefile) reaches every job through PYTHONPATH
# (local, or re-parsed on a Slurm node), whatever conda env the job uses.
import time

from safealign import grid, package_model, retry
from safealign import aggregate as aggregate_spec
from safealign import report as report_spec
from safealign.cli import export_source_path
from safealign.checks import check_config
from safealign.generate import serving
from safealign.data.onpolicy import ARMS as ONPOLICY_ARMS, KINDS as ONPOLICY_KINDS

export_source_path(SRC)
check_config(config)

R = "results"
# When this run started: a retry reads why its earlier attempts (since then) failed.
RUN_STARTED = time.time()
BENCHMARKS = list(config["benchmarks"])
JUDGES = list(config["judges"])
VARIANTS = grid.variant_index(config)
WORLD_FILES = {
    "corpus": "corpus.jsonl",
    "preference": "preference.jsonl",
    "alert": "alert.jsonl",
    "alert_adversarial": "alert_adversarial.jsonl",
    "xstest": "xstest.csv",
    "rtp": "rtp.jsonl",
    "capability": "capability.jsonl",
    "judge": "judge.jsonl",
    "toxicity": "toxicity.jsonl",
}
WORLD_JUDGE_DATA = {"llama_guard": "judge", "toxicity": "toxicity"}
# Modules the rules run; `python` is the rule's conda env interpreter (or the vLLM venv's).
PYPATH = "OMP_NUM_THREADS={threads}"
PY = "OMP_NUM_THREADS={threads} python -m safealign"


wildcard_constraints:
    model=grid.wildcard_regex(list(config["models"])),
    variant=grid.variant_regex(config),
    benchmark=grid.wildcard_regex(list(config["benchmarks"])),
    judge=grid.wildcard_regex(list(config["judges"])),
    world_file=grid.wildcard_regex(list(WORLD_FILES.values())),
    refkey=grid.REFERENCE_KEY_WILDCARD,


# ---------------------------------------------------------------- targets


def final_targets():
    return [f"{R}/report.html", f"{R}/metrics.csv"]


def variant_metric_files():
    return [f"{R}/metrics/{v.model}/{v.name}.csv" for v in VARIANTS.values()]


def train_log_input(wildcards):
    """The variant's train.json; none for the base model."""
    v = variant(wildcards)
    return [] if v.method is None else [f"{R}/models/{v.model}/{v.name}/train.json"]


def variant_outcome_files():
    return [f"{R}/metrics/{v.model}/{v.name}.outcomes.csv" for v in VARIANTS.values()]


def variant_disagreement_files():
    return [
        f"{R}/metrics/{v.model}/{v.name}.disagreements.jsonl" for v in VARIANTS.values()
    ]


def world_validations():
    return [
        f"{R}/judges/{j}/validation.json"
        for j, spec in config["judges"].items()
        if "world" in spec.get("model", {})
    ]


def train_logs():
    return [
        f"{R}/models/{v.model}/{v.name}/train.json"
        for v in VARIANTS.values()
        if v.method is not None
    ]


def _uses_world():
    sources = [config["preference_data"].get("source") or {}]
    on_policy = config["preference_data"].get("on_policy") or {}
    sources += [on_policy[k]["source"] for k in ONPOLICY_KINDS if k in on_policy]
    sources += [b["source"] for b in config["benchmarks"].values()]
    sources += [config["capability"].get("source") or {}]
    specs = list(config["models"].values())
    specs += [j.get("model", {}) for j in config["judges"].values()]
    return any("world" in s for s in sources + specs)


def benchmark_jobs():
    """(benchmark TSV, GPUs its job requests) for every job of the grid but the report: the
    report's cost table reads exactly these, declared as its inputs. Mirrors the rules' benchmark:
    paths and when each rule runs (a path here whose job is not in the DAG would add that job).
    """
    B = f"{R}/benchmarks_tsv"
    gpu = lambda family, **w: _res_value(  # noqa: E731
        family, "gpu", SimpleNamespace(**w), 1
    )
    jobs = [(f"{B}/prompts/{b}.tsv", gpu("default")) for b in BENCHMARKS]
    jobs.append((f"{B}/aggregate.tsv", gpu("default")))
    if _uses_world():
        jobs.append((f"{B}/world_data.tsv", gpu("default")))
    trained = [v for v in VARIANTS.values() if v.method is not None]
    if trained:
        jobs.append((f"{B}/preference_data.tsv", gpu("default")))
        if onpolicy_spec():
            m = onpolicy_spec()["model"]
            jobs.append((f"{B}/onpolicy_prompts.tsv", gpu("default")))
            jobs.append((f"{B}/onpolicy_generate.tsv", gpu("generate", model=m)))
    for m in sorted({v.model for v in VARIANTS.values()}):
        if "world" in config["models"][m]:
            jobs.append((f"{B}/models/{m}/base.tsv", gpu("world_model", model=m)))
        elif "package" in config["models"][m]:
            jobs.append((f"{B}/models/{m}/base.tsv", gpu("package_model", model=m)))
    for j in JUDGES:
        if "world" in config["judges"][j].get("model", {}):
            jobs.append((f"{B}/judges/{j}/model.tsv", gpu("world_model", judge=j)))
            jobs.append((f"{B}/judges/{j}/validation.tsv", gpu("judge", judge=j)))
    refs = {
        (v.model, grid.reference_key(v.settings))
        for v in trained
        if grid.shares_reference(v.settings)
    }
    for m, key in sorted(refs):
        jobs.append((f"{B}/models/{m}/ref_logps_{key}.tsv", gpu("ref_logps", model=m)))
    for v in VARIANTS.values():
        w = SimpleNamespace(model=v.model, variant=v.name)
        cell = f"{v.model}/{v.name}"
        if v.method is not None:
            jobs.append((f"{B}/train/{cell}.tsv", gpu("train", model=v.model)))
        if serving_of(w)["mode"] == "merged":
            jobs.append((f"{B}/merge/{cell}.tsv", gpu("merge", model=v.model)))
        jobs.append((f"{B}/generate/{cell}.tsv", gpu("generate", model=v.model)))
        jobs.append((f"{B}/capability/{cell}.tsv", gpu("capability", model=v.model)))
        jobs.append((f"{B}/metrics/{cell}.tsv", gpu("default", model=v.model)))
        for j in JUDGES:
            if grid.benchmarks_for(config, j):
                jobs.append(
                    (f"{B}/judge/{cell}/{j}.tsv", gpu("judge", model=v.model, judge=j))
                )
    return jobs


def benchmark_files():
    return [path for path, _ in benchmark_jobs()]


def report_judgment_files():
    return [
        f"{R}/judgments/{v.model}/{v.name}/{b}/{j}.jsonl"
        for v in VARIANTS.values()
        for b in BENCHMARKS
        for j in grid.judges_for(config, b)
    ]


def report_meta_files():
    gen = [f"{R}/generations/{v.model}/{v.name}/meta.json" for v in VARIANTS.values()]
    judge = [
        f"{R}/judgments/{v.model}/{v.name}/{j}.meta.json"
        for v in VARIANTS.values()
        for j in JUDGES
        if grid.benchmarks_for(config, j)
    ]
    return gen + judge


def report_capability_files():
    return [f"{R}/capability/{v.model}/{v.name}.json" for v in VARIANTS.values()]


# ---------------------------------------------------------------- sources and model refs


def world_path(key):
    return f"{R}/world/data/{WORLD_FILES[key]}"


def resolve_source(source):
    """A config source with `world: <file key>` becomes the world file's local path."""
    if "world" in source:
        return {"path": world_path(source["world"])}
    return dict(source)


def source_input(source):
    """The files a source reads: a world file, or a local `path:` (so editing it reruns its job)."""
    if "world" in source:
        return [world_path(source["world"])]
    return [source["path"]] if "path" in source else []


def model_ref(model):
    """A world or package model is the directory its rule builds (rules/base.smk)."""
    spec = config["models"][model]
    if "world" in spec or "package" in spec:
        return {"path": f"{R}/models/{model}/base"}
    return {k: spec[k] for k in ("hub", "revision", "path", "gguf_file") if k in spec}


def model_input(model):
    spec = config["models"][model]
    return [f"{R}/models/{model}/base"] if "world" in spec or "package" in spec else []


def models_with(key):
    """Wildcard regex of the models whose spec holds `key` (world / package), so exactly one
    rule of rules/base.smk builds each model's `base` directory."""
    names = [m for m, spec in config["models"].items() if key in spec]
    return grid.wildcard_regex(names) if names else "(?!)"


def package_located(model):
    spec = config["models"][model]
    return package_model.locate(spec["package"], f"config.models.{model}.package")


def package_gguf(wildcards):
    return str(package_located(wildcards.model).path)


def judge_ref(judge):
    spec = config["judges"][judge].get("model", {})
    if "world" in spec:
        return {"path": f"{R}/judges/{judge}/model"}
    return dict(spec)


def judge_input(judge):
    spec = config["judges"][judge].get("model", {})
    return [f"{R}/judges/{judge}/model"] if "world" in spec else []


def variant(wildcards):
    return VARIANTS[(wildcards.model, wildcards.variant)]


# ---------------------------------------------------------------- params (functions of wildcards)


def p_world(wildcards):
    return grid.canonical({**config["world"], "offline": config["offline"]})


def p_world_model(wildcards):
    return grid.canonical(
        {**config["models"][wildcards.model]["world"], "offline": config["offline"]}
    )


def p_package_model(wildcards):
    return grid.canonical(
        {
            "package": config["models"][wildcards.model]["package"],
            # The wheel's own hash of the file; the job checks the file against it.
            "record_sha256": package_located(wildcards.model).record_sha256,
            "offline": config["offline"],
        }
    )


def p_world_judge(wildcards):
    return grid.canonical(
        {
            **config["judges"][wildcards.judge]["model"]["world"],
            "offline": config["offline"],
        }
    )


def judge_params(judge):
    spec = {k: v for k, v in config["judges"][judge].items() if k != "resources"}
    spec.pop("applies_to", None)
    spec["name"] = judge
    spec["offline"] = config["offline"]
    if "model" in spec:
        spec["model"] = judge_ref(judge)
    if spec["type"] == "llama_guard":
        spec["backend"] = config["generation"]["backend"]
    return grid.canonical(spec)


def p_judge(wildcards):
    return judge_params(wildcards.judge)


def p_judge_of(judge):
    return lambda wildcards: judge_params(judge)


def generation_files(judge):
    return [
        f"{R}/generations/{{model}}/{{variant}}/{b}.jsonl"
        for b in grid.benchmarks_for(config, judge)
    ]


def judgment_files(judge):
    return [
        f"{R}/judgments/{{model}}/{{variant}}/{b}/{judge}.jsonl"
        for b in grid.benchmarks_for(config, judge)
    ]


def p_preference(wildcards):
    spec = dict(config["preference_data"])
    if spec.get("source"):
        spec["source"] = resolve_source(spec["source"])
    if spec.get("on_policy"):
        # The generations are inputs; the pairs depend only on them and the judge's rule.
        spec["on_policy"] = {"model": spec["on_policy"]["model"]}
    spec["offline"] = config["offline"]
    return grid.canonical(spec)


def onpolicy_spec():
    return config["preference_data"].get("on_policy")


def onpolicy_generation_files():
    return [f"{R}/data/onpolicy/generations/{arm}.jsonl" for arm in ONPOLICY_ARMS]


def preference_inputs(wildcards):
    """The pairs' source file, the on-policy generations and every evaluation prompt file (no
    pair may share a prompt with them). The tiny world asserts that itself when it builds its
    files, so its pairs do not wait on (and retrain after) every benchmark's prompt file.
    """
    spec = config["preference_data"]
    source = spec.get("source") or {}
    world_only = "world" in source and not onpolicy_spec()
    return {
        "source": source_input(source) if source else [],
        "onpolicy": onpolicy_generation_files() if onpolicy_spec() else [],
        "exclude": [] if world_only else [f"{R}/prompts/{b}.jsonl" for b in BENCHMARKS],
    }


def onpolicy_source_files(wildcards):
    spec = onpolicy_spec()
    return [f for k in ONPOLICY_KINDS for f in source_input(spec[k]["source"])]


def p_onpolicy_prompts(wildcards):
    spec = onpolicy_spec()
    return grid.canonical(
        {
            **{
                k: {**spec[k], "source": resolve_source(spec[k]["source"])}
                for k in ONPOLICY_KINDS
            },
            "offline": config["offline"],
        }
    )


def onpolicy_model_input(wildcards):
    return model_input(onpolicy_spec()["model"])


def p_onpolicy_generate(wildcards):
    """The base model's generation on the held-apart prompts, one arm per (kind, system prompt),
    in ONPOLICY_ARMS order."""
    spec = onpolicy_spec()
    gen = {
        k: v for k, v in config["generation"].items() if k not in serving.SERVING_KEYS
    }
    gen.update(spec.get("generation") or {})
    arms = [
        {
            "name": arm,
            "system_prompt": (
                spec.get("refusal_system_prompt") if arm.endswith("_refuse") else None
            ),
            "response_prefix": (
                spec.get("refusal_prefix") if arm.endswith("_refuse") else None
            ),
            "user_template": "{prompt}",
            "generation": gen,
        }
        for arm in ONPOLICY_ARMS
    ]
    return grid.canonical(
        {
            "model": model_ref(spec["model"]),
            "benchmarks": arms,
            "serving": serving.serving_plan(config, spec["model"], {}),
            "offline": config["offline"],
        }
    )


def p_benchmark(wildcards):
    spec = config["benchmarks"][wildcards.benchmark]
    keep = {
        k: v
        for k, v in spec.items()
        if k
        not in ("generation", "system_prompt", "user_template", "kind", "global_safety")
    }
    keep["source"] = resolve_source(spec["source"])
    return grid.canonical(
        {**keep, "name": wildcards.benchmark, "offline": config["offline"]}
    )


def ref_settings(model, refkey):
    return {
        "model": model_ref(model),
        **grid.reference_settings(refkey),
        "offline": config["offline"],
    }


def p_ref_logps(wildcards):
    return grid.canonical(ref_settings(wildcards.model, wildcards.refkey))


def p_train(wildcards):
    v = variant(wildcards)
    return grid.canonical(
        {
            "model": model_ref(v.model),
            "settings": grid.computed_settings(v.settings),
            "offline": config["offline"],
        }
    )


def p_train_run(wildcards, output):
    """How the training job runs: checkpoint interval and directory (a sibling of the adapter,
    which Snakemake never deletes), and the method's name for error messages. A function of
    `output`, so Snakemake does not rerun training when it changes (unlike p_train)."""
    v = variant(wildcards)
    return grid.train_run_args(v, output.adapter)


def ref_logps_input(wildcards):
    v = variant(wildcards)
    if not grid.shares_reference(v.settings):
        return []
    return [f"{R}/models/{v.model}/ref_logps/{grid.reference_key(v.settings)}.jsonl"]


def adapter_input(wildcards):
    if wildcards.variant == grid.BASE:
        return []
    return [f"{R}/models/{wildcards.model}/{wildcards.variant}/adapter"]


def serving_of(wildcards):
    v = variant(wildcards)
    return serving.serving_plan(config, v.model, v.settings)


def merged_input(wildcards):
    """The merged weights (a temp() target) of a variant served as mode 'merged'."""
    if serving_of(wildcards)["mode"] != "merged":
        return []
    return [f"{R}/models/{wildcards.model}/{wildcards.variant}/merged"]


def p_merge(wildcards):
    return grid.canonical(
        {
            "model": model_ref(wildcards.model),
            "dtype": config["generation"].get("dtype", "float32"),
            "offline": config["offline"],
        }
    )


def p_generate(wildcards):
    benches = [
        {
            "name": b,
            "system_prompt": config["benchmarks"][b].get("system_prompt"),
            "user_template": config["benchmarks"][b].get("user_template") or "{prompt}",
            "generation": grid.generation_settings(config, b),
        }
        for b in BENCHMARKS
    ]
    return grid.canonical(
        {
            "model": model_ref(wildcards.model),
            "benchmarks": benches,
            "serving": serving_of(wildcards),
            "offline": config["offline"],
        }
    )


def generation_python(wildcards):
    gen = config["generation"]
    if gen["backend"] == "vllm" and gen.get("vllm_python"):
        return gen["vllm_python"]
    return "python"


def judge_uses_vllm(judge):
    """A Llama Guard judge generates through the configured backend (vLLM or transformers)."""
    return (
        config["judges"][judge]["type"] == "llama_guard"
        and config["generation"]["backend"] == "vllm"
    )


def judge_env(judge):
    return "../envs/vllm.yaml" if judge_uses_vllm(judge) else "../envs/judge.yaml"


def judge_python(judge):
    return generation_python if judge_uses_vllm(judge) else "python"


def p_capability(wildcards):
    cap = {k: v for k, v in config["capability"].items() if k != "source"}
    return grid.canonical(
        {**cap, "model": model_ref(wildcards.model), "offline": config["offline"]}
    )


def capability_items(wildcards):
    """The local items file of custom lm-eval tasks (none for built-in tasks like gsm8k)."""
    source = config["capability"].get("source")
    if not source:
        return []
    if "world" in source:
        return source_input(source)
    if "path" in source:
        return [source["path"]]
    raise ValueError(
        "config.capability.source must be `world:` or `path:` (custom task items); "
        "leave it out for lm-eval's built-in tasks"
    )


def judgment_inputs(wildcards):
    return [
        f"{R}/judgments/{wildcards.model}/{wildcards.variant}/{b}/{j}.jsonl"
        for b in config["benchmarks"]
        for j in grid.judges_for(config, b)
    ]


def p_metrics(wildcards):
    v = variant(wildcards)
    tox = [
        s.get("threshold", 0.5)
        for s in config["judges"].values()
        if s["type"] == "toxicity"
    ]
    return grid.canonical(
        {
            "model": v.model,
            "variant": v.name,
            "method": v.method,
            "seed": v.seed,
            "benchmark_kinds": {b: s["kind"] for b, s in config["benchmarks"].items()},
            "toxicity_threshold": tox[0] if tox else 0.5,
            "global_parts": report_spec.global_parts(config),
            "judge_types": {j: s["type"] for j, s in config["judges"].items()},
        }
    )


def p_aggregate(wildcards):
    return grid.canonical({"references": aggregate_spec.references(VARIANTS.values())})


def p_report(wildcards):
    return grid.canonical(
        {
            "title": config.get("report", {}).get("title", "safealign report"),
            "methods": {m: s for m, s in config["methods"].items()},
            "models": list(config["models"]),
            "headline": report_spec.resolve_headline(config),
            "config_sha256": hashlib.sha256(
                grid.canonical(config).encode()
            ).hexdigest(),
            "sources": report_spec.configured_sources(config),
            "global_parts": report_spec.global_parts(config),
            "paper_reference": config.get("report", {}).get("paper_reference") or [],
            # GPUs each job requests (config resources), for GPU-seconds in the cost table.
            "gpus": {path: n for path, n in benchmark_jobs() if n},
        }
    )


# ---------------------------------------------------------------- resources


def slurm_logdir():
    """Where the Slurm executor plugin keeps failed jobs' logs (its slurm-logdir); None on other
    executors. Set once the executor starts, so read when a resource is asked for, not at parse.
    """
    return getattr(getattr(workflow, "executor_settings", None), "logdir", None)


def _res_value(family, key, wildcards, attempt, judge=None, rule=None):
    base = dict(config["resources"].get("default", {}))
    base.update(config["resources"].get(family, {}))
    model = getattr(wildcards, "model", None)
    judge = judge or getattr(wildcards, "judge", None)
    if model in config["models"]:
        base.update(config["models"][model].get("resources", {}).get(family, {}))
    if judge in config["judges"]:
        base.update(config["judges"][judge].get("resources", {}).get(family, {}))
    # A key only some models/judges set: numbers default to 0, gpu_model to "" (any GPU).
    value = base.get(key, "" if key == "gpu_model" else 0)
    if key in retry.GROWS and isinstance(value, int):
        # A retry grows what the last attempts ran out of (src/safealign/retry.py).
        failed = (
            retry.failures(slurm_logdir(), rule, list(wildcards), RUN_STARTED)
            if attempt > 1 and rule
            else {}
        )
        return retry.scaled(key, value, attempt, failed)
    if key == "gpu_jobs":
        return 1 if base.get("gpu", 0) else 0
    return value


def _res_keys(family):
    keys = set(config["resources"].get("default", {})) | set(
        config["resources"].get(family, {})
    )
    for spec in list(config["models"].values()) + list(config["judges"].values()):
        keys |= set(spec.get("resources", {}).get(family, {}))
    keys.discard("threads")
    keys.add("gpu_jobs")
    keys.add("gpu")  # always there: the GPU rules pass it to their scripts as --gpus
    return sorted(keys)


def res(family, judge=None, rule=None):
    """Resources of rule ``rule`` (of a family), each a function of (wildcards, attempt)."""
    return {
        key: (
            lambda wildcards, attempt, key=key: _res_value(
                family, key, wildcards, attempt, judge, rule
            )
        )
        for key in _res_keys(family)
    }


def threads_of(family, judge=None):
    return lambda wildcards: int(
        _res_value(family, "threads", wildcards, 1, judge) or 1
    )
