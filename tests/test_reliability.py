"""Reliability (issue 14): nothing a user writes is silently ignored; messages a person can act on.

CONFIG_CASES is one table of bad configs. Each case is an overlay written after config/config.yaml
(as `--configfile config/config.yaml overlay.yaml` would), optional `--config` entries, and the
text the error must contain, key path first. ``test_config_case`` runs each through the exact path
the Snakefile runs at parse time: Snakemake's own config loading and merging
(``load_configfile`` / ``update_config`` / ``parse_config``), then
:func:`safealign.configload.load_config` (workflow/Snakefile), which runs every check in one pass
(:func:`safealign.checks.config_problems` included). The ``snakemake -n`` tests below prove
on a few cases that Snakemake prints the same lines and that nothing is written under results/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from safealign.checks import ConfigError, check_config
from safealign.configload import load_config

REPO = Path(__file__).resolve().parents[1]

# (id, overlay YAML written after config/config.yaml ({tmp}: a scratch directory), --config entries,
#  text the error must contain)
CONFIG_CASES = [
    # --- 1. unknown keys are errors everywhere, named where they were written
    ("top_level_typo", "trainig: {beta: 0.1}", [],
     "config.trainig: unknown key (did you mean training?); allowed: offline, hub_lock, world, models"),
    ("training_typo", "training: {learnig_rate: 0.1}", [],
     "config.training.learnig_rate: unknown key (did you mean learning_rate?)"),
    ("method_typo", "methods: {safe_dpo: {warmup_ratio_typo: 0.1}}", [],
     "config.methods.safe_dpo.warmup_ratio_typo is not a setting of TRL's DPOConfig (trainer 'dpo') "
     "(did you mean warmup_ratio?)"),
    ("disabled_method_typo", "methods: {safe_kto: {enabled: false, learnig_rate: 0.1}}", [],
     "config.methods.safe_kto.learnig_rate is not a setting of TRL's KTOConfig (trainer 'kto') "
     "(did you mean learning_rate?)"),
    ("model_training_typo", "models: {tiny: {training: {lora_rank: 4}}}", [],
     "config.models.tiny.training.lora_rank: unknown key (did you mean lora_r?)"),
    ("judge_model_typo", "judges: {toxicity: {model: {world: null, hub: org/tox, revison: main}}}", [],
     "config.judges.toxicity.model.revison: unknown key (did you mean revision?); allowed: hub, revision, path"),
    ("cli_training_typo", "", ["training={learnig_rate: 0.1}"],
     "config.training.learnig_rate: unknown key (did you mean learning_rate?)"),
    ("generation_typo", "generation: {max_new_token: 5}", [],
     "config.generation.max_new_token: unknown key (did you mean max_new_tokens?)"),
    ("benchmark_generation_typo", "benchmarks: {toxicity_benign: {generation: {num_sample: 3}}}", [],
     "config.benchmarks.toxicity_benign.generation.num_sample: unknown key (did you mean num_samples?); "
     "allowed: max_new_tokens, do_sample"),
    ("benchmark_generation_backend", "benchmarks: {alert: {generation: {backend: vllm}}}", [],
     "config.benchmarks.alert.generation.backend: unknown key"),
    ("benchmark_generation_serving", "benchmarks: {xstest: {generation: {lora_serving: merged}}}", [],
     "config.benchmarks.xstest.generation.lora_serving: unknown key"),
    ("judge_typo", "judges: {refusal: {treshold: 0.5}}", [],
     "config.judges.refusal.treshold: unknown key (did you mean threshold?)"),
    ("resources_family_typo", "models: {tiny: {resources: {trian: {mem_mb: 8000}}}}", [],
     "config.models.tiny.resources.trian: the name 'trian' is not allowed (did you mean train?); allowed: default"),
    ("training_trainer", "training: {trainer: kto}", [],
     "config.training.trainer: only a method sets trainer"),
    ("training_seeds", "training: {seeds: [1, 2]}", [],
     "config.training.seeds: only a method sets seeds (a grid setting: write config.seeds, or seeds on a method)"),
    ("max_prompt_length", "training: {max_prompt_length: 512}", [],
     "config.training.max_prompt_length: has no TRL 1.16 field"),
    ("inherited_key_named_where_written", "training: {label_smoothing: 0.1}", [],
     "config.training.label_smoothing is not a setting of TRL's KTOConfig (trainer 'kto'), and "
     "config.methods.safe_kto inherits it; set it on the methods whose trainer has it, not in config.training"),
    ("model_inherited_key", "models: {tiny: {training: {simpo_gamma: 0.5}}}", [],
     "config.models.tiny.training.simpo_gamma is not a setting of TRL's DPOConfig (trainer 'dpo'), and "
     "config.methods.safe_dpo, config.methods.safe_rdpo"),
    # --- duplicate YAML keys
    ("duplicate_method", "methods:\n  safe_dpo: {trainer: dpo, loss_type: sigmoid}\n"
     "  safe_dpo: {trainer: dpo, loss_type: hinge}", [],
     "overlay.yaml:3: config.methods.safe_dpo is written twice (first on line 2); YAML keeps only the last one"),
    ("duplicate_nested_key", "training:\n  beta: 0.1\n  learning_rate: 1.0e-3\n  beta: 0.2", [],
     "overlay.yaml:4: config.training.beta is written twice (first on line 2)"),
    # --- values that would run and be wrong
    ("seeds_repeat", "seeds: [1, 1]", [],
     "config.seeds: lists 1 twice in [1, 1] (equal seeds would collapse into one variant)"),
    ("method_seeds_repeat", "methods: {safe_dpo: {seeds: [3, 3]}}", [],
     "config.methods.safe_dpo.seeds: lists 3 twice"),
    ("sweep_repeat", "methods: {safe_dpo: {beta: [0.1, 0.1]}}", [],
     "config.methods.safe_dpo.beta: lists 0.1 twice in [0.1, 0.1]"),
    ("global_batch_not_divisible", "resources: {train: {gpu: 3}}", [],
     "config.methods.safe_dpo (variant tiny/safe_dpo-seed0) keep_global_batch: a global batch of "
     "per_device_train_batch_size 16 x gradient_accumulation_steps 1 cannot be split over 3 processes"),
    ("zero_epochs", "training: {num_train_epochs: 0}", [],
     "config.training.num_train_epochs: must be > 0, got 0"),
    ("zero_epochs_in_sweep", "methods: {safe_ipo: {num_train_epochs: [1, 0]}}", [],
     "config.methods.safe_ipo.num_train_epochs[1]: must be > 0, got 0"),
    ("negative_lora_r", "methods: {safe_dpo: {lora_r: 0}}", [],
     "config.methods.safe_dpo.lora_r: must be >= 1, got 0"),
    ("max_new_tokens_beyond_positions", "generation: {max_new_tokens: 500}", [],
     "config.generation.max_new_tokens: 500 new tokens leave no room for a prompt in model tiny's 128 positions "
     "(config.models.tiny.world.architecture.max_position_embeddings); allowed: at most 127"),
    ("benchmark_max_new_tokens_beyond_positions",
     "benchmarks: {toxicity_benign: {generation: {max_new_tokens: 128}}}", [],
     "config.benchmarks.toxicity_benign.generation.max_new_tokens: 128 new tokens leave no room"),
    ("max_length_beyond_positions", "methods: {safe_orpo: {max_length: 512}}", [],
     "config.methods.safe_orpo.max_length: 512 tokens exceed model tiny's 128 positions"),
    ("unknown_scheduler", "training: {lr_scheduler_type: cosin}", [],
     "config.training.lr_scheduler_type: 'cosin' is not a transformers scheduler (did you mean cosine?); "
     "allowed: constant"),
    ("unknown_optimizer", "methods: {safe_kto: {optim: adamw_torch_fusd}}", [],
     "config.methods.safe_kto.optim: 'adamw_torch_fusd' is not a transformers optimizer "
     "(did you mean adamw_torch_fused?)"),
    ("unknown_target_module", "models: {tiny: {training: {lora: {target_modules: [q_proj, query_key_value]}}}}", [],
     "config.models.tiny.training.lora.target_modules: 'query_key_value' names no Linear/Embedding module of "
     "model tiny (a tiny-world LlamaForCausalLM); allowed: down_proj, embed_tokens"),
    ("method_target_module", "methods: {safe_dpo: {lora: {target_modules: [qproj]}}}", [],
     "config.methods.safe_dpo.lora.target_modules: 'qproj' names no Linear/Embedding module of model tiny "
     "(a tiny-world LlamaForCausalLM) (did you mean q_proj?)"),
    ("local_model_target_module",
     "models: {tiny: {world: null, path: '{tmp}/gpt', training: {lora: {target_modules: [q_proj]}}}}", [],
     "config.models.tiny.training.lora.target_modules: 'q_proj' names no Linear/Embedding module of model tiny "
     "(the weights in {tmp}/gpt) (did you mean c_proj?); allowed: c_attn, c_proj, wte"),
    ("local_model_positions", "models: {tiny: {world: null, path: '{tmp}/gpt'}}\ngeneration: {max_new_tokens: 64}",
     [], "config.generation.max_new_tokens: 64 new tokens leave no room for a prompt in model tiny's 64 positions "
     "({tmp}/gpt/config.json n_positions); allowed: at most 63"),
    ("cached_hub_model_positions",
     "models: {tiny: {world: null, hub: org/cached, revision: " + "a" * 40 + "}}\ngeneration: {max_new_tokens: 4096}",
     [], "config.generation.max_new_tokens: 4096 new tokens leave no room for a prompt in model tiny's 2048 "
     "positions (the cached config.json of org/cached max_position_embeddings)"),
    ("benchmark_num_samples_negative", "benchmarks: {toxicity_benign: {generation: {num_samples: -3}}}", [],
     "config.benchmarks.toxicity_benign.generation.num_samples: must be >= 1, got -3"),
    ("benchmark_temperature_zero", "benchmarks: {toxicity_adversarial: {generation: {temperature: 0}}}", [],
     "config.benchmarks.toxicity_adversarial.generation.temperature: must be > 0, got 0"),
    ("training_beta_list", "training: {beta: [0.05, 0.1]}", [],
     "config.training.beta: a list ([0.05, 0.1]) is a sweep, and sweeps go on a method: write "
     "config.methods.<name>.beta: [0.05, 0.1] (each value becomes its own grid cell); config.training takes one value"),
    ("model_training_epochs_list", "models: {tiny: {training: {num_train_epochs: [1, 2]}}}", [],
     "config.models.tiny.training.num_train_epochs: a list ([1, 2]) is a sweep, and sweeps go on a method"),
    ("training_lora_r_list", "training: {lora_r: [4, 8]}", [],
     "config.training.lora_r: a list ([4, 8]) is a sweep"),
    # --- 2 (last bullet). switching a source: merged dicts keep both keys
    ("source_world_and_path", "preference_data: {source: {path: '{tmp}/pairs.jsonl'}}", [],
     "config.preference_data.source: sets both world and path, but takes exactly one of world / path / hub; "
     "config files and --config merge into the earlier one, so to switch to path write world: null next to it"),
    ("model_world_and_hub", "models: {tiny: {hub: org/model, revision: " + "a" * 40 + "}}", [],
     "config.models.tiny: sets both world and hub, but takes exactly one of world / path / hub"),
    ("cli_source_switch", "", ["benchmarks={xstest: {source: {path: x.csv}}}"],
     "config.benchmarks.xstest.source: sets both world and path"),
    ("leftover_revision", "benchmarks: {xstest: {source: {world: null, path: x.csv, revision: main}}}", [],
     "config.benchmarks.xstest.source.revision: needs hub next to it; remove it (write revision: null) or set hub"),
    # --- 3. messages a person can act on
    ("dotted_key_in_file", "training.beta: 0.2", [],
     "config.training.beta: unknown key (a dotted key is not nested: in a config file write "
     "`training: {beta: ...}`, on the command line --config 'training={beta: 0.2}')"),
    ("number_as_text", "training: {learning_rate: fast}", [],
     "config.training.learning_rate: got \"fast\"; allowed: a number > 0 or a list of numbers > 0"),
    ("bad_method_name", "methods: {safe-dpo2: {trainer: dpo}}", [],
     "config.methods.safe-dpo2: the name 'safe-dpo2' must match ^[A-Za-z0-9_]+$"),
    ("missing_trainer", "methods: {safe_new: {loss_type: sigmoid}}", [],
     "config.methods.safe_new: missing required key 'trainer'"),
    ("bad_enum", "generation: {backend: vlm}", [],
     "config.generation.backend: 'vlm' is not allowed (did you mean vllm?); allowed: transformers, vllm"),
    ("qlora_on_the_tiny_world", "training: {peft: qlora}", [],
     "config.training.peft: 'qlora' needs a GPU and bitsandbytes"),
    ("judge_world_and_hub", "judges: {toxicity: {model: {hub: org/tox, revision: " + "b" * 40 + "}}}", [],
     "1 config problem:\nconfig.judges.toxicity.model: sets both world and hub"),
    ("unknown_loss_type", "methods: {safe_dpo: {loss_type: sigmoidd}}", [],
     "config.methods.safe_dpo.loss_type 'sigmoidd' is not a TRL dpo loss type"),
    # --- issue 27, 1: silently wrong
    ("method_named_base", "methods: {base: {trainer: dpo, loss_type: sigmoid}}", [],
     "config.methods.base: the name 'base' is reserved: it is the untrained variant of every model"),
    ("benchmark_named_global", "benchmarks: {global: {kind: overrefusal, loader: xstest, source: {world: xstest}}}",
     [], "config.benchmarks.global: the name 'global' is reserved: it is the pseudo-benchmark of the global "
     "safety score"),
    ("paper_reference_in_per_cent", "report: {paper_reference: [{label: base, value: 57.64, benchmark: xstest, "
     "judge: refusal, metric: over_refusal_rate, source: paper}]}", [],
     "config.report.paper_reference[0].value must be a share in [0, 1] like every score of the report, not per "
     "cent: got 57.64, write 0.5764 for 57.64 %"),
    # --- issue 27, 2: found at parse time, not inside a job
    ("seed_negative", "seeds: [0, -1]", [],
     "config.seeds[1]: the seed -1 is outside [0, 4294967295], the range numpy's np.random.seed (called by "
     "transformers.set_seed) accepts; pick a seed in it"),
    ("generation_seed_too_large", "generation: {seed: 4294967296}", [],
     "config.generation.seed: the seed 4294967296 is outside [0, 4294967295]"),
    ("capability_task_unknown_to_the_world", "capability: {tasks: [world_math, world_mathh]}", [],
     "config.capability.tasks[1]: 'world_mathh' is not a task of the tiny world's capability tasks (did you mean "
     "world_math?); allowed: world_math, world_qa"),
    ("capability_task_not_in_the_items", "capability: {source: {world: null, path: '{tmp}/items.jsonl'}, "
     "tasks: [arithmetik]}", [],
     "config.capability.tasks[0]: 'arithmetik' is not a task of the 'task' names in {tmp}/items.jsonl (did you mean "
     "arithmetic?); allowed: arithmetic, trivia"),
    ("hub_id_rejected_by_the_hub_client", "models: {tiny: {world: null, hub: 'org//model', revision: "
     + "a" * 40 + "}}", [],
     "config.models.tiny.hub: 'org//model' is not a hub id the hub client accepts (Repo id must be in the form "
     "'repo_name' or 'namespace/repo_name': 'org//model'); write it as <owner>/<name>"),
    ("offline_hub_model_not_cached", "models: {tiny: {world: null, hub: org/absent, revision: " + "a" * 40 + "}}",
     [], "config.models.tiny.hub: the hub model 'org/absent' at revision " + "a" * 40 + " is not in the local "
     "Hugging Face cache, and config.offline is true (the jobs read only the cache); download it first "
     "(`hf download org/absent --revision " + "a" * 40 + "`) or set offline: false"),
    ("offline_hub_dataset_not_cached", "benchmarks: {xstest: {source: {world: null, hub: org/absent_set, "
     "revision: " + "b" * 40 + "}}}", [],
     "config.benchmarks.xstest.source.hub: the hub dataset 'org/absent_set' at revision " + "b" * 40 + " is not "
     "in the local Hugging Face cache, and config.offline is true"),
]


def _scratch(tmp: Path) -> None:
    """A local GPT-2-shaped model dir (config.json + safetensors) and a cached hub config."""
    import numpy as np
    from safetensors.numpy import save_file

    gpt = tmp / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text('{"model_type": "gpt2", "n_positions": 64}')
    save_file({"transformer.wte.weight": np.zeros((8, 4), np.float32),
               "transformer.h.0.attn.c_attn.weight": np.zeros((4, 12), np.float32),
               "transformer.h.0.attn.c_proj.weight": np.zeros((4, 4), np.float32),
               "transformer.h.0.ln_1.weight": np.zeros((4,), np.float32)}, str(gpt / "model.safetensors"))
    snap = tmp / "hub" / "models--org--cached" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text('{"model_type": "llama", "max_position_embeddings": 2048}')
    (tmp / "items.jsonl").write_text('{"id": 1, "task": "arithmetic", "question": "1+1", "answer": "2"}\n'
                                     '{"id": 2, "task": "trivia", "question": "sky?", "answer": "blue"}\n')


def parse(tmp: Path, overlay: str, cli: list[str]) -> dict:
    """The Snakefile's parse-time path on config/config.yaml + overlay + --config entries."""
    from snakemake.cli import parse_config
    from snakemake.common.configfile import load_configfile
    from snakemake.utils import update_config

    files = [str(REPO / "config" / "config.yaml")]
    if overlay:
        (tmp / "overlay.yaml").write_text(overlay.replace("{tmp}", str(tmp)) + "\n")
        files.append(str(tmp / "overlay.yaml"))
    config: dict = {}
    for f in files:
        update_config(config, load_configfile(f))
    update_config(config, parse_config(cli))
    load_config(config, files)  # workflow/Snakefile
    return config


@pytest.mark.parametrize("case_id, overlay, cli, expected", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_case(tmp_path, monkeypatch, case_id, overlay, cli, expected):
    import huggingface_hub.constants

    _scratch(tmp_path)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        parse(tmp_path, overlay, cli)
    msg = str(err.value)
    assert expected.replace("{tmp}", str(tmp_path)) in msg
    # One line per problem, not a dump of the schema and the config.
    assert len(msg.splitlines()) <= 4 and len(msg) < 2500, msg
    assert not (tmp_path / "results").exists()


def test_there_are_enough_cases():
    assert len(CONFIG_CASES) >= 25
    assert len({c[0] for c in CONFIG_CASES}) == len(CONFIG_CASES)


def test_every_problem_is_reported_at_once(tmp_path):
    with pytest.raises(ConfigError) as err:
        parse(tmp_path, "seeds: [1, 1]\ntraining: {learnig_rate: 0.1, num_train_epochs: 0}\ntrainig: {}", [])
    lines = str(err.value).splitlines()
    assert lines[0] == "4 config problems:"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "config.trainig", "config.seeds", "config.training.num_train_epochs", "config.training.learnig_rate"]


def test_null_switches_a_source_and_a_model(tmp_path):
    # Local paths must exist at parse time (checks.check_local_paths).
    (tmp_path / "pairs.jsonl").write_text("{}\n")
    (tmp_path / "x.csv").write_text("id,prompt\n")
    cfg = parse(tmp_path, "preference_data: {source: {world: null, path: {tmp}/pairs.jsonl}}", [])
    assert cfg["preference_data"]["source"] == {"path": f"{tmp_path}/pairs.jsonl"}
    cfg = parse(tmp_path, "", [f"benchmarks={{xstest: {{source: {{world: null, path: {tmp_path}/x.csv}}}}}}"])
    assert cfg["benchmarks"]["xstest"]["source"] == {"path": f"{tmp_path}/x.csv"}


def test_nested_cli_form_sets_training_beta(tmp_path):
    from safealign.grid import variants

    cfg = parse(tmp_path, "", ["training={beta: 0.2}"])
    settings = {v.method: v.settings for v in variants(cfg) if v.method}
    assert settings["safe_dpo"]["beta"] == 0.2
    assert settings["safe_dpo"]["learning_rate"] == 1.0e-3  # merged into the block, not replacing it
    assert settings["safe_kto"]["beta"] == 0.1  # KTO keeps its own default


def test_defaults_are_filled_and_shipped_configs_pass(tmp_path):
    cfg = parse(tmp_path, "", [])
    assert cfg["generation"]["num_samples"] == 1 and cfg["world"]["n_preference_pairs"] == 192
    assert "num_samples" not in cfg["benchmarks"]["alert"].get("generation", {})  # overrides get no defaults
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    load_config(paper, [REPO / "config" / "paper.yaml"])


def test_benchmark_generation_override_has_the_generation_keys():
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    top = schema["properties"]["generation"]["properties"]
    override = schema["$defs"]["generation_override"]["properties"]
    assert set(override) == set(top) - {"backend", "vllm_python", "lora_serving", "qlora_base"}
    for key, spec in override.items():
        assert "default" not in spec, key  # a default would override the top-level value
        assert {k: v for k, v in top[key].items() if k not in ("default", "description")} == \
               {k: v for k, v in spec.items() if k != "description"}, key


def test_static_scheduler_optimizer_and_module_tables_match_the_installed_libraries():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    from safealign.train import trl_fields

    assert trl_fields.LR_SCHEDULER_TYPES == {s.value for s in SchedulerType}
    assert trl_fields.OPTIMIZERS == {o.value for o in OptimizerNames}
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, num_attention_heads=1,
                                         num_key_value_heads=1, intermediate_size=64, num_hidden_layers=2,
                                         max_position_embeddings=32, tie_word_embeddings=True))
    adaptable = sorted(n for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)))
    assert sorted(trl_fields.world_llama_lora_modules(2)) == adaptable


# ---------------------------------------------------------------- issue 27: names, empty methods, warnings

@pytest.mark.parametrize("kind", ["methods", "models", "benchmarks", "judges"])
def test_every_reserved_name_is_refused_for_every_kind(default_config, kind):
    """Renaming the config's first entry of each kind to each reserved name is refused with the reason."""
    from safealign.configload import reserved_name_problems
    from safealign.grid import RESERVED_NAMES

    first = next(iter(default_config[kind]))
    for name, meaning in RESERVED_NAMES.items():
        config = {**default_config, kind: {name if k == first else k: v for k, v in default_config[kind].items()}}
        assert reserved_name_problems(config) == [
            f"config.{kind}.{name}: the name {name!r} is reserved: it is {meaning}; rename it "
            f"(reserved: {', '.join(RESERVED_NAMES)})"]
    assert reserved_name_problems(default_config) == []


def test_reserved_names_cover_the_workflows_own_names_and_the_schema_says_so():
    from safealign import metrics
    from safealign.grid import BASE, RESERVED_NAMES

    assert {BASE, metrics.GLOBAL, "ref_logps"} <= set(RESERVED_NAMES)
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    text = schema["properties"]["methods"]["description"]
    assert f"({', '.join(RESERVED_NAMES)})" in text and "`methods: {}`" in text
    assert "`methods: {}`" in (REPO / "config" / "README.md").read_text()


def test_an_explicit_empty_methods_mapping_means_no_methods(tmp_path):
    from safealign.grid import BASE, variants

    cfg = parse(tmp_path, "methods: {}", [])
    assert cfg["methods"] == {}
    assert [(v.model, v.name) for v in variants(cfg)] == [(m, BASE) for m in cfg["models"]]
    # --config entries come after the files: a method set there is the only one.
    cfg = parse(tmp_path, "methods: {}", ["methods={safe_new: {trainer: dpo, loss_type: hinge}}"])
    assert list(cfg["methods"]) == ["safe_new"]
    # A later file's methods are kept; the default's are not.
    (tmp_path / "later.yaml").write_text("methods: {safe_dpo: {trainer: dpo, loss_type: sigmoid}}\n")
    from snakemake.common.configfile import load_configfile
    from snakemake.utils import update_config

    files = [str(REPO / "config" / "config.yaml"), str(tmp_path / "overlay.yaml"), str(tmp_path / "later.yaml")]
    config: dict = {}
    for f in files:
        update_config(config, load_configfile(f))
    load_config(config, files)
    assert list(config["methods"]) == ["safe_dpo"]


def test_an_overlay_given_alone_says_configfile_replaces_the_default(tmp_path):
    from snakemake.common.configfile import load_configfile

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("seeds: [3]\n")
    config = load_configfile(str(overlay))
    with pytest.raises(ConfigError) as err:
        load_config(config, [str(overlay)])
    assert ("config: --configfile replaces the default config/config.yaml instead of adding to it, and "
            f"{overlay} is not a complete config: give the default first (`--configfile config/config.yaml "
            "<overlay.yaml>`) or a complete config such as config/paper.yaml") in str(err.value)
    # Given after the default, the same overlay is fine, and the hint never appears.
    assert parse(tmp_path, "seeds: [3]", [])["seeds"] == [3]


def test_deviation_note_only_for_variants_still_to_train_and_once(tmp_path, capsys):
    from safealign.checks import deviation_warnings
    from safealign.grid import variants

    cfg = parse(tmp_path, "", [])
    capsys.readouterr()
    bco = [v for v in variants(cfg) if v.settings.get("loss_type") == "bco_pair"]
    assert bco
    lines = deviation_warnings(cfg, tmp_path)
    methods = sorted({v.method for v in bco})
    assert len(lines) == 1 and "(bco_pair_running_mean)" in lines[0]
    assert f"--config 'methods={{{', '.join(f'{m}: {{enabled: false}}' for m in methods)}}}'" in lines[0]
    # Printed once by check_config, and not at all where a job re-parses the workflow (warn=False).
    check_config(cfg)
    assert capsys.readouterr().err.count("bco_pair_running_mean") == 1
    check_config(cfg, warn=False)
    assert capsys.readouterr().err == ""
    # Once every variant that depends on it is trained, it no longer applies.
    for v in bco:
        done = tmp_path / "results" / "models" / v.model / v.name / "train.json"
        done.parent.mkdir(parents=True)
        done.write_text("{}")
    assert deviation_warnings(cfg, tmp_path) == []


def test_lm_eval_task_registry_is_indexed_once_per_version(tmp_path, monkeypatch):
    """Without a capability source, tasks are checked against lm-eval's own registry, indexed once
    per lm-eval version (TaskManager() takes about 11 s) and then read from the user's cache."""
    import lm_eval.tasks

    from safealign.configenv import capability_task_problems, lm_eval_builtin_tasks

    built = []

    class Registry:  # stands in for the real index (tests/test_capability.py runs lm-eval itself)
        def __init__(self):
            built.append(1)
            self.all_tasks = ["gsm8k", "leaderboard", *(f"leaderboard_{i}" for i in range(50))]

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", Registry)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    expected = {"gsm8k", "leaderboard", *(f"leaderboard_{i}" for i in range(50))}
    assert lm_eval_builtin_tasks() == expected and lm_eval_builtin_tasks() == expected
    assert len(built) == 1 and len(list((tmp_path / "safealign").glob("lm_eval_tasks-*.json"))) == 1
    config = {"capability": {"tasks": ["gsm8k", "gsm8kk"]}}
    assert capability_task_problems(config) == [
        "config.capability.tasks[1]: 'gsm8kk' is not a task of the installed lm-eval's task registry "
        "(did you mean gsm8k?); list them with `lm_eval --tasks list`"]
    assert capability_task_problems({"capability": {"tasks": ["leaderboard"]}}) == [] and len(built) == 1


# (id, config file text or None for a missing file, the line python -m safealign.configload prints)
FILE_CASES = [
    ("tab_in_overlay", "training:\n\tbeta: 0.2\n",
     "{file}:2:1: not valid YAML: found character that cannot start any token while scanning for the next "
     "token (a tab: indent YAML with spaces only)"),
    ("unclosed_bracket", "seeds: [1, 2\ntraining: {beta: 0.2}\n",
     "{file}:2:9: not valid YAML: did not find expected ',' or ']' while parsing a flow sequence that starts "
     "on line 1 (an unclosed [ or {{ before this point?)"),
    ("missing_configfile", None,
     "{file}: no such config file (paths are relative to the working directory; --configfile takes every "
     "later word as a file, so put targets before it)"),
]


@pytest.mark.parametrize("case_id, text, expected", FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_unreadable_config_file_names_file_and_line(tmp_path, case_id, text, expected):
    """Snakemake reads --configfile before the workflow starts and names neither file nor line;
    ``python -m safealign.configload FILE...`` (and load_config) does."""
    from safealign.configload import file_problems

    path = tmp_path / "overlay.yaml"
    if text is not None:
        path.write_text(text)
    assert file_problems(path) == [expected.format(file=path)]
    run = subprocess.run([sys.executable, "-m", "safealign.configload", str(REPO / "config" / "config.yaml"),
                          str(path)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert run.returncode == 1 and run.stderr == expected.format(file=path) + "\n"
    assert not (tmp_path / "results").exists()


def test_failed_jobs_reason_is_read_back_from_its_log():
    from safealign.cli import failure_reason, report_failure

    log = ("2026-01-01 INFO safealign: loading\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
           "    main()\nValueError: xstest source d.csv: row 2 label must be 'safe' or 'unsafe', got 'maybe'\n"
           "safealign.warm: ran in a fork of the warm server (pid 3): exit 1\n")
    assert failure_reason(log) == "ValueError: xstest source d.csv: row 2 label must be 'safe' or 'unsafe', got 'maybe'"
    chained = ("Traceback (most recent call last):\n  File \"a\"\nKeyError: 'x'\n\nDuring handling of the above "
               "exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"b\"\n"
               "safealign.checks.ConfigError: 2 config problems:\nconfig.a: bad\nconfig.b: bad\n")
    assert failure_reason(chained) == "ConfigError: 2 config problems:\nconfig.a: bad\nconfig.b: bad"
    assert failure_reason("Killed\n") is None
    assert report_failure("/no/such.log", 137) == (
        "safealign: the job exited with status 137; its log /no/such.log says why")


# ---------------------------------------------------------------- the same through Snakemake

COPY = ("workflow", "rules", "envs", "config", "src")
SNAKEMAKE_CASES = ["top_level_typo", "duplicate_method", "cli_training_typo", "training_beta_list",
                   "source_world_and_path"]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("project")
    for name in COPY:
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def snakemake_n(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})


@pytest.mark.parametrize("case_id", SNAKEMAKE_CASES)
def test_snakemake_prints_the_same_lines_and_writes_nothing(project, tmp_path, case_id):
    _, overlay, cli, expected = next(c for c in CONFIG_CASES if c[0] == case_id)
    with pytest.raises(ConfigError) as err:
        parse(tmp_path, overlay, cli)
    args = ["--configfile", "config/config.yaml", str(tmp_path / "overlay.yaml")] if overlay else []
    if cli:
        args += ["--config", *cli]
    run = snakemake_n(project, *args)
    assert run.returncode != 0
    out = run.stdout + run.stderr
    for line in str(err.value).splitlines():
        assert line in out, (line, out[-3000:])
    assert expected.replace("{tmp}", str(tmp_path)) in out
    assert len(out.splitlines()) < 20, out  # not the ~1,500 lines of a schema and config dump
    assert not (project / "results").exists()


def test_snakemake_nested_cli_form_reaches_the_training_job(project):
    # Snakemake's own --config parser refuses training.beta=0.2 before the workflow runs: the
    # docs show the form that works, and this test runs it.
    for doc in ("README.md", "docs/configuration.md", "config/README.md"):
        assert "--config 'training={beta: 0.2}'" in " ".join((REPO / doc).read_text().split()), doc
    run = snakemake_n(project, "-p", "--config", "training={beta: 0.2}")
    assert run.returncode == 0, run.stderr[-3000:]
    train = [line for line in run.stdout.splitlines() if "safealign.job train.run train" in line]
    dpo = [line for line in train if "safe_dpo-seed0" in line]
    assert dpo and all('"beta":0.2' in line for line in dpo), dpo
    assert any('"beta":0.1' in line for line in train if "safe_kto-seed0" in line)
    assert not (project / "results").exists()


DRY_RUN_OVERLAYS = {"default": "", "merged": "generation: {lora_serving: merged}"}


@pytest.fixture(scope="module", params=list(DRY_RUN_OVERLAYS))
def dry_run(request, project, tmp_path_factory) -> tuple[dict, str]:
    """(config as the Snakefile parses it, ``snakemake -n -p``'s stdout) for config/config.yaml
    with one overlay: one dry run serves every test that checks a mirror of the rule files."""
    overlay = DRY_RUN_OVERLAYS[request.param]
    tmp = tmp_path_factory.mktemp(f"dry_{request.param}")
    config = parse(tmp, overlay, [])
    args = ["--configfile", "config/config.yaml", str(tmp / "overlay.yaml")] if overlay else []
    run = snakemake_n(project, "-p", *args)
    assert run.returncode == 0, run.stderr[-3000:]
    return config, run.stdout


def dry_run_jobs(stdout: str) -> list[dict[str, str]]:
    """Each job of a ``snakemake -n -p`` run: its rule (or checkpoint), and its ``wildcards:``,
    ``benchmark:``, ``log:`` and ``Shell command:`` lines as printed."""
    jobs = []
    for block in re.split(r"^(?:local)?(?:rule|checkpoint) (?=\w+:$)", stdout, flags=re.M)[1:]:
        job = {"rule": block.split(":", 1)[0]}
        for line in block.splitlines()[1:]:
            key, sep, value = line.strip().partition(": ")
            if sep and key in ("wildcards", "benchmark", "log", "Shell command"):
                job[key] = value
        jobs.append(job)
    return jobs


def dry_run_params(jobs: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    """Per rule, each :func:`dry_run_jobs` job whose command passes ``--params`` (and
    ``--model-ref``, capability's second builder), named as Dag.job_params names it (its
    wildcards' values joined by ``/``): the params it passes."""
    import shlex

    scheduled: dict[str, dict[str, str]] = {}
    for job in jobs:
        args = shlex.split(job.get("Shell command", ""))
        if "--params" not in args:
            continue
        params = args[args.index("--params") + 1]
        if "--model-ref" in args:  # capability: params=p_capability, ref=p_capability_ref
            params += args[args.index("--model-ref") + 1]
        wildcards = [w.split("=", 1)[1] for w in job.get("wildcards", "").split(", ") if w]
        scheduled.setdefault(job["rule"], {})["/".join(wildcards)] = params
    return scheduled


def test_benchmark_jobs_are_the_dags_benchmark_paths(dry_run):
    """safealign.dag.Dag.benchmark_jobs mirrors the rules' benchmark: paths (the report reads
    them as inputs and prices them by GPU): exactly the TSVs of the dry run's jobs, the report's
    own aside. The merged overlay brings in merge_adapter jobs."""
    from safealign.dag import Dag

    config, stdout = dry_run
    jobs = [job for job in dry_run_jobs(stdout) if "benchmark" in job]
    dry = {job["benchmark"] for job in jobs}
    assert dry == set(Dag(config).benchmark_files()) | {"results/benchmarks_tsv/report.tsv"}
    if config["generation"].get("lora_serving") == "merged":
        assert any("/merge/" in path for path in dry)
    # Dag.job_log_files pairs each TSV with its job's log (the report reads a warm job's CPU time
    # there): the same jobs' log: paths, in the same order as the TSVs.
    pairs = {job["benchmark"]: job["log"] for job in jobs if "log" in job}
    d = Dag(config)
    assert dict(zip(d.benchmark_files(), d.job_log_files(), strict=True)) == {
        tsv: log for tsv, log in pairs.items() if tsv != "results/benchmarks_tsv/report.tsv"}


def test_job_params_are_the_dry_runs_jobs(dry_run):
    """safealign.dag.Dag.job_params (what tests/test_rerun_contract.py compares) mirrors the rule
    files: which jobs each rule schedules and which params builders it uses. Every dry-run job
    whose shell command passes ``--params`` (and ``--model-ref``, capability's second builder) is
    in it under its rule and its wildcards' values, with exactly those params, and no other job is."""
    from safealign.dag import Dag

    config, stdout = dry_run
    scheduled = dry_run_params(dry_run_jobs(stdout))
    expected = Dag(config).job_params()
    assert scheduled.keys() == expected.keys(), f"rules in one only: {sorted(scheduled.keys() ^ expected.keys())}"
    for rule, jobs in expected.items():
        only = sorted(scheduled[rule].keys() ^ jobs.keys())
        assert not only, f"{rule}: jobs in one only: {only}"
        differ = [name for name in jobs if scheduled[rule][name] != jobs[name]]
        assert not differ, f"{rule}: the dry run's params differ from Dag.job_params for {differ[:3]}"
    if config["generation"].get("lora_serving") == "merged":
        assert expected.get("merge_adapter")


if __name__ == "__main__":
    # The table of cases and their messages (issue 14's closing note):
    #   PYTHONPATH=src python tests/test_reliability.py
    import tempfile

    import huggingface_hub.constants

    for case_id, overlay, cli, _ in CONFIG_CASES:
        scratch = Path(tempfile.mkdtemp())
        _scratch(scratch)
        huggingface_hub.constants.HF_HUB_CACHE = str(scratch / "hub")
        try:
            parse(scratch, overlay, cli)
            lines = ["(no error)"]
        except ConfigError as e:
            lines = [line.replace(str(scratch), "<tmp>") for line in str(e).splitlines()
                     if not re.fullmatch(r"\d+ config problems?:", line)]
        print(f"| {case_id} | {'<br>'.join(lines).replace('|', '&#124;')} |")
