"""Recovery in one step after a local Snakemake was killed (``kill -9``, a closed laptop lid, an
out-of-memory kill).

Snakemake locks the files of a run (``.snakemake/locks/*.lock``) and removes the locks when it
ends; a killed Snakemake leaves them, and the next run then refuses to start until ``snakemake
--unlock``. Snakemake's locks do not say which process made them, so this module keeps that
record beside them (``.snakemake/safealign-run-<pid>.json``: the process, its host, its lock files),
written when a run starts (``onstart``) and removed when it ends (``onsuccess`` / ``onerror``).
When the next Snakemake parses the workflow, :func:`release_stale_locks` removes the locks of a
recorded run whose process is gone (on this host), saying so; Snakemake's own
``rerun-incomplete`` (``workflow/profiles/default``) then redoes the jobs it left half-done. A lock
of a run that is still going, or of another host's run, is left alone.

Hand-written because Snakemake has no notion of a stale lock.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

from .job import alive, process_identity

STATE = Path(".snakemake")
LOCKS = STATE / "locks"
RECORDS = "safealign-run-*.json"


def lock_files(root: Path = Path(".")) -> set[str]:
    return {p.name for p in (root / LOCKS).glob("*.lock")}


def record_path(root: Path = Path("."), pid: int | None = None) -> Path:
    return root / STATE / f"safealign-run-{os.getpid() if pid is None else pid}.json"


def release_stale_locks(root: Path = Path(".")) -> list[str]:
    """Remove the lock files of every recorded run whose Snakemake is gone; the names removed."""
    removed = []
    for path in sorted((root / STATE).glob(RECORDS)):
        removed += _release(path, root)
    return removed


def _release(record_path: Path, root: Path) -> list[str]:
    try:
        record = json.loads(record_path.read_text())
        identity, host, locks = record["snakemake"], record["host"], list(record["locks"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if host != socket.gethostname() or alive(identity):
        return []
    removed = []
    for name in locks:
        try:
            (root / LOCKS / name).unlink()
            removed.append(name)
        except FileNotFoundError:
            pass
    record_path.unlink(missing_ok=True)
    if removed:
        print(f"safealign: removed {len(removed)} lock file(s) left by a Snakemake that ended without releasing them "
              f"(pid {identity.split(':')[0]} on {host}); its unfinished jobs are redone (rerun-incomplete)",
              file=sys.stderr)
    return removed


def record_run(locks_before: set[str], root: Path = Path(".")) -> None:
    """At ``onstart`` (the run holds its locks): record this process and the lock files it made
    (those that were not there when the workflow was parsed)."""
    record = {"snakemake": process_identity(os.getpid()), "host": socket.gethostname(),
              "locks": sorted(lock_files(root) - locks_before)}
    if not record["snakemake"]:
        return  # no /proc: no way to tell later whether this process is gone
    path = record_path(root)
    tmp = path.with_suffix(".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def clear_run(root: Path = Path(".")) -> None:
    """At ``onsuccess`` / ``onerror``: Snakemake removes its locks itself."""
    record_path(root).unlink(missing_ok=True)
