"""The report page: every section's HTML (SECTIONS, in order) put into templates/report.html.j2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from markupsafe import Markup

from ..grid import BASE
from ..specs import ReportSpec
from .browser import browser_data, browser_html
from .provenance import provenance_html
from .sections import (
    comparisons_html,
    definitions_html,
    esc,
    headline_claims,
    headline_html,
    judges_html,
    method_table_html,
    overrefusal_ref,
    reference_table,
    safety_judge,
    variant_labels,
)
from .templating import render_template, resource
from .tuning import best_by_objective, best_by_objective_html, tuning_html

SECTIONS = [("headline", "Headline"), ("methods", "Method x benchmark"), ("tuning", "Tuning"),
            ("comparisons", "Comparisons"),
            ("plots", "Plots"), ("seeds", "Seeds"), ("judges", "Judges"), ("responses", "Responses"),
            ("cost", "Cost"), ("provenance", "Provenance"), ("definitions", "Metric definitions")]


def render(params: dict[str, Any] | ReportSpec, df, disagreements: list[dict], validations: dict[str, Any],
           train_logs: dict[str, Any], cost=None, *, comp=None, seeds=None, judgments=None, metas=None,
           capability=None, cwd: Path | None = None, selections: list[dict[str, Any]] | None = None) -> str:
    """The report page (see the module docstring); every section has an id (SECTIONS)."""
    from . import plots as rp

    df = df.copy()
    df["group"] = df["group"].fillna("")
    for col in ("ci_low", "ci_high"):
        if col not in df:
            df[col] = float("nan")
    if comp is not None and len(comp):
        comp = comp.copy()
        comp["group"] = comp["group"].fillna("")
    labels = variant_labels(df)
    df["label"] = [labels[(m, v)] for m, v in zip(df.model, df.variant, strict=True)]
    params = ReportSpec.from_params(params)
    headline = params.headline
    parts_cfg = params.global_parts
    judge = safety_judge(df, headline)
    body: dict[str, str] = {}
    body["headline"] = headline_html(headline_claims(df, comp, params), judge)
    if params.paper_reference:
        body["headline"] += ("<h3>The paper's figures beside this run's</h3><p>From "
                             "config.report.paper_reference; the paper reports percentages, shown here as "
                             "shares in [0, 1].</p>"
                             + reference_table(df, params.paper_reference).to_html(index=False, classes="grid"))
    body["headline"] += best_by_objective_html(best_by_objective(df, params.objective))
    body["methods"] = method_table_html(df, comp, headline, labels)
    if selections:
        chosen = ", ".join(sorted({f"{s['model']}/{s['method']}" for s in selections}))
        body["methods"] = (f"<p><b>Settings chosen on the development split</b> for {esc(chosen)} "
                           "(see Tuning); the figures here are on the evaluation prompts, which no choice "
                           "read.</p>" + body["methods"])
    body["tuning"] = tuning_html(selections or [])
    body["comparisons"] = (
        "<p>Each variant against the base model and against Safe-DPO (TRL's sigmoid DPO loss) on the same "
        "prompts: McNemar's exact test for one benchmark's binary outcomes, a paired sign-flip permutation "
        "test for means and for the global score, a two-sample permutation test for capability items "
        "(lm-eval logs no per-item scores here, so they cannot be paired). Holm's correction over every "
        "variant compared with one reference on one metric.</p>" + comparisons_html(comp, labels))
    order = sorted(set(df.label), key=lambda lab: (lab != BASE, lab))
    g = df[(df.metric == "global_safety_score") & (df.judge == judge) & (df.group == "")]
    if len(g):
        order = [BASE] * (BASE in set(g.label)) + g[g.label != BASE].sort_values(
            ["value", "label"], ascending=[False, True]).label.tolist()
        order += sorted(set(df.label) - set(order))
    figures = []
    global_judges = [j for j in dict.fromkeys([judge] + sorted(set(g.judge) | set(
        df[df.metric == "global_safety_score"].judge))) if j]
    figures += rp.global_forest(df, global_judges)
    figures += rp.pareto(df, judge, overrefusal_ref(df, headline))
    figures += rp.slices(df, parts_cfg, judge, order)
    figures += rp.toxicity(df, order)
    figures += rp.training_curves(train_logs, {f"{m}/{v}": lab for (m, v), lab in labels.items()})
    body["plots"] = "".join(f"<h3>{esc(t)}</h3><p class='caption'>{esc(c)}</p>{img}" for t, c, img in figures)
    if seeds is not None and len(seeds) and (seeds.n_seeds > 1).any():
        s = seeds[seeds.n_seeds > 1]
        s = s[s.group.fillna("") == ""]
        s = s.assign(cellv=[f"{m:.3f} ± {sd:.3f} ({lo:.3f}-{hi:.3f})" for m, sd, lo, hi in
                            zip(s["mean"], s["sd"], s["min"], s["max"], strict=True)])
        body["seeds"] = ("<p>Mean ± sample standard deviation (min-max) over the seeds of each method "
                         "cell (<code>results/seeds.csv</code>).</p>"
                         + s.pivot_table(index="cell", columns=["benchmark", "judge", "metric"], values="cellv",
                                         aggfunc="first").to_html(classes="grid small", na_rep="–"))
    else:
        body["seeds"] = ("<p>One seed per method cell: no spread across seeds to show "
                         "(<code>results/seeds.csv</code>; add seeds with <code>config.seeds</code>"
                         " or a method's <code>seeds</code>). The intervals above are over prompts only.</p>")
    body["judges"] = judges_html(df, disagreements, validations, labels)
    body["responses"] = browser_html(browser_data(judgments or {}, labels))
    per_rule, per_cell = cost if cost is not None else (None, None)
    if per_rule is not None:
        body["cost"] = ("<p>From the Snakemake <code>benchmark:</code> files of every job (inputs of this "
                        "rule): wall seconds, CPU seconds (cpu_time), GPU seconds (wall x GPUs requested), "
                        "peak RSS (MB). <code>warm_jobs</code> ran in a fork of the warm interpreter of a local "
                        "run (docs/performance.md, Local runs: the warm interpreter): outside the process tree a "
                        "benchmark file measures, so their CPU seconds and peak RSS are the ones the job logged "
                        "(its log's last line).</p>"
                        "<h3>Per rule</h3>"
                        + per_rule.to_html(float_format=lambda v: f"{v:.1f}", classes="grid", na_rep="–"))
        if per_cell is not None:
            body["cost"] += ("<h3>Per grid cell</h3>"
                             + per_cell.to_html(float_format=lambda v: f"{v:.1f}", classes="grid small", na_rep="–"))
    else:
        body["cost"] = "<p>No benchmark files.</p>"
    body["provenance"] = provenance_html(params, train_logs, metas or {}, capability or {}, cwd or Path.cwd())
    body["definitions"] = definitions_html(df).removeprefix("<h2>Metric definitions</h2>")
    return render_template(
        "report.html.j2", title=params.title, style=resource("report.css"), status_js=resource("status.js"),
        global_parts=", ".join(parts_cfg) or "(no benchmark marked global_safety)",
        sections=[{"id": sid, "title": title, "body": Markup(body.get(sid, ""))} for sid, title in SECTIONS])
