"""The warm interpreter (safealign.warm): a job runs in a fork of the server exactly as it would
cold (its stdin / stdout / stderr, cwd, argv, environment, exit status), runs cold whenever its
environment differs or there is no server, and dies with its client.

The servers here preload one small stdlib module (``wave``, which nothing else imports) as the
marker of a warm run, so these tests cost about a second each. That the real stages give the same
bytes warm as cold is shown by tests/test_slurm.py (Slurm jobs run cold, the local run warm, and
every output file is compared) and by tests/test_workflow.py (the tiny grid's model jobs ran warm).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safealign import warm

REPO = Path(__file__).resolve().parents[1]
MARKER = "wave"


def _env(**extra: str) -> dict[str, str]:
    # PYTEST_CURRENT_TEST changes between a fixture's setup and the test: not the environment of a job.
    env = {k: v for k, v in os.environ.items() if k not in (warm.ENV_VAR, "PYTEST_CURRENT_TEST")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


@pytest.fixture
def server(tmp_path):
    sock = str(tmp_path / "s")
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "safealign.warm", "serve", "--socket", sock, "--preload", MARKER],
                            env=_env(), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while not os.path.exists(sock):
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "server.log").read_text()
        time.sleep(0.05)
    yield sock, proc
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _probe(sock: str, *args: str, cwd: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "safealign.job", "warm", "probe", "--module", MARKER, *args],
                          env=_env(**{warm.ENV_VAR: sock}, **env), cwd=cwd, input=stdin, capture_output=True,
                          text=True, timeout=120)


def test_a_job_runs_in_a_fork_with_the_clients_stdio_cwd_argv_and_exit_status(server, tmp_path):
    sock, _ = server
    work = tmp_path / "job"
    work.mkdir()
    res = _probe(sock, "--exit", "3", cwd=work, stdin="from the client\n")
    assert res.returncode == 3, res.stderr
    out = json.loads(res.stdout.splitlines()[0])
    assert out["imported"] == {MARKER: True}, "the job did not run in the server's fork"
    assert out["pid"] != os.getpid()
    assert out["cwd"] == str(work) and out["sys_path0"] == str(work)
    assert out["argv"][1:] == ["probe", "--module", MARKER, "--exit", "3"]
    assert out["argv"][0].endswith("safealign/warm.py")
    assert out["stdin"] == "from the client\n"
    assert "probe: stderr line" in res.stderr
    assert "ran in a fork of the warm server" in res.stderr and "exit 3" in res.stderr
    # The line the report's cost table reads the job's CPU time from (safealign.report.cost_tables).
    from safealign._warm_client import logged_usage

    cpu_s, rss_mb = logged_usage(res.stderr)
    assert cpu_s >= 0 and rss_mb > 0


def test_each_warm_job_draws_fresh_randomness(server, tmp_path):
    """A new interpreter seeds ``random`` (and numpy) from the OS; forks of one server would all
    start from its state without the reseeding in each job."""
    sock, _ = server
    draws = [json.loads(_probe(sock, cwd=tmp_path).stdout.splitlines()[0]) for _ in range(2)]
    assert all(d["imported"] == {MARKER: True} for d in draws)
    assert draws[0]["random"] != draws[1]["random"]


def test_another_environment_runs_cold_and_says_which_variable(server, tmp_path):
    sock, _ = server
    res = _probe(sock, cwd=tmp_path, SAFEALIGN_PROBE="x", OMP_NUM_THREADS="7")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.splitlines()[0])
    assert out["imported"] == {MARKER: False}
    assert out["env"] == {"SAFEALIGN_PROBE": "x", "OMP_NUM_THREADS": "7"}
    assert "running cold" in res.stderr and "OMP_NUM_THREADS, SAFEALIGN_PROBE" in res.stderr


def test_a_venv_of_the_same_python_is_another_interpreter_and_runs_cold(server, tmp_path):
    """A venv's ``python`` links to the base interpreter that the server runs (the same binary once
    links are resolved), but its packages are others (the vLLM venv's vllm): only ``sys.prefix``
    tells them apart, and a job started with it must run in its own process."""
    sock, _ = server
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    assert os.path.realpath(python) == os.path.realpath(sys.executable)  # the case that fooled a path check
    res = subprocess.run([str(python), "-m", "safealign.job", "warm", "probe", "--module", MARKER],
                         env=_env(**{warm.ENV_VAR: sock}), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout.splitlines()[0])["imported"] == {MARKER: False}, "the venv's job ran warm"
    assert "running cold" in res.stderr and f"(prefix {venv})" in res.stderr, res.stderr


def test_rule_commands_name_the_job_entry_point(repo):
    """Where a job runs is visible in its command: every rule starts ``python -m safealign.job``."""
    from safealign.dag import Dag

    assert " -m safealign.job generate --params" in Dag.shell("generate", "--params {params.cfg:q}")
    rules = "".join(p.read_text() for p in (repo / "rules").glob("*.smk"))
    assert "shell_cmd(" in rules and " -m safealign." not in rules


def test_per_job_variables_do_not_make_a_job_cold_and_reach_it(server, tmp_path):
    """bash's PWD / SHLVL and Snakemake's TMPDIR differ per job: compared, they would make every
    job cold; the job still sees its own values."""
    sock, _ = server
    res = _probe(sock, cwd=tmp_path, TMPDIR=str(tmp_path), SHLVL="9")
    out = json.loads(res.stdout.splitlines()[0])
    assert out["imported"] == {MARKER: True}, res.stderr


def test_no_server_runs_cold(tmp_path):
    res = _probe(str(tmp_path / "no-such-socket"), "--exit", "4", cwd=tmp_path)
    assert res.returncode == 4
    assert json.loads(res.stdout.splitlines()[0])["imported"] == {MARKER: False}
    assert "warm" not in res.stderr


def test_killing_the_client_kills_the_job(server, tmp_path):
    sock, _ = server
    client = subprocess.Popen([sys.executable, "-m", "safealign.job", "warm", "probe", "--sleep", "300"],
                              env=_env(**{warm.ENV_VAR: sock}), cwd=tmp_path, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job = json.loads(client.stdout.readline())["pid"]
    assert job != client.pid
    os.kill(job, 0)  # running, in the server's fork
    client.send_signal(signal.SIGTERM)
    client.wait(timeout=30)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            os.kill(job, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    pytest.fail(f"job {job} outlived its client")


def test_the_server_exits_with_its_parent_and_removes_its_socket(tmp_path):
    parent = subprocess.Popen(["sleep", "300"])
    sock = str(tmp_path / "s")
    proc = subprocess.Popen([sys.executable, "-m", "safealign.warm", "serve", "--socket", sock, "--preload", MARKER,
                             "--parent", str(parent.pid)], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while not os.path.exists(sock):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    parent.kill()
    parent.wait()
    assert proc.wait(timeout=30) == 0
    assert not os.path.exists(sock)


@pytest.mark.parametrize("local_exec, env, reason", [
    (False, {}, "not the local executor"),
    (True, {warm.ENV_VAR: "0"}, "SAFEALIGN_WARM=0"),
])
def test_not_started_off_the_local_executor_or_when_turned_off(local_exec, env, reason, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(warm.ENV_VAR, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert warm.start(local_exec, tmp_path / "warm.log", preload=[MARKER]) is None
    assert reason in capsys.readouterr().err
    assert not (tmp_path / "warm.log").exists()


def test_start_points_jobs_at_the_server_and_stop_ends_it(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(warm.ENV_VAR, raising=False)
    if warm.enabled(True):  # a GPU machine: never started there
        assert warm.start(True, tmp_path / "warm.log", preload=[MARKER]) is None
        return
    monkeypatch.setenv("PYTHONPATH", _env()["PYTHONPATH"])
    server = warm.start(True, tmp_path / "warm.log", preload=[MARKER], wait_s=60)
    assert "jobs run in forks of a warm interpreter" in capsys.readouterr().err
    try:
        assert os.environ[warm.ENV_VAR] == server.sock_path and os.path.exists(server.sock_path)
        # A job as Snakemake starts one: the environment of `snakemake` plus a threads-1 job's variables.
        env = {**os.environ, **{v: "1" for v in warm.THREAD_VARS}}
        res = subprocess.run([sys.executable, "-m", "safealign.job", "warm", "probe", "--module", MARKER], env=env,
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert json.loads(res.stdout.splitlines()[0])["imported"] == {MARKER: True}, res.stderr
    finally:
        server.stop()
    assert server.proc.returncode == 0 and not os.path.exists(server.sock_path)
    assert warm.ENV_VAR not in os.environ
    assert "stopped after 1 jobs" in (tmp_path / "warm.log").read_text()


def test_a_no_model_stage_does_not_wait_for_a_starting_server(tmp_path):
    """The run's first jobs (world data, benchmark prompts, ...) import no model library: they run
    at once in their own process rather than wait out the server's imports."""
    from safealign._warm_client import STARTING, STARTUP_WAIT_S, no_wait

    (tmp_path / STARTING).touch()  # a server that is importing and never listens
    out = subprocess.run([sys.executable, "-m", "safealign.job", "metrics", "--help"],
                         env=_env(**{warm.ENV_VAR: str(tmp_path / "s")}), cwd=tmp_path, capture_output=True,
                         text=True, timeout=STARTUP_WAIT_S - 10)
    assert out.returncode == 0 and "--params" in out.stdout, out.stderr
    assert no_wait(["safealign.world", "data", "--params", "{}"]) and no_wait(["safealign.report", "--params", "{}"])
    assert not no_wait(["safealign.world", "base", "--params", "{}"]) and not no_wait(["safealign.train.run", "train"])


def test_a_job_started_while_the_server_imports_waits_for_it(tmp_path):
    """Snakemake starts the first jobs while the server is still importing torch: they wait for it
    (its ``starting`` file) instead of importing the same libraries themselves."""
    from safealign._warm_client import STARTING

    sock = str(tmp_path / "s")
    (tmp_path / STARTING).touch()
    client = subprocess.Popen([sys.executable, "-m", "safealign.job", "warm", "probe", "--module", MARKER],
                              env=_env(**{warm.ENV_VAR: sock}), cwd=tmp_path, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    assert client.poll() is None, "the client did not wait for the starting server"
    server = subprocess.Popen([sys.executable, "-m", "safealign.warm", "serve", "--socket", sock, "--preload", MARKER],
                              env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        out, err = client.communicate(timeout=60)
        assert json.loads(out.splitlines()[0])["imported"] == {MARKER: True}, err
        assert not (tmp_path / STARTING).exists()
    finally:
        server.terminate()
        server.wait(timeout=30)
