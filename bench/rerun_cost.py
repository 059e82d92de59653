#!/usr/bin/env python
"""What typical single edits rerun on a grid, in jobs and requested GPU-hours, with generation and
judging per variant (``variant``: one generate job per variant over every benchmark, one judge
job per (variant, judge)) and per grid cell (``cell``: the workflow's layout).

    PYTHONPATH=src python bench/rerun_cost.py [config/paper.yaml]

GPU-hours requested: each rerun job's ``gpu`` x ``runtime`` (minutes) from the config's resources
(safealign.dag.Dag.resource), what a Slurm run books; not what it uses. Jobs counted: the ones a
finished grid reruns, from the edit's own jobs down to the report.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from types import SimpleNamespace

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from safealign import grid  # noqa: E402
from safealign.configload import load_config  # noqa: E402
from safealign.dag import Dag  # noqa: E402


def load(path: Path) -> dict:
    config = yaml.safe_load(path.read_text())
    load_config(config, [str(path)], REPO / "workflow" / "schemas" / "config.schema.yaml")
    return config


def cost(d: Dag, jobs: list[tuple[str, dict]]) -> tuple[int, float]:
    """(jobs, GPU-hours requested) of (resource family, wildcards) jobs."""
    hours = 0.0
    for family, w in jobs:
        ns = SimpleNamespace(**w)
        hours += d.resource(family, "gpu", ns, 1, w.get("judge")) * d.resource(family, "runtime", ns, 1,
                                                                                 w.get("judge")) / 60
    return len(jobs), hours


def rerun(config: dict, layout: str, variants: list, benchmarks: set[str], judges: dict[str, set[str]],
          prompts: int = 0, train: bool = False) -> list[tuple[str, dict]]:
    """The jobs rerun when ``variants`` regenerate ``benchmarks`` and judge j judges ``judges[j]``
    anew (cells; in the variant layout a touched (variant, judge) redoes all its benchmarks)."""
    d = Dag(config)
    jobs = [("default", {})] * prompts
    for v in variants:
        w = {"model": v.model, "variant": v.name}
        if train:
            jobs += [("train", w), ("capability", w)]
        if benchmarks and d.serving_of(SimpleNamespace(**w))["mode"] == "merged":
            jobs.append(("merge", w))
        if benchmarks:
            jobs += [("generate", w)] if layout == "variant" else [("generate", w)] * len(benchmarks)
        for j, judged in judges.items():
            if not judged:
                continue
            if layout == "variant":
                jobs.append(("judge", {**w, "judge": j}))
            else:
                jobs += [("judge", {**w, "judge": j})] * len(judged)
        jobs.append(("default", w))  # metrics
    return jobs + [("default", {}), ("default", {})]  # aggregate, report


def table(path: Path) -> list[tuple[str, str, tuple, tuple]]:
    c = load(path)
    d = Dag(c)
    variants = list(d.variants.values())
    rows = []
    bench = "xstest" if "xstest" in c["benchmarks"] else next(iter(c["benchmarks"]))

    def judged_for(config: dict, benches: set[str], only: str | None = None) -> dict[str, set[str]]:
        return {j: {b for b in grid.benchmarks_for(config, j) if b in benches}
                for j in config["judges"] if only in (None, j)}

    all_b = set(c["benchmarks"])
    # 1. one benchmark's generation setting
    for layout in ("variant", "cell"):
        rows.append((f"benchmarks.{bench}.generation (one benchmark's sampling)", layout,
                     cost(d, rerun(c, layout, variants, all_b if layout == "variant" else {bench},
                                   judged_for(c, all_b) if layout == "variant" else judged_for(c, {bench})))))
    # 2. a new benchmark of the same kind
    c2 = copy.deepcopy(c)
    c2["benchmarks"][f"{bench}_2"] = copy.deepcopy(c["benchmarks"][bench])
    d2 = Dag(c2)
    all2 = set(c2["benchmarks"])
    for layout in ("variant", "cell"):
        rows.append(("a new benchmark", layout,
                     cost(d2, rerun(c2, layout, variants, all2 if layout == "variant" else {f"{bench}_2"},
                                    judged_for(c2, all2) if layout == "variant" else judged_for(c2, {f"{bench}_2"}),
                                    prompts=1))))
    # 3. one judge's setting
    j = "llama_guard" if "llama_guard" in c["judges"] else next(iter(c["judges"]))
    for layout in ("variant", "cell"):
        rows.append((f"judges.{j} (one judge's setting)", layout,
                     cost(d, rerun(c, layout, variants, set(), judged_for(c, all_b, j)))))
    # 4. a judge applies to one more benchmark kind
    tox = next((k for k, s in c["judges"].items() if bench not in grid.benchmarks_for(c, k)), None)
    if tox:
        c4 = copy.deepcopy(c)
        c4["judges"][tox]["applies_to"] = list(c["judges"][tox]["applies_to"]) + [c["benchmarks"][bench]["kind"]]
        gained = set(grid.benchmarks_for(c4, tox)) - set(grid.benchmarks_for(c, tox))
        for layout in ("variant", "cell"):
            judged = {tox: set(grid.benchmarks_for(c4, tox)) if layout == "variant" else gained}
            rows.append((f"judges.{tox}.applies_to + {c['benchmarks'][bench]['kind']}", layout,
                         cost(Dag(c4), rerun(c4, layout, variants, set(), judged))))
    # 5. one method's setting (one variant's whole chain)
    trained = [v for v in variants if v.method is not None][:1]
    for layout in ("variant", "cell"):
        rows.append(("one method's setting (e.g. beta)", layout,
                     cost(d, rerun(c, layout, trained, all_b, judged_for(c, all_b), train=True))))
    return rows


def main(argv: list[str]) -> None:
    path = REPO / (argv[0] if argv else "config/paper.yaml")
    print(f"{path.relative_to(REPO)}: jobs rerun / GPU-hours requested, per variant -> per cell")
    print("| edit | jobs (per variant) | jobs (per cell) | GPU-h requested (per variant) | GPU-h (per cell) |")
    print("|---|---|---|---|---|")
    rows = table(path)
    for (name, _, (n0, h0)), (_, _, (n1, h1)) in zip(rows[::2], rows[1::2], strict=True):
        print(f"| {name} | {n0} | {n1} | {h0:.0f} | {h1:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1:])
