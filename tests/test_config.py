"""Config validation: schema, semantic checks, docs in step with the schema."""

import copy
import json
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


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml", "paper-figure1.yaml", "smol.yaml"])
def test_shipped_configs_are_valid(name):
    cfg = yaml.safe_load((REPO / "config" / name).read_text())  # each is a complete config
    validate(cfg)
    check_config(cfg)


def test_paper_extended_overlay_adds_methods_to_the_paper_grid():
    """config/paper.yaml trains the paper's ten methods; config/paper-extended.yaml, given after it,
    adds methods and changes nothing else."""
    from snakemake.utils import update_config

    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    overlay = yaml.safe_load((REPO / "config" / "paper-extended.yaml").read_text())
    assert set(overlay) == {"methods"} and not set(overlay["methods"]) & set(paper["methods"])
    assert len(paper["methods"]) == 10
    merged = copy.deepcopy(paper)
    update_config(merged, overlay)
    validate(merged)
    check_config(merged)
    assert set(merged["methods"]) == set(paper["methods"]) | set(overlay["methods"])


def test_paper_figure1_dry_run_generates_and_judges_every_open_model(tmp_path):
    """config/paper-figure1.yaml, the paper's Figure 1 as an evaluation-only grid: the dry run
    generates every configured model on each benchmark and judges each cell with its judge, trains
    nothing and measures no capability; each open model's bar names its model, GPT-3.5 (no open
    weights) is a reference only."""
    import re
    import shutil
    import subprocess
    import sys

    cfg = yaml.safe_load((REPO / "config" / "paper-figure1.yaml").read_text())
    for name in ("workflow", "rules", "envs", "config", "src"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/paper-figure1.yaml",
                          "--sdm", "env-modules"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", dry.stdout.split("Job stats:")[-1], re.M)}
    cells = len(cfg["models"]) * len(cfg["benchmarks"])
    assert counts["generate"] == cells and counts["judge_llama_guard"] == cells
    assert not {"train", "capability", "ref_logps", "preference_data"} & set(counts)
    for model in cfg["models"]:
        assert f"model={model}, variant=base" in dry.stdout
    refs = cfg["report"]["paper_reference"]
    assert {r["model"] for r in refs if "model" in r} == set(cfg["models"])
    assert [r["label"] for r in refs if "model" not in r and r["label"].startswith("GPT-3.5")]


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


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["methods"]["safe_kto"].update(label_smoothing=0.1),
     "config.methods.safe_kto.label_smoothing is not a setting of TRL's KTOConfig (trainer 'kto')"),
    (lambda c: c["training"].update(label_smoothing=0.0),
     "config.training.label_smoothing is not a setting of TRL's KTOConfig (trainer 'kto'), and "
     "config.methods.safe_kto inherits it; set it on the methods whose trainer has it, "
     "not in config.training"),
    (lambda c: c["models"]["tiny"]["training"].update(simpo_gamma=0.5),
     lambda c: "config.models.tiny.training.simpo_gamma is not a setting of TRL's DPOConfig (trainer 'dpo'), "
     "and " + ", ".join(f"config.methods.{m}" for m, s in c["methods"].items()
                        if s.get("trainer", "dpo") == "dpo" and s.get("enabled", True)) + " inherit it"),
    (lambda c: c["methods"]["safe_orpo"].update(loss_type="sigmoid"),
     "config.methods.safe_orpo.loss_type is not a setting of TRL's ORPOConfig (trainer 'orpo'"),
    (lambda c: c["methods"]["safe_dpo"].update(learning_rat=1e-3),
     "config.methods.safe_dpo.learning_rat is not a setting of TRL's DPOConfig (trainer 'dpo')"),
    (lambda c: c["methods"]["safe_dpo"].update(warmup_steps=10),
     "config.training.warmup_ratio and warmup_steps are the same setting"),
    (lambda c: c["methods"]["safe_dpo"].update(output_dir="/tmp/x"),
     "config.methods.safe_dpo.output_dir is set by the workflow"),
])
def test_a_training_key_the_trainer_does_not_have_is_an_error(default_config, mutate, message):
    cfg = copy.deepcopy(default_config)
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    assert (message(cfg) if callable(message) else message) in str(err.value)


def test_max_prompt_length_is_rejected_saying_why(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["training"]["max_prompt_length"] = 512
    validate(cfg)  # the schema leaves it to the semantic check, which says why
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    header, msg = str(err.value).split("\n", 1)
    assert header == "1 config problem:"
    assert msg.startswith("config.training.max_prompt_length has no TRL 1.16 field")
    assert "truncation_mode" in msg and "max_length" in msg and "inherit" not in msg


def test_any_field_of_the_trainers_config_is_accepted(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["training"]["max_grad_norm"] = 0.5  # a TrainingArguments field every trainer has
    cfg["methods"]["safe_kto"]["desirable_weight"] = 1.5
    check_config(cfg)


def test_deviations_from_the_papers_trl_warn_once_naming_the_methods(default_config, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing trained yet: every deviation applies
    cfg = copy.deepcopy(default_config)
    cfg["seeds"] = [0, 1]
    cfg["methods"]["safe_dpo"]["label_smoothing"] = 0.1
    check_config(cfg)
    err = capsys.readouterr().err
    assert err.count("(bco_pair_running_mean)") == 1
    assert "config.methods.safe_bco (2 variants to train) uses TRL 1.16's loss, which deviates" in err
    assert "config.methods.safe_dpo (2 variants to train) uses TRL 1.16's loss, which deviates from the paper's " \
           "TRL 0.11 (sigmoid_label_smoothing)" in err
    assert "--config 'methods={safe_dpo: {enabled: false}}'" in err
    assert "kto_kl_chunks" not in err  # gradient_accumulation_steps is 1 in the tiny world
    cfg["training"]["gradient_accumulation_steps"] = 4
    check_config(cfg)
    assert "config.methods.safe_kto (2 variants to train) uses TRL 1.16's loss" in capsys.readouterr().err


def test_every_documented_deviation_is_in_the_methods_docs():
    from safealign.train.methods import DEVIATIONS

    methods = (REPO / "docs" / "configuration.md").read_text()
    for d in DEVIATIONS:
        assert f"`{d.name}`" in methods, d.name


def test_world_file_keys_are_the_schemas():
    """One registry of the tiny world's files (safealign.world.files): the schema's `world:` enum
    names exactly its keys."""
    from safealign.world.files import FILES

    schema = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())
    assert schema["$defs"]["source"]["properties"]["world"]["enum"] == list(FILES)


def test_independent_problems_are_reported_together(tmp_path, monkeypatch):
    """One pass (configload.load_config): a bad seed, a reserved method name and a missing local
    path, written in one overlay, come back in one error, one line each, each naming its key."""
    from snakemake.utils import update_config

    from safealign.configload import SEED_RANGE, load_config
    from safealign.grid import RESERVED_NAMES

    monkeypatch.chdir(tmp_path)
    default = REPO / "config" / "config.yaml"
    base = yaml.safe_load(default.read_text())
    method = next(iter(base["methods"]))
    reserved = next(iter(RESERVED_NAMES))
    bench = next(iter(base["benchmarks"]))
    bad_seed = SEED_RANGE[1] + 1
    overlay = {
        "seeds": [bad_seed],
        "methods": {reserved: copy.deepcopy(base["methods"][method])},
        "benchmarks": {bench: {"source": {"world": None, "path": "no/such/file.jsonl"}}},
    }
    (tmp_path / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    config = copy.deepcopy(base)
    update_config(config, copy.deepcopy(overlay))
    with pytest.raises(ConfigError) as err:
        load_config(config, [default, tmp_path / "overlay.yaml"])
    header, *lines = str(err.value).splitlines()
    expected = [f"config.seeds[0]: the seed {bad_seed} is outside",
                f"config.methods.{reserved}: the name {reserved!r} is reserved",
                f"config.benchmarks.{bench}.source.path = 'no/such/file.jsonl': does not exist"]
    assert header == f"{len(expected)} config problems:"
    for start in expected:
        assert sum(line.startswith(start) for line in lines) == 1, (start, lines)
    assert len(lines) == len(expected)


def test_check_config_names_every_semantic_problem(default_config):
    """check_config does not stop at the first problem: two independent ones, one line each."""
    cfg = copy.deepcopy(default_config)
    method = next(iter(cfg["methods"]))
    judge = next(iter(cfg["judges"]))
    cfg["methods"][method]["trainer"] = "ppo"
    cfg["judges"][judge]["applies_to"] = ["safetyy"]
    with pytest.raises(ConfigError) as err:
        check_config(cfg)
    header, *lines = str(err.value).splitlines()
    assert any(line.startswith(f"config.methods.{method}.trainer must be one of") for line in lines), lines
    assert any(line.startswith(f"config.judges.{judge}.applies_to: unknown benchmark kind 'safetyy'")
               for line in lines), lines
    assert header == f"{len(lines)} config problems:"


def test_workflow_key_defaults_are_stated_once_and_shown_in_the_key_docs():
    """train.methods.WORKFLOW_DEFAULTS is where an unset workflow key's value is stated; the schema
    gives training keys no default and config/README.md's default column shows the code's value."""
    from safealign.train.methods import WORKFLOW_DEFAULTS

    training = SCHEMA["$defs"]["training"]["properties"]
    readme = (REPO / "config" / "README.md").read_text()
    shown = 0
    for key, value in WORKFLOW_DEFAULTS.items():
        if key not in training:
            continue  # e.g. trainer: only a method sets it, and there it is required
        assert "default" not in training[key], key
        row = f"| `training.{key}` | {training[key]['type']} | {json.dumps(value)} (when unset) |"
        assert row in readme, row
        shown += 1
    assert shown
