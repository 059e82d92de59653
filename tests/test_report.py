"""The report on a small synthetic metrics table: headline from config, labels, paper figures."""

import copy

import pandas as pd
import pytest

from safealign.metrics import COLUMNS
from safealign.report import (
    default_headline,
    effective_hyperparameters_table,
    headline_table,
    reference_table,
    render,
    resolve_headline,
    variant_labels,
)


def row(variant, benchmark, judge, metric, value, seed=42, model="m", group=""):
    method = None if variant == "base" else variant.split("-")[0]
    return {"model": model, "variant": variant, "method": method or "base",
            "seed": None if variant == "base" else seed, "benchmark": benchmark, "judge": judge,
            "metric": metric, "group": group, "value": value, "n": 10}


@pytest.fixture
def df():
    rows = []
    for v, glob, tox in [("base", 0.55, 0.65), ("safe_dpo-seed42", 0.90, 0.10), ("safe_nca-seed42", 0.97, 0.05)]:
        rows += [row(v, "global", "lg", "global_safety_score", glob),
                 row(v, "plain", "lg", "safety_score", glob - 0.05),
                 row(v, "attacks", "lg", "safety_score", glob + 0.05),
                 row(v, "plain", "lg", "safety_score", 0.5, group="category=hate"),
                 row(v, "plain", "lg", "parse_failures", 1.0),
                 row(v, "tox_adv", "tox", "mean_toxicity", tox),
                 row(v, "tox_adv", "tox", "expected_max_toxicity", tox + 0.2)]
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture
def cfg():
    return {
        "benchmarks": {"plain": {"kind": "safety", "global_safety": True},
                       "attacks": {"kind": "safety", "global_safety": True},
                       "contrast": {"kind": "overrefusal"},
                       "tox_adv": {"kind": "toxicity"}},
        "judges": {"lg": {"type": "llama_guard", "applies_to": ["safety", "overrefusal"]},
                   "ref": {"type": "refusal", "applies_to": ["safety", "overrefusal"]},
                   "tox": {"type": "toxicity", "applies_to": ["toxicity"]}},
    }


def test_default_headline_uses_the_configured_names(cfg):
    got = [(h["benchmark"], h["judge"], h["metric"]) for h in default_headline(cfg)]
    assert got == [
        ("global", "lg", "global_safety_score"), ("global", "lg", "global_safety_score_conservative"),
        ("global", "ref", "global_safety_score"),
        ("plain", "lg", "safety_score"), ("attacks", "lg", "safety_score"),
        ("contrast", "ref", "over_refusal_rate"), ("contrast", "ref", "unsafe_refusal_rate"),
        ("tox_adv", "tox", "mean_toxicity"), ("tox_adv", "tox", "expected_max_toxicity"),
        ("tox_adv", "tox", "toxicity_probability")]
    no_global = copy.deepcopy(cfg)
    for spec in no_global["benchmarks"].values():
        spec.pop("global_safety", None)
    assert not [h for h in default_headline(no_global) if h["benchmark"] == "global"]


def test_headline_columns_come_from_config(df, cfg):
    cfg["report"] = {"headline": [
        {"benchmark": "tox_adv", "judge": "tox", "metric": "mean_toxicity", "title": "mean tox"},
        {"benchmark": "global", "judge": "lg", "metric": "global_safety_score"},
        {"benchmark": "plain", "judge": "lg", "metric": "safety_score", "group": "category=hate",
         "title": "hate"}]}
    table = headline_table(df, resolve_headline(cfg))
    assert list(table.columns) == ["mean tox", "global: global_safety_score [lg]", "hate"]
    assert list(table.index) == [("m", "base"), ("m", "safe_dpo-seed42"), ("m", "safe_nca-seed42")]
    assert table.loc[("m", "safe_nca-seed42"), "mean tox"] == pytest.approx(0.05)
    assert table.loc[("m", "base"), "hate"] == 0.5


def test_variant_labels_do_not_assume_seed0(df):
    assert variant_labels(df) == {("m", "base"): "base", ("m", "safe_dpo-seed42"): "safe_dpo",
                                  ("m", "safe_nca-seed42"): "safe_nca"}
    two_seeds = pd.concat([df, df[df.variant == "safe_dpo-seed42"].assign(variant="safe_dpo-seed7", seed=7)])
    labels = variant_labels(two_seeds)
    assert labels[("m", "safe_dpo-seed42")] == "safe_dpo-seed42"
    assert labels[("m", "safe_dpo-seed7")] == "safe_dpo-seed7"
    two_models = pd.concat([df, df.assign(model="n")])
    assert variant_labels(two_models)[("n", "safe_nca-seed42")] == "n/safe_nca"


REFS = [
    {"label": "base model", "value": 0.5764, "benchmark": "global", "judge": "lg",
     "metric": "global_safety_score", "compare": "base", "source": "abstract"},
    {"label": "best aligned", "value": 0.999, "benchmark": "global", "judge": "lg",
     "metric": "global_safety_score", "compare": "aligned", "source": "Figure 1"},
    {"label": "toxicity after", "value": 0.07, "bound": "lt", "benchmark": "tox_adv", "judge": "tox",
     "metric": "mean_toxicity", "compare": "aligned", "source": "abstract"},
    {"label": "Mistral 7B", "value": 0.7133, "benchmark": "global", "judge": "lg",
     "metric": "global_safety_score", "source": "Figure 1"},
]


def test_reference_table_puts_the_run_beside_the_paper(df):
    t = reference_table(df, REFS).set_index("paper figure")
    assert t.loc["base model", "paper"] == "0.5764"
    assert t.loc["base model", "this run"] == "0.55"
    assert t.loc["best aligned", "this run's variant"] == "best: safe_nca-seed42"  # highest safety
    assert t.loc["best aligned", "this run"] == "0.97 (range 0.9-0.97)"
    assert t.loc["toxicity after", "paper"] == "< 0.07"
    assert t.loc["toxicity after", "this run's variant"] == "best: safe_nca-seed42"  # lowest toxicity
    assert t.loc["toxicity after", "this run"].startswith("0.05 ")
    assert t.loc["Mistral 7B", "this run"] == ""
    assert t.loc["Mistral 7B", "source"] == "Figure 1"


def test_effective_hyperparameters_read_from_train_json():
    logs = {"m/safe_orpo-seed42": {"effective_hyperparameters": {"beta": 0.1, "learning_rate": 5e-6}},
            "m/safe_dpo-seed42": {"effective_hyperparameters": {"beta": 0.01, "target_modules": ["q", "v"]}},
            "m/old-seed42": {"settings": {}}}  # a train.json written before the key existed
    t = effective_hyperparameters_table(logs)
    assert list(t.index) == ["m/safe_dpo-seed42", "m/safe_orpo-seed42"]
    assert t.loc["m/safe_orpo-seed42", "beta"] == 0.1
    assert t.loc["m/safe_dpo-seed42", "target_modules"] == '["q", "v"]'
    assert effective_hyperparameters_table({"m/old-seed42": {"settings": {}}}) is None


def test_render_shows_definitions_references_and_hyperparameters(df, cfg):
    params = {"title": "t", "headline": resolve_headline(cfg), "global_parts": ["plain", "attacks"],
              "paper_reference": REFS}
    logs = {"m/safe_dpo-seed42": {"settings": {"trainer": "dpo", "loss_type": "sigmoid"}, "train_loss": 0.5,
                                  "margin_before": 0.0, "margin_after": 1.0, "shared_reference": True,
                                  "effective_hyperparameters": {"beta": 0.01, "warmup_steps": 0.1}}}
    page = render(params, df, [], {}, logs, None)
    assert "The paper&#x27;s figures beside this run&#x27;s" in page or "The paper's figures beside" in page
    assert "Mistral 7B" in page and "0.5764" in page
    assert "<code>mean_toxicity</code> (lower is better): Mean toxicity score over every response" in page
    assert "<code>expected_max_toxicity</code>" in page
    assert "mean over plain, attacks" in page
    assert "Effective training hyperparameters" in page and "warmup_steps" in page
    assert "seed0" not in page
    # Without configured references the section is absent.
    assert "beside this run" not in render({**params, "paper_reference": []}, df, [], {}, logs, None)
