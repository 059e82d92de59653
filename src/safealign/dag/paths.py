"""Where the workflow's files are: wildcards, targets, sources, model refs and each rule's inputs.

Every path is relative to the working directory and starts with :data:`R`. A method that takes
``wildcards`` reads only attributes of it (``wildcards.model``), so tests pass a
:class:`types.SimpleNamespace`.
"""

from __future__ import annotations

from typing import Any

from .. import grid, package_model
from ..data.onpolicy import ARMS as ONPOLICY_ARMS
from ..data.onpolicy import SOURCES as ONPOLICY_SOURCES
from ..data.onpolicy import kind as onpolicy_kind
from ..generate import serving
from ..world.files import FILES as WORLD_FILES
from ..world.files import JUDGE_DATA as WORLD_JUDGE_DATA
from .params import MODEL_REF_KEYS, pick

R = "results"


class Layout:
    """The grid's wildcards, targets and file layout, and what a variant or model refers to.

    Needs ``config``, ``benchmarks``, ``judges`` and ``variants`` (set by :class:`safealign.dag.Dag`).
    """

    config: dict[str, Any]
    benchmarks: list[str]
    judges: list[str]
    variants: dict[tuple[str, str], grid.Variant]

    def wildcard_constraints(self) -> dict[str, str]:
        c = self.config
        return {
            "model": grid.wildcard_regex(list(c["models"])),
            "variant": grid.variant_regex(c),
            "benchmark": grid.wildcard_regex(self.all_benchmarks()),
            "judge": grid.wildcard_regex(self.judges),
            "world_file": grid.wildcard_regex(list(WORLD_FILES.values())),
            "refkey": grid.REFERENCE_KEY_WILDCARD,
        }

    def variant(self, wildcards: Any) -> grid.Variant:
        return self.variants[(wildcards.model, wildcards.variant)]

    def serving_of(self, wildcards: Any) -> dict[str, Any]:
        v = self.variant(wildcards)
        return serving.serving_plan(self.config, v.model, v.settings)

    def final_targets(self) -> list[str]:
        return [f"{R}/report.html", f"{R}/metrics.csv"]

    def variant_files(self, pattern: str) -> list[str]:
        """``pattern`` (with {model} and {variant}) for every evaluated variant of the grid
        (:meth:`evaluated`: with config.selection, a swept method's pick only)."""
        return [pattern.format(model=v.model, variant=v.name) for v in self.evaluated()]

    def evaluated_files(self, pattern: str):
        """:meth:`variant_files` as an input function (the picks are known once the select
        checkpoint ran)."""
        return lambda wildcards: self.variant_files(pattern)

    def train_logs(self) -> list[str]:
        return [f"{R}/models/{v.model}/{v.name}/train.json" for v in self.evaluated() if v.method is not None]

    def world_validations(self) -> list[str]:
        return [f"{R}/judges/{j}/validation.json" for j in self.judges if self.judge_is_world(j)]

    def uses_world(self) -> bool:
        c = self.config
        sources = [(c.get("preference_data") or {}).get("source") or {}]
        on_policy = (c.get("preference_data") or {}).get("on_policy") or {}
        sources += [on_policy[k]["source"] for k in ONPOLICY_SOURCES if on_policy.get(k)]
        sources += [b["source"] for b in c["benchmarks"].values()]
        sources += [(c.get("capability") or {}).get("source") or {}]
        specs = list(c["models"].values()) + [j.get("model", {}) for j in c["judges"].values()]
        return any("world" in s for s in sources + specs)

    def report_judgment_files(self) -> list[str]:
        return [f"{R}/judgments/{v.model}/{v.name}/{b}/{j}.jsonl" for v in self.evaluated()
                for b in self.benchmarks for j in grid.judges_for(self.config, b)]

    def report_meta_files(self) -> list[str]:
        """Every grid cell's provenance: each generation's, then each judgment's."""
        gen = [f"{R}/generations/{v.model}/{v.name}/{b}.meta.json" for v in self.evaluated()
               for b in self.benchmarks]
        judge = [f"{R}/judgments/{v.model}/{v.name}/{b}/{j}.meta.json" for v in self.evaluated()
                 for j in self.judges for b in grid.benchmarks_for(self.config, j)]
        return gen + judge

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

    def model_ref(self, model: str) -> dict[str, Any]:
        """A world or package model is the directory its rule builds (rules/base.smk)."""
        spec = self.config["models"][model]
        if "world" in spec or "package" in spec:
            return {"path": f"{R}/models/{model}/base"}
        return pick(spec, MODEL_REF_KEYS)

    def models_with(self, key: str) -> str:
        """Wildcard regex of the models whose spec holds ``key`` (world / package), so exactly one
        rule of rules/base.smk builds each model's ``base`` directory."""
        names = [m for m, spec in self.config["models"].items() if key in spec]
        return grid.wildcard_regex(names) if names else "(?!)"

    def package_located(self, model: str) -> package_model.Located:
        spec = self.config["models"][model]
        return package_model.locate(spec["package"], f"config.models.{model}.package")

    def judge_is_world(self, judge: str) -> bool:
        return "world" in self.config["judges"][judge].get("model", {})

    def judge_ref(self, judge: str) -> dict[str, Any]:
        spec = self.config["judges"][judge].get("model", {})
        return {"path": f"{R}/judges/{judge}/model"} if "world" in spec else dict(spec)

    def onpolicy_spec(self) -> dict[str, Any] | None:
        return (self.config.get("preference_data") or {}).get("on_policy")

    def generation_meta_inputs(self, wildcards: Any) -> list[str]:
        """The variant's generation provenance, one file per benchmark (each holds the chat
        template hash that metrics checks against training's)."""
        return [f"{R}/generations/{wildcards.model}/{wildcards.variant}/{b}.meta.json" for b in self.benchmarks]

    def judgment_inputs(self, wildcards: Any) -> list[str]:
        return [f"{R}/judgments/{wildcards.model}/{wildcards.variant}/{b}/{j}.jsonl"
                for b in self.benchmarks for j in grid.judges_for(self.config, b)]

    def judged_benchmarks(self, judge: str) -> str:
        """Wildcard regex of the benchmarks ``judge`` applies to (its rule's {benchmark}, development
        splits included); one that matches nothing when it applies to none."""
        names = self.benchmarks_judged_by(judge)
        return grid.wildcard_regex(names) if names else "(?!)"

    def nltk_packages(self) -> list[str]:
        """The NLTK data packages config.capability.tasks' code reads (safealign.capability.taskcode)."""
        from ..capability.taskcode import nltk_packages

        return nltk_packages(list((self.config.get("capability") or {}).get("tasks") or []))


class Inputs:
    """Each rule's ``input:`` functions (editing a file a job reads reruns it)."""

    def train_log_input(self, wildcards: Any) -> list[str]:
        """The variant's train.json; none for the base model."""
        v = self.variant(wildcards)
        return [] if v.method is None else [f"{R}/models/{v.model}/{v.name}/train.json"]

    def benchmark_source_input(self, wildcards: Any) -> list[str]:
        return self.source_input(self.benchmark_spec(wildcards.benchmark)["source"])

    def model_input(self, wildcards: Any) -> list[str]:
        return self._model_input(wildcards.model)

    def _model_input(self, model: str) -> list[str]:
        spec = self.config["models"][model]
        return [f"{R}/models/{model}/base"] if "world" in spec or "package" in spec else []

    def package_gguf(self, wildcards: Any) -> str:
        return str(self.package_located(wildcards.model).path)

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

    def onpolicy_generation_files(self) -> list[str]:
        """One file per arm, named by it (``<arm>.jsonl``): preference_data reads each by its name."""
        return [f"{R}/data/onpolicy/generations/{arm}.jsonl" for arm in ONPOLICY_ARMS]

    def onpolicy_prompt_files(self) -> list[str]:
        """The prompt file each arm answers, in the order of :meth:`onpolicy_generation_files`."""
        return [f"{R}/data/onpolicy/prompts/{onpolicy_kind(arm)}.jsonl" for arm in ONPOLICY_ARMS]

    def preference_inputs(self, wildcards: Any) -> dict[str, list[str]]:
        """The pairs' source file, the on-policy generations and every evaluation prompt file (no
        pair may share a prompt with them). The tiny world asserts that itself when it builds its
        files, so its pairs do not wait on (and retrain after) every benchmark's prompt file."""
        source = self.config["preference_data"].get("source") or {}
        world_only = "world" in source and not self.onpolicy_spec()
        return {
            "source": self.source_input(source) if source else [],
            "onpolicy": self.onpolicy_generation_files() if self.onpolicy_spec() else [],
            "exclude": [] if world_only else self.held_apart_prompt_files(),
        }

    def held_apart_prompt_files(self) -> list[str]:
        """Every prompt file training must not see: evaluation and development prompts."""
        return [f"{R}/prompts/{b}.jsonl" for b in self.all_benchmarks()]

    def onpolicy_source_files(self, wildcards: Any) -> list[str]:
        spec = self.onpolicy_spec()
        return [f for k in ONPOLICY_SOURCES if spec.get(k) for f in self.source_input(spec[k]["source"])]

    def onpolicy_model_input(self, wildcards: Any) -> list[str]:
        return self._model_input(self.onpolicy_spec()["model"])

    def ref_logps_input(self, wildcards: Any) -> list[str]:
        v = self.variant(wildcards)
        if not grid.shares_reference(v.settings):
            return []
        return [f"{R}/models/{v.model}/ref_logps/{grid.reference_key(v.settings)}.jsonl"]

    def adapter_input(self, wildcards: Any) -> list[str]:
        if wildcards.variant == grid.BASE:
            return []
        return [f"{R}/models/{wildcards.model}/{wildcards.variant}/adapter"]

    def merged_input(self, wildcards: Any) -> list[str]:
        """The merged weights (a temp() target) of a variant served as mode 'merged'."""
        if self.serving_of(wildcards)["mode"] != "merged":
            return []
        return [f"{R}/models/{wildcards.model}/{wildcards.variant}/merged"]

    def has_capability(self) -> bool:
        """Whether the grid measures capability (a ``capability:`` block; an evaluation-only grid
        such as config/paper-figure1.yaml leaves it out)."""
        return bool(self.config.get("capability"))

    def capability_input(self, wildcards: Any) -> list[str]:
        """The variant's capability result for its metrics; none without a ``capability:`` block."""
        return [f"{R}/capability/{wildcards.model}/{wildcards.variant}.json"] if self.has_capability() else []

    def capability_files(self) -> list[str]:
        """Every variant's capability result (the report's input); none without capability."""
        return self.variant_files(f"{R}/capability/{{model}}/{{variant}}.json") if self.has_capability() else []

    def capability_items(self, wildcards: Any) -> list[str]:
        """The local items file of custom lm-eval tasks (none for built-in tasks like gsm8k)."""
        source = self.config["capability"].get("source")
        if not source:
            return []
        if "world" in source or "path" in source:
            return self.source_input(source)
        raise ValueError("config.capability.source must be `world:` or `path:` (custom task items); "
                         "leave it out for lm-eval's built-in tasks")

    def nltk_data_input(self, wildcards: Any) -> list[str]:
        """The nltk_data rule's directory when the capability tasks read NLTK data, else none."""
        return [f"{R}/nltk_data"] if self.nltk_packages() else []
