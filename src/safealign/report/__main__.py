"""``python -m safealign.report``: read the report rule's inputs, write the page (and the plots)."""

from __future__ import annotations

from pathlib import Path

from .. import io, report
from ..cli import parser, setup
from ..specs import ReportSpec
from . import plots
from .cost import cost_tables
from .page import render
from .provenance import variant_metas


def main(argv: list[str] | None = None) -> None:
    import pandas as pd

    p = parser(report.__doc__)
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
    p.add_argument("--selections", nargs="*", default=[],
                   help="results/selection/<model>/<method>.json of each swept method (config.selection)")
    p.add_argument("--out", required=True)
    p.add_argument("--plots-dir", help="also write every figure here as PNG (Snakemake's report items)")
    args = p.parse_args(argv)
    params = ReportSpec.from_params(setup(args))
    plots.PLOTS_DIR[0] = args.plots_dir

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
                                   capability=capability, cwd=Path.cwd(),
                                   selections=[io.read_json(s) for s in args.selections]))


if __name__ == "__main__":
    main()
