"""Resumable progress for per-item jobs (generation, judging): finished work is kept in shards.

A job over ``n`` items runs them in shards of ``size`` consecutive items. Each finished shard is
written atomically to ``<progress>/shard-<k>.jsonl``, so a shard file is complete or absent. A rerun
of a killed or pre-empted job with the same ``key`` (what the rows depend on: params, input hashes,
shard size) reads the finished shards instead of redoing them; a different key discards them. The
caller writes its final file atomically from the rows, then removes the progress directory with
:func:`clean`. The progress directory is not a rule output, so Snakemake never deletes it when a
job fails; it sits next to the output as ``.<output name>.shards``.

Hand-written: Snakemake and the generation / judge backends have no notion of partial progress.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import io

log = logging.getLogger(__name__)

# Prompts (or rows) per shard: at most this much work is redone after a pre-emption. Large enough
# that vLLM still batches well, small enough that the paper's 15k-31k prompt sets make 30-60 shards.
DEFAULT_SHARD_SIZE = 512

Work = Callable[[int, int, int], tuple[list[dict[str, Any]], Any]]


def progress_dir(out: str | os.PathLike) -> Path:
    """Where the shards of output file ``out`` live (a hidden sibling, not a declared output)."""
    out = Path(out)
    return out.parent / f".{out.name}.shards"


def file_stamp(path: str | os.PathLike | None) -> Any:
    """What identifies a file's or directory's content cheaply: sha256 of a small text file, else
    (name, size, mtime) of each file (an adapter or model directory that is rewritten changes it)."""
    if not path:
        return None
    path = Path(path)
    if path.is_file():
        return io.sha256_file(path)
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in path.rglob("*") if p.is_file())


def run_sharded(progress: Path, key: dict[str, Any], n: int, size: int, work: Work,
                what: str = "items") -> tuple[list[dict[str, Any]], Any]:
    """Rows of ``work(k, lo, hi)`` over the shards ``[lo, hi)`` of ``range(n)``, in order, and the
    ``meta`` the last computed shard returned (kept in ``<progress>/meta.json`` for reruns).

    Shards finished by an earlier run with the same ``key`` are read back, not recomputed.
    """
    if size < 1:
        raise ValueError(f"shard size must be >= 1, got {size}")
    if n == 0:
        return work(0, 0, 0)
    key_text = json.dumps({**key, "n": n, "shard_size": size}, sort_keys=True, default=str) + "\n"
    key_file, meta_file = progress / "key.json", progress / "meta.json"
    if progress.exists() and (not key_file.exists() or key_file.read_text(encoding="utf-8") != key_text):
        log.info("discarding the shards in %s: they were made for other settings or inputs", progress)
        shutil.rmtree(progress)
    if not key_file.exists():
        io.write_text(key_file, key_text)
    rows: list[dict[str, Any]] = []
    meta: Any = None
    n_shards = (n + size - 1) // size
    for k, lo in enumerate(range(0, n, size)):
        hi = min(n, lo + size)
        shard = progress / f"shard-{k:06d}.jsonl"
        if shard.exists():
            part = io.read_jsonl(shard)
            log.info("shard %d/%d (%s %d-%d): finished by an earlier run, %d rows read back",
                     k + 1, n_shards, what, lo, hi - 1, len(part))
        else:
            part, meta = work(k, lo, hi)
            io.write_json(meta_file, meta)
            io.write_jsonl(shard, part)
            log.info("shard %d/%d (%s %d-%d): computed, %d rows", k + 1, n_shards, what, lo, hi - 1, len(part))
        rows.extend(part)
    if meta is None and meta_file.exists():
        meta = io.read_json(meta_file)
    return rows, meta


def clean(progress: Path) -> None:
    """Remove a progress directory once the final output is written."""
    shutil.rmtree(progress, ignore_errors=True)
