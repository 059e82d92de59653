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
from .grid import BASE
from .metrics import GLOBAL, METRICS

# ---------------------------------------------------------------- what the report shows (from config)
# The headline columns and the paper's reference figures are config (report.headline,
# report.paper_reference); these pure functions resolve and check them. checks.py calls
# check_report_config at parse time, common.smk's p_report passes resolve_headline's result.

REFERENCE_COMPARE = ("base", "aligned", "none")


def _judges_of_kind(config: dict[str, Any], kind: str) -> list[str]:
    return [j for j, s in config["judges"].items() if kind in s.get("applies_to", [])]


def global_parts(config: dict[str, Any]) -> list[str]:
    """The benchmarks whose safety_score the global score averages (config order)."""
    return [b for b, s in config["benchmarks"].items() if s.get("global_safety")]


def default_headline(config: dict[str, Any]) -> list[dict[str, str]]:
    """The headline when config.report.headline is unset, built from the configured names only.

    Global score per safety judge (and the conservative one for Llama Guard judges), each global
    part with the Llama Guard judges, over-refusal with the refusal judges, every toxicity metric.
    """
    types = {j: s["type"] for j, s in config["judges"].items()}
    out: list[dict[str, str]] = []
    parts = global_parts(config)
    safety_judges = _judges_of_kind(config, "safety")
    if parts:
        for j in safety_judges:
            out.append({"benchmark": GLOBAL, "judge": j, "metric": "global_safety_score"})
            if types[j] == "llama_guard":
                out.append({"benchmark": GLOBAL, "judge": j, "metric": "global_safety_score_conservative"})
    for b, spec in config["benchmarks"].items():
        kind = spec["kind"]
        for j in _judges_of_kind(config, kind):
            if kind == "safety" and types[j] == "llama_guard" and b in parts:
                out.append({"benchmark": b, "judge": j, "metric": "safety_score"})
            elif kind == "overrefusal" and types[j] == "refusal":
                out += [{"benchmark": b, "judge": j, "metric": m}
                        for m in ("over_refusal_rate", "unsafe_refusal_rate")]
            elif kind == "toxicity":
                out += [{"benchmark": b, "judge": j, "metric": m}
                        for m in ("mean_toxicity", "expected_max_toxicity", "toxicity_probability")]
    return out


def resolve_headline(config: dict[str, Any]) -> list[dict[str, str]]:
    """config.report.headline (or the default), each entry with its title and group filled in."""
    entries = (config.get("report") or {}).get("headline") or default_headline(config)
    return [{"title": e.get("title") or f"{e['benchmark']}: {e['metric']} [{e['judge']}]",
             "benchmark": e["benchmark"], "judge": e["judge"], "metric": e["metric"],
             "group": e.get("group") or ""} for e in entries]


def check_metric_ref(config: dict[str, Any], entry: dict[str, Any], key: str) -> list[str]:
    """Why ``entry`` (a benchmark/judge/metric triple at config key ``key``) names nothing, if so."""
    errors = []
    bench, judge, metric = entry.get("benchmark"), entry.get("judge"), entry.get("metric")
    benchmarks = config["benchmarks"]
    if bench == GLOBAL:
        kind = GLOBAL
        if not global_parts(config):
            errors.append(f"{key}.benchmark is {GLOBAL!r} but no benchmark is marked "
                          "global_safety: true (config.benchmarks.<name>.global_safety)")
    elif bench in benchmarks:
        kind = benchmarks[bench]["kind"]
    else:
        return [f"{key}.benchmark {bench!r} is not a configured benchmark "
                f"(config.benchmarks: {list(benchmarks)}, or {GLOBAL!r})"]
    if judge not in config["judges"]:
        errors.append(f"{key}.judge {judge!r} is not a configured judge (config.judges: {list(config['judges'])})")
    elif (kind_needed := "safety" if kind == GLOBAL else kind) not in config["judges"][judge].get("applies_to", []):
        errors.append(f"{key}.judge {judge!r} does not judge benchmark kind {kind_needed!r} "
                      f"(config.judges.{judge}.applies_to)")
    if metric not in METRICS:
        errors.append(f"{key}.metric {metric!r} is not a metric (valid: {sorted(METRICS)})")
    elif kind not in METRICS[metric].kinds:
        valid = sorted(m for m, info in METRICS.items() if kind in info.kinds)
        errors.append(f"{key}.metric {metric!r} is not produced for {bench!r} (kind {kind!r}); "
                      f"valid: {valid}")
    return errors


def check_report_config(config: dict[str, Any]) -> list[str]:
    """Every error of config.report (headline and paper_reference entries), each naming its key."""
    report = config.get("report") or {}
    errors = []
    for i, e in enumerate(report.get("headline") or []):
        errors += check_metric_ref(config, e, f"config.report.headline[{i}]")
    for i, e in enumerate(report.get("paper_reference") or []):
        errors += check_metric_ref(config, e, f"config.report.paper_reference[{i}]")
        if e.get("compare", "none") not in REFERENCE_COMPARE:
            errors.append(f"config.report.paper_reference[{i}].compare must be one of "
                          f"{list(REFERENCE_COMPARE)}, got {e.get('compare')!r}")
    return errors


def variant_labels(df) -> dict[tuple[str, str], str]:
    """Short, unique labels for (model, variant): the seed suffix goes when the run has one seed
    per method cell, the model prefix when it has one model."""
    keys = df[["model", "variant", "seed"]].drop_duplicates(["model", "variant"])
    trained = keys[keys.variant != BASE]
    one_seed = trained.seed.nunique() <= 1
    one_model = keys.model.nunique() <= 1
    out = {}
    for model, variant, seed in keys.itertuples(index=False):
        label = variant
        if one_seed and variant != BASE and seed == seed:  # seed == seed: not NaN
            label = variant.removesuffix(f"-seed{int(seed)}")
        out[(model, variant)] = label if one_model else f"{model}/{label}"
    return out


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def headline_table(df, headline: list[dict[str, str]]):
    """Variant x headline metric (the configured columns, plus capability tasks), base rows first."""
    import pandas as pd

    cols = {}
    for h in headline:
        sel = df[(df.benchmark == h["benchmark"]) & (df.judge == h["judge"])
                 & (df.metric == h["metric"]) & (df.group.fillna("") == h["group"])]
        if len(sel):
            cols[h["title"]] = sel.set_index(["model", "variant"])["value"]
    whole = df[df["group"].fillna("") == ""]
    cap = whole[(whole.judge == "lm_eval") & ~whole.metric.str.endswith("_stderr")]
    for (bench, metric), sel in cap.groupby(["benchmark", "metric"]):
        cols[f"{bench} ({metric.split(',')[0]})"] = sel.set_index(["model", "variant"])["value"]
    table = pd.DataFrame(cols)
    order = sorted(table.index, key=lambda mv: (mv[0], mv[1] != BASE, mv[1]))
    return table.loc[order]


def _best(values, metric: str):
    """(variant, value) of the best of ``values`` (a variant -> value Series) by the metric's direction."""
    idx = values.idxmax() if METRICS[metric].higher_is_better else values.idxmin()
    return idx, float(values[idx])


def reference_table(df, references: list[dict[str, Any]]):
    """The paper's figures (config.report.paper_reference) beside this run's, one row per figure
    and model: ``compare: base`` shows the base model's value, ``aligned`` the best aligned variant
    (by the metric's direction) and the range over all aligned variants, ``none`` only the paper's."""
    import pandas as pd

    rows = []
    models = sorted(df.model.unique()) or [""]
    for ref in references:
        sel = df[(df.benchmark == ref["benchmark"]) & (df.judge == ref["judge"])
                 & (df.metric == ref["metric"]) & (df.group.fillna("") == (ref.get("group") or ""))]
        bound = {"eq": "", "gt": "> ", "lt": "< "}[ref.get("bound", "eq")]
        base = {"paper figure": ref["label"], "metric": f"{ref['benchmark']}: {ref['metric']} [{ref['judge']}]",
                "paper": f"{bound}{ref['value']:.4g}", "source": ref["source"]}
        compare = ref.get("compare", "none")
        for model in models if compare != "none" else [None]:
            row = dict(base, model=model or "", **{"this run": "", "this run's variant": ""})
            msel = sel[sel.model == model]
            if compare == "base":
                b = msel[msel.variant == BASE]
                if len(b):
                    row.update({"this run": f"{float(b.value.iloc[0]):.4g}", "this run's variant": BASE})
            elif compare == "aligned":
                aligned = msel[msel.variant != BASE].set_index("variant")["value"]
                if len(aligned):
                    variant, value = _best(aligned, ref["metric"])
                    row.update({"this run": f"{value:.4g} (range {aligned.min():.4g}-{aligned.max():.4g})",
                                "this run's variant": f"best: {variant}"})
            rows.append(row)
    cols = ["paper figure", "metric", "paper", "model", "this run", "this run's variant", "source"]
    return pd.DataFrame(rows, columns=cols)


def effective_hyperparameters_table(train_logs: dict[str, Any]):
    """Variant x effective training hyperparameter, from train.json's ``effective_hyperparameters``
    (what the trainer actually ran with); None when no train.json carries the key."""
    import pandas as pd

    rows = {k: v["effective_hyperparameters"] for k, v in sorted(train_logs.items())
            if isinstance(v.get("effective_hyperparameters"), dict)}
    if not rows:
        return None
    table = pd.DataFrame.from_dict(rows, orient="index")
    return table.map(lambda v: json.dumps(v) if isinstance(v, list | dict) else v)


def definitions_html(df) -> str:
    """Each metric present in ``df`` with its definition (metrics.METRICS)."""
    present = [m for m in METRICS if m in set(df.metric)]
    items = "".join(f"<li><code>{m}</code> ({'higher' if METRICS[m].higher_is_better else 'lower'} "
                    f"is better): {html.escape(METRICS[m].definition)}</li>" for m in present)
    return f"<h2>Metric definitions</h2><ul>{items}</ul>" if items else ""


def plots(df, parts: list[str], headline: list[dict[str, str]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    out = []
    labels = variant_labels(df)
    df = df.assign(label=[labels[(m, v)] for m, v in zip(df.model, df.variant, strict=True)])
    g = df[(df.metric == "global_safety_score") & (df.group.fillna("") == "")].copy()
    if len(g):
        fig, ax = plt.subplots(figsize=(9, 0.35 * g.label.nunique() + 2))
        sns.barplot(data=g, y="label", x="value", hue="judge", ax=ax, orient="h")
        ax.set_ylabel("variant")
        ax.set_xlabel(f"global safety score = mean({', '.join(parts)})")
        ax.set_xlim(0, 1)
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), title="judge")
        out.append(("Global safety score per variant and judge", _png(fig)))
    for bench in parts:
        cat = df[(df.benchmark == bench) & (df.metric == "safety_score")
                 & df.group.fillna("").str.startswith("category=")]
        for judge, jcat in cat.groupby("judge"):
            pivot = jcat.assign(category=jcat.group.str.removeprefix("category=")).pivot_table(
                index="label", columns="category", values="value")
            fig, ax = plt.subplots(figsize=(1 + 0.8 * pivot.shape[1], 0.35 * pivot.shape[0] + 2))
            sns.heatmap(pivot, vmin=0, vmax=1, annot=True, fmt=".2f", cmap="RdYlGn", ax=ax)
            ax.set_ylabel("variant")
            out.append((f"{bench} safety score per category ({judge} judge)", _png(fig)))
    cap = df[(df.judge == "lm_eval") & ~df.metric.str.endswith("_stderr")]
    safe = df[(df.metric == "global_safety_score") & (df.group.fillna("") == "")]
    # The scatter's judge: the first headline global score's, else any.
    judges = [h["judge"] for h in headline if h["metric"] == "global_safety_score"]
    judges += sorted(set(safe.judge) - set(judges))
    judge = next((j for j in judges if j in set(safe.judge)), None)
    if len(cap) and judge is not None:
        safe = safe[safe.judge == judge]
        merged = cap.merge(safe[["model", "variant", "value"]], on=["model", "variant"],
                           suffixes=("_capability", "_safety"))
        fig, ax = plt.subplots(figsize=(7, 5))
        sns.scatterplot(data=merged, x="value_safety", y="value_capability", hue="benchmark",
                        style="benchmark", s=80, ax=ax)
        for _, r in merged.iterrows():
            ax.annotate(labels[(r["model"], r["variant"])], (r["value_safety"], r["value_capability"]),
                        fontsize=7, alpha=0.7)
        ax.set_xlabel(f"global safety score ({judge} judge)")
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
    """The report page. ``params``: title, headline (resolved), global_parts, paper_reference."""
    headline = params["headline"]
    parts_cfg = params["global_parts"]
    table = headline_table(df, headline)
    parts = [f"<h1>{html.escape(params.get('title', 'safealign report'))}</h1>",
             f"<p>Generated {datetime.now(UTC).isoformat(timespec='seconds')}. "
             "Scores are shares in [0, 1]; safety = share of responses judged safe. "
             "Every number below is in <code>results/metrics.csv</code> (tidy: one row per "
             "variant x benchmark x judge x metric x group). The global safety score is the mean "
             f"over {html.escape(', '.join(parts_cfg) or '(no benchmark marked global_safety)')}.</p>",
             "<h2>Method x benchmark</h2>",
             table.to_html(float_format=lambda v: f"{v:.3f}", na_rep="–", classes="grid")]
    if params.get("paper_reference"):
        parts += ["<h2>The paper's figures beside this run's</h2><p>From config.report.paper_reference; "
                  "each figure is labelled with where it comes from. The paper reports percentages; "
                  "they are shown here as shares in [0, 1].</p>",
                  reference_table(df, params["paper_reference"]).to_html(index=False, classes="grid")]
    parts.append(definitions_html(df))
    for title, img in plots(df, parts_cfg, headline):
        parts += [f"<h2>{html.escape(title)}</h2>", img]
    pf = df[df.metric == "parse_failures"]
    if len(pf):
        parts += ["<h2>Judge parse failures</h2><p>Unparseable judge outputs are counted here and "
                  "left out of safety_score (never silently safe or unsafe); "
                  "safety_score_conservative counts them as unsafe.</p>",
                  pf.pivot_table(index="variant", columns=["benchmark", "judge"], values="value",
                                 aggfunc="sum").to_html(float_format=lambda v: f"{v:.0f}")]
        side = df[df.metric.isin(["safety_score", "safety_score_conservative", "parse_failures"])
                  & (df.group.fillna("") == "")
                  & df.set_index(["benchmark", "judge"]).index.isin(
                      list(pf.set_index(["benchmark", "judge"]).index.unique()))]
        if (side.metric == "safety_score_conservative").any():
            parts += ["<h3>Safety score beside its conservative variant and the parse failures</h3>",
                      side.pivot_table(index="variant", columns=["benchmark", "judge", "metric"],
                                       values="value").to_html(float_format=lambda v: f"{v:.3f}")]
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
        hp = effective_hyperparameters_table(train_logs)
        if hp is not None:
            parts += ["<h3>Effective training hyperparameters</h3><p>What each trainer ran with "
                      "(train.json <code>effective_hyperparameters</code>), after method defaults "
                      "and mappings.</p>", hp.to_html(na_rep="–", classes="grid")]
        else:
            parts += ["<p>No train.json records <code>effective_hyperparameters</code>.</p>"]
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
