"""The one self-contained HTML report, one section each (SECTIONS): the paper's claims checked on
this run with CIs, the method x benchmark table (CIs, best per column, significant differences from
the base model), paired comparisons, seaborn plots (inline PNG, also written to --plots-dir for
Snakemake's own report), seeds, judges, a responses browser, cost and provenance.

It opens from disk with no network: no external resource, a Content-Security-Policy that forbids
any fetch, every model and dataset text HTML-escaped (and, in the embedded JSON, <, > and & as
\\u escapes, so a '</script>' in a response cannot end the script element).

    python -m safealign.report --params JSON --metrics results/metrics.csv ... --out report.html
"""

from __future__ import annotations

import contextlib
import html
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import io
from .cli import parser, setup
from .grid import BASE
from .metrics import GLOBAL, METRICS, NOT_SHARES
from .specs import ReportSpec

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
        value = e.get("value")
        if (isinstance(value, (int, float)) and e.get("metric") not in NOT_SHARES
                and not 0 <= value <= 1):
            errors.append(f"config.report.paper_reference[{i}].value must be a share in [0, 1] like every "
                          f"score of the report, not per cent: got {value}, write {value / 100:g} for "
                          f"{value:g} %")
    return errors


def configured_sources(config: dict[str, Any]) -> list[dict[str, str]]:
    """Every model, judge and dataset the config names, with where it comes from and its revision
    (for the report's provenance; what was actually loaded is in the stages' meta files)."""
    out = []

    def add(kind: str, name: str, spec: dict[str, Any] | None) -> None:
        spec = spec or {}
        where = (f"hub {spec['hub']}" if "hub" in spec else f"path {spec['path']}" if "path" in spec
                 else f"tiny world ({spec['world'] if isinstance(spec.get('world'), str) else 'built'})"
                 if "world" in spec else "lm-eval built-in")
        out.append({"kind": kind, "name": name, "source": where, "revision": str(spec.get("revision") or ""),
                    "config": str(spec.get("config") or ""), "split": str(spec.get("split") or "")})

    for name, spec in config["models"].items():
        add("model", name, spec)
    for name, spec in config["judges"].items():
        if spec.get("model"):
            add(f"judge ({spec['type']})", name, spec["model"])
    add("dataset", "preference_data", config["preference_data"]["source"])
    for name, spec in config["benchmarks"].items():
        add(f"dataset ({spec['kind']})", name, spec["source"])
    add("dataset (capability)", "capability", config.get("capability", {}).get("source"))
    return out


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


def _esc(value: Any) -> str:
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


def _safety_judge(df, headline: list[dict[str, str]]) -> str | None:
    judges = [h["judge"] for h in headline if h["metric"] == "global_safety_score"]
    have = set(df[df.metric == "global_safety_score"].judge)
    judges += sorted(have - set(judges))
    return next((j for j in judges if j in have), None)


def _overrefusal_ref(df, headline: list[dict[str, str]]) -> tuple[str, str] | None:
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
            out.append(f"{_esc(r['label'])}: {bound}{r['value']:.4g}")
    return "; ".join(out)


def headline_claims(df, comp, params: dict[str, Any] | ReportSpec) -> list[dict[str, str]]:
    """One line per claim of the paper, checked on this run, per model: base vs the best aligned
    variant by global safety, with CIs, the paired difference and its Holm-adjusted p."""
    spec = ReportSpec.from_params(params)
    headline = spec.headline
    refs = spec.paper_reference
    judge = _safety_judge(df, headline)
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
        over = _overrefusal_ref(mdf, headline)
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
        f"<td>{_esc(line['claim'])}</td><td><code>{_esc(line['measure'])}</code></td>"
        f"<td>{line['base']}</td><td>{line['aligned']}<br><small>{_esc(line['variant'])}</small></td>"
        f"<td>{line['difference']}</td><td>{_esc(line['verdict'])}</td><td>{line['paper'] or '–'}</td></tr>"
        for line in lines)
    return (f"<p>Base model against the aligned variant with the highest global safety score "
            f"(judge <code>{_esc(judge)}</code>). Values: point estimate [95 % bootstrap CI]; "
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
    head = "".join(f"<th>{_esc(c[0])}</th>" for c in cols)
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
        body.append(f"<tr><th>{_esc(labels[(model, variant)])}</th>{''.join(cells)}</tr>")
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
        out.append(f"<details><summary>against <code>{_esc(role)}</code> ({len(sel)} tests)</summary>"
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
            f"<tr><td>{_esc(name)}</td><td>{v['accuracy']:.3f}</td><td>{v.get('n')}</td>"
            f"<td>{_esc(v.get('min_accuracy'))}</td>"
            f"<td>{'' if v.get('category_accuracy') is None else format(v['category_accuracy'], '.3f')}</td>"
            f"<td>{_esc(v.get('parse_failures', ''))}</td></tr>" for name, v in sorted(validations.items()))
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
            parts.append(f"<details><summary><code>{_esc(bench)}</code>, {_esc(judges)}: {len(sel)}"
                         f"</summary>{sel[keep].head(100).to_html(index=False, classes='grid small', escape=True)}"
                         "</details>")
    return "".join(parts)


# ---------------------------------------------------------------- responses browser

MAX_PROMPTS_PER_BENCHMARK = 200  # per benchmark in the embedded browser, categories interleaved


def _verdict(row: dict[str, Any]) -> str:
    if "toxicity" in row:
        return f"toxicity {row['toxicity']:.3f}"
    if not row.get("parse_ok", True):
        return "parse failure"
    if "refusal" in row:
        return "refusal" if row["refusal"] else "compliance"
    cats = ",".join(row.get("categories") or [])
    return f"{row.get('verdict')}{' ' + cats if cats else ''}"


def browser_data(judgments: dict[tuple[str, str, str, str], list[dict]], labels) -> dict[str, Any]:
    """Every variant's response and verdicts per prompt (and sample), per benchmark; at most
    MAX_PROMPTS_PER_BENCHMARK prompts each, chosen deterministically across categories."""
    variants = sorted({(m, v) for m, v, _, _ in judgments}, key=lambda mv: (mv[0], mv[1] != BASE, mv[1]))
    judges = sorted({j for _, _, _, j in judgments})
    items: dict[tuple[str, str, int], dict[str, Any]] = {}
    for (model, variant, bench, judge), rows in sorted(judgments.items()):
        col = variants.index((model, variant))
        for r in rows:
            key = (bench, str(r.get("id")), int(r.get("sample") or 0))
            item = items.get(key)
            if item is None:
                item = items[key] = {"b": bench, "id": str(r.get("id")), "s": key[2], "p": r.get("prompt") or "",
                                     "c": r.get("category") or "", "a": r.get("attack_type") or "",
                                     "l": r.get("label") or "", "r": [None] * len(variants)}
            cell = item["r"][col] or {"t": r.get("response") or "", "v": {}}
            cell["v"][judge] = _verdict(r)
            item["r"][col] = cell
    chosen = []
    for bench in sorted({k[0] for k in items}):
        keys = [k for k in items if k[0] == bench]
        by_cat: dict[str, list] = {}
        for k in keys:
            by_cat.setdefault(items[k]["c"], []).append(k)
        queues = [list(v) for _, v in sorted(by_cat.items())]
        picked = []
        while len(picked) < MAX_PROMPTS_PER_BENCHMARK and any(queues):
            for q in queues:
                if q and len(picked) < MAX_PROMPTS_PER_BENCHMARK:
                    picked.append(q.pop(0))
        chosen += sorted(picked, key=lambda k: keys.index(k))
    return {"variants": [labels.get(mv, mv[1]) for mv in variants], "judges": judges,
            "items": [items[k] for k in chosen],
            "total": {b: sum(1 for k in items if k[0] == b) for b in sorted({k[0] for k in items})}}


def embed_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">: <, > and & escaped as \\u sequences,
    so a '</script>' in a response cannot close the tag (and nothing is ever parsed as HTML)."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


BROWSER_JS = r"""
(function () {
  var data = JSON.parse(document.getElementById('responses-data').textContent);
  var bench = document.getElementById('rb-benchmark'), cat = document.getElementById('rb-category');
  var search = document.getElementById('rb-search'), list = document.getElementById('rb-prompts');
  var out = document.getElementById('rb-out');
  function opt(sel, value, text) { var o = document.createElement('option'); o.value = value;
    o.textContent = text; sel.appendChild(o); }
  Object.keys(data.total).forEach(function (b) { opt(bench, b, b); });
  function refreshCats() {
    cat.textContent = ''; opt(cat, '', 'all categories');
    var seen = {};
    data.items.forEach(function (it) { if (it.b === bench.value && it.c && !seen[it.c]) {
      seen[it.c] = 1; opt(cat, it.c, it.c); } });
  }
  function refreshList() {
    list.textContent = '';
    var q = search.value.toLowerCase(), n = 0;
    data.items.forEach(function (it, i) {
      if (it.b !== bench.value || (cat.value && it.c !== cat.value)) return;
      if (q && it.p.toLowerCase().indexOf(q) < 0) return;
      opt(list, String(i), '#' + it.id + (it.s ? ' (sample ' + it.s + ')' : '') + ' ' + it.p.slice(0, 90));
      n++;
    });
    document.getElementById('rb-count').textContent = n + ' shown of ' + data.total[bench.value] +
      ' prompts in ' + bench.value;
    if (list.options.length) { list.selectedIndex = 0; show(); } else { out.textContent = ''; }
  }
  function show() {
    var it = data.items[Number(list.value)];
    out.textContent = '';
    var h = document.createElement('p'); h.className = 'rb-prompt';
    h.textContent = it.p; out.appendChild(h);
    var meta = document.createElement('p');
    meta.textContent = [it.c && ('category: ' + it.c), it.a && ('attack: ' + it.a),
                        it.l && ('label: ' + it.l)].filter(Boolean).join(' | ');
    out.appendChild(meta);
    var t = document.createElement('table'); t.className = 'grid';
    var tr = document.createElement('tr');
    ['variant', 'response'].concat(data.judges).forEach(function (x) {
      var th = document.createElement('th'); th.textContent = x; tr.appendChild(th); });
    t.appendChild(tr);
    it.r.forEach(function (cell, k) {
      if (!cell) return;
      var row = document.createElement('tr');
      [data.variants[k], cell.t].concat(data.judges.map(function (j) { return cell.v[j] || ''; }))
        .forEach(function (x, col) { var td = document.createElement('td'); td.textContent = x;
          if (col > 1 && /^(unsafe|compliance)/.test(x)) td.className = 'bad';
          if (col > 1 && /^(safe|refusal)$|^safe /.test(x)) td.className = 'good';
          row.appendChild(td); });
      t.appendChild(row);
    });
    out.appendChild(t);
  }
  bench.addEventListener('change', function () { refreshCats(); refreshList(); });
  cat.addEventListener('change', refreshList);
  search.addEventListener('input', refreshList);
  list.addEventListener('change', show);
  refreshCats(); refreshList();
  document.getElementById('responses').setAttribute('data-ready', String(data.items.length));
})();
"""


def browser_html(data: dict[str, Any]) -> str:
    if not data["items"]:
        return "<p>No judged responses.</p>"
    shown = len(data["items"])
    total = sum(data["total"].values())
    return (f"<p>Every variant's response to one prompt, with each judge's verdict ({shown} of {total} "
            f"prompt samples embedded, at most {MAX_PROMPTS_PER_BENCHMARK} per benchmark). All text is "
            "data, shown as text: nothing from a model or a dataset is parsed as HTML.</p>"
            "<div class='rb-controls'><label>benchmark <select id='rb-benchmark'></select></label> "
            "<label>category <select id='rb-category'></select></label> "
            "<label>search <input id='rb-search' type='search' placeholder='words in the prompt'></label> "
            "<span id='rb-count'></span></div>"
            "<select id='rb-prompts' size='8'></select><div id='rb-out'></div>"
            f"<script type='application/json' id='responses-data'>{embed_json(data)}</script>"
            f"<script>{BROWSER_JS}</script>")


# ---------------------------------------------------------------- cost


def _step_of(rel: Path) -> tuple[str, str]:
    """(rule, grid cell) of a benchmark file, from its path under benchmarks_tsv/."""
    parts = rel.with_suffix("").parts
    head = parts[0]
    if head in ("train", "generate", "capability", "metrics", "merge") and len(parts) >= 3:
        return {"merge": "merge_adapter"}.get(head, head), f"{parts[1]}/{parts[2]}"
    if head == "judge" and len(parts) >= 4:  # judge/<model>/<variant>/<benchmark>/<judge>
        return f"judge_{parts[-1]}", f"{parts[1]}/{parts[2]}"
    if head == "models" and len(parts) >= 3:
        return ("world_base_model" if parts[2] == "base" else "ref_logps"), parts[1]
    if head == "judges" and len(parts) >= 3:
        return ("world_judge_model" if parts[2] == "model" else "validate_judge"), parts[1]
    if head == "prompts":
        return "benchmark_prompts", parts[1] if len(parts) > 1 else ""
    return head, ""


def cost_tables(paths: list[str], gpus: dict[str, int], root: Path | None = None, logs: list[str] | None = None):
    """Per rule and per grid cell: jobs, wall seconds, CPU seconds (Snakemake's cpu_time), GPU
    seconds (wall x the GPUs the job requested), peak RSS; from the declared benchmark TSVs.
    ``root``: the directory the paths' rule / cell layout starts at (default: their common parent).
    ``logs``: each TSV's job log, in the same order. A TSV measures the process tree Snakemake
    started; a job that ran in a fork of the warm server (safealign.warm) is outside it, so its CPU
    seconds and peak RSS come from the line its log ends with (``warm_jobs`` counts those)."""
    import os

    import pandas as pd

    if root is None and paths:
        root = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))

    from ._warm_client import logged_usage

    if logs is not None and len(logs) != len(paths):
        raise ValueError(f"{len(logs)} job logs for {len(paths)} benchmark files")
    rows = []
    for i, path in enumerate(paths):
        t = pd.read_csv(path, sep="\t")
        if not len(t):
            continue
        rel = Path(path).relative_to(root)
        rule, cell = _step_of(rel)
        last = t.iloc[-1]  # a benchmark file holds one row per repeat; the job ran the last

        def num(col):
            v = last.get(col)
            try:
                return float(v)
            except (TypeError, ValueError):
                return float("nan")

        row = {"rule": rule, "cell": cell, "wall_s": num("s"), "cpu_s": num("cpu_time"),
               "gpu_s": num("s") * gpus.get(path, 0), "max_rss_mb": num("max_rss"), "warm": 0}
        usage = logged_usage(Path(logs[i]).read_text(encoding="utf-8", errors="replace")) if logs else None
        if usage is not None:
            row.update(cpu_s=row["cpu_s"] + usage[0], max_rss_mb=usage[1], warm=1)
        rows.append(row)
    if not rows:
        return None, None
    df = pd.DataFrame(rows)
    agg = {"jobs": ("wall_s", "count"), "wall_s": ("wall_s", "sum"), "cpu_s": ("cpu_s", "sum"),
           "gpu_s": ("gpu_s", "sum"), "max_rss_mb": ("max_rss_mb", "max"), "warm_jobs": ("warm", "sum")}
    per_rule = df.groupby("rule").agg(**agg).sort_values("wall_s", ascending=False)
    cells = df[df.cell.str.contains("/")]
    per_cell = cells.groupby("cell").agg(**agg).sort_values("wall_s", ascending=False) if len(cells) else None
    return per_rule, per_cell


# ---------------------------------------------------------------- provenance


def variant_metas(paths: list[str]) -> dict[str, Any]:
    """The grid cells' provenance files merged per variant: ``<model>/<variant>/generation`` from
    each ``generations/<model>/<variant>/<benchmark>.meta.json`` (their ``benchmarks`` joined), and
    ``<model>/<variant>/<judge>`` from each ``judgments/<model>/<variant>/<benchmark>/<judge>.meta.json``
    (their ``files`` joined). The rest of a record (model, libraries, serving) is the variant's,
    the same in each of its cells; the first cell's is kept."""
    metas: dict[str, Any] = {}
    for path in paths:
        q = Path(path).parts
        name = q[-1].removesuffix(".meta.json")
        if len(q) >= 5 and q[-5] == "judgments":
            key, joined = f"{q[-4]}/{q[-3]}/{name}", "files"
        else:
            key, joined = f"{q[-3]}/{q[-2]}/generation", "benchmarks"
        meta = io.read_json(path)
        if key in metas:
            metas[key][joined] = {**(metas[key].get(joined) or {}), **(meta.get(joined) or {})}
        else:
            metas[key] = meta
    return metas


def git_commit(cwd: Path) -> str:
    """The checkout's commit at run time (with '+ uncommitted changes' when dirty), or a note."""
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return "not a git checkout"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha.stdout.strip() + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"


REPORT_LIBRARIES = ("numpy", "scipy", "pandas", "seaborn", "matplotlib", "scikit-learn", "snakemake")


def library_table(sources: dict[str, dict[str, str]]):
    """Library x the versions each stage recorded (train, generation, judging, capability) and the
    report's own environment; one row per library."""
    import importlib.metadata as md

    import pandas as pd

    own = {}
    for name in REPORT_LIBRARIES:
        with contextlib.suppress(md.PackageNotFoundError):
            own[name] = md.version(name)
    table: dict[str, dict[str, str]] = {}
    for stage, libs in list(sources.items()) + [("report", own)]:
        for lib, version in (libs or {}).items():
            table.setdefault(lib, {})[stage] = str(version)
    return pd.DataFrame.from_dict(table, orient="index").sort_index().fillna("")


def provenance_html(params: dict[str, Any] | ReportSpec, train_logs: dict[str, Any], metas: dict[str, Any],
                    capability: dict[str, Any], cwd: Path) -> str:
    import pandas as pd

    spec = ReportSpec.from_params(params)
    parts = ["<table class='grid'>",
             f"<tr><th>config sha256</th><td><code>{_esc(spec.config_sha256)}</code> "
             "(canonical JSON of the merged, validated config)</td></tr>",
             f"<tr><th>git commit</th><td><code>{_esc(git_commit(cwd))}</code></td></tr>",
             f"<tr><th>generated</th><td>{datetime.now(UTC).isoformat(timespec='seconds')}</td></tr></table>"]
    sources = {}
    for key, log in sorted(train_logs.items()):
        sources.setdefault("train", log.get("libraries") or {})
    for key, meta in sorted(metas.items()):
        stage = "generate" if key.endswith("/generation") else "judge"
        sources.setdefault(stage, meta.get("libraries") or {})
    for key, cap in sorted(capability.items()):
        sources.setdefault("capability", (cap.get("provenance") or {}).get("libraries") or {})
    parts += ["<h3>Library versions</h3>", library_table(sources).to_html(classes="grid")]
    refs = spec.sources
    if refs:
        parts += ["<h3>Models, judges and datasets as configured</h3><p>A hub revision that is not a "
                  "commit sha is not reproducible (the workflow warns at parse time).</p>",
                  pd.DataFrame(refs, columns=["kind", "name", "source", "revision", "config", "split"]).fillna("")
                  .to_html(index=False, classes="grid")]
    rows = []
    for key, meta in sorted(metas.items()):
        if key.endswith("/generation"):
            model = meta.get("model") or {}
            rows.append({"what": key.removesuffix("/generation"), "kind": "policy",
                         "source": model.get("hub") or model.get("path") or "",
                         "revision": model.get("revision") or model.get("commit") or "",
                         "weights sha256": "; ".join(f"{k}: {v[:16]}…" for k, v in
                                                     {**(model.get("weights_sha256") or {}),
                                                      **(model.get("adapter") or {})}.items())})
    judge_rows, templates = {}, {}
    for key, meta in sorted(metas.items()):
        if key.endswith("/generation"):
            continue
        for _, info in sorted((meta.get("files") or {}).items()):
            model = info.get("model") or {}
            jname = meta.get("judge") or key.rsplit("/", 1)[-1]
            judge_rows[jname] = {"what": jname, "kind": f"judge ({meta.get('type', '')})",
                                 "source": model.get("hub") or model.get("path") or "no model (rule-based)",
                                 "revision": model.get("revision") or model.get("commit") or "",
                                 "weights sha256": "; ".join(f"{k}: {v[:16]}…" for k, v in
                                                             (model.get("weights_sha256") or {}).items())}
            if info.get("template_sha256"):
                templates.setdefault(jname, set()).add(info["template_sha256"])
    rows += list(judge_rows.values())
    if rows:
        parts += ["<h3>What was loaded</h3>", pd.DataFrame(rows).to_html(index=False, classes="grid small")]
    if templates:
        parts += ["<h3>Judge prompt templates</h3><ul>" + "".join(
            f"<li>{_esc(j)}: <code>{_esc(', '.join(sorted(h)))}</code> (sha256 of the rendered chat "
            "template)</li>" for j, h in sorted(templates.items())) + "</ul>"]
    hp = effective_hyperparameters_table(train_logs)
    if hp is not None:
        parts += ["<h3>Effective training hyperparameters</h3><p>What each trainer ran with "
                  "(train.json <code>effective_hyperparameters</code>), after method defaults and mappings.</p>",
                  hp.to_html(na_rep="–", classes="grid small")]
    elif train_logs:
        parts += ["<p>No train.json records <code>effective_hyperparameters</code>.</p>"]
    return "".join(parts)


# ---------------------------------------------------------------- the page

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1280px;margin:auto;padding:1em;color:#222}
table{border-collapse:collapse;font-size:12.5px;margin:.4em 0}td,th{border:1px solid #ccc;padding:3px 6px;
vertical-align:top}th{background:#f4f4f4}table.small{font-size:11.5px}img{max-width:100%}
.sig-better{background:#e3f4e3}.sig-worse{background:#f9e0e0}.mark{font-size:11px}td.best b{color:#000}
tr.sig-better td:nth-child(6){color:#176317;font-weight:bold}tr.sig-worse td:nth-child(6){color:#a11;font-weight:bold}
nav a{margin-right:.8em}.legend,.caption{color:#555;font-size:13px}section{margin-top:1.6em}
#rb-prompts{width:100%;font-size:12px}#rb-out td{max-width:520px}.rb-prompt{font-weight:bold}
td.good{color:#176317}td.bad{color:#a11}details{margin:.3em 0}.scroll{overflow-x:auto}
table.methods th{font-size:11.5px}table.methods td small{color:#666}
"""

# Runs first: records script errors, and on load writes what a headless test reads into the DOM.
STATUS_JS = """
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || e)); });
window.addEventListener('load', function () {
  var s = document.getElementById('page-status');
  s.setAttribute('data-errors', JSON.stringify(window.__errors));
  s.setAttribute('data-injected', String(window.__injected === undefined ? 'no' : window.__injected));
  s.setAttribute('data-loaded', '1');
});
"""

SECTIONS = [("headline", "Headline"), ("methods", "Method x benchmark"), ("comparisons", "Comparisons"),
            ("plots", "Plots"), ("seeds", "Seeds"), ("judges", "Judges"), ("responses", "Responses"),
            ("cost", "Cost"), ("provenance", "Provenance"), ("definitions", "Metric definitions")]


def render(params: dict[str, Any] | ReportSpec, df, disagreements: list[dict], validations: dict[str, Any],
           train_logs: dict[str, Any], cost=None, *, comp=None, seeds=None, judgments=None, metas=None,
           capability=None, cwd: Path | None = None) -> str:
    """The report page (see the module docstring); every section has an id (SECTIONS)."""
    from . import report_plots as rp

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
    judge = _safety_judge(df, headline)
    body: dict[str, str] = {}
    body["headline"] = headline_html(headline_claims(df, comp, params), judge)
    if params.paper_reference:
        body["headline"] += ("<h3>The paper's figures beside this run's</h3><p>From "
                             "config.report.paper_reference; the paper reports percentages, shown here as "
                             "shares in [0, 1].</p>"
                             + reference_table(df, params.paper_reference).to_html(index=False, classes="grid"))
    body["methods"] = method_table_html(df, comp, headline, labels)
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
    figures += rp.pareto(df, judge, _overrefusal_ref(df, headline))
    figures += rp.slices(df, parts_cfg, judge, order)
    figures += rp.toxicity(df, order)
    figures += rp.training_curves(train_logs, {f"{m}/{v}": lab for (m, v), lab in labels.items()})
    body["plots"] = "".join(f"<h3>{_esc(t)}</h3><p class='caption'>{_esc(c)}</p>{img}" for t, c, img in figures)
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
    nav = "".join(f"<a href='#{sid}'>{_esc(title)}</a>" for sid, title in SECTIONS)
    sections = "".join(f"<section id='{sid}'><h2>{_esc(title)}</h2>{body.get(sid, '')}</section>"
                       for sid, title in SECTIONS)
    intro = (f"<p>Scores are shares in [0, 1] with 95 % bootstrap confidence intervals over prompts "
             "(<code>results/metrics.csv</code>: one row per variant x benchmark x judge x metric x group). "
             "The global safety score is the mean over "
             f"{_esc(', '.join(parts_cfg) or '(no benchmark marked global_safety)')}.</p>")
    csp = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'")
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{csp}\">"
            f"<title>{_esc(params.title)}</title><style>{STYLE}</style>"
            f"<script>{STATUS_JS}</script></head><body>"
            f"<div id='page-status' hidden></div><h1>{_esc(params.title)}</h1>"
            f"<nav>{nav}</nav>{intro}{sections}</body></html>\n")


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    p = parser(__doc__)
    p.add_argument("--metrics", required=True)
    p.add_argument("--comparisons", required=True)
    p.add_argument("--seeds", required=True)
    p.add_argument("--disagreements", required=True)
    p.add_argument("--validations", nargs="*", default=[])
    p.add_argument("--train-logs", nargs="*", default=[])
    p.add_argument("--judgments", nargs="*", default=[], help="results/judgments/<m>/<v>/<bench>/<judge>.jsonl")
    p.add_argument("--metas", nargs="*", default=[],
                   help="each grid cell's generation and judgment .meta.json (report.variant_metas)")
    p.add_argument("--capability", nargs="*", default=[])
    p.add_argument("--benchmarks", nargs="*", default=[], help="the jobs' benchmark TSVs")
    p.add_argument("--logs", nargs="*", help="each benchmark TSV's job log, in the same order")
    p.add_argument("--out", required=True)
    p.add_argument("--plots-dir", help="also write every figure here as PNG (Snakemake's report items)")
    args = p.parse_args(argv)
    params = ReportSpec.from_params(setup(args))
    from . import report_plots

    report_plots.PLOTS_DIR[0] = args.plots_dir

    def read(path):
        return pd.read_csv(path, keep_default_na=False, na_values=[""])

    df = read(args.metrics)
    comp = read(args.comparisons)
    seeds = read(args.seeds)
    for t in (df, comp, seeds):
        if "group" in t:
            t["group"] = t["group"].fillna("")
    validations = {Path(v).parent.name: io.read_json(v) for v in args.validations}
    train_logs = {f"{Path(t).parts[-3]}/{Path(t).parts[-2]}": io.read_json(t) for t in args.train_logs}
    judgments = {}
    for path in args.judgments:
        q = Path(path).parts
        judgments[(q[-4], q[-3], q[-2], q[-1].removesuffix(".jsonl"))] = io.read_jsonl(path)
    metas = variant_metas(args.metas)
    capability = {f"{Path(c).parts[-2]}/{Path(c).stem}": io.read_json(c) for c in args.capability}
    cost = cost_tables(args.benchmarks, params.gpus, logs=args.logs)
    io.write_text(args.out, render(params, df, io.read_jsonl(args.disagreements), validations, train_logs, cost,
                                   comp=comp, seeds=seeds, judgments=judgments, metas=metas,
                                   capability=capability, cwd=Path.cwd()))


if __name__ == "__main__":
    main()
