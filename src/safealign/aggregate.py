"""Concatenate per-variant metrics into one tidy table (and the judges' disagreements)."""

from __future__ import annotations

import argparse

from . import io
from .metrics import COLUMNS


def main() -> None:
    import pandas as pd

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--metrics", nargs="+", required=True)
    p.add_argument("--disagreements", nargs="*", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--out-disagreements", required=True)
    args = p.parse_args()
    frames = [pd.read_csv(f, keep_default_na=False, na_values=[""]) for f in args.metrics]
    table = pd.concat(frames, ignore_index=True)[COLUMNS]
    table["group"] = table["group"].fillna("")
    with io.atomic_path(args.out) as tmp:
        table.to_csv(tmp, index=False)
    rows = [r for f in args.disagreements for r in io.read_jsonl(f)]
    io.write_jsonl(args.out_disagreements, rows)


if __name__ == "__main__":
    main()
