#!/usr/bin/env python
"""Judging throughput (bench/run.py item 7): responses per second of each configured judge on the
tiny world, through the workflow's own judge code (safealign.judge.__main__.run_judge).

    python bench/judge_tp.py --workdir DIR [--config config/config.yaml] [--variant base] [--repeats 3]

``DIR`` holds a finished tiny-grid run (``DIR/results``). Each judge judges every response of
``--variant`` on the benchmarks it applies to: once cold (the call that loads its model), then
``--repeats`` warm calls. Prints one JSON line per judge.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))


def judge_params(config: dict, judge: str, results: Path) -> dict:
    """The judge's params as the workflow builds them (safealign.dag), a world judge's model under
    ``results``."""
    from safealign.dag import Dag

    spec = json.loads(Dag(config).judge_params(judge))
    if "world" in config["judges"][judge].get("model", {}):
        spec["model"] = {"path": str(results / "judges" / judge / "model")}
    return spec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--config", type=Path, default=Path(__file__).resolve().parents[1] / "config" / "config.yaml")
    p.add_argument("--variant", default="base")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    from safealign.cli import tune_malloc

    tune_malloc()  # as every workflow job's setup does
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import yaml

    from safealign import io
    from safealign.judge.__main__ import run_judge

    config = yaml.safe_load(args.config.read_text())
    results = args.workdir / "results"
    model = next(iter(config["models"]))
    for judge, spec in config["judges"].items():
        rows = []
        for bench, bspec in config["benchmarks"].items():
            if bspec["kind"] in spec["applies_to"]:
                rows += io.read_jsonl(results / "generations" / model / args.variant / f"{bench}.jsonl")
        params = judge_params(config, judge, results)
        if params["type"] != "refusal":
            import torch

            torch.set_num_threads(args.threads)
        t = time.perf_counter()
        run_judge(params, rows)
        cold = time.perf_counter() - t
        warm = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            run_judge(params, rows)
            warm.append(time.perf_counter() - t)
        print(json.dumps({"judge": judge, "type": params["type"], "responses": len(rows), "cold_s": cold,
                          "warm_s": warm, "responses_per_s": [len(rows) / s for s in warm]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
