"""Prepare one benchmark's prompts as normalized records (one loader per benchmark kind).

    python -m safealign.data.benchmark --params JSON --out FILE.jsonl
"""

from __future__ import annotations

import inspect
from typing import Any

from .. import io
from ..cli import parser, setup
from ..specs import BenchmarkSpec
from .loaders import BENCHMARKS, LOADER_OPTIONS, describe_source, load_benchmark


def prepare(params: dict[str, Any] | BenchmarkSpec, out: str) -> int:
    """The ``benchmark_prompts`` rule: load one benchmark's prompts and write them to ``out``
    (atomically; nothing is written when the source is bad). Returns the number of prompts."""
    spec = BenchmarkSpec.from_params(params)
    loader = BENCHMARKS[spec.loader]
    accepted = inspect.signature(loader).parameters
    options = {k: getattr(spec, k) for k in LOADER_OPTIONS if getattr(spec, k) is not None and k in accepted}
    rows = load_benchmark(spec.loader, spec.source, **options)
    if not rows:
        where = describe_source(spec.source, spec.name)
        why = (" (only rows with 'challenging' true are kept unless challenging_only is false)"
               if "challenging_only" in accepted and spec.challenging_only else "")
        raise ValueError(f"benchmark {spec.name!r} has no prompts: {where} yielded none with "
                         f"loader {spec.loader!r}, options {options}{why}")
    return io.write_jsonl(out, [{**r, "benchmark": spec.name} for r in rows])


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    prepare(setup(args), args.out)


if __name__ == "__main__":
    main()
