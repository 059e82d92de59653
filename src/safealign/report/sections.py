"""The report's tables and their HTML, each a function of the tidy tables (metrics.csv,
comparisons.csv) and the resolved params: variant labels, the headline claims, the method x
benchmark table, the paired comparisons, the paper's figures beside this run's, the judges' agreement
and validation, the metric definitions. Every model and dataset text is HTML-escaped here.
"""

from __future__ import annotations

import html
from typing import Any

from ..grid import BASE
from ..metrics import GLOBAL, METRICS
from ..specs import ReportSpec


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
    and model (only the figure's own ``model`` where it names one): ``compare: base`` shows the base
    model's value, ``aligned`` the best aligned variant (by the metric's direction) and the range
    over all aligned variants, ``none`` only the paper's."""
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
        for model in ([None] if compare == "none" else [ref["model"]] if ref.get("model") else models):
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



def definitions_html(df) -> str:
    """Each metric present in ``df`` with its definition (metrics.METRICS)."""
    present = [m for m in METRICS if m in set(df.metric)]
    items = "".join(f"<li><code>{m}</code> ({'higher' if METRICS[m].higher_is_better else 'lower'} "
                    f"is better): {html.escape(METRICS[m].definition)}</li>" for m in present)
    return f"<h2>Metric definitions</h2><ul>{items}</ul>" if items else ""


# ---------------------------------------------------------------- numbers with their intervals


def fmt_ci(value, low, high, digits: int = 3) -> str:
    """``0.812 [0.780, 0.845]``; the point alone when the CI is missing."""
    if value is None or value != value:
        return "–"
    if low is None or high is None or low != low or high != high:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _p(p) -> str:
    if p is None or p != p:
        return "–"
    return f"{p:.2g}" if p >= 1e-4 else "< 1e-4"


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


ALPHA = 0.05  # significance level of the marks (Holm-adjusted p)


def _lookup(df, model: str, variant: str, benchmark: str, judge: str, metric: str, group: str = ""):
    sel = df[(df.model == model) & (df.variant == variant) & (df.benchmark == benchmark) & (df.judge == judge)
             & (df.metric == metric) & (df.group == group)]
    return None if not len(sel) else sel.iloc[0]


def _comparison(comp, model, variant, role, benchmark, judge, metric, group=""):
    if comp is None or not len(comp):
        return None
    sel = comp[(comp.model == model) & (comp.variant == variant) & (comp.reference_role == role)
               & (comp.benchmark == benchmark) & (comp.judge == judge) & (comp.metric == metric)
               & (comp.group == group)]
    return None if not len(sel) else sel.iloc[0]


# ---------------------------------------------------------------- headline: the paper's claims


def safety_judge(df, headline: list[dict[str, str]]) -> str | None:
    judges = [h["judge"] for h in headline if h["metric"] == "global_safety_score"]
    have = set(df[df.metric == "global_safety_score"].judge)
    judges += sorted(have - set(judges))
    return next((j for j in judges if j in have), None)


def overrefusal_ref(df, headline: list[dict[str, str]]) -> tuple[str, str] | None:
    cands = [(h["benchmark"], h["judge"]) for h in headline if h["metric"] == "over_refusal_rate"]
    cands += sorted(set(zip(df[df.metric == "over_refusal_rate"].benchmark,
                            df[df.metric == "over_refusal_rate"].judge, strict=True)))
    have = set(zip(df.benchmark, df.judge, df.metric, strict=True))
    return next(((b, j) for b, j in cands if (b, j, "over_refusal_rate") in have), None)


def _paper_figures(refs: list[dict[str, Any]], benchmark: str, judge: str, metric: str) -> str:
    out = []
    for r in refs:
        same = (r["benchmark"], r["judge"], r["metric"]) == (benchmark, judge, metric)
        if same and r.get("compare", "none") != "none":
            bound = {"eq": "", "gt": "> ", "lt": "< "}[r.get("bound", "eq")]
            out.append(f"{esc(r['label'])}: {bound}{r['value']:.4g}")
    return "; ".join(out)


def headline_claims(df, comp, params: dict[str, Any] | ReportSpec) -> list[dict[str, str]]:
    """One line per claim of the paper, checked on this run, per model: base vs the best aligned
    variant by global safety, with CIs, the paired difference and its Holm-adjusted p."""
    spec = ReportSpec.from_params(params)
    headline = spec.headline
    refs = spec.paper_reference
    judge = safety_judge(df, headline)
    lines = []
    for model in sorted(df.model.unique()):
        mdf = df[df.model == model]
        glob = mdf[(mdf.metric == "global_safety_score") & (mdf.judge == judge) & (mdf.group == "")]
        aligned = glob[glob.variant != BASE]
        if judge is None or not len(aligned) or not (glob.variant == BASE).any():
            continue
        best = aligned.sort_values(["value", "variant"], ascending=[False, True]).iloc[0].variant
        claims = [("Global safety rises with alignment", GLOBAL, judge, "global_safety_score", "")]
        for bench in sorted(mdf[mdf.metric == "mean_toxicity"].benchmark.unique()):
            tj = mdf[(mdf.metric == "mean_toxicity") & (mdf.benchmark == bench)].judge.iloc[0]
            claims.append((f"Toxicity ({bench}) falls", bench, tj, "mean_toxicity", ""))
        cap = mdf[(mdf.judge == "lm_eval") & ~mdf.metric.str.endswith("_stderr")]
        for (task, metric), _ in cap.groupby(["benchmark", "metric"], sort=True):
            claims.append((f"Capability ({task}) is kept", task, "lm_eval", metric, ""))
        over = overrefusal_ref(mdf, headline)
        if over:
            claims.append(("Over-refusal (safe prompts refused) stays low", over[0], over[1], "over_refusal_rate", ""))
        for text, bench, j, metric, group in claims:
            b, v = _lookup(df, model, BASE, bench, j, metric, group), _lookup(df, model, best, bench, j, metric, group)
            if b is None or v is None:
                continue
            c = _comparison(comp, model, best, "base", bench, j, metric, group)
            diff, sig = "–", ""
            if c is not None:
                diff = f"{fmt_ci(c.difference, c.ci_low, c.ci_high)}, p<sub>Holm</sub> = {_p(c.p_holm)}"
                if c.p_holm == c.p_holm and c.p_holm < ALPHA:
                    hib = METRICS[metric].higher_is_better if metric in METRICS else True  # lm-eval scores
                    better = (c.difference > 0) == hib
                    sig = "better" if better else "worse"
                else:
                    sig = "no significant change"
            lines.append({"model": model, "claim": text, "measure": f"{bench}: {metric} [{j}]",
                          "base": fmt_ci(b.value, b.ci_low, b.ci_high), "variant": best,
                          "aligned": fmt_ci(v.value, v.ci_low, v.ci_high), "difference": diff, "verdict": sig,
                          "paper": _paper_figures(refs, bench, j, metric)})
    return lines


def headline_html(lines: list[dict[str, str]], judge: str | None) -> str:
    if not lines:
        return "<p>No base model and aligned variant with a global safety score: no headline.</p>"
    rows = "".join(
        f"<tr class='claim {('sig-' + line['verdict'].split()[0]) if line['verdict'] else ''}'>"
        f"<td>{esc(line['claim'])}</td><td><code>{esc(line['measure'])}</code></td>"
        f"<td>{line['base']}</td><td>{line['aligned']}<br><small>{esc(line['variant'])}</small></td>"
        f"<td>{line['difference']}</td><td>{esc(line['verdict'])}</td><td>{line['paper'] or '–'}</td></tr>"
        for line in lines)
    return (f"<p>Base model against the aligned variant with the highest global safety score "
            f"(judge <code>{esc(judge)}</code>). Values: point estimate [95 % bootstrap CI]; "
            "difference = aligned - base on the same prompts (paired), its 95 % CI and the "
            "Holm-adjusted p (<code>results/comparisons.csv</code>); 'better' / 'worse' when "
            f"p<sub>Holm</sub> &lt; {ALPHA} in the metric's direction. The paper's figures come "
            "from <code>config.report.paper_reference</code> (the paper's own model and judge: "
            "compare the direction, not the level).</p>"
            "<table class='grid headline'><tr><th>claim</th><th>measure</th><th>base</th>"
            "<th>best aligned</th><th>difference</th><th>verdict</th><th>paper</th></tr>"
            f"{rows}</table>")


# ---------------------------------------------------------------- method x benchmark table


def method_table_html(df, comp, headline: list[dict[str, str]], labels) -> str:
    """Variant x (headline columns + capability tasks): value [CI], best per column in bold,
    a mark where the variant differs from its base significantly (Holm-adjusted p < ALPHA)."""
    cols = [(h["title"], h["benchmark"], h["judge"], h["metric"], h["group"]) for h in headline]
    cap = df[(df.judge == "lm_eval") & (df.group == "") & ~df.metric.str.endswith("_stderr")]
    for (task, metric), _ in cap.groupby(["benchmark", "metric"], sort=True):
        cols.append((f"{task} ({metric.split(',')[0]})", task, "lm_eval", metric, ""))
    cols = [c for c in cols if ((df.benchmark == c[1]) & (df.judge == c[2]) & (df.metric == c[3])
                                & (df.group == c[4])).any()]
    keys = sorted(set(zip(df.model, df.variant, strict=True)), key=lambda mv: (mv[0], mv[1] != BASE, mv[1]))
    best = {}
    for title, bench, judge, metric, group in cols:
        sel = df[(df.benchmark == bench) & (df.judge == judge) & (df.metric == metric) & (df.group == group)]
        hib = METRICS[metric].higher_is_better if metric in METRICS else True
        for model, msel in sel.groupby("model"):
            target = msel.value.max() if hib else msel.value.min()
            best[(model, title)] = set(msel[msel.value == target].variant)
    head = "".join(f"<th>{esc(c[0])}</th>" for c in cols)
    body = []
    for model, variant in keys:
        cells = []
        for title, bench, judge, metric, group in cols:
            r = _lookup(df, model, variant, bench, judge, metric, group)
            if r is None:
                cells.append("<td>–</td>")
                continue
            text = f"{r.value:.3f}"
            ci = ("" if r.ci_low != r.ci_low else f"<br><small>[{r.ci_low:.3f}, {r.ci_high:.3f}]</small>")
            classes = []
            if variant in best.get((model, title), set()):
                text = f"<b>{text}</b>"
                classes.append("best")
            c = _comparison(comp, model, variant, "base", bench, judge, metric, group)
            if c is not None and c.p_holm == c.p_holm and c.p_holm < ALPHA:
                hib = METRICS[metric].higher_is_better if metric in METRICS else True
                good = (c.difference > 0) == hib
                mark = "▲" if c.difference > 0 else "▼"
                classes.append("sig-better" if good else "sig-worse")
                text += f" <span class='mark' title='vs base: p_Holm {_p(c.p_holm)}'>{mark}</span>"
            cells.append(f"<td class='{' '.join(classes)}'>{text}{ci}</td>")
        body.append(f"<tr><th>{esc(labels[(model, variant)])}</th>{''.join(cells)}</tr>")
    return (f"<div class='scroll'><table class='grid methods'><tr><th>variant</th>{head}</tr>{''.join(body)}"
            "</table></div>"
            "<p class='legend'>Bold: best in the column (by the metric's direction). ▲ / ▼: "
            f"significantly above / below the base model (paired test, Holm-adjusted p &lt; {ALPHA}); "
            "green when that is the better direction, red when worse. Values: estimate [95 % CI].</p>")


def comparisons_html(comp, labels) -> str:
    """The paired comparisons against each reference on the headline-worthy metrics."""
    if comp is None or not len(comp):
        return ""
    keep = comp[comp.group.isin(["", "label=unsafe"])].copy()
    keep["variant"] = [labels.get((m, v), v) for m, v in zip(keep.model, keep.variant, strict=True)]
    keep["difference [95 % CI]"] = [fmt_ci(d, lo, hi) for d, lo, hi in
                                    zip(keep.difference, keep.ci_low, keep.ci_high, strict=True)]
    keep["p"] = keep.p_value.map(_p)
    keep["p (Holm)"] = keep.p_holm.map(_p)
    cols = ["variant", "reference", "benchmark", "judge", "metric", "group", "n", "difference [95 % CI]",
            "test", "p", "p (Holm)"]
    out = []
    for role, sel in keep.groupby("reference_role", sort=False):
        out.append(f"<details><summary>against <code>{esc(role)}</code> ({len(sel)} tests)</summary>"
                   f"{sel[cols].to_html(index=False, classes='grid small', escape=True)}</details>")
    return "".join(out)


# ---------------------------------------------------------------- judges


def judges_html(df, disagreements: list[dict], validations: dict[str, Any], labels) -> str:
    parts = []
    kappa = df[df.metric == "judge_kappa"]
    if len(kappa):
        k = kappa.assign(cell=[fmt_ci(v, lo, hi, 2) for v, lo, hi in
                               zip(kappa.value, kappa.ci_low, kappa.ci_high, strict=True)],
                         col=[f"{b} [{j}]" + (f" {g}" if g else "") for b, j, g in
                              zip(kappa.benchmark, kappa.judge, kappa.group, strict=True)],
                         v=[labels[(m, v)] for m, v in zip(kappa.model, kappa.variant, strict=True)])
        parts += ["<h3>Agreement (Cohen's kappa, 95 % bootstrap CI)</h3>"
                  "<p>Only where both judges answer the same question: Llama Guard asks whether a "
                  "response is safe, the refusal judge whether the model refused. On harmful prompts "
                  "(the safety benchmarks, XSTest's unsafe contrast prompts: <code>label=unsafe</code>) "
                  "the safe answer is the refusal, so the two are comparable; on XSTest's safe prompts "
                  "a compliant answer is safe and not a refusal, so they are not compared there.</p>",
                  k.pivot_table(index="v", columns="col", values="cell", aggfunc="first").rename_axis(
                      index="variant", columns=None).to_html(classes="grid", na_rep="–")]
    pf = df[df.metric == "parse_failures"]
    if len(pf):
        t = pf.assign(v=[labels[(m, v)] for m, v in zip(pf.model, pf.variant, strict=True)]).pivot_table(
            index="v", columns=["benchmark", "judge"], values="value", aggfunc="sum").rename_axis(index="variant")
        parts += ["<h3>Parse failures</h3><p>Judge outputs that could not be read as a verdict: left out "
                  "of safety_score, counted as unsafe by safety_score_conservative (never silently safe). "
                  f"Total: {int(pf.value.sum())} of {int(pf.n.sum())} judgments.</p>",
                  t.to_html(float_format=lambda v: f"{v:.0f}", classes="grid")]
    if validations:
        rows = "".join(
            f"<tr><td>{esc(name)}</td><td>{v['accuracy']:.3f}</td><td>{v.get('n')}</td>"
            f"<td>{esc(v.get('min_accuracy'))}</td>"
            f"<td>{'' if v.get('category_accuracy') is None else format(v['category_accuracy'], '.3f')}</td>"
            f"<td>{esc(v.get('parse_failures', ''))}</td></tr>" for name, v in sorted(validations.items()))
        parts += ["<h3>Judge validation on held-out labelled data</h3><table class='grid'><tr><th>judge</th>"
                  "<th>accuracy</th><th>n</th><th>required</th><th>category accuracy</th><th>parse failures</th>"
                  f"</tr>{rows}</table>"]
    if disagreements:
        import pandas as pd

        d = pd.DataFrame(disagreements)
        d["variant"] = [labels.get((m, v), v) for m, v in zip(d.model, d.variant, strict=True)]
        keep = [c for c in ("variant", "id", "category", "attack_type", "label", "prompt", "response", "a", "b")
                if c in d]
        parts.append(f"<h3>Disagreements ({len(d)})</h3><p>Responses the two judges scored differently, "
                     "among the comparable rows only (a = first judge says safe, b = second judge says safe "
                     "/ refused). Up to 100 per benchmark and judge pair.</p>")
        for (bench, judges), sel in d.groupby(["benchmark", "judges"], sort=True):
            parts.append(f"<details><summary><code>{esc(bench)}</code>, {esc(judges)}: {len(sel)}"
                         f"</summary>{sel[keep].head(100).to_html(index=False, classes='grid small', escape=True)}"
                         "</details>")
    return "".join(parts)
