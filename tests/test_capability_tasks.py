"""The code of every lm-eval built-in task a shipped config names imports with the packages
envs/eval.yaml pins, and the NLTK data it reads is provided (safealign.capability.taskcode)."""

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from safealign.capability import taskcode

REPO = Path(__file__).resolve().parents[1]
EVAL_ENV = REPO / "envs" / "eval.yaml"
# What a conda env of envs/eval.yaml has besides its pip section (python and pip from conda-forge).
CONDA_BASE = {"pip", "setuptools", "wheel"}


def builtin_task_lists() -> dict[str, list[str]]:
    """``{config file: capability.tasks}`` for every shipped config whose tasks are lm-eval's
    built-ins (no ``capability.source``: custom world tasks are written by the workflow)."""
    out = {}
    for path in sorted((REPO / "config").glob("*.yaml")):
        cap = (yaml.safe_load(path.read_text()) or {}).get("capability") or {}
        if cap.get("tasks") and not cap.get("source"):
            out[path.name] = list(cap["tasks"])
    return out


def eval_pins() -> list[Requirement]:
    deps = yaml.safe_load(EVAL_ENV.read_text())["dependencies"]
    return [Requirement(p) for d in deps if isinstance(d, dict) for p in d.get("pip", [])]


def pin_closure(pins: list[Requirement]) -> set[str]:
    """The distributions installing ``pins`` brings (their installed metadata's requirements,
    extras and markers evaluated), canonical names. A requirement not installed here is kept by
    name without its own requirements."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(canonicalize_name(r.name), frozenset(r.extras)) for r in pins]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(e) for e in envs):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
    return {name for name, _ in seen}


PROBE = """
import importlib.abc, json, sys
blocked = set(json.loads(sys.argv[2]))


class EnvOnly(importlib.abc.MetaPathFinder):
    # Only the env's packages: a module of any other installed distribution is not found, as if
    # it were not installed (importlib.util.find_spec gives None, an import ModuleNotFoundError).
    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked or not hasattr(self.finder, "find_spec"):
            return None
        return self.finder.find_spec(name, path, target)

    def find_distributions(self, *args, **kwargs):
        return getattr(self.finder, "find_distributions", lambda *a, **k: [])(*args, **kwargs)


sys.meta_path[:] = [EnvOnly(f) for f in sys.meta_path]
from safealign.capability import taskcode
try:
    modules = taskcode.import_task_code(json.loads(sys.argv[1]))
except ImportError as e:
    cause = e.__cause__ if isinstance(e.__cause__, ModuleNotFoundError) else e
    if not isinstance(cause, ModuleNotFoundError) or not cause.name:
        raise
    print(json.dumps({"missing": cause.name, "error": str(e)}))
    sys.exit(0)
print(json.dumps({"tasks": modules, "nltk_modules": sorted(m for m in taskcode.NLTK_DATA if m in sys.modules)}))
"""


def not_in_env(closure: set[str]) -> list[str]:
    """Top-level modules installed here whose distributions are all outside ``closure``."""
    return sorted(top for top, owners in metadata.packages_distributions().items()
                  if not {canonicalize_name(d) for d in owners} & closure and top != "safealign")


def probe(tasks: list[str], blocked: list[str]) -> dict:
    """Import the tasks' code in a fresh interpreter (what a capability job does before loading
    its model) that finds no module of a package outside envs/eval.yaml's pins (``blocked``), so
    neither other tests' imports nor this Python's extra packages hide what the task code needs."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(tasks), json.dumps(blocked)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def resolve_with_pip(pins: list[Requirement]) -> set[str]:
    """What pip would install for the env's pins (``pip install --dry-run``), canonical names."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--report", "-",
         *map(str, pins)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.skip(f"pip could not resolve envs/eval.yaml's pins here (no index?): {proc.stderr[-500:]}")
    report = json.loads(proc.stdout)
    return {canonicalize_name(i["metadata"]["name"]) for i in report["install"]}


TASK_LISTS = builtin_task_lists()


def test_a_shipped_config_names_builtin_tasks():
    assert "paper.yaml" in TASK_LISTS, "config/paper.yaml's capability.tasks are lm-eval built-ins"


@pytest.mark.parametrize("config_name", sorted(TASK_LISTS))
def test_task_code_imports_with_the_eval_env(config_name):
    tasks = TASK_LISTS[config_name]
    pins = eval_pins()
    closure = pin_closure(pins) | CONDA_BASE
    result = probe(tasks, not_in_env(closure))
    if "missing" in result:
        missing = canonicalize_name(result["missing"].split(".")[0])
        if missing.replace("-", "_") in not_in_env(closure) or missing in closure:
            pytest.fail(f"{config_name}: {result['error']}")  # installed here, but not by the env's pins
        # A package of lm-eval's task extras is not installed in this Python: the env must still
        # bring it, by what pip resolves for the env's pins.
        resolved = resolve_with_pip(pins)
        assert any(d == missing or d.startswith(missing) for d in resolved), (
            f"{config_name}: {result['error']}; envs/eval.yaml's pins do not install {missing!r}")
        pytest.skip(f"{config_name}: {missing!r} is not installed here; envs/eval.yaml's pins resolve it")
    # Every leaf of every named task was reached, and the task code's modules were imported.
    assert len(result["tasks"]) >= len(tasks)
    code = {m for mods in result["tasks"].values() for m in mods}
    assert code and all(m.startswith("lm_eval.tasks.") for m in code), code
    # The workflow gives a capability job the NLTK data rule's output exactly when its code reads it.
    assert bool(taskcode.nltk_packages(tasks)) == bool(result["nltk_modules"]), (tasks, result["nltk_modules"])


def test_paper_tasks_need_the_leaderboard_extras():
    """The packages of lm-eval's ifeval and math extras are pinned in envs/eval.yaml, at the
    versions lm-eval's metadata allows."""
    pins = {canonicalize_name(r.name): r for r in eval_pins()}
    lm_eval = pins["lm-eval"]
    assert {"ifeval", "math"} <= set(lm_eval.extras)
    for text in metadata.requires("lm_eval"):
        req = Requirement(text)
        if req.marker is not None and any(req.marker.evaluate({"extra": e}) for e in ("ifeval", "math")):
            pin = pins.get(canonicalize_name(req.name))
            assert pin is not None, f"envs/eval.yaml does not pin {req.name} (lm-eval extra)"
            version = next(iter(pin.specifier)).version
            assert req.specifier.contains(version), f"{pin} is outside lm-eval's {req}"


def test_nltk_data_check(tmp_path, monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nowhere")])
    monkeypatch.setitem(sys.modules, "lm_eval.tasks.ifeval.instructions_util", sys.modules[__name__])
    with pytest.raises(LookupError, match=re.escape("NLTK data 'punkt_tab' not found")):
        taskcode.check_nltk_data()
    (tmp_path / "data" / "tokenizers" / "punkt_tab").mkdir(parents=True)
    assert taskcode.check_nltk_data(str(tmp_path / "data")) == ["punkt_tab"]


def test_nltk_data_rule_follows_the_tasks(default_config):
    import copy

    from safealign.dag import Dag

    cfg = copy.deepcopy(default_config)
    assert Dag(cfg).nltk_data_input(None) == []
    cfg["capability"] = {**cfg["capability"], "tasks": ["gsm8k", "leaderboard"]}
    cfg["capability"].pop("source", None)
    assert Dag(cfg).nltk_data_input(None) == ["results/nltk_data"]
    assert Dag(cfg).nltk_packages() == ["punkt_tab"]


def test_harness_fails_before_loading_the_model(monkeypatch):
    """An unimportable task stops the capability job before lm-eval loads the model."""
    import lm_eval

    from safealign.capability import harness

    called = []
    monkeypatch.setattr(lm_eval, "simple_evaluate", lambda **kw: called.append(kw))

    def broken(tasks, tm):
        raise ImportError(f"lm-eval task {tasks[0]!r}: module 'langdetect' is missing")

    monkeypatch.setattr(harness, "import_task_code", broken)
    monkeypatch.setattr("lm_eval.tasks.TaskManager", lambda **kw: object())
    ref = {"kind": "hub", "hub": "x/y", "revision": "main"}
    with pytest.raises(ImportError, match="langdetect"):
        harness.evaluate(ref, None, ["leaderboard"], None, None, None, 1, True, None)
    assert called == []
