"""Static checks of the per-rule conda envs and the rules that use them."""

import re
from importlib import metadata
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENVS = sorted((REPO / "envs").glob("*.yaml"))
RULE_FILES = sorted((REPO / "rules").glob("*.smk"))


def pip_pins(env):
    deps = yaml.safe_load(env.read_text())["dependencies"]
    return [p for d in deps if isinstance(d, dict) for p in d.get("pip", [])]


def test_expected_env_families():
    assert {e.stem for e in ENVS} == {"data", "train", "vllm", "judge", "eval", "report"}


@pytest.mark.parametrize("env", ENVS, ids=lambda e: e.stem)
def test_env_parses_and_pins_everything(env):
    spec = yaml.safe_load(env.read_text())
    assert "conda-forge" in spec["channels"]
    for dep in spec["dependencies"]:
        if isinstance(dep, str):
            assert re.fullmatch(r"[A-Za-z0-9_.-]+=[0-9][0-9A-Za-z.]*", dep), f"{env.name}: {dep} not pinned"
    pins = pip_pins(env)
    assert pins
    for pin in pins:
        pinned = re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[A-Za-z0-9_.,\-]+\])?==[0-9][0-9A-Za-z.+]*", pin)
        assert pinned, f"{env.name}: {pin} not ==-pinned"


def test_env_pins_match_the_versions_tests_run():
    """Every pip pin that is installed here is the version the tests run against."""
    for env in ENVS:
        for pin in pip_pins(env):
            name, version = pin.split("==")
            name = name.split("[")[0]
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue  # e.g. vllm, bitsandbytes: cluster-only
            assert installed.split("+")[0] == version, f"{env.name}: {name} pinned {version}, installed {installed}"


def test_pyproject_pins_match_envs():
    text = (REPO / "pyproject.toml").read_text()
    pins = dict(re.findall(r'"([A-Za-z0-9_.,\-\[\]]+)==([^"]+)"', text))
    for env in ENVS:
        for pin in pip_pins(env):
            name, version = pin.split("==")
            if name in pins:
                assert pins[name] == version, f"{env.name} pins {name}=={version}, pyproject {pins[name]}"


def test_every_rule_has_conda_log_and_an_existing_env():
    for smk in RULE_FILES:
        text = smk.read_text()
        for block in re.split(r"\n(?=rule )", text)[1:]:
            name = block.split(":")[0].removeprefix("rule ").strip()
            assert "conda:" in block, f"rule {name} has no conda:"
            assert "log:" in block, f"rule {name} has no log:"
            literal = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            if literal is None:  # generating and judging rules pick their env by backend (safealign.dag)
                understood = re.search(r"conda:\s*\n\s*(judge|generation)_env\(", block)
                assert understood, f"rule {name}: conda: not understood"
                dag = "".join(f.read_text() for f in sorted((REPO / "src" / "safealign" / "dag").glob("*.py")))
                envs = re.findall(r'"(\.\./envs/[a-z]+\.yaml)"', dag)
            else:
                envs = [literal.group(1)]
            for env in envs:
                assert (smk.parent / env).resolve().exists(), f"rule {name}: {env} missing"


def test_generation_env_follows_the_backend(default_config):
    """vLLM's env (its own transformers) only with the vLLM backend; else the env that pins the
    transformers training uses, as for the judges."""
    import copy

    from safealign.dag import Dag

    pinned = yaml.safe_load((REPO / "envs" / "judge.yaml").read_text())["dependencies"][-1]["pip"]
    assert any(p.startswith("transformers==") for p in pinned)
    assert Dag(default_config).generation_env() == "../envs/judge.yaml"
    cfg = copy.deepcopy(default_config)
    cfg["generation"].update(backend="vllm", vllm_python="/opt/vllm/bin/python")
    assert Dag(cfg).generation_env() == "../envs/vllm.yaml"
    assert Dag(cfg).judge_env("llama_guard") == "../envs/vllm.yaml"
    assert Dag(cfg).judge_env("refusal") == "../envs/judge.yaml"
