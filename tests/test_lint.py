"""The linters CI runs: ruff on the package, its tests and bench/ (pyproject.toml [tool.ruff]),
snakefmt on the rule files, and Snakemake's own --lint on the default config. Each skips, naming
the tool, where it is not installed (pip install -e '.[test]'); under SAFEALIGN_REQUIRE_ALL (CI) a
skip fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = shutil.which(name) or (str(Path(sys.executable).parent / name)
                                  if (Path(sys.executable).parent / name).exists() else None)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return path


def _run(*cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def test_ruff_is_clean():
    run = _run(_tool("ruff"), "check", "src", "tests", "bench")
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]


def test_rule_files_are_snakefmt_formatted():
    run = _run(_tool("snakefmt"), "--check", "rules", "workflow")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_snakemake_lint_finds_nothing():
    run = _run(sys.executable, "-m", "snakemake", "--lint")
    out = run.stdout + run.stderr
    assert run.returncode == 0 and "Congratulations, your workflow is in a good condition!" in out, out[-5000:]
