"""Config validation: schema, semantic checks, docs in step with the schema."""

import copy
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from safealign.checks import ConfigError, check_config
from safealign.configdocs import render
from safealign.train.methods import trl_dpo_loss_types

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def validate(cfg):
    jsonschema.validate(cfg, SCHEMA, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = yaml.safe_load((REPO / "config" / name).read_text())  # each is a complete config
    validate(cfg)
    check_config(cfg)


def test_unknown_loss_type_lists_the_valid_ones(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["methods"]["safe_dpo"]["loss_type"] = "sigmoidd"
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    msg = str(err.value)
    assert "config.methods.safe_dpo.loss_type" in msg
    for lt in trl_dpo_loss_types():
        assert lt in msg


@pytest.mark.parametrize("mutate, needle", [
    (lambda c: c["methods"]["safe_exo"].update(label_smoothing=0.0), "safe_exo.label_smoothing must be > 0"),
    (lambda c: c["methods"]["safe_dpo"].update(beta=-1.0), "beta must be > 0"),
    (lambda c: c["methods"]["safe_dpo"].update(trainer="ppo"), "trainer must be one of"),
    (lambda c: c["models"].update(falcon={"hub": "tiiuae/falcon-11B"}), "config.models.falcon.revision is required"),
    (lambda c: c["judges"]["refusal"].update(applies_to=["safetyy"]), "config.judges.refusal.applies_to"),
    (lambda c: c["methods"]["safe_dpo"].update(peft="qlora"), "qlora"),
    (lambda c: c["models"]["tiny"].update(resources={"train": {"slurm_partition": "gpu"}}),
     "config.models.tiny.resources.train.slurm_partition needs a fallback"),
])
def test_semantic_errors_name_the_key(default_config, mutate, needle):
    cfg = copy.deepcopy(default_config)
    mutate(cfg)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        check_config(cfg)


def test_schema_rejects_unknown_keys_and_bad_types(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["generation"]["max_new_token"] = 5
    with pytest.raises(jsonschema.ValidationError, match="max_new_token"):
        validate(cfg)
    cfg = copy.deepcopy(default_config)
    cfg["training"]["learning_rate"] = "1e-5"  # YAML reads 1e-5 as a string
    with pytest.raises(jsonschema.ValidationError):
        validate(cfg)


def test_config_readme_is_generated_from_schema():
    expected = render(REPO / "workflow" / "schemas" / "config.schema.yaml")
    assert (REPO / "config" / "README.md").read_text() == expected, \
        "run: python -m safealign.configdocs > config/README.md"


def test_every_default_config_key_is_documented(default_config):
    doc = (REPO / "config" / "README.md").read_text()

    def keys(node, prefix=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield f"{prefix}{k}"
                yield from keys(v, f"{prefix}{k}.")

    generic = {"models", "methods", "benchmarks", "judges"}
    for key in keys(default_config):
        parts = key.split(".")
        if parts[0] in generic and len(parts) > 1:
            parts[1] = "<name>"
        if parts[0] == "resources" and len(parts) > 1 or parts[0] == "models" and "resources" in parts:
            continue
        if "architecture" in parts or "train" in parts or parts[-1] in ("lora",):
            pass
        doc_key = ".".join(parts)
        if parts[0] == "benchmarks" and len(parts) > 3 and parts[2] == "generation":
            continue  # free-form overrides of `generation`
        assert f"`{doc_key}`" in doc, f"{doc_key} is not documented in config/README.md"


def test_cli_strings_are_coerced_like_yaml_numbers():
    from safealign.checks import coerce_cli_scalars

    cfg = {"methods": {"m": {"beta": "0.2", "num_train_epochs": "3", "learning_rate": "1e-5",
                             "enabled": "false", "seeds": ["1", "2"]}},
           "models": {"x": {"hub": "a/b", "revision": "1234"}},
           "benchmarks": {"b": {"system_prompt": "42", "n": "null"}}}
    coerce_cli_scalars(cfg)
    assert cfg["methods"]["m"] == {"beta": 0.2, "num_train_epochs": 3, "learning_rate": 1e-5,
                                   "enabled": False, "seeds": [1, 2]}
    assert cfg["models"]["x"]["revision"] == "1234"  # free text stays text
    assert cfg["benchmarks"]["b"] == {"system_prompt": "42", "n": None}
