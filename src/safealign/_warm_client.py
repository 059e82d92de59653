"""The client half of :mod:`safealign.warm`: standard library only, imported by
:mod:`safealign.job` (every rule's ``python -m safealign.job <stage> ...``) before anything heavy."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time

ENV_VAR = "SAFEALIGN_WARM"
MAX_MESSAGE = 1 << 20
STARTUP_WAIT_S = 30.0
STARTING = "starting"  # a file beside the socket while the server imports
# Stages (`python -m` module and step) that import no model library (tests/test_imports.py holds
# them to it): while the server is still importing they run in their own process at once (0.1-1.3 s)
# instead of waiting out its ~5 s of imports. Every run's first job is one of them.
NO_WAIT = ("safealign.world data", "safealign.data.preference", "safealign.data.benchmark", "safealign.metrics",
           "safealign.aggregate", "safealign.report")
RAN_WARM = "ran in a fork of the warm server"  # the client's last line in a warm job's log
# ... and the job's own resource use on it (:func:`logged_usage` reads it back for the report).
USAGE = "CPU user {user_s:.2f} s, system {system_s:.2f} s, max RSS {max_rss_kb} kB"
USAGE_PATTERN = r"CPU user ([0-9.]+) s, system ([0-9.]+) s, max RSS ([0-9]+) kB"
# Set per job by bash (PWD, SHLVL, _) or by Snakemake's tmpdir resource, and read by no library at
# import: the warm job gets the client's values anyway (its whole environment is the client's).
# The server's own address is not compared either.
PER_JOB_ENV = frozenset({"PWD", "OLDPWD", "SHLVL", "_", "TMPDIR", "TMP", "TEMP", "TEMPDIR", ENV_VAR})


def comparable_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in PER_JOB_ENV}


def interpreter(executable: str, prefix: str) -> str:
    """An interpreter as the warm server compares it: its binary (links resolved) and its
    ``sys.prefix``. A venv's ``python`` links to the base interpreter that every venv made from it
    shares; only its prefix (the venv's directory, where its packages are) tells them apart."""
    return f"{os.path.realpath(executable)} (prefix {prefix})"


def fingerprint(env: dict[str, str], executable: str, prefix: str) -> str:
    """What a job must share with the warm server to run in a fork of it: the interpreter
    (:func:`interpreter`) and every environment variable but :data:`PER_JOB_ENV`."""
    data = json.dumps([interpreter(executable, prefix), sorted(comparable_env(env).items())])
    return hashlib.sha256(data.encode()).hexdigest()


def logged_usage(log_text: str) -> tuple[float, float] | None:
    """(CPU seconds, peak RSS in MB) from the last :data:`RAN_WARM` line of a job's log; None for
    a job that ran in its own process."""
    import re

    lines = [line for line in log_text.splitlines() if RAN_WARM in line]
    m = re.search(USAGE_PATTERN, lines[-1]) if lines else None
    return (float(m[1]) + float(m[2]), int(m[3]) / 1024) if m else None


def no_wait(argv: list[str]) -> bool:
    """Whether ``python -m`` with ``argv`` (module first) is a :data:`NO_WAIT` stage."""
    return any(argv[: len(stage.split())] == stage.split() for stage in NO_WAIT)


def delegate(argv: list[str]) -> None:
    """Run ``python -m <argv...>`` (a ``safealign.<stage>`` module first) in a fork of the warm
    server and exit with its status; return (and let the caller run it cold, in this process) where
    there is no server or it refuses."""
    path = os.environ.get(ENV_VAR, "")
    orig = getattr(sys, "orig_argv", [])
    # Only a plain `python -m safealign.job ...`: interpreter options such as -X importtime run cold.
    if not path or path == "0" or orig[1:2] != ["-m"] or not argv or not argv[0].startswith("safealign."):
        return
    # The server is still importing (its STARTING file is there, its socket not yet): wait for it
    # rather than import the same libraries here (a no-model stage runs here at once: NO_WAIT). It
    # removes the file once it listens or stops.
    starting = os.path.join(os.path.dirname(path), STARTING)
    if os.path.exists(starting) and not os.path.exists(path) and no_wait(argv):
        return
    deadline = time.monotonic() + STARTUP_WAIT_S
    while not os.path.exists(path) and os.path.exists(starting) and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        conn.connect(path)
    except OSError:
        return
    env = dict(os.environ)
    request = {"argv": argv, "cwd": os.getcwd(), "env": env,
               "fingerprint": fingerprint(env, sys.executable, sys.prefix),
               "interpreter": interpreter(sys.executable, sys.prefix)}
    try:
        socket.send_fds(conn, [json.dumps(request).encode()], [0, 1, 2])
        reply = json.loads(conn.recv(MAX_MESSAGE) or b"{}")
    except (OSError, ValueError):
        conn.close()
        return
    if not reply.get("accepted"):
        print(f"safealign.warm: running cold: {reply.get('reason', 'no answer from the server')}", file=sys.stderr)
        conn.close()
        return
    # The job runs in the server's fork from here on; this process only waits for its status.
    try:
        done = json.loads(conn.recv(MAX_MESSAGE) or b"{}")
    except (OSError, ValueError):
        done = {}
    if "status" not in done:
        print("safealign.warm: the warm server ended before the job reported its status", file=sys.stderr)
        os._exit(1)
    print(f"safealign.warm: {RAN_WARM} (pid {reply.get('pid')}): exit {done['status']}, "
          + USAGE.format(**done), file=sys.stderr, flush=True)
    os._exit(done["status"] if done["status"] >= 0 else 128 - done["status"])
