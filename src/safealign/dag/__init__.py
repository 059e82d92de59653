"""The workflow's DAG as plain functions of the config: every rule's inputs, params and resources.

``rules/common.smk`` binds one :class:`Dag` to the validated config and adapts its methods to
Snakemake, one line each; this package never imports Snakemake and touches no file at import. A
method that takes ``wildcards`` reads only attributes of it (``wildcards.model``), so tests pass
a :class:`types.SimpleNamespace`.

One module per concern, each a part of :class:`Dag`:

- :mod:`.paths`: wildcards, targets, the file layout and each rule's inputs (``Layout``, ``Inputs``);
- :mod:`.params`: the rerun contract, the ``p_*`` params and their allow-lists (``Params``);
- :mod:`.resources`: where and how a job runs: command, interpreter, env, resources, retries
  (``Resources``);
- :mod:`.jobs`: every job of the grid per rule, as the rule files schedule it (``Jobs``), checked
  against a dry run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import grid
from .. import selection as sel
from .jobs import Jobs, log_of_benchmark
from .params import (
    BENCHMARK_KEYS,
    CAPABILITY_KEYS,
    GENERATION_KEYS,
    JUDGE_KEYS,
    MODEL_REF_KEYS,
    NOT_EXPERIMENT_SETTINGS,
    ONPOLICY_KIND_KEYS,
    PREFERENCE_KEYS,
    REPORT_KEYS,
    SELECTION_KEYS,
    WORLD_KEYS,
    WORLD_MODEL_KEYS,
    Params,
    pick,
)
from .paths import Inputs, Layout, R
from .resources import Resources
from .selection import Selection

__all__ = [
    "BENCHMARK_KEYS", "CAPABILITY_KEYS", "GENERATION_KEYS", "JUDGE_KEYS", "MODEL_REF_KEYS",
    "NOT_EXPERIMENT_SETTINGS", "ONPOLICY_KIND_KEYS", "PREFERENCE_KEYS", "R", "REPORT_KEYS", "SELECTION_KEYS",
    "WORLD_KEYS", "WORLD_MODEL_KEYS", "Dag", "log_of_benchmark", "pick",
]


class Dag(Layout, Inputs, Params, Resources, Jobs, Selection):
    """Inputs, params and resources of every rule for one validated config.

    ``failures`` (a function of (rule, wildcards list)) tells a retry why its earlier attempts
    failed (Snakemake-only: rules/common.smk passes one that reads the Slurm log directory).
    ``pick`` (a function of (model, method)) returns the cell the select checkpoint picked for a
    swept method (config.selection; rules/common.smk reads the checkpoint's output).
    """

    def __init__(self, config: dict[str, Any],
                 failures: Callable[[str, list[str]], dict[str, int]] | None = None,
                 pick: Callable[[str, str], str] | None = None) -> None:
        self.config = config
        self.failures = failures
        self.pick = pick
        self.benchmarks = list(config["benchmarks"])
        self.dev_benchmarks = sel.dev_benchmarks(config)
        self.judges = list(config["judges"])
        self.variants = grid.variant_index(config)
