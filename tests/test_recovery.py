"""Recovery after a killed local Snakemake: its jobs stop without writing outputs
(safealign.job's watch on ``$SAFEALIGN_SNAKEMAKE``), its locks are released by the next run
(safealign.runlock), and one plain ``snakemake`` redoes what was left (rerun-incomplete in
workflow/profiles/default)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from safealign import job, runlock, warm

REPO = Path(__file__).resolve().parents[1]
MARKER = "wave"  # a stdlib module nothing else imports: the warm server's preload (tests/test_warm.py)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (warm.ENV_VAR, job.SNAKEMAKE_VAR, "PYTEST_CURRENT_TEST")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.time() + within_s
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_process_identity_tells_a_live_process_from_a_gone_one():
    me = job.process_identity(os.getpid())
    assert me.startswith(f"{os.getpid()}:") and job.alive(me)
    child = subprocess.Popen(["sleep", "30"])
    ident = job.process_identity(child.pid)
    child.kill()
    child.wait()
    assert not job.alive(ident)
    assert not job.alive(f"{os.getpid()}:1")  # the same pid with another start time: a reused pid


@pytest.mark.parametrize("warm_server", [False, True], ids=["cold", "warm"])
def test_a_job_stops_when_its_snakemake_is_gone(warm_server, tmp_path):
    """A job (here the warm module's probe, sleeping 300 s) whose Snakemake dies stops within
    seconds, saying why; run warm, the job in the server's fork is stopped too."""
    snakemake = subprocess.Popen(["sleep", "300"])  # stands for the Snakemake process
    env = _env(**{job.SNAKEMAKE_VAR: job.process_identity(snakemake.pid)})
    server = None
    if warm_server:
        sock = str(tmp_path / "s")
        server = subprocess.Popen([sys.executable, "-m", "safealign.warm", "serve", "--socket", sock,
                                   "--preload", MARKER], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while not os.path.exists(sock) and time.time() < deadline:
            time.sleep(0.05)
        env[warm.ENV_VAR] = sock
    try:
        client = subprocess.Popen([sys.executable, "-m", "safealign.job", "warm", "probe", "--sleep", "300",
                                   "--module", MARKER], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started = json.loads(client.stdout.readline())
        assert started["imported"] == {MARKER: warm_server}
        snakemake.send_signal(signal.SIGKILL)
        snakemake.wait()
        _, err = client.communicate(timeout=20)
        assert client.returncode == 1
        assert f"the Snakemake that started this job (pid {snakemake.pid}) is gone" in err
        assert _gone(started["pid"], within_s=10), "the job outlived its Snakemake"
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)


def test_no_watch_without_a_local_snakemake(monkeypatch):
    monkeypatch.delenv(job.SNAKEMAKE_VAR, raising=False)
    assert job.watch_snakemake() is None  # Slurm jobs: Snakemake on the login node may come and go


def test_stale_locks_of_a_gone_run_are_released_and_live_ones_kept(tmp_path, capsys):
    locks = tmp_path / runlock.LOCKS
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("a\n")  # another, live run's lock: kept
    before = runlock.lock_files(tmp_path)
    (locks / "1.input.lock").write_text("b\n")
    (locks / "1.output.lock").write_text("c\n")
    runlock.record_run(before, tmp_path)
    record = json.loads(runlock.record_path(tmp_path).read_text())
    assert record["locks"] == ["1.input.lock", "1.output.lock"]
    assert runlock.release_stale_locks(tmp_path) == []  # this process is alive: nothing released
    # The same record as a killed Snakemake leaves it.
    dead = subprocess.Popen(["true"])
    dead_identity = job.process_identity(dead.pid)
    dead.wait()
    record["snakemake"] = dead_identity or f"{dead.pid}:0"
    runlock.record_path(tmp_path).unlink()
    runlock.record_path(tmp_path, dead.pid).write_text(json.dumps(record))
    assert runlock.release_stale_locks(tmp_path) == ["1.input.lock", "1.output.lock"]
    assert runlock.lock_files(tmp_path) == {"0.input.lock"}
    assert not list((tmp_path / runlock.STATE).glob(runlock.RECORDS))
    assert "removed 2 lock file(s) left by a Snakemake that ended without releasing them" in capsys.readouterr().err


def test_the_workflow_profile_reruns_incomplete_jobs():
    profile = yaml.safe_load((REPO / "workflow" / "profiles" / "default" / "config.yaml").read_text())
    assert profile["rerun-incomplete"] is True


@pytest.mark.workflow
def test_kill_9_of_snakemake_then_one_plain_command_recovers(default_config, tmp_path):
    """``kill -9`` of a local Snakemake while a training job runs: within seconds no process of the
    run is left and the job's outputs are not there; then one plain ``snakemake`` finishes the run
    (no --unlock, no --rerun-incomplete)."""
    from test_workflow import copy_project

    work = copy_project(tmp_path)
    method = next(m for m, spec in default_config["methods"].items() if spec.get("trainer") == "dpo")
    # One method, trained long enough to be killed mid-job; only its chain is asked for.
    overlay = {"methods": {m: {"enabled": m == method} for m in default_config["methods"]}}
    overlay["methods"][method]["num_train_epochs"] = 12
    (work / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/config.yaml",
                          "overlay.yaml", "--forceall", "-p"], cwd=work, capture_output=True, text=True, timeout=600)
    assert dry.returncode == 0, dry.stderr[-3000:]
    train_json = re.search(r"results/models/[^/\s,]+/[^/\s,]+/train\.json", dry.stdout)[0]
    train_log = work / train_json.replace("results/models/", "results/logs/models/").replace(".json", ".log")
    cmd = [sys.executable, "-m", "snakemake", train_json, "--cores", "2", "--configfile", "config/config.yaml",
           "overlay.yaml"]
    log = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=subprocess.STDOUT, env=_env())
    deadline = time.time() + 900
    while time.time() < deadline and not train_log.exists() and first.poll() is None:
        time.sleep(0.5)
    assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    time.sleep(1)  # the training job is running
    first.send_signal(signal.SIGKILL)
    first.wait()
    log.close()
    # Nothing of the run is left after a few seconds: no process works in the copy.
    deadline = time.time() + 15
    while time.time() < deadline and _processes_in(work):
        time.sleep(0.5)
    assert not _processes_in(work), f"processes outlived the killed Snakemake: {_processes_in(work)}"
    assert not (work / train_json).exists()
    assert list((work / ".snakemake" / "locks").glob("*.lock")), "the killed run left no lock to recover from"
    second = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=1800, env=_env())
    assert second.returncode == 0, second.stderr[-5000:]
    assert "removed" in second.stderr and "lock file(s)" in second.stderr
    assert (work / train_json).exists()
    assert not list((work / ".snakemake" / "locks").glob("*.lock"))


def _processes_in(work: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd == str(work) or cwd.startswith(f"{work}/"):
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found
