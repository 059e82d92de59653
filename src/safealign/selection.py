"""Hyperparameter selection on a development split (``config.selection``).

With a ``selection:`` block, a method whose sweepable keys are lists (a *sweep*) is no longer
evaluated cell by cell: each of its cells (a *candidate*) is trained with the method's first seed
and evaluated on the development split of the benchmarks ``selection.splits`` names (benchmarks
named ``<benchmark>-dev``, their prompts checked disjoint from every evaluation and training
prompt); the ``select`` checkpoint of (model, method) applies ``selection.objective`` to the
candidates' development metrics and writes ``results/selection/<model>/<method>.json``; only the
pick is trained with every seed and evaluated on the evaluation prompts. Methods without a sweep,
and every method when there is no ``selection:`` block, are evaluated as configured.

    python -m safealign.selection --params JSON --base CSV --candidates CSV... --out JSON

The objective (one per config): ``maximize`` (or ``minimize``) one development metric, subject to
``constraints`` (each ``max``, ``min`` or ``max_above_base``: at most the base model's development
value plus that much), ties broken by ``tie_break`` entries in order and then by the sweep's
order in the config. When no candidate meets every constraint, the one with the smallest total
violation is picked and the file says so (``constraints_met: false``). Written here: no library
selects on a user-declared constrained objective over precomputed metric tables.
"""

from __future__ import annotations

import math
from typing import Any

from . import grid, io
from .cli import parser, setup
from .specs import SelectSpec

DEV_SUFFIX = "-dev"
# How each constraint bound compares a development value (v) with its bound (b) and the base's (base).
BOUNDS = ("max", "min", "max_above_base")


def enabled(config: dict[str, Any]) -> bool:
    return bool(config.get("selection"))


def dev_name(benchmark: str) -> str:
    """The development split's benchmark name: ``alert`` -> ``alert-dev`` (no config name has a
    ``-``, so it never clashes with a configured benchmark)."""
    return f"{benchmark}{DEV_SUFFIX}"


def dev_benchmarks(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``<benchmark>-dev`` -> the benchmark's spec with ``selection.splits.<benchmark>``'s keys
    over it (the same kind, loader, rendering and global_safety; other prompts)."""
    if not enabled(config):
        return {}
    return {dev_name(b): {**config["benchmarks"][b], **over}
            for b, over in (config["selection"].get("splits") or {}).items()}


def cell_of(variant: str) -> str:
    """``safe_dpo-learningrate0.0003-seed0`` -> ``safe_dpo-learningrate0.0003``."""
    return variant.rsplit("-seed", 1)[0]


def swept_methods(config: dict[str, Any]) -> list[str]:
    """The enabled methods with more than one cell: what selection chooses among."""
    if not enabled(config):
        return []
    return [m for m, spec in config["methods"].items()
            if spec.get("enabled", True) and len(grid.method_cells(m, spec)) > 1]


def candidate_seed(config: dict[str, Any], method: str) -> int:
    """The seed every candidate of ``method`` trains with: the method's first seed."""
    return int(config["methods"][method].get("seeds", config["seeds"])[0])


def candidates(config: dict[str, Any], model: str, method: str,
               index: dict[tuple[str, str], grid.Variant] | None = None) -> list[grid.Variant]:
    """The candidate variants of a swept method, in the sweep's config order (``index``: the
    grid's :func:`safealign.grid.variant_index`, computed when not given)."""
    index = grid.variant_index(config) if index is None else index
    seed = candidate_seed(config, method)
    return [index[(model, f"{cell}-seed{seed}")] for cell, _ in grid.method_cells(method, config["methods"][method])]


def swept_keys(config: dict[str, Any], method: str) -> list[str]:
    return [k for k in grid.SWEEPABLE if isinstance(config["methods"][method].get(k), list)]


def evaluated(config: dict[str, Any], pick, variants: list[grid.Variant] | None = None) -> list[grid.Variant]:
    """The variants evaluated on the evaluation prompts: every variant (``variants``, default the
    grid's) without selection; with it, a swept method's picked cell (``pick(model, method)`` ->
    cell name, read from its selection file) with every seed."""
    variants = grid.variants(config) if variants is None else variants
    swept = set(swept_methods(config))
    if not swept:
        return variants
    picks = {(v.model, v.method): pick(v.model, v.method) for v in variants if v.method in swept}
    return [v for v in variants if v.method not in swept or cell_of(v.name) == picks[(v.model, v.method)]]


def metric_name(entry: dict[str, Any]) -> str:
    return f"{entry['benchmark']}: {entry['metric']} [{entry['judge']}]"


def describe(objective: dict[str, Any]) -> str:
    """The objective in words (the report's and the selection file's ``rule``)."""
    goal = "maximise" if "maximize" in objective else "minimise"
    text = f"{goal} development {metric_name(objective.get('maximize') or objective['minimize'])}"
    cons = []
    for c in objective.get("constraints") or []:
        for bound in BOUNDS:
            if bound in c:
                rel = {"max": "<=", "min": ">=", "max_above_base": "<= base +"}[bound]
                cons.append(f"{metric_name(c)} {rel} {c[bound]:g}")
    if cons:
        text += " subject to " + " and ".join(cons)
    ties = [f"{'higher' if t.get('direction', 'max') == 'max' else 'lower'} {metric_name(t)}"
            for t in objective.get("tie_break") or []]
    text += "; ties: " + ", ".join([*ties, "the sweep's config order"])
    return text


def _dev_key(entry: dict[str, Any]) -> tuple[str, str, str]:
    b = entry["benchmark"]
    return (b if b == grid.GLOBAL else dev_name(b), entry["judge"], entry["metric"])


def _eval_key(entry: dict[str, Any]) -> tuple[str, str, str]:
    return (entry["benchmark"], entry["judge"], entry["metric"])


def _values(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], float]:
    return {(r["benchmark"], r["judge"], r["metric"]): float(r["value"]) for r in rows
            if not (r.get("group") or "") and r.get("value") not in (None, "")}


def _value_of(values: dict, entry: dict[str, Any], where: str, key=_dev_key) -> float:
    k = key(entry)
    if k not in values or math.isnan(values[k]):
        raise ValueError(f"{where} has no value for {metric_name(entry)} (looked up as {k}); "
                         "config.selection.objective names a metric its metrics do not hold")
    return values[k]


def choose(objective: dict[str, Any], base: list[dict[str, Any]],
           cands: list[tuple[str, str, dict[str, Any], list[dict[str, Any]]]],
           development: bool = True) -> dict[str, Any]:
    """Apply ``objective`` to the candidates ``(cell, variant, swept settings, metric rows)`` (in
    config order) given the base model's rows; returns the selection record. ``development``: the
    rows are a development split's (``<benchmark>-dev``); else the evaluation's (the report's
    "best by the declared objective")."""
    key = _dev_key if development else _eval_key

    def _value(values, entry, where):
        return _value_of(values, entry, where, key)

    target = objective.get("maximize") or objective["minimize"]
    sign = 1.0 if "maximize" in objective else -1.0
    base_values = _values(base)
    entries = [target, *(objective.get("constraints") or []), *(objective.get("tie_break") or [])]
    out = []
    for order, (cell, variant, settings, rows) in enumerate(cands):
        values = _values(rows)
        score = _value(values, target, f"candidate {variant}")
        violation = 0.0
        checks = []
        for c in objective.get("constraints") or []:
            v = _value(values, c, f"candidate {variant}")
            for bound in BOUNDS:
                if bound not in c:
                    continue
                limit = (c[bound] + _value(base_values, c, "the base model") if bound == "max_above_base"
                         else c[bound])
                over = max(0.0, v - limit) if bound in ("max", "max_above_base") else max(0.0, limit - v)
                violation += over
                checks.append({"metric": metric_name(c), "value": v, "bound": bound, "limit": limit, "met": over == 0})
        ties = [(1.0 if t.get("direction", "max") == "max" else -1.0) * _value(values, t, f"candidate {variant}")
                for t in objective.get("tie_break") or []]
        out.append({"cell": cell, "variant": variant, "settings": settings, "order": order,
                    "scores": {metric_name(e): _value(values, e, f"candidate {variant}") for e in entries},
                    "objective": score, "constraints": checks, "feasible": violation == 0,
                    "violation": violation, "_key": (violation, -sign * score, *[-t for t in ties], order)})
    feasible = [c for c in out if c["feasible"]]
    best = min(out, key=lambda c: c["_key"])  # the least violation first: a feasible one when there is one
    for c in out:
        del c["_key"]
    return {"rule": describe(objective), "objective": objective, "candidates": out,
            "base_scores": {metric_name(e): base_values.get(key(e)) for e in entries},
            "pick": {"cell": best["cell"], "variant": best["variant"], "settings": best["settings"]},
            "constraints_met": bool(feasible)}


def config_problems(config: dict[str, Any]) -> list[str]:
    """Every problem of ``config.selection``, one line each naming its key (configload runs it)."""
    from .headline import check_metric_ref, global_parts

    if not enabled(config):
        return []
    s = config["selection"]
    out = []
    splits = s.get("splits") or {}
    from .checks import loader_option_problems

    for b, over in splits.items():
        if b not in config["benchmarks"]:
            out.append(f"config.selection.splits.{b} is not a config.benchmarks name "
                       f"(benchmarks: {list(config['benchmarks'])})")
            continue
        out += loader_option_problems(f"config.selection.splits.{b}", config["benchmarks"][b]["loader"], over)
        src = over.get("source") or {}
        if "hub" in src and not src.get("revision"):
            out.append(f"config.selection.splits.{b}.source.revision is required for {src['hub']!r} (pin it)")
    if not swept_methods(config):
        out.append("config.selection is set but no enabled method sweeps (a list value of "
                   f"{', '.join(grid.SWEEPABLE)} on a method): there is nothing to select; sweep a method "
                   "or remove config.selection")
    obj = s.get("objective") or {}
    goal = "maximize" if "maximize" in obj else "minimize"
    entries = [(f"config.selection.objective.{goal}", obj.get(goal) or {})]
    entries += [(f"config.selection.objective.constraints[{i}]", c) for i, c in enumerate(obj.get("constraints") or [])]
    entries += [(f"config.selection.objective.tie_break[{i}]", t) for i, t in enumerate(obj.get("tie_break") or [])]
    for key, e in entries:
        problems = check_metric_ref(config, e, key)
        out += problems
        if problems:
            continue
        needs = global_parts(config) if e["benchmark"] == grid.GLOBAL else [e["benchmark"]]
        missing = [b for b in needs if b not in splits]
        if missing:
            out.append(f"{key} reads {e['benchmark']!r} on the development split, but config.selection.splits has "
                       f"no split of {missing}: add one (selection never reads evaluation prompts)")
    return out


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    p = parser("pick one method's setting on the development split")
    p.add_argument("--base", required=True, help="the base model's development metrics (csv)")
    p.add_argument("--candidates", nargs="+", required=True,
                   help="each candidate's development metrics (csv), in the order of params.candidates")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    spec = SelectSpec.from_params(setup(args))
    if len(args.candidates) != len(spec.candidates):
        raise ValueError(f"{len(args.candidates)} candidate files for {len(spec.candidates)} candidates")

    def rows(path: str) -> list[dict[str, Any]]:
        return pd.read_csv(path, keep_default_na=False, dtype={"group": str}).to_dict("records")

    cands = [(c["cell"], c["variant"], c["settings"], rows(f)) for c, f in zip(spec.candidates, args.candidates,
                                                                              strict=True)]
    record = choose(spec.objective, rows(args.base), cands)
    record = {"model": spec.model, "method": spec.method, "seed": spec.seed, **record}
    io.write_json(args.out, record)
    print(f"{spec.model}/{spec.method}: picked {record['pick']['cell']} ({record['rule']}); "
          f"constraints met: {record['constraints_met']}")


if __name__ == "__main__":
    main()
