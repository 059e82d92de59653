"""Every rule's job starts here: ``python -m safealign.job <stage> [args...]`` runs what
``python -m safealign.<stage> [args...]`` would run, in one of two places, said in the job's log:

- **in a fork of the warm server** (:mod:`safealign.warm`) when a local Snakemake started one
  (``$SAFEALIGN_WARM``) and the server accepts this process as its own kind: the same interpreter
  and ``sys.prefix`` (a venv is its own interpreter) and the same environment. Its log then ends
  with "ran in a fork of the warm server";
- **here, in this process**, otherwise: on Slurm, with ``SAFEALIGN_WARM=0``, in another env (the
  vLLM venv, a conda env), or with interpreter options (``python -X importtime -m ...``).

Either way, in a local run, the job watches the Snakemake that started it
(``$SAFEALIGN_SNAKEMAKE``, set by ``workflow/Snakefile``'s ``onstart``): when that Snakemake is
gone (killed, ``kill -9`` included), the job stops at once, before it writes its outputs (every
output is written to a temporary name and renamed at the end), so a rerun redoes it from scratch.
A warm job is stopped by the server's supervisor when this process exits.

Standard library only until the stage itself is imported.
"""

from __future__ import annotations

import os
import runpy
import sys
import threading
import time

from ._warm_client import delegate

SNAKEMAKE_VAR = "SAFEALIGN_SNAKEMAKE"  # "<pid>:<start time>" of the local Snakemake running the jobs
WATCH_INTERVAL_S = 1.0


def process_identity(pid: int) -> str:
    """``"<pid>:<start time>"``: the start time (``/proc/<pid>/stat``'s 22nd field, in clock ticks
    since boot) tells a process from a later one that reuses its pid. Empty where there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
            start = f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""
    return f"{pid}:{start}"


def alive(identity: str) -> bool:
    """Whether the process :func:`process_identity` described is still running."""
    pid = int(identity.split(":", 1)[0])
    return process_identity(pid) == identity


def watch_snakemake(identity: str | None = None, interval_s: float = WATCH_INTERVAL_S) -> threading.Thread | None:
    """Stop this process (exit status 1, a line on stderr) as soon as the Snakemake process
    ``identity`` (default ``$SAFEALIGN_SNAKEMAKE``) is gone. A daemon thread; None where there is
    nothing to watch (Slurm jobs, runs outside Snakemake)."""
    identity = identity if identity is not None else os.environ.get(SNAKEMAKE_VAR, "")
    if not identity or ":" not in identity:
        return None

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if not alive(identity):
                print(f"safealign.job: the Snakemake that started this job (pid {identity.split(':')[0]}) is gone: "
                      "stopping without writing outputs; rerun snakemake to redo this job", file=sys.stderr, flush=True)
                os._exit(1)

    thread = threading.Thread(target=watch, name="safealign-watch-snakemake", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-"):
        print("usage: python -m safealign.job <stage> [args...]   (runs python -m safealign.<stage> [args...])",
              file=sys.stderr)
        sys.exit(2)
    module = f"safealign.{argv[0]}"
    watch_snakemake()
    delegate([module, *argv[1:]])  # returns only where the job runs here (cold)
    sys.argv = [module, *argv[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
