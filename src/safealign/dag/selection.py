"""Selection on the development split (config.selection; :mod:`safealign.selection`): the
development benchmarks, the candidates' development metrics, the ``select`` checkpoint's inputs
and params, and which variants the evaluation receives.

Which variants are evaluated depends on the picks, which exist once the ``select`` checkpoint of
each swept (model, method) ran: :class:`safealign.dag.Dag` takes ``pick(model, method) -> cell``,
which rules/common.smk reads from the checkpoint's output (Snakemake re-evaluates the input
functions that call it once the checkpoint is done); tests pass a plain function.
"""

from __future__ import annotations

from typing import Any

from .. import grid
from .. import headline as report_spec
from .. import selection as sel
from .params import SELECTION_KEYS, pick
from .paths import R


class Selection:
    """Needs the other parts of :class:`safealign.dag.Dag` and its ``pick``."""

    def benchmark_spec(self, name: str) -> dict[str, Any]:
        """A configured benchmark's spec, or a development split's (``<benchmark>-dev``)."""
        if name in self.config["benchmarks"]:
            return self.config["benchmarks"][name]
        return self.dev_benchmarks[name]

    def all_benchmarks(self) -> list[str]:
        """Evaluation benchmarks, then development splits: every ``{benchmark}`` of the rules."""
        return [*self.benchmarks, *self.dev_benchmarks]

    def benchmarks_judged_by(self, judge: str) -> list[str]:
        """Every benchmark (evaluation and development) ``judge`` applies to."""
        kinds = self.config["judges"][judge]["applies_to"]
        return [b for b in self.all_benchmarks() if self.benchmark_spec(b)["kind"] in kinds]

    def evaluated(self) -> list[grid.Variant]:
        """The variants evaluated on the evaluation prompts (:func:`safealign.selection.evaluated`)."""
        return sel.evaluated(self.config, self._pick, list(self.variants.values()))

    def _pick(self, model: str, method: str) -> str:
        if self.pick is None:
            raise ValueError("this Dag was built without `pick`: which swept cells are evaluated is "
                             "known only once the select checkpoint ran")
        return self.pick(model, method)

    def selections(self) -> list[tuple[str, str]]:
        """Every (model, method) the select checkpoint chooses for."""
        return [(m, method) for m in self.config["models"] for method in sel.swept_methods(self.config)]

    def selection_files(self) -> list[str]:
        return [f"{R}/selection/{m}/{method}.json" for m, method in self.selections()]

    def dev_variants(self) -> list[grid.Variant]:
        """What the development split evaluates: each model's base (where it has a swept method)
        and every candidate."""
        out = []
        for m in self.config["models"]:
            cands = [v for method in sel.swept_methods(self.config)
                     for v in sel.candidates(self.config, m, method, self.variants)]
            if cands:
                out += [self.variants[(m, grid.BASE)], *cands]
        return out

    def dev_prompt_files(self) -> list[str]:
        return [f"{R}/prompts/{b}.jsonl" for b in self.dev_benchmarks]

    def prompt_exclude(self, wildcards: Any) -> list[str]:
        """A development split's prompts must not be evaluation prompts: its job reads them all
        and fails naming file and row when one is (safealign.data.benchmark)."""
        if wildcards.benchmark in self.dev_benchmarks:
            return [f"{R}/prompts/{b}.jsonl" for b in self.benchmarks]
        return []

    def dev_judgment_inputs(self, wildcards: Any) -> list[str]:
        return [f"{R}/judgments/{wildcards.model}/{wildcards.variant}/{b}/{j}.jsonl"
                for b in self.dev_benchmarks for j in self.judges if b in self.benchmarks_judged_by(j)]

    def dev_generation_meta_inputs(self, wildcards: Any) -> list[str]:
        return [f"{R}/generations/{wildcards.model}/{wildcards.variant}/{b}.meta.json" for b in self.dev_benchmarks]

    def p_dev_metrics(self, wildcards: Any) -> str:
        v = self.variant(wildcards)
        return grid.canonical({
            "model": v.model, "variant": v.name, "method": v.method, "seed": v.seed,
            "benchmark_kinds": {b: s["kind"] for b, s in self.dev_benchmarks.items()},
            "global_parts": [sel.dev_name(b) for b in report_spec.global_parts(self.config)
                             if sel.dev_name(b) in self.dev_benchmarks],
        })

    def select_inputs(self, wildcards: Any) -> dict[str, list[str]]:
        cands = sel.candidates(self.config, wildcards.model, wildcards.method, self.variants)
        return {"base": [f"{R}/selection/{wildcards.model}/dev/{grid.BASE}.csv"],
                "candidates": [f"{R}/selection/{wildcards.model}/dev/{v.name}.csv" for v in cands]}

    def p_select(self, wildcards: Any) -> str:
        c = self.config
        keys = sel.swept_keys(c, wildcards.method)
        cands = sel.candidates(c, wildcards.model, wildcards.method, self.variants)
        return grid.canonical({
            "model": wildcards.model, "method": wildcards.method,
            "seed": sel.candidate_seed(c, wildcards.method),
            **pick(c["selection"], SELECTION_KEYS),
            "candidates": [{"cell": sel.cell_of(v.name), "variant": v.name,
                            "settings": {k: _swept_value(v.settings, k) for k in keys}}
                           for v in cands],
        })


def _swept_value(settings: dict[str, Any], key: str) -> Any:
    """A candidate's value of a swept key (``lora_r`` lives in ``settings['lora']['r']``)."""
    return settings["lora"]["r"] if key == "lora_r" else settings[key]
