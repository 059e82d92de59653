"""Entry points of the tiny world's rules.

    python -m safealign.world data  --params JSON --outdir DIR
    python -m safealign.world base  --params JSON --corpus FILE --out DIR --stats FILE
    python -m safealign.world judge --params JSON --examples FILE --out DIR --validation FILE
    python -m safealign.world toxicity --params JSON --examples FILE --out DIR --validation FILE
"""

from __future__ import annotations

import csv
import io as _io
from dataclasses import fields
from pathlib import Path

from .. import io
from ..cli import setup, steps
from . import build, data
from .files import FILES


def write_data(params: dict, outdir: Path) -> None:
    known = {f.name for f in fields(data.WorldParams)}
    world = data.build(data.WorldParams(**{k: v for k, v in params.items() if k in known}))
    for key, name in FILES.items():
        rows = world[key]
        if name.endswith(".csv"):
            buf = _io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            io.write_text(outdir / name, buf.getvalue())
        else:
            io.write_jsonl(outdir / name, rows)


def main(argv: list[str] | None = None) -> None:
    p, step = steps(__doc__)
    step("data", "the world's files").add_argument("--outdir", type=Path, required=True)
    base = step("base", "the base policy, pretrained on the corpus")
    base.add_argument("--corpus", required=True)
    base.add_argument("--stats", required=True)
    base.add_argument("--out", type=Path, required=True)
    for name, what in (("judge", "the Llama-Guard-format safety judge"), ("toxicity", "the toxicity classifier")):
        judge = step(name, what)
        judge.add_argument("--examples", required=True)
        judge.add_argument("--out", type=Path, required=True)
        judge.add_argument("--validation", required=True)
    args = p.parse_args(argv)
    params = setup(args)
    if args.step == "data":
        write_data(params, args.outdir)
        return
    if args.step == "base":
        with io.atomic_dir(args.out) as tmp:
            stats = build.build_base_model(io.read_jsonl(args.corpus), params, tmp, params["seed"])
        io.write_json(args.stats, io.provenance(**stats))
        return
    fn = {"judge": build.build_judge, "toxicity": build.build_toxicity_classifier}[args.step]
    with io.atomic_dir(args.out) as tmp:
        stats = fn(io.read_jsonl(args.examples), params, tmp, params["seed"])
    io.write_jsonl(args.validation, stats.pop("validation"))


if __name__ == "__main__":
    main()
