"""Entry points of the tiny world's rules.

    python -m safealign.world data  --params JSON --outdir DIR
    python -m safealign.world base  --params JSON --corpus FILE --out DIR --stats FILE
    python -m safealign.world judge --params JSON --examples FILE --out DIR --validation FILE
    python -m safealign.world toxicity --params JSON --examples FILE --out DIR --validation FILE
"""

from __future__ import annotations

import csv
import io as _io
import sys
from dataclasses import fields
from pathlib import Path

from .. import io
from ..cli import parser, setup
from . import build, data

FILES = {
    "corpus": "corpus.jsonl", "preference": "preference.jsonl", "alert": "alert.jsonl",
    "alert_adversarial": "alert_adversarial.jsonl", "xstest": "xstest.csv", "rtp": "rtp.jsonl",
    "capability": "capability.jsonl", "judge": "judge.jsonl", "toxicity": "toxicity.jsonl",
}


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
    argv = sys.argv[1:] if argv is None else argv
    what, rest = argv[0], argv[1:]
    p = parser(f"tiny world: {what}")
    if what == "data":
        p.add_argument("--outdir", type=Path, required=True)
        args = p.parse_args(rest)
        write_data(setup(args), args.outdir)
        return
    p.add_argument("--out", type=Path, required=True)
    if what == "base":
        p.add_argument("--corpus", required=True)
        p.add_argument("--stats", required=True)
        args = p.parse_args(rest)
        params = setup(args)
        with io.atomic_dir(args.out) as tmp:
            stats = build.build_base_model(io.read_jsonl(args.corpus), params, tmp, params["seed"])
        io.write_json(args.stats, io.provenance(**stats))
        return
    p.add_argument("--examples", required=True)
    p.add_argument("--validation", required=True)
    args = p.parse_args(rest)
    params = setup(args)
    fn = {"judge": build.build_judge, "toxicity": build.build_toxicity_classifier}[what]
    with io.atomic_dir(args.out) as tmp:
        stats = fn(io.read_jsonl(args.examples), params, tmp, params["seed"])
    io.write_jsonl(args.validation, stats.pop("validation"))


if __name__ == "__main__":
    main()
