"""The report's cost table, read from the jobs' Snakemake ``benchmark:`` TSVs (their path under
``benchmarks_tsv/`` names the rule and grid cell) and, for a job that ran in a fork of the warm
server, from the usage line at the end of its log."""

from __future__ import annotations

from pathlib import Path


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

    from .._warm_client import logged_usage

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
