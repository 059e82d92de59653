"""Grid expansion: variants, sweeps, merged settings, judge applicability."""

import copy
import re

from safealign import grid


def test_default_grid_has_base_and_every_method(default_config):
    vs = grid.variants(default_config)
    names = [v.name for v in vs]
    assert names[0] == "base"
    assert len(vs) == 1 + len(default_config["methods"])
    assert "safe_nca-seed0" in names
    nca = grid.variant_index(default_config)[("tiny", "safe_nca-seed0")]
    assert nca.settings["loss_type"] == "nca_pair"
    assert nca.settings["trainer"] == "dpo"
    # training defaults are inherited, model overrides merge into the LoRA dict
    assert nca.settings["beta"] == default_config["training"]["beta"]
    assert nca.settings["lora"]["r"] == default_config["training"]["lora"]["r"]
    tiny_lora = default_config["models"]["tiny"]["training"]["lora"]
    assert nca.settings["lora"]["target_modules"] == tiny_lora["target_modules"]


def test_sweep_expands_into_readable_stable_cells(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["methods"] = {"safe_dpo": {"trainer": "dpo", "loss_type": "sigmoid", "beta": [0.01, 0.1],
                                   "seeds": [1, 2]}}
    names = [v.name for v in grid.variants(cfg) if v.method]
    assert names == ["safe_dpo-beta0.01-seed1", "safe_dpo-beta0.01-seed2",
                     "safe_dpo-beta0.1-seed1", "safe_dpo-beta0.1-seed2"]
    betas = {v.name: v.settings["beta"] for v in grid.variants(cfg) if v.method}
    assert betas["safe_dpo-beta0.1-seed2"] == 0.1
    assert grid.variants(cfg) == grid.variants(copy.deepcopy(cfg))  # stable


def test_disabled_methods_leave_the_grid(default_config):
    cfg = copy.deepcopy(default_config)
    for m in cfg["methods"]:
        if m != "safe_nca":
            cfg["methods"][m]["enabled"] = False
    assert [v.name for v in grid.variants(cfg)] == ["base", "safe_nca-seed0"]


def test_judges_apply_by_benchmark_kind(default_config):
    assert grid.judges_for(default_config, "alert") == ["llama_guard", "refusal"]
    assert grid.judges_for(default_config, "toxicity_benign") == ["toxicity"]


def test_reference_sharing_only_for_dpo_family(default_config):
    idx = grid.variant_index(default_config)
    assert grid.shares_reference(idx[("tiny", "safe_ipo-seed0")].settings)
    assert not grid.shares_reference(idx[("tiny", "safe_kto-seed0")].settings)
    assert not grid.shares_reference(idx[("tiny", "safe_orpo-seed0")].settings)


def test_reference_key_separates_what_changes_the_reference(default_config):
    """One shared file per (dtype, 4-bit, bf16 autocast, max_length); round-trips to loading settings."""
    idx = grid.variant_index(default_config)
    keys = {grid.reference_key(v.settings) for v in idx.values() if v.method and grid.shares_reference(v.settings)}
    assert keys == {"float32-maxlen128"}
    base = {"max_length": 1024, "dtype": "bfloat16", "peft": "lora"}
    variants = [base, {**base, "peft": "qlora"}, {**base, "bf16": True}, {**base, "max_length": 512},
                {**base, "dtype": "float32"}, {**base, "peft": "full"}]
    keys = [grid.reference_key(s) for s in variants]
    assert keys[0] == keys[5] == "bfloat16-maxlen1024"  # LoRA and full fine-tuning start from the same model
    assert len(set(keys)) == 5
    assert grid.reference_settings(grid.reference_key({**base, "peft": "qlora", "bf16": True})) == {
        "dtype": "bfloat16", "quantization": "4bit", "bf16": True, "max_length": 1024}
    for key in keys:
        assert re.fullmatch(grid.REFERENCE_KEY_WILDCARD, key)
        assert grid.reference_key({**grid.reference_settings(key),
                                   "peft": "qlora" if "nf4" in key else "lora"}) == key


def test_canonical_params_ignore_key_order():
    assert grid.canonical({"b": 1, "a": {"d": 2, "c": 3}}) == grid.canonical({"a": {"c": 3, "d": 2}, "b": 1})


def test_beta_defaults_per_trainer_and_precedence(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["training"]["beta"] = 0.01
    cfg["methods"]["safe_kto2"] = {"trainer": "kto", "loss_type": "kto", "beta": 0.3}
    betas = {v.method: v.settings["beta"] for v in grid.variants(cfg) if v.method}
    # training.beta is the DPO family's; ORPO (lambda), SimPO and KTO take their registry default ...
    assert betas["safe_dpo"] == betas["safe_nca"] == 0.01
    assert (betas["safe_orpo"], betas["safe_simpo"], betas["safe_kto"]) == (0.1, 2.0, 0.1)
    # ... unless the method sets beta itself
    assert betas["safe_kto2"] == 0.3
    cfg["methods"]["safe_simpo"]["beta"] = [2.0, 2.5]
    cfg["models"]["tiny"]["training"]["beta"] = 0.05
    cells = {v.name: v.settings["beta"] for v in grid.variants(cfg) if v.method}
    assert cells["safe_simpo-beta2.5-seed0"] == 2.5 and cells["safe_dpo-seed0"] == 0.05
    assert cells["safe_orpo-seed0"] == 0.1


def _variant_names(cfg):
    return {v.name for v in grid.variants(cfg)}


def test_variant_regex_matches_exactly_the_grid(default_config):
    """The variant wildcard constraint accepts every variant of the grid and nothing else, and stays
    short on a large sweep (a list of every name made planning grow with the square of the grid)."""
    cfg = copy.deepcopy(default_config)
    cfg["seeds"] = [0, 1]
    cfg["methods"]["safe_dpo"]["beta"] = [0.01, 0.05, 0.1]
    cfg["methods"]["safe_dpo"]["learning_rate"] = [1.0e-5, 2.0e-4]
    cfg["methods"]["safe_kto"]["seeds"] = [7]
    cfg["methods"]["safe_orpo"]["enabled"] = False
    names = _variant_names(cfg)
    rx = re.compile(f"(?:{grid.variant_regex(cfg)})")
    assert all(rx.fullmatch(n) for n in names)
    near = ["safe_dpo-beta0.2-learningrate1e-05-seed0", "safe_dpo-beta0.01-seed0", "safe_dpo-seed0",
            "safe_kto-seed0", "safe_orpo-seed0", "safe_nca-seed2", "base-seed0",
            "safe_dpo-beta0.01-learningrate1e-05-seed0x"]
    assert not any(rx.fullmatch(n) for n in near)
    assert {n for n in near if n in names} == set()
    big = copy.deepcopy(cfg)
    for spec in big["methods"].values():
        spec["beta"], spec["learning_rate"] = [0.01, 0.02, 0.05, 0.1], [1.0e-6, 2.0e-6, 5.0e-6, 1.0e-5]
    big["seeds"] = [0, 1, 2]
    assert len(_variant_names(big)) > 500
    assert len(grid.variant_regex(big)) < 3000
