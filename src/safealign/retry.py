"""Retries that fit the failure: a retried Slurm job asks for more of what ran out, not of everything.

Snakemake calls a rule's resource functions again for each attempt, with ``attempt`` only: it does not
say why the last attempt failed. Slurm does, in the job's own log, which the executor plugin keeps
for failed jobs (``slurm-logdir``/rule_<rule>/<wildcards>/<slurm job id>.log): slurmstepd writes

    slurmstepd: error: *** JOB 42 ON node1 CANCELLED AT 2026-11-30T09:00:00 DUE TO TIME LIMIT ***
    slurmstepd: error: Detected 1 oom_kill event in StepId=42.batch. Some of the step tasks have been OOM Killed.

:func:`failures` reads those logs (written since this Snakemake run started) and counts each kind;
:func:`scaled` grows ``mem_mb`` by the out-of-memory failures and ``runtime`` by the time-outs. A
failure whose reason no log tells (another error, another executor, no log) grows both, as a plain
``value * attempt`` would. Written here because neither Snakemake nor the plugin passes the reason on.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

OUT_OF_MEMORY = "OUT_OF_MEMORY"
TIMEOUT = "TIMEOUT"
# What slurmstepd / slurmd write into a job's output when they end it (Slurm 22-24).
MARKERS = {
    OUT_OF_MEMORY: re.compile(r"oom[_-]kill|Out Of Memory|OUT_OF_MEMORY|exceeded (?:job )?memory limit", re.I),
    TIMEOUT: re.compile(r"DUE TO TIME LIMIT|\bTIMEOUT\b"),
}
# The resource each kind of failure ran out of.
GROWS = {"mem_mb": OUT_OF_MEMORY, "runtime": TIMEOUT}


def classify(log_text: str) -> str | None:
    """The Slurm reason a job log records (OUT_OF_MEMORY or TIMEOUT), or None."""
    for reason, pattern in MARKERS.items():
        if pattern.search(log_text):
            return reason
    return None


def job_log_dir(logdir: str | Path, rule: str, wildcards: list[str]) -> Path:
    """Where the Slurm executor plugin writes a job's logs (its get_job_wildcards naming)."""
    return Path(logdir) / f"rule_{rule}" / "_".join(str(w) for w in wildcards).replace("/", "_")


def failures(logdir: str | Path | None, rule: str, wildcards: list[str], since: float) -> Counter:
    """Reasons of this job's failed Slurm attempts whose logs were written at or after ``since``."""
    counts: Counter = Counter()
    if not logdir:
        return counts
    folder = job_log_dir(logdir, rule, wildcards)
    if not folder.is_dir():
        return counts
    for log in folder.glob("*.log"):
        try:
            if log.stat().st_mtime < since:
                continue
            reason = classify(log.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        if reason:
            counts[reason] += 1
    return counts


def scaled(key: str, base: int, attempt: int, counts: Counter) -> int:
    """``base`` for attempt ``attempt``: grown once per earlier failure that ran out of ``key``, and
    once per earlier failure of unknown reason."""
    earlier = max(0, attempt - 1)
    known = sum(counts.values())
    unknown = max(0, earlier - known)
    return base * (1 + min(counts.get(GROWS[key], 0), earlier) + unknown)
