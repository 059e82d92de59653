"""The grid's tidy tables: metrics.csv (every variant's metrics, with CIs), the judges'
disagreements, comparisons.csv (paired tests of each variant against the base model and against
Safe-DPO on the same prompts) and seeds.csv (mean and spread over seeds of each method cell).

comparisons.csv, one row per (model, variant, reference, benchmark, judge, metric, group):
``difference`` = variant - reference on the prompts both have an outcome for (``n`` pairs), its
95 % bootstrap CI (resampling prompts, pairs kept together), ``p_value`` (``test``: McNemar's exact
test for one benchmark's binary per-prompt outcomes, a paired sign-flip permutation test for means
and for the global score's two benchmarks, a two-sample permutation test where items are not
paired), and ``p_holm``: Holm-adjusted over the family of one reference role x benchmark x judge x
metric x group (all variants compared with that reference on that metric). A method cell trained
with two or more seeds is also compared as one (``variant`` ``<cell> (all seeds)``, role
``base (seeds pooled)``, its own Holm family): each prompt's outcome averaged over the seeds, paired
with the base model's.

seeds.csv, one row per (model, method cell, benchmark, judge, metric, group): the seeds, each
seed's value (``values``, in the order of ``seeds``), their mean, sample SD, min and max.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import io, stats
from .cli import parser, setup
from .grid import BASE
from .metrics import COLUMNS
from .selection import cell_of
from .specs import AggregateSpec

COMPARISON_COLUMNS = ["model", "variant", "reference", "reference_role", "benchmark", "judge", "metric",
                      "group", "value", "reference_value", "difference", "ci_low", "ci_high", "ci_method",
                      "n", "test", "p_value", "p_holm"]
SEED_COLUMNS = ["model", "cell", "method", "benchmark", "judge", "metric", "group", "n_seeds", "seeds",
                "values", "mean", "sd", "min", "max"]
# The comparisons of a method cell's seeds taken together against the base model: the role of
# their rows (their own Holm family), and the suffix of their `variant` (the cell's name).
POOLED_ROLE = "base (seeds pooled)"
POOLED_SUFFIX = " (all seeds)"
# The paper's reference loss, Safe-DPO: TRL's DPOTrainer with the sigmoid loss. Found by its
# settings, not by its name, so a renamed method is still the reference.
DPO_REFERENCE = {"trainer": "dpo", "loss_type": "sigmoid"}


def references(variants: Iterable[Any]) -> list[dict[str, Any]]:
    """The variants every other one is compared with: the base model of each model (role "base")
    and each Safe-DPO variant (role: its method's name), as {model, variant, role, seed}."""
    out = []
    for v in variants:
        if v.method is None:
            out.append({"model": v.model, "variant": v.name, "role": "base", "seed": None})
        elif all(v.settings.get(k) == val for k, val in DPO_REFERENCE.items()):
            out.append({"model": v.model, "variant": v.name, "role": v.method, "seed": v.seed})
    return out


def _pairs(variants: dict[str, Any], refs: list[dict[str, Any]]) -> list[tuple[str, str, dict]]:
    """(model, variant, reference) to compare: every variant but the reference itself; a Safe-DPO
    reference of the variant's own seed when there is one (else every Safe-DPO variant)."""
    out = []
    for (model, variant), seed in sorted(variants.items(), key=lambda kv: (kv[0][0], kv[0][1] != BASE, kv[0][1])):
        by_role: dict[str, list[dict]] = {}
        for r in refs:
            if r["model"] == model and r["variant"] != variant:
                by_role.setdefault(r["role"], []).append(r)
        for role, rs in by_role.items():
            same_seed = [r for r in rs if r["seed"] is not None and r["seed"] == seed]
            for r in same_seed or rs:
                out.append((model, variant, r))
    return out


def comparisons(metrics, outcomes, refs: list[dict[str, Any]]):
    """comparisons.csv as a DataFrame (see the module docstring)."""
    import pandas as pd

    keys = ["model", "benchmark", "judge", "metric", "group"]
    values = {tuple(r[:6]): r[6] for r in metrics[["model", "variant", "benchmark", "judge", "metric", "group",
                                                   "value"]].itertuples(index=False)}
    seeds = {(m, v): s for m, v, s in metrics[["model", "variant", "seed"]].drop_duplicates(
        ["model", "variant"]).itertuples(index=False)}
    outcomes = outcomes.assign(per_unit=outcomes["sum"] / outcomes["count"])
    # (model, benchmark, judge, metric, group) -> variant -> (paired, {stratum: {unit: value}})
    table: dict[tuple, dict[str, tuple[bool, dict[str, dict[str, float]]]]] = {}
    for k, g in outcomes.groupby([*keys, "variant"], sort=True):
        key, variant = tuple(k[:-1]), k[-1]
        strata = {s: dict(zip(gs.unit.astype(str), gs.per_unit, strict=True))
                  for s, gs in g.groupby("stratum", sort=False)}
        table.setdefault(key, {})[variant] = (bool(g.paired.iloc[0]), strata)
    pooled = _pool_seeds(table, seeds)
    for key, by_cell in pooled.items():
        for cell, (entry, members) in by_cell.items():
            table[key][cell] = entry
            values[(key[0], cell, *key[1:])] = sum(values.get((key[0], v, *key[1:]), float("nan"))
                                                   for v in members) / len(members)
    rows = []
    pairs = _pairs(seeds, refs)
    base_refs = [r for r in refs if r["role"] == "base"]
    pooled_cells = sorted({(key[0], cell) for key, by_cell in pooled.items() for cell in by_cell})
    pairs += [(model, cell, {**r, "role": POOLED_ROLE}) for model, cell in pooled_cells
              for r in base_refs if r["model"] == model]
    for key, by_variant in sorted(table.items()):
        model, bench, judge, metric, group = key
        for m, variant, ref in pairs:
            if m != model or variant not in by_variant or ref["variant"] not in by_variant:
                continue
            paired, xs = by_variant[variant]
            _, ys = by_variant[ref["variant"]]
            seed_key = (model, variant, ref["variant"], bench, judge, metric, group)
            if paired:
                x, y = [], []
                for stratum, ux in xs.items():
                    uy = ys.get(stratum, {})
                    common = [u for u in ux if u in uy]
                    x.append([ux[u] for u in common])
                    y.append([uy[u] for u in common])
                c = stats.paired_comparison(x, y, seed_key)
            else:
                c = stats.unpaired_comparison([v for s in xs.values() for v in s.values()],
                                              [v for s in ys.values() for v in s.values()], seed_key)
            rows.append({"model": model, "variant": variant, "reference": ref["variant"],
                         "reference_role": ref["role"], "benchmark": bench, "judge": judge, "metric": metric,
                         "group": group, "value": values.get((model, variant, bench, judge, metric, group)),
                         "reference_value": values.get((model, ref["variant"], bench, judge, metric, group)),
                         "difference": c.difference, "ci_low": c.ci_low, "ci_high": c.ci_high,
                         "ci_method": c.ci_method, "n": c.n, "test": c.test, "p_value": c.p_value})
    out = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    if len(out):
        family = ["model", "reference_role", "benchmark", "judge", "metric", "group"]
        out["p_holm"] = out.groupby(family, sort=False)["p_value"].transform(lambda p: stats.holm(list(p)))
    return out


def _pool_seeds(table: dict, seeds: dict[tuple[str, str], Any]) -> dict:
    """Per comparison key, each method cell with two or more seeds as one entry: every unit's
    value averaged over the seeds that have it in all of them, so a comparison against the base
    pairs prompts across all seeds (``<cell> (all seeds)``)."""
    cells: dict[tuple[str, str], list[str]] = {}
    for (model, variant), seed in seeds.items():
        if variant != BASE and seed == seed and seed is not None:
            cells.setdefault((model, cell_of(variant)), []).append(variant)
    out: dict = {}
    for key, by_variant in table.items():
        for (model, cell), members in cells.items():
            present = [v for v in members if v in by_variant]
            if model != key[0] or len(present) < 2:
                continue
            paired = by_variant[present[0]][0]
            if not paired:  # capability items rebuilt from counts: no prompt to pair across seeds
                continue
            strata = {}
            for stratum in by_variant[present[0]][1]:
                units = [by_variant[v][1].get(stratum, {}) for v in present]
                common = [u for u in units[0] if all(u in x for x in units[1:])]
                strata[stratum] = {u: sum(x[u] for x in units) / len(units) for u in common}
            out.setdefault(key, {})[cell + POOLED_SUFFIX] = ((paired, strata), present)
    return out


def seed_summary(metrics):
    """Mean and spread (sample sd, min, max) over the seeds of each trained method cell."""
    import pandas as pd

    trained = metrics[(metrics.variant != BASE) & metrics.seed.notna()].copy()
    if not len(trained):
        return pd.DataFrame(columns=SEED_COLUMNS)
    trained["cell"] = [cell_of(v) for v in trained.variant]
    keys = ["model", "cell", "method", "benchmark", "judge", "metric", "group"]
    g = trained.groupby(keys, sort=True)
    out = g.value.agg(n_seeds="count", mean="mean", sd="std", min="min", max="max").reset_index()
    ordered = trained.sort_values("seed")
    go = ordered.groupby(keys, sort=True)
    out["seeds"] = go.seed.agg(lambda s: " ".join(str(int(x)) for x in s)).values
    out["values"] = go.value.agg(lambda s: " ".join(f"{x:.6g}" for x in s)).values  # in the order of `seeds`
    return out[SEED_COLUMNS]


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    p = parser(__doc__)
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--outcomes", nargs="+", required=True)
    p.add_argument("--disagreements", nargs="*", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--out-disagreements", required=True)
    p.add_argument("--out-comparisons", required=True)
    p.add_argument("--out-seeds", required=True)
    args = p.parse_args(argv)
    params = setup(args)
    frames = [pd.read_csv(f, keep_default_na=False, na_values=[""]) for f in args.metrics]
    table = pd.concat(frames, ignore_index=True)[COLUMNS]
    table["group"] = table["group"].fillna("")
    table["ci_method"] = table["ci_method"].fillna("")
    with io.atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False)
    outcomes = pd.concat([pd.read_csv(f, keep_default_na=False, na_values=[""], dtype={"unit": str})
                          for f in args.outcomes], ignore_index=True)
    outcomes["group"] = outcomes["group"].fillna("")
    with io.atomic_path(args.out_comparisons) as tmp:
        comparisons(table, outcomes, AggregateSpec.from_params(params).references).to_csv(tmp, index=False)
    with io.atomic_path(args.out_seeds) as tmp:
        seed_summary(table).to_csv(tmp, index=False)
    rows = [r for f in args.disagreements for r in io.read_jsonl(f)]
    io.write_jsonl(args.out_disagreements, rows)


if __name__ == "__main__":
    main()
