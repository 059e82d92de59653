"""The workflow's DAG as plain functions of the config: every rule's inputs, params and resources.

``rules/common.smk`` binds one :class:`Dag` to the validated config and adapts its methods to
Snakemake, one line each; this module never imports Snakemake and touches no file at import. A
method that takes ``wildcards`` reads only attributes of it (``wildcards.model``), so tests pass
a :class:`types.SimpleNamespace`.

The rerun contract
------------------
Snakemake reruns a job when its rule's params change (``--rerun-triggers params``, a default). So
each ``p_*`` method returns canonical JSON built from an **explicit allow-list** of the config
keys its rule's output depends on (the ``*_KEYS`` tuples below): an experiment setting. What is
not one (an interpreter path, a validation threshold, a resource, the report title for every rule
but the report) stays out, and reaches a job, where it needs it, through a params function that
takes ``output`` (Snakemake does not count those as rerun triggers), or through the shell prefix
(:func:`safealign.cli.export_offline`). tests/test_rerun_contract.py states, for a table of single config edits,
exactly which rules rerun; tests/test_workflow.py checks the same on the whole grid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from . import aggregate as aggregate_spec
from . import grid, package_model, retry
from . import headline as report_spec
from .data.onpolicy import ARMS as ONPOLICY_ARMS
from .data.onpolicy import SOURCES as ONPOLICY_SOURCES
from .data.onpolicy import kind as onpolicy_kind
from .generate import serving
from .judge.registry import JUDGE_TYPES
from .world.files import FILES as WORLD_FILES
from .world.files import JUDGE_DATA as WORLD_JUDGE_DATA

R = "results"

# ---------------------------------------------------------------- allow-lists (experiment settings)
# Each tuple names the keys of one config section that a rule's params copy (when set). A key of
# the schema that is in none of them is declared in NOT_EXPERIMENT_SETTINGS (tested both ways).
WORLD_KEYS = (
    "seed", "harmful_compliance_share", "attack_compliance_share", "benign_toxicity_share",
    "adversarial_toxicity_share", "n_preference_pairs", "benign_pair_share", "toxicity_pair_share",
    "n_judge_examples", "n_toxicity_examples", "corpus_repeats", "capability_repeats",
)  # config.world
WORLD_MODEL_KEYS = ("seed", "vocab_size", "validation_share", "architecture", "train")  # *.world
MODEL_REF_KEYS = ("hub", "revision", "path", "gguf_file")  # config.models.<m>
JUDGE_KEYS = (
    "type", "batch_size", "max_length", "max_new_tokens", "top_logprobs", "threshold", "toxic_label", "model",
    "max_model_len",
)  # config.judges.<j>
PREFERENCE_KEYS = ("source", "schema", "max_pairs", "seed", "single_turn_only", "on_policy")
ONPOLICY_KIND_KEYS = ("source", "n_per_category", "n", "max_prompt_chars", "seed")  # on_policy.<kind>
BENCHMARK_KEYS = (
    "loader", "source", "n", "n_per_category", "offset", "offset_per_category", "seed",
    "attack_types", "attacks_per_prompt", "challenging_only",
)  # config.benchmarks.<b> (prompt selection; generation settings are the generate rule's)
# config.generation per benchmark; lora_serving / qlora_base reach the rule through the serving
# plan (safealign.generate.serving), vllm_python only picks the interpreter.
GENERATION_KEYS = (
    "backend", "max_new_tokens", "do_sample", "temperature", "top_p", "num_samples", "batch_size", "seed",
    "dtype", "enforce_eager", "kv_cache_gib", "max_model_len",
)
CAPABILITY_KEYS = (
    "tasks", "num_fewshot", "limit", "batch_size", "apply_chat_template", "max_gen_toks", "device", "dtype",
)  # config.capability (source: the rule's input file)
REPORT_KEYS = ("title", "headline", "paper_reference")  # config.report (the report rule's only)

# Config keys that are not experiment settings: no rule's params may copy them (the report's
# config_sha256 aside, which records the whole config). Dotted paths, `*` for any name.
NOT_EXPERIMENT_SETTINGS = (
    "offline",  # hub access, not a result: in the jobs' environment (cli.export_offline)
    "hub_lock",  # read at parse time: its commits reach params as the refs' revisions (prefetch.apply_lock)
    "resources", "models.*.resources", "judges.*.resources",  # where and how long a job runs
    "generation.vllm_python",  # which interpreter runs vLLM
    "judges.*.min_validation_accuracy",  # a gate on the judge, passed to validate_judge untracked
    "report.title",  # the report's alone (REPORT_KEYS)
    "training.checkpoint_steps",  # how training runs (grid.RUN_KEYS)
)


def pick(spec: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """``spec``'s entries whose key is in ``keys`` (an allow-list), in ``spec``'s order."""
    keys = set(keys)
    return {k: v for k, v in spec.items() if k in keys}


def log_of_benchmark(tsv: str) -> str:
    """The log path of the job whose ``benchmark:`` path is ``tsv`` (the rules' ``log:`` layout)."""
    rel = Path(tsv).relative_to(f"{R}/benchmarks_tsv").with_suffix("")
    head, rest = rel.parts[0], rel.parts[1:]
    if head in ("train", "merge"):  # train/<model>/<variant> -> models/<model>/<variant>/train
        return str(Path(R, "logs", "models", *rest, head)) + ".log"
    head = {"generate": "generations", "judge": "judgments"}.get(head, head)
    return str(Path(R, "logs", head, *rest)) + ".log"


class Dag:
    """Inputs, params and resources of every rule for one validated config.

    ``failures`` (a function of (rule, wildcards list)) tells a retry why its earlier attempts
    failed (Snakemake-only: rules/common.smk passes one that reads the Slurm log directory).
    """

    def __init__(self, config: dict[str, Any],
                 failures: Callable[[str, list[str]], dict[str, int]] | None = None) -> None:
        self.config = config
        self.failures = failures
        self.benchmarks = list(config["benchmarks"])
        self.judges = list(config["judges"])
        self.variants = grid.variant_index(config)

    # ------------------------------------------------------------ wildcards and shell

    def wildcard_constraints(self) -> dict[str, str]:
        c = self.config
        return {
            "model": grid.wildcard_regex(list(c["models"])),
            "variant": grid.variant_regex(c),
            "benchmark": grid.wildcard_regex(self.benchmarks),
            "judge": grid.wildcard_regex(self.judges),
            "world_file": grid.wildcard_regex(list(WORLD_FILES.values())),
            "refkey": grid.REFERENCE_KEY_WILDCARD,
        }

    @staticmethod
    def shell(module: str, args: str, python: str = "python") -> str:
        """Every rule's shell command: ``OMP_NUM_THREADS={threads} <python> -m safealign.job <module>
        <args> > {log} 2>&1`` (``python``: a Snakemake placeholder such as ``{params.python:q}``);
        if the job fails, ``safealign.cli failed`` prints its reason from the log to the job's
        stderr (the console) and the command keeps the job's exit status.

        :mod:`safealign.job` runs ``python -m safealign.<module> <args>`` in a fork of the local warm
        server where one accepts this interpreter and environment, else in the job's own process (on
        Slurm, in the vLLM venv, with ``SAFEALIGN_WARM=0``); its log says which.

        A function of its arguments only, never of the config: Snakemake reruns a job whose rule's
        shell command text changed (rerun trigger ``code``). So config.offline is not in it but in
        the environment the jobs inherit (:func:`safealign.cli.export_offline`)."""
        return (f"OMP_NUM_THREADS={{threads}} {python} -m safealign.job {module} {args} > {{log}} 2>&1"
                f" || (s=$?; {python} -m safealign.cli failed {{log}} $s)")

    def variant(self, wildcards: Any) -> grid.Variant:
        return self.variants[(wildcards.model, wildcards.variant)]

    # ------------------------------------------------------------ targets

    def final_targets(self) -> list[str]:
        return [f"{R}/report.html", f"{R}/metrics.csv"]

    def variant_files(self, pattern: str) -> list[str]:
        """``pattern`` (with {model} and {variant}) for every variant of the grid."""
        return [pattern.format(model=v.model, variant=v.name) for v in self.variants.values()]

    def train_log_input(self, wildcards: Any) -> list[str]:
        """The variant's train.json; none for the base model."""
        v = self.variant(wildcards)
        return [] if v.method is None else [f"{R}/models/{v.model}/{v.name}/train.json"]

    def world_validations(self) -> list[str]:
        return [f"{R}/judges/{j}/validation.json" for j in self.judges if self.judge_is_world(j)]

    def train_logs(self) -> list[str]:
        return [f"{R}/models/{v.model}/{v.name}/train.json" for v in self.variants.values() if v.method is not None]

    def uses_world(self) -> bool:
        c = self.config
        sources = [c["preference_data"].get("source") or {}]
        on_policy = c["preference_data"].get("on_policy") or {}
        sources += [on_policy[k]["source"] for k in ONPOLICY_SOURCES if on_policy.get(k)]
        sources += [b["source"] for b in c["benchmarks"].values()]
        sources += [c["capability"].get("source") or {}]
        specs = list(c["models"].values()) + [j.get("model", {}) for j in c["judges"].values()]
        return any("world" in s for s in sources + specs)

    def benchmark_jobs(self) -> list[tuple[str, int]]:
        """(benchmark TSV, GPUs its job requests) for every job of the grid but the report: the
        report's cost table reads exactly these, declared as its inputs. Mirrors the rules'
        ``benchmark:`` paths and when each rule runs (tests/test_workflow.py checks them against a
        dry run's; a path here whose job is not in the DAG would add that job)."""
        B = f"{R}/benchmarks_tsv"

        def gpu(family: str, **w: str) -> int:
            return self.resource(family, "gpu", SimpleNamespace(**w), 1)

        jobs = [(f"{B}/prompts/{b}.tsv", gpu("default")) for b in self.benchmarks]
        jobs.append((f"{B}/aggregate.tsv", gpu("default")))
        if self.uses_world():
            jobs.append((f"{B}/world_data.tsv", gpu("default")))
        trained = [v for v in self.variants.values() if v.method is not None]
        if trained:
            jobs.append((f"{B}/preference_data.tsv", gpu("default")))
            if self.onpolicy_spec():
                m = self.onpolicy_spec()["model"]
                jobs.append((f"{B}/onpolicy_prompts.tsv", gpu("default")))
                jobs.append((f"{B}/onpolicy_generate.tsv", gpu("generate", model=m)))
        for m in sorted({v.model for v in self.variants.values()}):
            if "world" in self.config["models"][m]:
                jobs.append((f"{B}/models/{m}/base.tsv", gpu("world_model", model=m)))
            elif "package" in self.config["models"][m]:
                jobs.append((f"{B}/models/{m}/base.tsv", gpu("package_model", model=m)))
        for j in self.judges:
            if self.judge_is_world(j):
                jobs.append((f"{B}/judges/{j}/model.tsv", gpu("world_model", judge=j)))
                jobs.append((f"{B}/judges/{j}/validation.tsv", gpu("judge", judge=j)))
        refs = {(v.model, grid.reference_key(v.settings)) for v in trained if grid.shares_reference(v.settings)}
        for m, key in sorted(refs):
            jobs.append((f"{B}/models/{m}/ref_logps_{key}.tsv", gpu("ref_logps", model=m)))
        for v in self.variants.values():
            w = SimpleNamespace(model=v.model, variant=v.name)
            cell = f"{v.model}/{v.name}"
            if v.method is not None:
                jobs.append((f"{B}/train/{cell}.tsv", gpu("train", model=v.model)))
            if self.serving_of(w)["mode"] == "merged":
                jobs.append((f"{B}/merge/{cell}.tsv", gpu("merge", model=v.model)))
            for b in self.benchmarks:
                jobs.append((f"{B}/generate/{cell}/{b}.tsv", gpu("generate", model=v.model)))
            jobs.append((f"{B}/capability/{cell}.tsv", gpu("capability", model=v.model)))
            jobs.append((f"{B}/metrics/{cell}.tsv", gpu("default", model=v.model)))
            for j in self.judges:
                for b in grid.benchmarks_for(self.config, j):
                    jobs.append((f"{B}/judge/{cell}/{b}/{j}.tsv", gpu("judge", model=v.model, judge=j)))
        return jobs

    def benchmark_files(self) -> list[str]:
        return [path for path, _ in self.benchmark_jobs()]

    def job_log_files(self) -> list[str]:
        """Each :meth:`benchmark_files` job's log, in the same order: where a job that ran in a
        fork of the warm server (safealign.warm) logged its own CPU time and peak memory, which its
        benchmark TSV (the client process's) does not hold."""
        return [log_of_benchmark(path) for path in self.benchmark_files()]

    def report_judgment_files(self) -> list[str]:
        return [f"{R}/judgments/{v.model}/{v.name}/{b}/{j}.jsonl" for v in self.variants.values()
                for b in self.benchmarks for j in grid.judges_for(self.config, b)]

    def report_meta_files(self) -> list[str]:
        """Every grid cell's provenance: each generation's, then each judgment's."""
        gen = [f"{R}/generations/{v.model}/{v.name}/{b}.meta.json" for v in self.variants.values()
               for b in self.benchmarks]
        judge = [f"{R}/judgments/{v.model}/{v.name}/{b}/{j}.meta.json" for v in self.variants.values()
                 for j in self.judges for b in grid.benchmarks_for(self.config, j)]
        return gen + judge

    # ------------------------------------------------------------ sources and model refs

    def world_path(self, key: str) -> str:
        return f"{R}/world/data/{WORLD_FILES[key]}"

    def world_files(self) -> list[str]:
        return [self.world_path(k) for k in WORLD_FILES]

    def resolve_source(self, source: dict[str, Any]) -> dict[str, Any]:
        """A config source with ``world: <file key>`` becomes the world file's local path."""
        if "world" in source:
            return {"path": self.world_path(source["world"])}
        return dict(source)

    def source_input(self, source: dict[str, Any]) -> list[str]:
        """The files a source reads: a world file, or a local ``path:`` (editing it reruns its job)."""
        if "world" in source:
            return [self.world_path(source["world"])]
        return [source["path"]] if "path" in source else []

    def benchmark_source_input(self, wildcards: Any) -> list[str]:
        return self.source_input(self.config["benchmarks"][wildcards.benchmark]["source"])

    def model_ref(self, model: str) -> dict[str, Any]:
        """A world or package model is the directory its rule builds (rules/base.smk)."""
        spec = self.config["models"][model]
        if "world" in spec or "package" in spec:
            return {"path": f"{R}/models/{model}/base"}
        return pick(spec, MODEL_REF_KEYS)

    def model_input(self, wildcards: Any) -> list[str]:
        return self._model_input(wildcards.model)

    def _model_input(self, model: str) -> list[str]:
        spec = self.config["models"][model]
        return [f"{R}/models/{model}/base"] if "world" in spec or "package" in spec else []

    def models_with(self, key: str) -> str:
        """Wildcard regex of the models whose spec holds ``key`` (world / package), so exactly one
        rule of rules/base.smk builds each model's ``base`` directory."""
        names = [m for m, spec in self.config["models"].items() if key in spec]
        return grid.wildcard_regex(names) if names else "(?!)"

    def package_located(self, model: str) -> package_model.Located:
        spec = self.config["models"][model]
        return package_model.locate(spec["package"], f"config.models.{model}.package")

    def package_gguf(self, wildcards: Any) -> str:
        return str(self.package_located(wildcards.model).path)

    def judge_is_world(self, judge: str) -> bool:
        return "world" in self.config["judges"][judge].get("model", {})

    def judge_ref(self, judge: str) -> dict[str, Any]:
        spec = self.config["judges"][judge].get("model", {})
        return {"path": f"{R}/judges/{judge}/model"} if "world" in spec else dict(spec)

    def judge_input(self, judge: str) -> list[str]:
        return [f"{R}/judges/{judge}/model"] if self.judge_is_world(judge) else []

    def judge_validation_input(self, judge: str) -> list[str]:
        """A tiny-world judge judges only once it passed its validation (rule validate_judge)."""
        return [f"{R}/judges/{judge}/validation.json"] if self.judge_is_world(judge) else []

    def world_judge_data(self, wildcards: Any) -> str:
        return self.world_path(WORLD_JUDGE_DATA[self.config["judges"][wildcards.judge]["type"]])

    def world_judge_kind(self, wildcards: Any) -> str:
        """The ``python -m safealign.world`` subcommand that trains the judge."""
        return WORLD_JUDGE_DATA[self.config["judges"][wildcards.judge]["type"]]

    # ------------------------------------------------------------ params: data and base models

    def p_world(self, wildcards: Any) -> str:
        return grid.canonical(pick(self.config["world"], WORLD_KEYS))

    def p_world_model(self, wildcards: Any) -> str:
        return grid.canonical(pick(self.config["models"][wildcards.model]["world"], WORLD_MODEL_KEYS))

    def p_package_model(self, wildcards: Any) -> str:
        return grid.canonical({
            "package": self.config["models"][wildcards.model]["package"],
            # The wheel's own hash of the file; the job checks the file against it.
            "record_sha256": self.package_located(wildcards.model).record_sha256,
        })

    def p_world_judge(self, wildcards: Any) -> str:
        return grid.canonical(pick(self.config["judges"][wildcards.judge]["model"]["world"], WORLD_MODEL_KEYS))

    def onpolicy_spec(self) -> dict[str, Any] | None:
        return self.config["preference_data"].get("on_policy")

    def onpolicy_generation_files(self) -> list[str]:
        """One file per arm, named by it (``<arm>.jsonl``): preference_data reads each by its name."""
        return [f"{R}/data/onpolicy/generations/{arm}.jsonl" for arm in ONPOLICY_ARMS]

    def onpolicy_prompt_files(self) -> list[str]:
        """The prompt file each arm answers, in the order of :meth:`onpolicy_generation_files`."""
        return [f"{R}/data/onpolicy/prompts/{onpolicy_kind(arm)}.jsonl" for arm in ONPOLICY_ARMS]

    def p_preference(self, wildcards: Any) -> str:
        spec = pick(self.config["preference_data"], PREFERENCE_KEYS)
        if spec.get("source"):
            spec["source"] = self.resolve_source(spec["source"])
        if spec.get("on_policy"):
            # The generations are inputs; the pairs depend only on them and the judge's rule.
            spec["on_policy"] = {"model": spec["on_policy"]["model"]}
        return grid.canonical(spec)

    def preference_inputs(self, wildcards: Any) -> dict[str, list[str]]:
        """The pairs' source file, the on-policy generations and every evaluation prompt file (no
        pair may share a prompt with them). The tiny world asserts that itself when it builds its
        files, so its pairs do not wait on (and retrain after) every benchmark's prompt file."""
        source = self.config["preference_data"].get("source") or {}
        world_only = "world" in source and not self.onpolicy_spec()
        return {
            "source": self.source_input(source) if source else [],
            "onpolicy": self.onpolicy_generation_files() if self.onpolicy_spec() else [],
            "exclude": [] if world_only else [f"{R}/prompts/{b}.jsonl" for b in self.benchmarks],
        }

    def onpolicy_source_files(self, wildcards: Any) -> list[str]:
        spec = self.onpolicy_spec()
        return [f for k in ONPOLICY_SOURCES if spec.get(k) for f in self.source_input(spec[k]["source"])]

    def p_onpolicy_prompts(self, wildcards: Any) -> str:
        spec = self.onpolicy_spec()
        return grid.canonical({
            k: {**pick(spec[k], ONPOLICY_KIND_KEYS), "source": self.resolve_source(spec[k]["source"])}
            for k in ONPOLICY_SOURCES if spec.get(k)
        })

    def onpolicy_model_input(self, wildcards: Any) -> list[str]:
        return self._model_input(self.onpolicy_spec()["model"])

    def p_onpolicy_generate(self, wildcards: Any) -> str:
        """The base model's generation on the held-apart prompts, one arm per (kind, system prompt),
        in ONPOLICY_ARMS order."""
        spec = self.onpolicy_spec()
        gen = pick(self.config["generation"], GENERATION_KEYS)
        gen.update(spec.get("generation") or {})
        arms = [{
            "name": arm,
            "system_prompt": spec.get("refusal_system_prompt") if arm.endswith("_refuse") else None,
            "response_prefix": spec.get("refusal_prefix") if arm.endswith("_refuse") else None,
            "user_template": "{prompt}",
            "generation": gen,
        } for arm in ONPOLICY_ARMS]
        return grid.canonical({
            "model": self.model_ref(spec["model"]),
            "benchmarks": arms,
            "serving": serving.serving_plan(self.config, spec["model"], {}),
        })

    def p_benchmark(self, wildcards: Any) -> str:
        spec = self.config["benchmarks"][wildcards.benchmark]
        keep = pick(spec, BENCHMARK_KEYS)
        keep["source"] = self.resolve_source(spec["source"])
        return grid.canonical({**keep, "name": wildcards.benchmark})

    # ------------------------------------------------------------ params: training

    def ref_settings(self, model: str, refkey: str) -> dict[str, Any]:
        return {"model": self.model_ref(model), **grid.reference_settings(refkey)}

    def p_ref_logps(self, wildcards: Any) -> str:
        return grid.canonical(self.ref_settings(wildcards.model, wildcards.refkey))

    def p_train(self, wildcards: Any) -> str:
        # A method's keys are all training settings (any TRL config field) but grid.RUN_KEYS.
        v = self.variant(wildcards)
        return grid.canonical({"model": self.model_ref(v.model), "settings": grid.computed_settings(v.settings)})

    def p_train_run(self, wildcards: Any, output: Any) -> str:
        """How the training job runs: checkpoint interval and directory (a sibling of the adapter,
        which Snakemake never deletes), and the method's name for error messages. A function of
        ``output``, so Snakemake does not rerun training when it changes (unlike p_train)."""
        return grid.train_run_args(self.variant(wildcards), output.adapter)

    def ref_logps_input(self, wildcards: Any) -> list[str]:
        v = self.variant(wildcards)
        if not grid.shares_reference(v.settings):
            return []
        return [f"{R}/models/{v.model}/ref_logps/{grid.reference_key(v.settings)}.jsonl"]

    def adapter_input(self, wildcards: Any) -> list[str]:
        if wildcards.variant == grid.BASE:
            return []
        return [f"{R}/models/{wildcards.model}/{wildcards.variant}/adapter"]

    # ------------------------------------------------------------ params: generation

    def serving_of(self, wildcards: Any) -> dict[str, Any]:
        v = self.variant(wildcards)
        return serving.serving_plan(self.config, v.model, v.settings)

    def merged_input(self, wildcards: Any) -> list[str]:
        """The merged weights (a temp() target) of a variant served as mode 'merged'."""
        if self.serving_of(wildcards)["mode"] != "merged":
            return []
        return [f"{R}/models/{wildcards.model}/{wildcards.variant}/merged"]

    def p_merge(self, wildcards: Any) -> str:
        # dtype when set (the schema fills it); MergeSpec holds the one default.
        return grid.canonical({"model": self.model_ref(wildcards.model),
                               **pick(self.config["generation"], ("dtype",))})

    def generation_settings(self, benchmark: str) -> dict[str, Any]:
        """config.generation (:data:`GENERATION_KEYS`) with the benchmark's own overrides."""
        gen = pick(self.config["generation"], GENERATION_KEYS)
        gen.update(self.config["benchmarks"][benchmark].get("generation", {}))
        return gen

    def p_generate(self, wildcards: Any) -> str:
        """One cell's generation: the model, the variant's serving plan and this benchmark's own
        prompt rendering and generation settings (no other benchmark's)."""
        b = wildcards.benchmark
        benches = [{
            "name": b,
            "system_prompt": self.config["benchmarks"][b].get("system_prompt"),
            "user_template": self.config["benchmarks"][b].get("user_template") or "{prompt}",
            "generation": self.generation_settings(b),
        }]
        return grid.canonical({
            "model": self.model_ref(wildcards.model),
            "benchmarks": benches,
            "serving": self.serving_of(wildcards),
        })

    def uses_vllm(self) -> bool:
        return self.config["generation"]["backend"] == "vllm"

    def generation_python(self, wildcards: Any, output: Any) -> str:
        """The interpreter of a generating job: the vLLM venv's (generation.vllm_python) with the
        vLLM backend, else the conda env's ``python``. A function of ``output``, so Snakemake does
        not rerun a job when the interpreter path changes (the path is no experiment setting)."""
        path = self.config["generation"].get("vllm_python")
        return path if self.uses_vllm() and path else "python"

    def generation_env(self) -> str:
        """vLLM's env with the vLLM backend; else the judge env, which pins the transformers (and
        torch, peft) that training uses."""
        return "../envs/vllm.yaml" if self.uses_vllm() else "../envs/judge.yaml"

    # ------------------------------------------------------------ params: judges

    def judge_uses_vllm(self, judge: str) -> bool:
        """A judge type that generates (Llama Guard) does so through the configured backend (vLLM or transformers)."""
        return JUDGE_TYPES[self.config["judges"][judge]["type"]].generates and self.uses_vllm()

    def judge_env(self, judge: str) -> str:
        return "../envs/vllm.yaml" if self.judge_uses_vllm(judge) else "../envs/judge.yaml"

    def judge_python(self, judge: str) -> Callable[[Any, Any], str]:
        """The judge's interpreter as a function of (wildcards, output): no rerun trigger."""
        if self.judge_uses_vllm(judge):
            return self.generation_python
        return self._plain_python

    @staticmethod
    def _plain_python(wildcards: Any, output: Any) -> str:
        return "python"

    def judge_params(self, judge: str) -> str:
        spec = pick(self.config["judges"][judge], JUDGE_KEYS)
        spec["name"] = judge
        if "model" in spec:
            spec["model"] = self.judge_ref(judge)
        if JUDGE_TYPES[spec["type"]].generates:
            spec["backend"] = self.config["generation"]["backend"]
        return grid.canonical(spec)

    def p_judge(self, wildcards: Any) -> str:
        return self.judge_params(wildcards.judge)

    def p_judge_of(self, judge: str) -> Callable[[Any], str]:
        return lambda wildcards: self.judge_params(judge)

    def min_validation_accuracy(self, wildcards: Any, output: Any) -> list[str]:
        """validate_judge's threshold as arguments, a function of ``output``: a gate on the judge,
        not a setting of it, so changing it reruns nothing (a failed validation has no output and
        reruns anyway)."""
        value = self.config["judges"][wildcards.judge].get("min_validation_accuracy")
        return [] if value is None else ["--min-validation-accuracy", str(value)]

    def judged_benchmarks(self, judge: str) -> str:
        """Wildcard regex of the benchmarks ``judge`` applies to (its rule's {benchmark}); one that
        matches nothing when it applies to none."""
        names = grid.benchmarks_for(self.config, judge)
        return grid.wildcard_regex(names) if names else "(?!)"

    def generation_meta_inputs(self, wildcards: Any) -> list[str]:
        """The variant's generation provenance, one file per benchmark (each holds the chat
        template hash that metrics checks against training's)."""
        return [f"{R}/generations/{wildcards.model}/{wildcards.variant}/{b}.meta.json" for b in self.benchmarks]

    def judgment_inputs(self, wildcards: Any) -> list[str]:
        return [f"{R}/judgments/{wildcards.model}/{wildcards.variant}/{b}/{j}.jsonl"
                for b in self.benchmarks for j in grid.judges_for(self.config, b)]

    # ------------------------------------------------------------ params: capability, metrics, report

    def p_capability(self, wildcards: Any) -> str:
        return grid.canonical({**pick(self.config["capability"], CAPABILITY_KEYS),
                               "model": self.model_ref(wildcards.model)})

    def p_capability_ref(self, wildcards: Any) -> str:
        return grid.canonical(self.model_ref(wildcards.model))

    def capability_items(self, wildcards: Any) -> list[str]:
        """The local items file of custom lm-eval tasks (none for built-in tasks like gsm8k)."""
        source = self.config["capability"].get("source")
        if not source:
            return []
        if "world" in source or "path" in source:
            return self.source_input(source)
        raise ValueError("config.capability.source must be `world:` or `path:` (custom task items); "
                         "leave it out for lm-eval's built-in tasks")

    def nltk_packages(self) -> list[str]:
        """The NLTK data packages config.capability.tasks' code reads (safealign.capability.taskcode)."""
        from .capability.taskcode import nltk_packages

        return nltk_packages(list(self.config["capability"].get("tasks") or []))

    def nltk_data_input(self, wildcards: Any) -> list[str]:
        """The nltk_data rule's directory when the capability tasks read NLTK data, else none."""
        return [f"{R}/nltk_data"] if self.nltk_packages() else []

    def p_metrics(self, wildcards: Any) -> str:
        c = self.config
        v = self.variant(wildcards)
        return grid.canonical({
            "model": v.model,
            "variant": v.name,
            "method": v.method,
            "seed": v.seed,
            "benchmark_kinds": {b: s["kind"] for b, s in c["benchmarks"].items()},
            "global_parts": report_spec.global_parts(c),
        })

    def p_aggregate(self, wildcards: Any) -> str:
        return grid.canonical({"references": aggregate_spec.references(self.variants.values())})

    def p_report(self, wildcards: Any) -> str:
        c = self.config
        report = pick(c.get("report") or {}, REPORT_KEYS)
        return grid.canonical({
            **pick(report, ("title",)),  # the schema fills it; ReportSpec holds the one default
            "headline": report_spec.resolve_headline(c),
            # The whole config's hash, as the report's provenance: the report (cheap) reruns on
            # any config edit, and is the only rule that does.
            "config_sha256": hashlib.sha256(grid.canonical(c).encode()).hexdigest(),
            "sources": report_spec.configured_sources(c),
            "global_parts": report_spec.global_parts(c),
            "paper_reference": report.get("paper_reference") or [],
            # GPUs each job requests (config resources), for GPU-seconds in the cost table.
            "gpus": {path: n for path, n in self.benchmark_jobs() if n},
        })

    # ------------------------------------------------------------ params of every rule

    def rule_params(self) -> dict[str, list[str]]:
        """Every job's rerun-tracked params (the ``p_*`` above), per rule: what the rerun contract
        compares. One entry per job of the grid, in a stable order."""
        return {rule: list(jobs.values()) for rule, jobs in self.job_params().items()}

    def job_params(self) -> dict[str, dict[str, str]]:
        """Every job's rerun-tracked params, per rule and per job: the job is named by its
        wildcards (``model/variant/benchmark`` for a generation or judgment cell, ``model/variant``
        for a variant's jobs, ``""`` for a rule with one job). What the rerun contract compares
        cell by cell: a job whose params differ reruns, a job that appears is new."""
        c = self.config
        W = SimpleNamespace
        out: dict[str, dict[str, str]] = {}
        for rule, params in self._global_params().items():
            out[rule] = dict(params)
        variants = [W(model=v.model, variant=v.name) for v in self.variants.values()]
        cell = "{0.model}/{0.variant}".format
        out["merge_adapter"] = {cell(w): self.p_merge(w) for w in variants if self.serving_of(w)["mode"] == "merged"}
        out["generate"] = {f"{cell(w)}/{b}": self.p_generate(W(model=w.model, variant=w.variant, benchmark=b))
                           for w in variants for b in self.benchmarks}
        for j in self.judges:
            out[f"judge_{j}"] = {f"{cell(w)}/{b}": self.judge_params(j)
                                 for w in variants for b in grid.benchmarks_for(c, j)}
        out["capability"] = {cell(w): self.p_capability(w) + self.p_capability_ref(w) for w in variants}
        out["metrics"] = {cell(w): self.p_metrics(w) for w in variants}
        out["aggregate"] = {"": self.p_aggregate(W())}
        out["report"] = {"": self.p_report(W())}
        return {rule: jobs for rule, jobs in out.items() if jobs}

    def _global_params(self) -> dict[str, list[tuple[str, str]]]:
        """(job name, params) of the jobs before generation: data, models, judges, training."""
        c = self.config
        models = sorted({v.model for v in self.variants.values()})
        trained = [v for v in self.variants.values() if v.method is not None]
        out: dict[str, list[tuple[str, str]]] = {}
        W = SimpleNamespace
        if self.uses_world():
            out["world_data"] = [("", self.p_world(W()))]
        out["world_base_model"] = [(m, self.p_world_model(W(model=m))) for m in models if "world" in c["models"][m]]
        out["package_model"] = [(m, self.p_package_model(W(model=m))) for m in models if "package" in c["models"][m]]
        world_judges = [j for j in self.judges if self.judge_is_world(j)]
        out["world_judge_model"] = [(j, self.p_world_judge(W(judge=j))) for j in world_judges]
        out["validate_judge"] = [(j, self.p_judge(W(judge=j))) for j in world_judges]
        out["benchmark_prompts"] = [(b, self.p_benchmark(W(benchmark=b))) for b in self.benchmarks]
        if trained:
            out["preference_data"] = [("", self.p_preference(W()))]
            if self.onpolicy_spec():
                out["onpolicy_prompts"] = [("", self.p_onpolicy_prompts(W()))]
                out["onpolicy_generate"] = [("", self.p_onpolicy_generate(W()))]
        refs = sorted({(v.model, grid.reference_key(v.settings)) for v in trained if grid.shares_reference(v.settings)})
        out["ref_logps"] = [(f"{m}/{k}", self.p_ref_logps(W(model=m, refkey=k))) for m, k in refs]
        out["train"] = [(f"{v.model}/{v.name}", self.p_train(W(model=v.model, variant=v.name))) for v in trained]
        return out

    # ------------------------------------------------------------ resources

    def resource(self, family: str, key: str, wildcards: Any, attempt: int = 1, judge: str | None = None,
                 rule: str | None = None) -> Any:
        """Resource ``key`` of a job of rule ``rule`` (in resource ``family``): config.resources
        default <- family <- the model's <- the judge's; a retry grows what ran out
        (:mod:`safealign.retry`)."""
        c = self.config
        base = dict(c["resources"].get("default", {}))
        base.update(c["resources"].get(family, {}))
        model = getattr(wildcards, "model", None)
        judge = judge or getattr(wildcards, "judge", None)
        if model in c["models"]:
            base.update(c["models"][model].get("resources", {}).get(family, {}))
        if judge in c["judges"]:
            base.update(c["judges"][judge].get("resources", {}).get(family, {}))
        # A key only some models/judges set: numbers default to 0, gpu_model to "" (any GPU).
        value = base.get(key, "" if key == "gpu_model" else 0)
        if key in retry.GROWS and isinstance(value, int):
            failed = self.failures(rule, list(wildcards)) if attempt > 1 and rule and self.failures else {}
            grown = retry.scaled(key, value, attempt, failed)
            cap = base.get(f"max_{key}")  # the partition's limit: a retry grows up to it, never past
            return min(grown, max(int(cap), value)) if cap else grown
        if key == "gpu_jobs":
            return 1 if base.get("gpu", 0) else 0
        return value

    def resource_keys(self, family: str) -> list[str]:
        c = self.config
        keys = set(c["resources"].get("default", {})) | set(c["resources"].get(family, {}))
        for spec in list(c["models"].values()) + list(c["judges"].values()):
            keys |= set(spec.get("resources", {}).get(family, {}))
        keys.discard("threads")
        keys -= {f"max_{k}" for k in retry.GROWS}  # caps on a retry's growth, not resources
        keys.add("gpu_jobs")
        keys.add("gpu")  # always there: the GPU rules pass it to their scripts as --gpus
        return sorted(keys)

    def resources(self, family: str, judge: str | None = None, rule: str | None = None) -> dict[str, Callable]:
        """Resources of rule ``rule`` (of a family), each a function of (wildcards, attempt)."""
        return {key: (lambda wildcards, attempt, key=key: self.resource(family, key, wildcards, attempt, judge, rule))
                for key in self.resource_keys(family)}

    def threads(self, family: str, judge: str | None = None) -> Callable[[Any], int]:
        return lambda wildcards: int(self.resource(family, "threads", wildcards, 1, judge) or 1)
