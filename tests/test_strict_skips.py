"""tests/conftest.py: under SAFEALIGN_REQUIRE_ALL (scripts/test, CI) a skip is a failure naming its reason."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).with_name("conftest.py")

SAMPLE = '''
import pytest
def test_missing_data(): pytest.skip("no data at /nowhere/alert.jsonl")
def test_gpu_machine(): pytest.skip("this machine has a GPU: the checks would run")
@pytest.mark.skipif(True, reason="no vLLM interpreter at /nowhere")
def test_marker(): pass
def test_plain(): assert True
'''


def run(tmp_path: Path, strict: str | None) -> subprocess.CompletedProcess:
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "SAFEALIGN_REQUIRE_ALL"}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    if strict is not None:
        env["SAFEALIGN_REQUIRE_ALL"] = strict
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)


def test_a_fresh_clone_skips_with_the_reason(tmp_path):
    out = run(tmp_path, None)
    assert out.returncode == 0, out.stdout
    assert "1 passed, 3 skipped" in out.stdout
    assert "no data at /nowhere/alert.jsonl" in out.stdout


def test_ci_turns_every_skip_but_the_allowed_ones_into_a_failure(tmp_path):
    out = run(tmp_path, "1")
    assert out.returncode == 1, out.stdout
    assert "1 failed, 1 passed, 1 skipped, 1 error" in out.stdout
    assert "SAFEALIGN_REQUIRE_ALL is set" in out.stdout and "no data at /nowhere/alert.jsonl" in out.stdout
    assert "no vLLM interpreter at /nowhere" in out.stdout  # the marker skip fails at setup
    assert "SKIPPED" in out.stdout and "this machine has a GPU" in out.stdout


def test_zero_means_off(tmp_path):
    assert run(tmp_path, "0").returncode == 0
