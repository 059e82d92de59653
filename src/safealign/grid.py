"""The grid: config -> variants, targets and each rule's config slice.

Pure functions of the (validated) config dict, imported by ``rules/common.smk`` and unit-tested
without Snakemake. A *variant* is a trained model (or ``base``); its name is readable and stable:
``<method>[-<param><value>...]-seed<seed>``, e.g. ``safe_dpo-seed42`` or
``safe_dpo-beta0.05-seed42`` when the method sweeps ``beta``.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from .train.methods import WORKFLOW_DEFAULTS, default_beta, workflow_setting

BASE = "base"
# The pseudo-benchmark that carries the global safety score (metrics, report); not a config name.
GLOBAL = "global"
# Every name the workflow itself gives a meaning to, with that meaning. None may name a method,
# model, benchmark or judge (configload.reserved_name_problems): a method `base` would be a
# second reference with the role "base", a benchmark `global` would be read as the global score.
RESERVED_NAMES = {
    BASE: "the untrained variant of every model (results/models/<model>/base) and the reference "
          "role of every comparison with it",
    GLOBAL: "the pseudo-benchmark of the global safety score (report.headline, the metrics tables)",
    "ref_logps": "the folder of a model's shared reference log-probs (results/models/<model>/ref_logps)",
    "meta": "the generation job's meta.json beside each <benchmark>.jsonl (results/generations/<model>/<variant>)",
}
# Method keys that may be given as a list to sweep (each value becomes its own grid cell).
SWEEPABLE = ("beta", "learning_rate", "label_smoothing", "num_train_epochs", "lora_r")
# Training keys that change how a job runs, not what it computes. They stay out of the train rule's
# params (a changed param reruns the job) and reach it through a params function of `output`, which
# Snakemake does not count as a rerun trigger (rules/common.smk p_train_run).
RUN_KEYS = ("checkpoint_steps",)
# Optimizer steps between trainer checkpoints when `checkpoint_steps` is not set (0: none).
DEFAULT_CHECKPOINT_STEPS = WORKFLOW_DEFAULTS["checkpoint_steps"]


@dataclass(frozen=True)
class Variant:
    model: str
    name: str
    method: str | None  # None for the base model
    seed: int | None
    settings: dict[str, Any]  # merged training settings (empty for base)


def canonical(obj: Any) -> str:
    """Canonical JSON (sorted keys): what rules receive as params, so equal configs compare equal."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def method_cells(name: str, method: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Expand a method's list-valued sweepable keys into named cells."""
    swept = [k for k in SWEEPABLE if isinstance(method.get(k), list)]
    if not swept:
        return [(name, dict(method))]
    cells = []
    for values in itertools.product(*(method[k] for k in swept)):
        cell = dict(method)
        cell.update(zip(swept, values, strict=True))
        suffix = "-".join(f"{k.replace('_', '')}{_fmt(v)}" for k, v in zip(swept, values, strict=True))
        cells.append((f"{name}-{suffix}", cell))
    return cells


def merged_training(config: dict[str, Any], model: str, method: dict[str, Any]) -> dict[str, Any]:
    """training defaults <- model's training overrides <- method's keys (LoRA dict merged too).

    ``beta`` is the exception (its meaning differs per trainer): a method that does not set it
    takes its (trainer, loss_type)'s default from :data:`safealign.train.methods.BETA_DEFAULTS`
    where one is listed (ORPO, SimPO/CPO, KTO); only the DPO family inherits ``training.beta``.
    """
    out = json.loads(json.dumps(config.get("training", {})))
    model_over = config["models"][model].get("training", {})
    for src in (model_over, method):
        for k, v in src.items():
            if k == "lora" and isinstance(v, dict):
                out.setdefault("lora", {}).update(v)
            else:
                out[k] = v
    if "lora_r" in out:
        out.setdefault("lora", {})["r"] = out.pop("lora_r")
    beta = default_beta(workflow_setting(out, "trainer"), out.get("loss_type"))
    if beta is not None and "beta" not in method:
        out["beta"] = beta
    return out


def computed_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A variant's settings without :data:`RUN_KEYS`: what its adapter depends on (the rule's params)."""
    return {k: v for k, v in settings.items() if k not in RUN_KEYS}


def checkpoint_steps(settings: dict[str, Any]) -> int:
    """Optimizer steps between a training job's resumable checkpoints (0: no checkpoints)."""
    return int(workflow_setting(settings, "checkpoint_steps"))


def checkpoint_dir(adapter: str) -> str:
    """Where a training job keeps its resumable checkpoints: ``checkpoints/`` next to its adapter."""
    return str(PurePosixPath(adapter).parent / "checkpoints")


def train_run_args(v: Variant, adapter: str) -> str:
    """The training job's run options (shell-quoted): checkpoint directory and interval, and the
    method and variant its error messages name."""
    args = ["--checkpoint-dir", checkpoint_dir(adapter), "--checkpoint-steps", str(checkpoint_steps(v.settings)),
            "--method", str(v.method), "--variant", f"{v.model}/{v.name}"]
    return " ".join(shlex.quote(a) for a in args)


def variants(config: dict[str, Any]) -> list[Variant]:
    """Every variant of the grid, base models first."""
    out = []
    for model in config["models"]:
        out.append(Variant(model, BASE, None, None, {}))
        for mname, method in config["methods"].items():
            if not method.get("enabled", True):
                continue
            for cell, spec in method_cells(mname, method):
                for seed in spec.get("seeds", config["seeds"]):
                    settings = merged_training(config, model, spec)
                    settings["seed"] = int(seed)
                    settings.pop("seeds", None)
                    settings.pop("enabled", None)
                    out.append(Variant(model, f"{cell}-seed{seed}", mname, int(seed), settings))
    return out


def variant_index(config: dict[str, Any]) -> dict[tuple[str, str], Variant]:
    return {(v.model, v.name): v for v in variants(config)}


def variant_regex(config: dict[str, Any]) -> str:
    """A regex that matches exactly the names of :func:`variants` (for ``wildcard_constraints``).

    Written as each method's product of swept values and seeds rather than as the list of names:
    Snakemake copies a constraint into every path pattern that has the wildcard and rescans that
    pattern on each substitution, so a list of every name (about 40 KB on a 10,000-job grid) made
    planning grow with the square of the grid; this stays a few hundred characters.
    """
    alternatives = [re.escape(BASE)]
    for mname, method in config["methods"].items():
        if not method.get("enabled", True):
            continue
        part = re.escape(mname)
        for key in SWEEPABLE:
            values = method.get(key)
            if isinstance(values, list):
                part += f"-{re.escape(key.replace('_', ''))}{_alternation([_fmt(v) for v in values])}"
        seeds = method.get("seeds", config["seeds"])
        part += f"-seed{_alternation([str(s) for s in seeds])}"
        alternatives.append(part)
    return "|".join(alternatives)


def _alternation(values: list[str]) -> str:
    return "(?:" + "|".join(re.escape(v) for v in sorted(set(values), key=len, reverse=True)) + ")"


def judges_for(config: dict[str, Any], benchmark: str) -> list[str]:
    kind = config["benchmarks"][benchmark]["kind"]
    return [j for j, spec in config["judges"].items() if kind in spec["applies_to"]]


def benchmarks_for(config: dict[str, Any], judge: str) -> list[str]:
    kinds = config["judges"][judge]["applies_to"]
    return [b for b, spec in config["benchmarks"].items() if spec["kind"] in kinds]


def shares_reference(settings: dict[str, Any]) -> bool:
    """DPO-family methods read the shared, precomputed reference log-probs."""
    return workflow_setting(settings, "trainer") == "dpo" and workflow_setting(settings, "share_reference")


# A reference key names one shared reference log-probs file, e.g. ``float32-maxlen128`` or
# ``bfloat16-nf4-amp-maxlen1024``.
REFERENCE_KEY = re.compile(r"(?P<dtype>float32|bfloat16|float16)(?P<nf4>-nf4)?(?P<amp>-amp)?-maxlen(?P<max_length>\d+)")
# The same pattern without group names, for wildcard_constraints.
REFERENCE_KEY_WILDCARD = re.sub(r"\(\?P<\w+>", "(?:", REFERENCE_KEY.pattern)


def reference_key(settings: dict[str, Any]) -> str:
    """Which shared reference log-probs a DPO-family variant reads.

    TRL's own per-method reference is the base model exactly as the policy loads it, so the key holds
    everything that changes its log-probs: the weights dtype, 4-bit loading (QLoRA), bf16 autocast
    (``bf16``) and max_length. Variants that differ in any of these never share a reference.
    """
    parts = [workflow_setting(settings, "dtype")]
    if settings.get("peft") == "qlora":
        parts.append("nf4")
    if settings.get("bf16", False):
        parts.append("amp")
    return "-".join([*parts, f"maxlen{int(settings['max_length'])}"])


def reference_settings(key: str) -> dict[str, Any]:
    """The inverse of :func:`reference_key`: the loading settings of the reference model."""
    m = REFERENCE_KEY.fullmatch(key)
    if m is None:
        raise ValueError(f"not a reference key: {key!r} (expected e.g. 'float32-maxlen128')")
    return {"dtype": m["dtype"], "quantization": "4bit" if m["nf4"] else None, "bf16": bool(m["amp"]),
            "max_length": int(m["max_length"])}


def wildcard_regex(names: list[str]) -> str:
    return "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))
