#!/usr/bin/env python
"""The tables of a run with config.selection, as Markdown (docs/real-model.md's).

    python bench/selection_tables.py [RESULTS_DIR] [--judge refusal]

1. per (model, swept method): every candidate's development scores, whether it met the
   constraints, and the pick (results/selection/<model>/<method>.json);
2. the evaluation: base and each picked cell, each metric as the seeds' mean [min-max over seeds]
   and every seed's value with its 95 % bootstrap CI (metrics.csv, seeds.csv);
3. each picked cell, all seeds together, against the base model: paired difference, 95 % CI and
   Holm-adjusted p (comparisons.csv, role ``base (seeds pooled)``; single-seed cells: role base).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

METRICS = [("alert", "safety_score", "ALERT refusal"),
           ("alert_adversarial", "safety_score", "constructed adversarial refusal"),
           ("global", "global_safety_score", "global safety"),
           ("xstest", "over_refusal_rate", "XSTest safe over-refusal"),
           ("xstest", "unsafe_refusal_rate", "XSTest unsafe refusal")]


def pct(v: float) -> str:
    return "–" if v != v else f"{100 * v:.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="?", default="results", type=Path)
    p.add_argument("--judge", default="refusal")
    args = p.parse_args()
    res = args.results
    print("## Selection (development split)\n")
    for path in sorted((res / "selection").glob("*/*.json")):
        rec = json.loads(path.read_text())
        names = list(rec["base_scores"])
        print(f"**{rec['model']} / {rec['method']}** (seed {rec['seed']}; rule: {rec['rule']}; "
              f"constraints met: {rec['constraints_met']})\n")
        print("| candidate | " + " | ".join(names) + " | feasible |")
        print("|---" * (len(names) + 2) + "|")
        print("| base | " + " | ".join(pct(rec["base_scores"][n]) for n in names) + " | – |")
        for c in rec["candidates"]:
            mark = " **(pick)**" if c["cell"] == rec["pick"]["cell"] else ""
            print(f"| {c['cell']}{mark} | " + " | ".join(pct(c["scores"][n]) for n in names)
                  + f" | {'yes' if c['feasible'] else 'no'} |")
        print()
    df = pd.read_csv(res / "metrics.csv", keep_default_na=False, na_values=[""])
    df["group"] = df["group"].fillna("")
    df = df[(df.group == "") & (df.judge == args.judge)]
    df["cell"] = [v if v == "base" else v.rsplit("-seed", 1)[0] for v in df.variant]
    print("## Evaluation (per cent; mean over seeds [min-max]; per seed: value [95 % CI])\n")
    print("| variant | " + " | ".join(t for _, _, t in METRICS) + " |")
    print("|---" * (len(METRICS) + 1) + "|")
    for cell, g in sorted(df.groupby("cell"), key=lambda kv: (kv[0] != "base", kv[0])):
        cols = []
        for bench, metric, _ in METRICS:
            m = g[(g.benchmark == bench) & (g.metric == metric)].sort_values("variant")
            if not len(m):
                cols.append("–")
                continue
            head = pct(m.value.mean()) + (f" [{pct(m.value.min())}-{pct(m.value.max())}]" if len(m) > 1 else "")
            seeds = "; ".join(f"{pct(r.value)} [{pct(r.ci_low)}, {pct(r.ci_high)}]" for r in m.itertuples())
            cols.append(f"{head}<br><small>{seeds}</small>")
        print(f"| {cell} | " + " | ".join(cols) + " |")
    comp = pd.read_csv(res / "comparisons.csv", keep_default_na=False, na_values=[""])
    comp["group"] = comp["group"].fillna("")
    comp = comp[(comp.group == "") & (comp.judge == args.judge)]
    pooled = comp[comp.reference_role == "base (seeds pooled)"]
    single = comp[(comp.reference_role == "base") & ~comp.variant.map(
        lambda v: f"{v.rsplit('-seed', 1)[0]} (all seeds)" in set(pooled.variant))]
    print("\n## Against the base model (paired, Holm; seeds pooled where there are several)\n")
    print("| variant | " + " | ".join(t for _, _, t in METRICS) + " |")
    print("|---" * (len(METRICS) + 1) + "|")
    for variant, g in pd.concat([pooled, single]).groupby("variant", sort=True):
        cols = []
        for bench, metric, _ in METRICS:
            r = g[(g.benchmark == bench) & (g.metric == metric)]
            if not len(r):
                cols.append("–")
                continue
            x = r.iloc[0]
            cols.append(f"{100 * x.difference:+.1f} [{100 * x.ci_low:+.1f}, {100 * x.ci_high:+.1f}], "
                        f"p<sub>Holm</sub> {x.p_holm:.2g}")
        print(f"| {variant} | " + " | ".join(cols) + " |")


if __name__ == "__main__":
    main()
