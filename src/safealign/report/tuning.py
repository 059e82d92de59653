"""The report's tuning section (config.selection: each swept method's candidates, their
development scores and the pick) and the headline's "best by the declared objective"."""

from __future__ import annotations

from typing import Any

from .. import selection as sel
from ..grid import BASE
from .sections import esc


def _fmt(v: Any) -> str:
    return "–" if v is None or v != v else f"{v:.3f}"


def tuning_html(selections: list[dict[str, Any]]) -> str:
    """One table per (model, method): every candidate's development scores, whether it met the
    constraints, and the pick."""
    if not selections:
        return ("<p>No selection: every configured setting was evaluated as given (add "
                "<code>config.selection</code> to choose a sweep's setting on a development split).</p>")
    out = ["<p>Each swept method's setting was chosen on the <b>development split</b> "
           "(<code>config.selection.splits</code>, benchmarks <code>&lt;name&gt;-dev</code>, disjoint from the "
           "evaluation prompts and from training), its candidates trained with the method's first seed; only the "
           "pick was trained with every seed and evaluated (<code>results/selection/&lt;model&gt;/&lt;method&gt;.json"
           "</code>).</p>"]
    for rec in selections:
        names = list(rec["base_scores"])
        head = "".join(f"<th>{esc(n)}</th>" for n in ["candidate", "settings", *names, "constraints met"])
        base = "".join(f"<td>{_fmt(rec['base_scores'][n])}</td>" for n in names)
        rows = [f"<tr><td>{BASE}</td><td>–</td>{base}<td>–</td></tr>"]
        for c in rec["candidates"]:
            picked = c["cell"] == rec["pick"]["cell"]
            settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in c["settings"].items())
            cells = "".join(f"<td>{_fmt(c['scores'][n])}</td>" for n in names)
            rows.append(f"<tr class='{'claim sig-better' if picked else ''}'><td>{esc(c['cell'])}"
                        f"{' <b>(pick)</b>' if picked else ''}</td><td>{esc(settings)}</td>{cells}"
                        f"<td>{'yes' if c['feasible'] else 'no'}</td></tr>")
        note = "" if rec["constraints_met"] else (" <b>No candidate met every constraint: the least-violating one "
                                                   "was picked.</b>")
        out.append(f"<h3>{esc(rec['model'])} / {esc(rec['method'])} (seed {rec['seed']})</h3>"
                   f"<p>Rule: {esc(rec['rule'])}.{note}</p>"
                   f"<table class='grid'><tr>{head}</tr>{''.join(rows)}</table>")
    return "".join(out)


def best_by_objective(df, objective: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Per model, the aligned method cell (seeds averaged) that the declared objective
    (config.selection.objective) picks on the evaluation metrics: the report's "best balance"."""
    if not objective or not len(df):
        return []
    whole = df[df.group.fillna("") == ""]
    out = []
    for model in sorted(whole.model.unique()):
        m = whole[whole.model == model]
        base = m[m.variant == BASE].to_dict("records")
        aligned = m[m.variant != BASE].assign(cell=lambda d: d.variant.map(sel.cell_of))
        if not base or not len(aligned):
            continue
        cands = []
        for cell, g in aligned.groupby("cell", sort=True):
            means = g.groupby(["benchmark", "judge", "metric"], as_index=False)["value"].mean()
            cands.append((cell, cell, {"seeds": int(g.variant.nunique())}, means.assign(group="").to_dict("records")))
        try:
            rec = sel.choose(objective, base, cands, development=False)
        except ValueError as e:  # a metric the objective names is not measured on the evaluation
            out.append({"model": model, "error": str(e)})
            continue
        out.append({"model": model, **rec})
    return out


def best_by_objective_html(picks: list[dict[str, Any]]) -> str:
    if not picks:
        return ""
    rows = []
    for rec in picks:
        if "error" in rec:
            rows.append(f"<li><b>{esc(rec['model'])}</b>: not computed: {esc(rec['error'])}</li>")
            continue
        best = next(c for c in rec["candidates"] if c["cell"] == rec["pick"]["cell"])
        scores = "; ".join(f"{esc(k)} = {_fmt(v)} (base {_fmt(rec['base_scores'].get(k))})"
                           for k, v in best["scores"].items())
        met = "" if rec["constraints_met"] else " (no method cell met every constraint: the least-violating one)"
        rows.append(f"<li><b>{esc(rec['model'])}: {esc(rec['pick']['cell'])}</b>{met}: {scores}</li>")
    return ("<h3>Best by the declared objective</h3><p>The objective of <code>config.selection.objective</code> "
            "applied to the <b>evaluation</b> metrics of every aligned method cell (its seeds averaged): the "
            "\"best balance\" the paper's claim is about, beside the highest-safety variant above.</p>"
            f"<ul>{''.join(rows)}</ul>")
