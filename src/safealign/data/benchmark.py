"""Prepare one benchmark's prompts as normalized records (one loader per benchmark kind).

    python -m safealign.data.benchmark --params JSON [--exclude FILE.jsonl...] --out FILE.jsonl

``--exclude``: prompt files this benchmark's prompts must not share a prompt with (a development
split, config.selection.splits, against every evaluation benchmark's): the job fails naming both
rows.
"""

from __future__ import annotations

import inspect
from typing import Any

from .. import io
from ..cli import parser, setup
from ..specs import BenchmarkSpec
from .loaders import BENCHMARKS, LOADER_OPTIONS, describe_source, load_benchmark


def check_disjoint(name: str, rows: list[dict[str, Any]], exclude: list[str]) -> None:
    """No prompt of ``rows`` (nor the prompt a constructed attack was built from) is in the
    ``exclude`` files; the error names the row and the file row it repeats."""
    from .onpolicy import eval_prompts, norm

    banned = eval_prompts(exclude)
    for i, r in enumerate(rows, start=1):
        for key in ("prompt", "source_prompt"):
            hit = banned.get(norm(r[key])) if r.get(key) else None
            if hit:
                raise ValueError(f"benchmark {name!r} row {i} (id {r.get('id')!r}) repeats an evaluation "
                                 f"prompt: {hit}; a development split must be disjoint from the evaluation "
                                 "(config.selection.splits: another offset, seed or file)")


def prepare(params: dict[str, Any] | BenchmarkSpec, out: str, exclude: list[str] | None = None) -> int:
    """The ``benchmark_prompts`` rule: load one benchmark's prompts and write them to ``out``
    (atomically; nothing is written when the source is bad or a prompt is in ``exclude``'s
    files). Returns the number of prompts."""
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
    check_disjoint(spec.name, rows, exclude or [])
    return io.write_jsonl(out, [{**r, "benchmark": spec.name} for r in rows])


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--exclude", nargs="*", default=[], help="prompt files none of this benchmark's may repeat")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    prepare(setup(args), args.out, args.exclude)


if __name__ == "__main__":
    main()
