"""The one self-contained HTML report: tables, seaborn plots (inline PNG), provenance, costs.

    python -m safealign.report --params JSON --metrics results/metrics.csv ... --out report.html
"""

from __future__ import annotations

import argparse
import base64
import html
import io as _io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import io
from .cli import setup

HEADLINE = [
    # (column title, benchmark, judge, metric, group)
    ("global safety (Llama Guard)", "global", "llama_guard", "global_safety_score", ""),
    ("ALERT", "alert", "llama_guard", "safety_score", ""),
    ("Adversarial ALERT", "alert_adversarial", "llama_guard", "safety_score", ""),
    ("global safety (refusal judge)", "global", "refusal", "global_safety_score", ""),
    ("over-refusal (XSTest safe)", "xstest", "refusal", "over_refusal_rate", ""),
    ("refusal on unsafe (XSTest contrast)", "xstest", "refusal", "unsafe_refusal_rate", ""),
    ("exp. max toxicity (benign)", "toxicity_benign", "toxicity", "expected_max_toxicity", ""),
    ("toxicity prob. (benign)", "toxicity_benign", "toxicity", "toxicity_probability", ""),
    ("exp. max toxicity (adversarial)", "toxicity_adversarial", "toxicity", "expected_max_toxicity", ""),
    ("toxicity prob. (adversarial)", "toxicity_adversarial", "toxicity", "toxicity_probability", ""),
]


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def headline_table(df):
    """Variant x headline metric (plus capability tasks), base rows first."""
    import pandas as pd

    whole = df[df["group"].fillna("") == ""]
    cols = {}
    for title, bench, judge, metric, _ in HEADLINE:
        sel = whole[(whole.benchmark == bench) & (whole.judge == judge) & (whole.metric == metric)]
        if len(sel):
            cols[title] = sel.set_index(["model", "variant"])["value"]
    cap = whole[(whole.judge == "lm_eval") & ~whole.metric.str.endswith("_stderr")]
    for (bench, metric), sel in cap.groupby(["benchmark", "metric"]):
        cols[f"{bench} ({metric.split(',')[0]})"] = sel.set_index(["model", "variant"])["value"]
    table = pd.DataFrame(cols)
    order = sorted(table.index, key=lambda mv: (mv[0], mv[1] != "base", mv[1]))
    return table.loc[order]


def plots(df) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    out = []
    g = df[(df.metric == "global_safety_score") & (df.group.fillna("") == "")].copy()
    if len(g):
        g["method"] = g["method"].fillna("base")
        fig, ax = plt.subplots(figsize=(9, 0.35 * g.variant.nunique() + 2))
        sns.barplot(data=g, y="variant", x="value", hue="judge", ax=ax, orient="h")
        ax.set_xlabel("global safety score = mean(ALERT, Adversarial ALERT)")
        ax.set_xlim(0, 1)
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), title="judge")
        out.append(("Global safety score per variant and judge", _png(fig)))
    cat = df[(df.benchmark == "alert") & (df.judge == "llama_guard")
             & df.group.fillna("").str.startswith("category=")]
    if len(cat):
        pivot = cat.assign(category=cat.group.str.removeprefix("category=")).pivot_table(
            index="variant", columns="category", values="value")
        fig, ax = plt.subplots(figsize=(1 + 0.8 * pivot.shape[1], 0.35 * pivot.shape[0] + 2))
        sns.heatmap(pivot, vmin=0, vmax=1, annot=True, fmt=".2f", cmap="RdYlGn", ax=ax)
        out.append(("ALERT safety score per category (Llama Guard judge)", _png(fig)))
    cap = df[(df.judge == "lm_eval") & ~df.metric.str.endswith("_stderr")]
    safe = df[(df.metric == "global_safety_score") & (df.judge == "llama_guard")]
    if len(cap) and len(safe):
        merged = cap.merge(safe[["model", "variant", "value"]], on=["model", "variant"],
                           suffixes=("_capability", "_safety"))
        fig, ax = plt.subplots(figsize=(7, 5))
        sns.scatterplot(data=merged, x="value_safety", y="value_capability", hue="benchmark",
                        style="benchmark", s=80, ax=ax)
        for _, r in merged.iterrows():
            ax.annotate(r["variant"].removesuffix("-seed0"), (r["value_safety"], r["value_capability"]),
                        fontsize=7, alpha=0.7)
        ax.set_xlabel("global safety score (Llama Guard)")
        ax.set_ylabel("capability (lm-eval)")
        out.append(("Safety vs capability", _png(fig)))
    return out


def costs(benchmarks_dir: Path):
    import pandas as pd

    rows = []
    for tsv in sorted(benchmarks_dir.rglob("*.tsv")):
        rel = tsv.relative_to(benchmarks_dir)
        t = pd.read_csv(tsv, sep="\t")
        rows.append({"step": rel.parts[0].removesuffix(".tsv"), "job": str(rel.with_suffix("")),
                     "seconds": float(t["s"].iloc[0]), "max_rss_mb": float(t["max_rss"].iloc[0])
                     if "max_rss" in t and str(t["max_rss"].iloc[0]) != "-" else None})
    if not rows:
        return None
    df = pd.DataFrame(rows)
    return df.groupby("step").agg(jobs=("job", "count"), total_seconds=("seconds", "sum"),
                                  max_seconds=("seconds", "max")).sort_values("total_seconds",
                                                                               ascending=False)


def render(params: dict[str, Any], df, disagreements: list[dict], validations: dict[str, Any],
           train_logs: dict[str, Any], cost_table) -> str:
    table = headline_table(df)
    parts = [f"<h1>{html.escape(params.get('title', 'safealign report'))}</h1>",
             f"<p>Generated {datetime.now(UTC).isoformat(timespec='seconds')}. "
             "Scores are shares in [0, 1]; safety = share of responses judged safe. "
             "Every number below is in <code>results/metrics.csv</code> (tidy: one row per "
             "variant x benchmark x judge x metric x group).</p>",
             "<h2>Method x benchmark</h2>",
             table.to_html(float_format=lambda v: f"{v:.3f}", na_rep="–", classes="grid")]
    for title, img in plots(df):
        parts += [f"<h2>{html.escape(title)}</h2>", img]
    pf = df[df.metric == "parse_failures"]
    if len(pf):
        parts += ["<h2>Judge parse failures</h2><p>Unparseable judge outputs are counted here and "
                  "left out of the scores (never silently safe or unsafe).</p>",
                  pf.pivot_table(index="variant", columns=["benchmark", "judge"], values="value",
                                 aggfunc="sum").to_html(float_format=lambda v: f"{v:.0f}")]
    kappa = df[df.metric == "judge_kappa"]
    if len(kappa):
        parts += ["<h2>Agreement between judges (Cohen's kappa)</h2>",
                  kappa.pivot_table(index="variant", columns="benchmark", values="value").to_html(
                      float_format=lambda v: f"{v:.3f}")]
    if disagreements:
        import pandas as pd

        d = pd.DataFrame(disagreements[:30])
        keep = [c for c in ("variant", "benchmark", "judges", "prompt", "response", "a", "b") if c in d]
        parts += [f"<h2>Judge disagreements (first 30 of {len(disagreements)})</h2>",
                  d[keep].to_html(index=False)]
    if validations:
        parts += ["<h2>Tiny-world judges on held-out labelled data</h2><ul>"]
        for name, v in validations.items():
            parts.append(f"<li>{html.escape(name)}: accuracy {v['accuracy']:.3f} on {v['n']} "
                         f"examples (required &ge; {v.get('min_accuracy')})</li>")
        parts.append("</ul>")
    if train_logs:
        rows = "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v['settings'].get('trainer')}</td>"
            f"<td>{v['settings'].get('loss_type') or ''}</td><td>{v['train_loss']:.4f}</td>"
            f"<td>{v['margin_before']:.2f}</td><td>{v['margin_after']:.2f}</td>"
            f"<td>{v['shared_reference']}</td></tr>" for k, v in sorted(train_logs.items()))
        parts += ["<h2>Training</h2><p>Margin = mean log-prob(chosen) - log-prob(rejected) of the "
                  "policy on the training pairs, before and after training.</p>"
                  "<table class='grid'><tr><th>variant</th><th>trainer</th><th>loss_type</th>"
                  "<th>train loss</th><th>margin before</th><th>margin after</th>"
                  f"<th>shared ref log-probs</th></tr>{rows}</table>"]
        libs = next(iter(train_logs.values())).get("libraries", {})
        parts += ["<h2>Provenance</h2><pre>" + html.escape(json.dumps(libs, indent=1)) + "</pre>"]
    if cost_table is not None:
        parts += ["<h2>Cost (Snakemake benchmark files)</h2>",
                  cost_table.to_html(float_format=lambda v: f"{v:.1f}")]
    style = ("body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>safealign report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def main() -> None:
    import pandas as pd

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", required=True)
    p.add_argument("--metrics", required=True)
    p.add_argument("--disagreements", required=True)
    p.add_argument("--validations", nargs="*", default=[])
    p.add_argument("--train-logs", nargs="*", default=[])
    p.add_argument("--benchmarks-dir", type=Path)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    params = setup(args)
    df = pd.read_csv(args.metrics, keep_default_na=False, na_values=[""])
    df["group"] = df["group"].fillna("")
    validations = {Path(v).parent.name: io.read_json(v) for v in args.validations}
    train_logs = {f"{Path(t).parts[-3]}/{Path(t).parts[-2]}": io.read_json(t) for t in args.train_logs}
    cost_table = costs(args.benchmarks_dir) if args.benchmarks_dir and args.benchmarks_dir.exists() else None
    io.write_text(args.out, render(params, df, io.read_jsonl(args.disagreements), validations,
                                   train_logs, cost_table))


if __name__ == "__main__":
    main()
