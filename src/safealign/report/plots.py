"""The report's seaborn figures, each returned as (title, caption, inline PNG <img>).

Every point estimate is drawn with its 95 % bootstrap CI from metrics.csv (``ci_low`` / ``ci_high``).
"""

from __future__ import annotations

import base64
import io as _io
from typing import Any

from ..grid import BASE
from ..metrics import GLOBAL

Figure = tuple[str, str, str]  # (title, caption, <img> html)


def _setup():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.85)
    return plt, sns


# Where png() also writes each figure (the report rule's plots directory, registered for Snakemake's
# own report); None: inline only.
PLOTS_DIR: list = [None]


def png(fig, alt: str) -> str:
    """The figure as an inline <img> (and as <PLOTS_DIR>/<alt>.png when a directory is set)."""
    import html
    import re
    from pathlib import Path

    import matplotlib.pyplot as plt

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    if PLOTS_DIR[0] is not None:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", alt).strip("_") or "plot"
        Path(PLOTS_DIR[0]).mkdir(parents=True, exist_ok=True)
        (Path(PLOTS_DIR[0]) / f"{name}.png").write_bytes(buf.getvalue())
    return (f'<img alt="{html.escape(alt)}" '
            f'src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">')


def _whole(df, metric: str, judge: str | None = None, benchmark: str | None = None):
    sel = df[(df.metric == metric) & (df.group == "")]
    if judge is not None:
        sel = sel[sel.judge == judge]
    if benchmark is not None:
        sel = sel[sel.benchmark == benchmark]
    return sel


def pareto_front(points: dict[str, tuple[float, float]], x_higher: bool, y_higher: bool) -> set[str]:
    """The labels no other point dominates (at least as good on both axes, better on one)."""
    sx, sy = (1 if x_higher else -1), (1 if y_higher else -1)
    front = set()
    for a, (xa, ya) in points.items():
        dominated = any(sx * xb >= sx * xa and sy * yb >= sy * ya and (sx * xb > sx * xa or sy * yb > sy * ya)
                        for b, (xb, yb) in points.items() if b != a)
        if not dominated:
            front.add(a)
    return front


def _pareto_panel(ax, merged, x_name: str, y_name: str, x_higher: bool, y_higher: bool, sns) -> set[str]:
    pts = {r.label: (r.x, r.y) for r in merged.itertuples()}
    front = pareto_front(pts, x_higher, y_higher)
    merged = merged.assign(front=[lab in front for lab in merged.label])
    for r in merged.itertuples():
        color = "tab:blue" if r.front else "0.7"
        if r.label == BASE:
            color = "tab:red"
        ax.errorbar(r.x, r.y, xerr=[[max(r.x - r.x_lo, 0)], [max(r.x_hi - r.x, 0)]],
                    yerr=[[max(r.y - r.y_lo, 0)], [max(r.y_hi - r.y, 0)]], fmt="none", ecolor=color,
                    alpha=0.8 if r.front else 0.45, lw=1, zorder=1)
    sns.scatterplot(data=merged, x="x", y="y", hue="front", palette={True: "tab:blue", False: "0.65"},
                    s=55, ax=ax, legend=False, zorder=2)
    if (merged.label == BASE).any():
        b = merged[merged.label == BASE]
        ax.scatter(b.x, b.y, s=90, marker="X", color="tab:red", zorder=3)
    f = merged[merged.front].sort_values("x")
    if len(f) > 1:
        ax.plot(f.x, f.y, color="tab:blue", lw=1, ls="--", zorder=1)
    for r in merged.itertuples():
        if r.front or r.label == BASE:  # dominated variants stay unlabelled: they crowd the plot
            ax.annotate(r.label, (r.x, r.y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"{x_name} ({'higher' if x_higher else 'lower'} is better)")
    ax.set_ylabel(f"{y_name} ({'higher' if y_higher else 'lower'} is better)")
    return front


def pareto(df, safety_judge: str | None, overrefusal: tuple[str, str] | None) -> list[Figure]:
    """Global safety vs each capability task and vs over-refusal, CI whiskers, dominated grey."""
    plt, sns = _setup()
    if safety_judge is None:
        return []
    safe = _whole(df, "global_safety_score", safety_judge, GLOBAL)
    if not len(safe):
        return []
    panels = []
    cap = df[(df.judge == "lm_eval") & (df.group == "") & ~df.metric.str.endswith("_stderr")]
    for (task, metric), sel in cap.groupby(["benchmark", "metric"], sort=True):
        panels.append((f"{task} ({metric.split(',')[0]})", sel, True))
    if overrefusal:
        sel = _whole(df, "over_refusal_rate", overrefusal[1], overrefusal[0])
        if len(sel):
            panels.append((f"{overrefusal[0]} over-refusal rate", sel, False))
    if not panels:
        return []
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.6), squeeze=False)
    fronts = []
    for ax, (name, sel, higher) in zip(axes[0], panels, strict=True):
        merged = safe[["model", "variant", "label", "value", "ci_low", "ci_high"]].merge(
            sel[["model", "variant", "value", "ci_low", "ci_high"]], on=["model", "variant"], suffixes=("_s", "_o"))
        merged = merged.rename(columns={"value_s": "x", "ci_low_s": "x_lo", "ci_high_s": "x_hi",
                                        "value_o": "y", "ci_low_o": "y_lo", "ci_high_o": "y_hi"})
        merged = merged.fillna({"x_lo": merged.x, "x_hi": merged.x, "y_lo": merged.y, "y_hi": merged.y})
        front = _pareto_panel(ax, merged, f"global safety [{safety_judge}]", name, True, higher, sns)
        fronts.append(f"{name}: {', '.join(sorted(front))}")
        ax.set_title(f"global safety vs {name}")
    fig.tight_layout()
    return [("Trade-offs: global safety vs capability and over-refusal",
             "Each point a variant with its 95 % bootstrap CI on both axes; blue and labelled: the Pareto "
             "front (no other variant at least as good on both axes), grey: dominated variants; red X: "
             "base. Fronts: " + "; ".join(fronts) + ".", png(fig, "pareto"))]


def global_forest(df, judges: list[str]) -> list[Figure]:
    plt, sns = _setup()
    g = df[(df.metric == "global_safety_score") & (df.group == "") & df.judge.isin(judges)]
    if not len(g):
        return []
    order = (g[g.judge == judges[0]].sort_values("value", ascending=False).label.tolist()
             or sorted(g.label.unique()))
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(order) + 1.5))
    offsets = {j: (i - (len(judges) - 1) / 2) * 0.25 for i, j in enumerate(judges)}
    palette = dict(zip(judges, sns.color_palette("deep", len(judges)), strict=True))
    for judge, sel in g.groupby("judge"):
        y = [order.index(lab) + offsets[judge] for lab in sel.label]
        xerr = [(sel.value - sel.ci_low).clip(lower=0), (sel.ci_high - sel.value).clip(lower=0)]
        ax.errorbar(sel.value, y, xerr=xerr,
                    fmt="o", color=palette[judge], label=judge, ms=4, capsize=2)
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.set_xlabel("global safety score (95 % CI)")
    ax.set_xlim(0, 1.02)
    ax.legend(title="judge", loc="lower left", bbox_to_anchor=(1.01, 0))
    return [("Global safety score per variant", "Point estimate and 95 % bootstrap CI (prompts resampled "
             "within each benchmark), per judge; sorted by the first judge's score.", png(fig, "global_safety"))]


def _heatmap(pivot, title: str, sns, plt, vmin=0.0, vmax=1.0, cmap="RdYlGn"):
    fig, ax = plt.subplots(figsize=(1.6 + 0.85 * pivot.shape[1], 0.32 * pivot.shape[0] + 1.8))
    sns.heatmap(pivot, vmin=vmin, vmax=vmax, annot=True, fmt=".2f", cmap=cmap, ax=ax,
                cbar_kws={"label": "safety score"}, annot_kws={"fontsize": 7})
    ax.set_ylabel("variant")
    ax.set_xlabel("")
    ax.set_title(title)
    return fig


def slices(df, parts: list[str], safety_judge: str | None, order: list[str]) -> list[Figure]:
    """Per-category safety heatmaps (each global part) and per-attack-type safety."""
    plt, sns = _setup()
    out = []
    if safety_judge is None:
        return out
    for key, what in (("category", "ALERT category"), ("attack_type", "attack type")):
        for bench in sorted(set(df.benchmark)):
            sel = df[(df.benchmark == bench) & (df.judge == safety_judge) & (df.metric == "safety_score")
                     & df.group.str.startswith(f"{key}=")]
            if not len(sel) or (key == "category" and bench not in parts):
                continue
            pivot = sel.assign(col=sel.group.str.removeprefix(f"{key}=")).pivot_table(
                index="label", columns="col", values="value")
            pivot = pivot.reindex([lab for lab in order if lab in pivot.index])
            fig = _heatmap(pivot, f"{bench}: safety score per {what} [{safety_judge}]", sns, plt)
            n = int(sel.n.median())
            out.append((f"{bench}: safety per {what}",
                        f"Share of responses judged safe per variant and {what} (about {n} prompts per "
                        "cell; each cell's 95 % CI is in metrics.csv).", png(fig, f"{bench}_{key}")))
    return out


def toxicity(df, order: list[str]) -> list[Figure]:
    plt, sns = _setup()
    tox = df[(df.metric == "mean_toxicity") & (df.group == "")]
    if not len(tox):
        return []
    benches = sorted(tox.benchmark.unique())
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(order) + 1.5))
    palette = dict(zip(benches, sns.color_palette("deep", len(benches)), strict=True))
    for i, (bench, sel) in enumerate(tox.groupby("benchmark")):
        off = (i - (len(benches) - 1) / 2) * 0.25
        y = [order.index(lab) + off for lab in sel.label]
        xerr = [(sel.value - sel.ci_low).clip(lower=0), (sel.ci_high - sel.value).clip(lower=0)]
        ax.errorbar(sel.value, y, xerr=xerr,
                    fmt="o", ms=4, capsize=2, color=palette[bench], label=bench)
    ax.set_yticks(range(len(order)), order)
    ax.invert_yaxis()
    ax.set_xlabel("mean toxicity (95 % CI; lower is better)")
    ax.legend(title="benchmark", loc="lower left", bbox_to_anchor=(1.01, 0))
    return [("Toxicity: benign vs adversarial system prompt",
             "Mean toxicity score over every response (all prompts x k samples), per toxicity benchmark, "
             "with its 95 % bootstrap CI (prompts resampled, their k samples together).", png(fig, "toxicity"))]


CURVE_KEYS = {"loss": "loss", "rewards/margins": "reward margin", "logps/chosen": "log-prob chosen",
              "logps/rejected": "log-prob rejected"}


def training_curves(train_logs: dict[str, Any], labels: dict[str, str]) -> list[Figure]:
    """Loss, reward margin and chosen / rejected log-probs per step from each trainer's log history."""
    import pandas as pd

    plt, sns = _setup()
    rows = []
    for key, log in sorted(train_logs.items()):
        for entry in log.get("log_history") or []:
            if "step" not in entry:
                continue
            for k, name in CURVE_KEYS.items():
                if isinstance(entry.get(k), int | float):
                    rows.append({"variant": labels.get(key, key), "step": entry["step"], "quantity": name,
                                 "value": float(entry[k])})
    if not rows:
        return []
    data = pd.DataFrame(rows)
    quantities = [q for q in CURVE_KEYS.values() if q in set(data.quantity)]
    n_var = data.variant.nunique()
    grid = sns.relplot(data=data, x="step", y="value", hue="variant", col="quantity", col_order=quantities,
                       col_wrap=2, kind="line", height=2.8, aspect=1.5, facet_kws={"sharey": False},
                       palette=sns.color_palette("tab20", n_var), linewidth=1)
    grid.set_titles("{col_name}")
    missing = sorted({labels.get(k, k) for k in train_logs} - set(data[data.quantity == "reward margin"].variant))
    note = (f" No reward margin is logged by: {', '.join(missing)} (their trainers log other quantities)."
            if missing and "reward margin" in quantities else "")
    return [("Training curves", "Per optimisation step, from each trainer's log history (train.json "
             "log_history): loss, reward margin (rewards/margins) and the policy's mean log-probability "
             f"of the chosen and rejected responses.{note}", png(grid.figure, "training_curves"))]


__all__ = ["global_forest", "pareto", "pareto_front", "slices", "toxicity", "training_curves"]
