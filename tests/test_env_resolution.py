"""Every env's pip section resolves: `pip install --dry-run` of envs/<env>.yaml's pins against
the package index, as building the env on a login node would (metadata only, no wheels of GBs:
the index serves each wheel's metadata on its own). Needs the index: CI reaches it; elsewhere the
test skips, naming why (a skip is a failure under SAFEALIGN_REQUIRE_ALL, as in scripts/test)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
TIMEOUT_S = 900


def pip_section(env: Path) -> list[str]:
    deps = yaml.safe_load(env.read_text())["dependencies"]
    return [p for d in deps if isinstance(d, dict) for p in d.get("pip", [])]


def python_of(env: Path) -> str:
    deps = yaml.safe_load(env.read_text())["dependencies"]
    return next(d.split("=", 1)[1] for d in deps if isinstance(d, str) and d.startswith("python="))


@pytest.fixture(scope="module")
def resolutions(tmp_path_factory) -> dict[str, tuple[int, str, dict | None]]:
    """``{env: (pip's exit code, its stderr, its install report)}``, all envs resolved at once.
    ``--isolated``: the index and nothing else (no local constraints or wheel folders)."""
    out_dir = tmp_path_factory.mktemp("pip-reports")
    procs = {}
    for env in ENVS:
        report = out_dir / f"{env.stem}.json"
        cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed", "--quiet",
               "--disable-pip-version-check", "--report", str(report), *pip_section(env)]
        procs[env.stem] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), report)
    results = {}
    for name, (proc, report) in procs.items():
        try:
            _, err = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        results[name] = (proc.returncode, err, json.loads(report.read_text()) if report.exists() else None)
    return results


UNREACHABLE = ("Could not fetch URL", "Failed to establish a new connection", "No matching distribution found",
               "Network is unreachable", "Temporary failure in name resolution")


@pytest.mark.network
@pytest.mark.parametrize("env", ENVS, ids=lambda e: e.stem)
def test_env_pip_section_resolves(env, resolutions):
    if sys.version_info[:2] != tuple(int(x) for x in python_of(env).split(".")[:2]):
        pytest.skip(f"{env.name} pins python={python_of(env)}; this is Python {sys.version.split()[0]}")
    code, err, report = resolutions[env.stem]
    if code != 0 and report is None and any(s in err for s in UNREACHABLE) and "ResolutionImpossible" not in err:
        if all(s not in err for s in ("ResolutionImpossible", "conflict")):
            pytest.skip(f"the package index is not reachable from here: {err.strip()[-300:]}")
    assert code == 0, f"{env.name}: its pip section does not resolve:\n{err[-3000:]}"
    installed = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in report["install"]}
    for pin in map(Requirement, pip_section(env)):
        name = canonicalize_name(pin.name)
        assert name in installed, f"{env.name}: {pin} is not in pip's resolution"
        assert pin.specifier.contains(installed[name]), f"{env.name}: {pin} resolved to {installed[name]}"
