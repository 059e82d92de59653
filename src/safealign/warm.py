"""A warm interpreter for local runs: one server imports torch, transformers, TRL, peft, datasets
and lm-eval once, and every job's ``python -m safealign.<stage> ...`` runs in a fork of it.

Why: on the default tiny grid most model jobs spend 3-6 s of their 5-15 s importing these
libraries, in about 90 jobs (bench/README.md, "Benchmarks", item 1). Hand-written because no library
does this for independent command lines: ``multiprocessing.forkserver`` serves only the process
that started it (its address and key are private to it).

How a job runs warm:

1. ``workflow/Snakefile``'s ``onstart`` calls :func:`start` (local executor only, never on Slurm,
   never in a dry run): the server starts, imports :data:`PRELOAD`, then listens on a Unix socket
   whose path goes into ``$SAFEALIGN_WARM``, which every job inherits. ``onsuccess`` / ``onerror``
   stop it; it also exits when the Snakemake process is gone.
2. The job's shell command is unchanged. ``python -m safealign.<stage>`` first imports the package
   ``safealign``, whose ``__init__`` calls :func:`safealign._warm_client.delegate` (standard library
   only): it sends the command line, working directory, environment and its stdin / stdout / stderr
   file descriptors to the server and waits.
3. The server runs the job only if the job's environment equals the one it was started with
   (:func:`fingerprint`, which ignores only the variables bash and Snakemake's tmpdir set per
   job): libraries read many variables once at import (``HF_HUB_OFFLINE``, ``OMP_NUM_THREADS``),
   so a job with any other environment (another thread count, a conda env's PATH) runs cold, as
   before. Otherwise it forks a supervisor, which forks the job: new session, the client's file
   descriptors as 0 / 1 / 2, the client's cwd and environment, ``runpy.run_module`` of the stage
   as ``__main__``; ``safealign`` itself is never preloaded, so the job imports this checkout's code
   fresh. The supervisor sends the exit status and the job's CPU times back; the client exits with
   that status and logs the CPU times (Snakemake's ``benchmark:`` files measure the client only).
   If the client dies (Snakemake cancels the job), the supervisor kills the job's process group.

A job runs cold whenever anything is missing: no ``$SAFEALIGN_WARM``, no server, another
environment, ``python`` with options before ``-m`` (``-X importtime``). ``SAFEALIGN_WARM=0`` in the
environment of ``snakemake`` turns it off. The server never runs a job itself and starts no
threads of its own before it forks (:func:`serve` refuses to serve if an import started CUDA).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import runpy
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from ._warm_client import ENV_VAR, MAX_MESSAGE, RAN_WARM, STARTING, comparable_env, fingerprint, interpreter

# What the model stages import (measured with `python -X importtime` on each stage's job):
# importing them once here is the whole point. Missing ones (another env) are skipped.
PRELOAD = (
    "torch",
    "transformers",
    "transformers.models.llama.modeling_llama",
    "transformers.trainer",
    "transformers.generation.utils",
    "tokenizers",
    "safetensors.torch",
    "datasets",
    "peft",
    "trl",
    "trl.trainer.dpo_trainer",
    "trl.trainer.kto_trainer",
    "trl.trainer.sft_trainer",
    "trl.experimental.orpo",
    "trl.experimental.cpo",
    "lm_eval",
    "lm_eval.evaluator",
    "pandas",
    "jinja2",
    "tqdm.auto",
)
# Snakemake's own per-job settings of the thread variables are compared like the rest: the server
# is started with a threads-1 job's values (config.yaml's resources), other thread counts run cold.
THREAD_VARS = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


# ---------------------------------------------------------------- server

_SET_BY_IMPORTS: dict[str, str] = {}
_SERVER_ENV: dict[str, str] = {}


def _preload(modules: tuple[str, ...] | list[str]) -> list[str]:
    import importlib

    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except Exception as exc:  # noqa: BLE001 - an env without it: its jobs import what they have
            print(f"safealign.warm: not preloaded: {name} ({type(exc).__name__}: {exc})", flush=True)
    return loaded


def _cuda_started() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_initialized())


def serve(sock_path: str, parent: int | None, preload: tuple[str, ...] | list[str] = PRELOAD,
          own_dir: bool = False) -> int:
    """Import ``preload``, listen on ``sock_path`` and fork a job per request until ``parent`` dies
    or SIGTERM. Single-threaded: forking a process with threads could copy a held lock.
    ``own_dir``: the socket's directory is the server's (:func:`start` made it); removed at the end,
    so clients waiting for the socket to appear stop waiting."""
    try:
        return _serve(sock_path, parent, preload)
    finally:
        _not_starting(sock_path)
        if own_dir:
            shutil.rmtree(os.path.dirname(sock_path), ignore_errors=True)


def _serve(sock_path: str, parent: int | None, preload: tuple[str, ...] | list[str]) -> int:
    started = time.time()
    env_fp = fingerprint(dict(os.environ), sys.executable, sys.prefix)  # before the imports, which set some
    before = dict(os.environ)
    loaded = _preload(preload)
    if _cuda_started():
        print("safealign.warm: an import initialised CUDA; a fork could not use it: not serving", flush=True)
        return 1
    # The package is imported fresh by every job (its code may change between runs of the server).
    for name in [m for m in sys.modules if m == "safealign" or m.startswith("safealign.")]:
        del sys.modules[name]
    # Set by the imports themselves (lm_eval: HF_XET_HIGH_PERFORMANCE; torch's inductor: its cache
    # dir): a job gets them too, as the same imports would set them in a cold process.
    global _SET_BY_IMPORTS, _SERVER_ENV
    _SERVER_ENV = before
    _SET_BY_IMPORTS = {k: v for k, v in os.environ.items() if before.get(k) != v}
    import gc

    gc.collect()
    gc.freeze()  # fewer pages copied on write in each fork
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    tmp = sock_path + ".tmp"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(tmp)
    listener.listen(64)
    os.replace(tmp, sock_path)  # clients see the socket only once it accepts
    _not_starting(sock_path)
    print(f"safealign.warm: serving on {sock_path}: {len(loaded)} modules preloaded in "
          f"{time.time() - started:.1f} s, {len(sys.modules)} in sys.modules", flush=True)
    served = 0
    try:
        while not stop:
            if parent is not None and not _alive(parent):
                break
            try:
                ready, _, _ = select.select([listener], [], [], 1.0)
            except InterruptedError:
                continue
            if not ready:
                continue
            conn, _ = listener.accept()
            try:
                msg, fds, _, _ = socket.recv_fds(conn, MAX_MESSAGE, 3)
                request = json.loads(msg)
            except (OSError, ValueError) as exc:
                print(f"safealign.warm: bad request: {exc}", flush=True)
                conn.close()
                continue
            refusal = _refusal(request, env_fp, fds)
            if refusal:
                _send(conn, {"accepted": False, "reason": refusal})
                for fd in fds:
                    os.close(fd)
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                listener.close()
                _supervise(conn, fds, request)  # never returns
            for fd in fds:
                os.close(fd)
            conn.close()
            served += 1
    finally:
        listener.close()
        for path in (sock_path, tmp):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    print(f"safealign.warm: stopped after {served} jobs", flush=True)
    return 0


def _not_starting(sock_path: str) -> None:
    try:
        os.unlink(os.path.join(os.path.dirname(sock_path), STARTING))
    except FileNotFoundError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _refusal(request: dict[str, Any], env_fp: str, fds: list[int]) -> str | None:
    if len(fds) != 3:
        return f"expected 3 file descriptors, got {len(fds)}"
    if request.get("fingerprint") != env_fp:
        mine, theirs = comparable_env(_SERVER_ENV), comparable_env(request.get("env") or {})
        differs = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if request.get("interpreter") != interpreter(sys.executable, sys.prefix):
            differs.insert(0, f"the interpreter ({request.get('interpreter')})")
        return "its environment differs from the warm server's in " + (", ".join(differs[:8]) or "nothing?")
    argv = request.get("argv") or []
    if not argv or not str(argv[0]).startswith("safealign."):
        return f"not a safealign stage: {argv[:1]}"
    return None


def _send(conn: socket.socket, obj: dict[str, Any]) -> None:
    try:
        conn.send(json.dumps(obj).encode())
    except OSError:
        pass


def _supervise(conn: socket.socket, fds: list[int], request: dict[str, Any]) -> None:
    """In a fork of the server: fork the job, report its exit status and CPU times, kill it if
    the client goes away. Ends the process (never returns into the server's loop)."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        pid = os.fork()
        if pid == 0:
            conn.close()
            _run_job(fds, request)  # never returns
        for fd in fds:
            os.close(fd)
        _send(conn, {"accepted": True, "pid": pid})
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        poller.register(conn, select.POLLIN | select.POLLHUP)
        poller.register(pidfd, select.POLLIN)
        events = dict(poller.poll())
        if pidfd not in events:  # the client exited or was killed (Snakemake cancelled the job)
            _kill_group(pid, pidfd)
        _, status, usage = os.wait4(pid, 0)
        _send(conn, {"status": os.waitstatus_to_exitcode(status), "user_s": usage.ru_utime,
                     "system_s": usage.ru_stime, "max_rss_kb": usage.ru_maxrss})
    except BaseException:  # noqa: BLE001 - the server's log is the only place to tell
        traceback.print_exc()
    finally:
        os._exit(0)


def _kill_group(pid: int, pidfd: int) -> None:
    """SIGTERM the job's process group, SIGKILL it 5 s later if the job is still there."""
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        if wait_s is not None and select.select([pidfd], [], [], wait_s)[0]:
            return


def _run_job(fds: list[int], request: dict[str, Any]) -> None:
    """In the job's fork: become the client's process as ``python -m <argv...>`` would. Ends the
    process with the stage's exit status."""
    code: int = 1
    try:
        os.setsid()
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _reopen_stdio()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for key, value in _SET_BY_IMPORTS.items():
            os.environ.setdefault(key, value)
        tempfile.tempdir = None  # TMPDIR is the job's (Snakemake's tmpdir resource)
        # Fresh entropy for the generators a new interpreter seeds from the OS at import (every fork
        # would otherwise start from the server's state); torch's default seed is a constant anyway.
        random.seed()
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()
        module, *args = request["argv"]
        sys.argv = [module, *args]
        sys.orig_argv = [sys.executable, "-m", module, *args]
        sys.path[0] = request["cwd"]  # as `python -m` puts the working directory first
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except BaseException:  # noqa: BLE001 - report it as the interpreter would, then exit 1
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a closed stream: nothing left to flush
                pass
        os._exit(code)


def _exit_code(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _reopen_stdio() -> None:
    """New ``sys.stdin`` / ``stdout`` / ``stderr`` on fds 0-2, buffered as a new interpreter would
    buffer them (the server's were for its own log)."""
    import io

    def text(fd: int, mode: str) -> io.TextIOWrapper:
        raw = io.FileIO(fd, mode, closefd=False)
        tty = raw.isatty()
        # PYTHONUNBUFFERED / -u: the server was started with the job's environment.
        unbuffered = bool(getattr(sys.__stdout__, "write_through", False)) and mode == "w"
        buf = raw if unbuffered else (io.BufferedWriter(raw) if mode == "w" else io.BufferedReader(raw))
        return io.TextIOWrapper(buf, encoding=sys.getdefaultencoding() if fd else None,
                                errors="backslashreplace" if fd == 2 else None,
                                line_buffering=(tty or fd == 2) and mode == "w", write_through=unbuffered)

    sys.stdin, sys.stdout, sys.stderr = text(0, "r"), text(1, "w"), text(2, "w")
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


# ---------------------------------------------------------------- lifecycle (workflow/Snakefile)


def warm_logs(results: Path) -> list[str]:
    """The job logs under ``results/logs`` whose job ran in a fork of the warm server."""
    logs = Path(results) / "logs"
    return sorted(str(p.relative_to(logs)) for p in logs.rglob("*.log")
                  if RAN_WARM in p.read_text(encoding="utf-8", errors="replace"))


class Server:
    """A started server: ``stop()`` ends it and removes its socket."""

    def __init__(self, proc: subprocess.Popen, sock_path: str, log: Path):
        self.proc, self.sock_path, self.log = proc, sock_path, log

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if os.environ.get(ENV_VAR) == self.sock_path:
            del os.environ[ENV_VAR]
        shutil.rmtree(os.path.dirname(self.sock_path), ignore_errors=True)


def enabled(local_exec: bool) -> str | None:
    """Why the warm server is not started here (None: it is)."""
    if not local_exec:
        return "not the local executor (cluster jobs run on other machines)"
    if os.environ.get(ENV_VAR) == "0":
        return f"{ENV_VAR}=0"
    if not hasattr(os, "fork") or not hasattr(os, "pidfd_open"):
        return "no fork / pidfd_open on this platform"
    from .cli import gpu_present  # here, not at the top: the server (this module as __main__) imports no
    # safealign module its jobs use, so each job imports the checkout's own

    if gpu_present():
        return "a GPU is present (CUDA must not start before a fork; GPU jobs are long anyway)"
    return None


def start(local_exec: bool, log: Path, threads: int = 1, preload: tuple[str, ...] | list[str] = PRELOAD,
          wait_s: float = 0.0) -> Server | None:
    """Start the server for this process's jobs (their environment: this one plus the thread
    variables of a ``threads`` job) and point ``$SAFEALIGN_WARM`` at it. Returns None, with a line
    on stderr, where :func:`enabled` says no. ``wait_s``: wait that long for it to listen (jobs
    started before that run cold)."""
    why_not = enabled(local_exec)
    if why_not:
        print(f"safealign.warm: not started: {why_not}", file=sys.stderr)
        return None
    sock_dir = tempfile.mkdtemp(prefix="safealign-warm-")
    sock_path = os.path.join(sock_dir, "s")
    Path(sock_dir, STARTING).touch()  # jobs starting meanwhile wait for the server (_warm_client)
    # Not $SAFEALIGN_WARM itself: the server's own `python -m safealign.warm` must not wait for itself.
    env = {**{k: v for k, v in os.environ.items() if k != ENV_VAR}, **{v: str(threads) for v in THREAD_VARS}}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "safealign.warm", "serve", "--socket", sock_path, "--parent", str(os.getpid()),
             "--preload", ",".join(preload), "--own-dir"],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    os.environ[ENV_VAR] = sock_path
    print(f"safealign.warm: jobs run in forks of a warm interpreter (log: {log}; SAFEALIGN_WARM=0 turns it off)",
          file=sys.stderr)
    server = Server(proc, sock_path, log)
    deadline = time.time() + wait_s
    while time.time() < deadline and not os.path.exists(sock_path) and proc.poll() is None:
        time.sleep(0.05)
    return server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m safealign.warm", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="run the server (workflow/Snakefile's onstart starts it)")
    s.add_argument("--socket", required=True)
    s.add_argument("--parent", type=int, help="exit when this process is gone")
    s.add_argument("--preload", default=",".join(PRELOAD), help="comma-separated modules")
    s.add_argument("--own-dir", action="store_true", help="remove the socket's directory at the end")
    probe = sub.add_parser("probe", help="print how this process was started, as JSON (tests)")
    probe.add_argument("--exit", type=int, default=0)
    probe.add_argument("--sleep", type=float, default=0.0)
    probe.add_argument("--module", action="append", default=[], help="report whether it is imported")
    args = p.parse_args(argv)
    if args.cmd == "serve":
        return serve(args.socket, args.parent, [m for m in args.preload.split(",") if m], args.own_dir)
    print(json.dumps({"pid": os.getpid(), "cwd": os.getcwd(), "argv": sys.argv, "sys_path0": sys.path[0],
                      "imported": {m: m in sys.modules for m in args.module}, "random": random.random(),
                      "env": {k: os.environ.get(k) for k in ("SAFEALIGN_PROBE", "OMP_NUM_THREADS")},
                      "stdin": sys.stdin.read()}), flush=True)
    print("probe: stderr line", file=sys.stderr, flush=True)
    if args.sleep:
        time.sleep(args.sleep)
    return args.exit


if __name__ == "__main__":
    sys.exit(main())
