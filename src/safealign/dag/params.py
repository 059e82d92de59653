"""The rerun contract: every rule's rerun-tracked params, built from explicit allow-lists.

Snakemake reruns a job when its rule's params change (``--rerun-triggers params``, a default). So
each ``p_*`` method returns canonical JSON built from an **explicit allow-list** of the config
keys its rule's output depends on (the ``*_KEYS`` tuples below): an experiment setting. What is
not one (an interpreter path, a validation threshold, a resource, the report title for every rule
but the report) stays out, and reaches a job, where it needs it, through a params function that
takes ``output`` (Snakemake does not count those as rerun triggers, :mod:`safealign.dag.resources`),
or through the shell prefix (:func:`safealign.cli.export_offline`). tests/test_rerun_contract.py
states, for a table of single config edits, exactly which rules rerun; tests/test_workflow.py
checks the same on the whole grid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from .. import aggregate as aggregate_spec
from .. import grid
from .. import headline as report_spec
from ..data.onpolicy import ARMS as ONPOLICY_ARMS
from ..data.onpolicy import SOURCES as ONPOLICY_SOURCES
from ..generate import serving
from ..judge.registry import JUDGE_TYPES

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
# config.selection: the select checkpoint's (splits reach benchmark_prompts as `<b>-dev`'s spec).
SELECTION_KEYS = ("objective",)

# Config keys that are not experiment settings: no rule's params may copy them (the report's
# config_sha256 aside, which records the whole config). Dotted paths, `*` for any name.
NOT_EXPERIMENT_SETTINGS = (
    "offline",  # hub access, not a result: in the jobs' environment (cli.export_offline)
    "hub_lock",  # read at parse time: its commits reach params as the refs' revisions (prefetch.apply_lock)
    "resources", "models.*.resources", "judges.*.resources",  # where and how long a job runs
    "benchmarks.*.resource_share",  # how long its cells' jobs run (Resources.cell_share)
    "generation.vllm_python",  # which interpreter runs vLLM
    "judges.*.min_validation_accuracy",  # a gate on the judge, passed to validate_judge untracked
    "report.title",  # the report's alone (REPORT_KEYS)
    "training.checkpoint_steps",  # how training runs (grid.RUN_KEYS)
)


def pick(spec: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """``spec``'s entries whose key is in ``keys`` (an allow-list), in ``spec``'s order."""
    keys = set(keys)
    return {k: v for k, v in spec.items() if k in keys}


class Params:
    """The ``p_*`` builders, each a function of ``wildcards`` only (the rules' ``params:``): what
    the rerun contract compares. Needs the attributes of :class:`safealign.dag.paths.Layout`."""

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

    def p_benchmark(self, wildcards: Any) -> str:
        spec = self.benchmark_spec(wildcards.benchmark)
        keep = pick(spec, BENCHMARK_KEYS)
        keep["source"] = self.resolve_source(spec["source"])
        return grid.canonical({**keep, "name": wildcards.benchmark})

    def p_preference(self, wildcards: Any) -> str:
        spec = pick(self.config["preference_data"], PREFERENCE_KEYS)
        if spec.get("source"):
            spec["source"] = self.resolve_source(spec["source"])
        if spec.get("on_policy"):
            # The generations are inputs; the pairs depend only on them and the judge's rule.
            spec["on_policy"] = {"model": spec["on_policy"]["model"]}
        return grid.canonical(spec)

    def p_onpolicy_prompts(self, wildcards: Any) -> str:
        spec = self.onpolicy_spec()
        return grid.canonical({
            k: {**pick(spec[k], ONPOLICY_KIND_KEYS), "source": self.resolve_source(spec[k]["source"])}
            for k in ONPOLICY_SOURCES if spec.get(k)
        })

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

    def p_merge(self, wildcards: Any) -> str:
        # dtype when set (the schema fills it); MergeSpec holds the one default.
        return grid.canonical({"model": self.model_ref(wildcards.model),
                               **pick(self.config["generation"], ("dtype",))})

    def generation_settings(self, benchmark: str) -> dict[str, Any]:
        """config.generation (:data:`GENERATION_KEYS`) with the benchmark's own overrides."""
        gen = pick(self.config["generation"], GENERATION_KEYS)
        gen.update(self.benchmark_spec(benchmark).get("generation", {}))
        return gen

    def p_generate(self, wildcards: Any) -> str:
        """One cell's generation: the model, the variant's serving plan and this benchmark's own
        prompt rendering and generation settings (no other benchmark's)."""
        b = wildcards.benchmark
        benches = [{
            "name": b,
            "system_prompt": self.benchmark_spec(b).get("system_prompt"),
            "user_template": self.benchmark_spec(b).get("user_template") or "{prompt}",
            "generation": self.generation_settings(b),
        }]
        return grid.canonical({
            "model": self.model_ref(wildcards.model),
            "benchmarks": benches,
            "serving": self.serving_of(wildcards),
        })

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

    def p_capability(self, wildcards: Any) -> str:
        return grid.canonical({**pick(self.config["capability"], CAPABILITY_KEYS),
                               "model": self.model_ref(wildcards.model)})

    def p_capability_ref(self, wildcards: Any) -> str:
        return grid.canonical(self.model_ref(wildcards.model))

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
            "objective": (c.get("selection") or {}).get("objective"),
        })
