"""Training stage: shared reference log-probs are TRL's own, every trainer moves the margin."""

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from safealign import grid
from safealign.data.preference import from_pku
from safealign.models import load_model, load_tokenizer
from safealign.train import methods, trl_fields
from safealign.train.run import compute_ref_logps, pair_margins, train
from safealign.world import build, data

SETTINGS = {
    "trainer": "dpo", "loss_type": "sigmoid", "peft": "lora",
    "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
    "beta": 0.1, "learning_rate": 5e-3, "lr_scheduler_type": "constant", "warmup_ratio": 0.0,
    "num_train_epochs": 1, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
    "max_length": 96, "optim": "adamw_torch", "label_smoothing": 0.0, "seed": 0,
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    world = data.build(data.WorldParams(n_preference_pairs=32))
    spec = {"vocab_size": 400,
            "architecture": {"hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128,
                             "num_hidden_layers": 1, "max_position_embeddings": 96},
            "train": {"epochs": 0.3, "learning_rate": 3e-3, "batch_size": 32}}
    out = tmp_path_factory.mktemp("base")
    build.build_base_model(world["corpus"][:600], spec, out, seed=0)
    return {"path": str(out)}, from_pku(world["preference"])


def test_shared_reference_equals_trls_own_reference(tiny, tmp_path):
    """One epoch with the shared file gives the same losses as TRL computing the reference itself."""
    ref, pairs = tiny
    refs = compute_ref_logps(ref, pairs, {"max_length": SETTINGS["max_length"]})
    assert len(refs) == len(pairs) and all(r["ref_chosen_logps"] < 0 for r in refs)
    shared = train(ref, pairs, SETTINGS, tmp_path / "shared", refs)
    alone = train(ref, pairs, SETTINGS, tmp_path / "alone", None)
    ls = [h["loss"] for h in shared["log_history"] if "loss" in h]
    la = [h["loss"] for h in alone["log_history"] if "loss" in h]
    assert len(ls) == len(la) == 4
    assert ls == pytest.approx(la, abs=1e-4)
    assert shared["shared_reference"] and not alone["shared_reference"]
    # The shared run takes its before-training margins from the file, the other measures the policy:
    # the same numbers, or reading them from the file would be wrong.
    assert shared["margin_before"] == pytest.approx(alone["margin_before"], abs=1e-4)
    assert shared["margin_after"] == pytest.approx(alone["margin_after"], abs=1e-3)


def test_pair_margins_of_the_base_model_are_the_reference_margins(tiny):
    """Per pair, the margin helper on the untrained model equals TRL's reference log-prob margin."""
    ref, pairs = tiny
    refs = compute_ref_logps(ref, pairs, {"max_length": SETTINGS["max_length"]})
    model = load_model(ref)
    model.eval()
    margins = pair_margins(model, load_tokenizer(ref, padding_side="right"), pairs, SETTINGS["max_length"])
    assert margins == pytest.approx([r["ref_chosen_logps"] - r["ref_rejected_logps"] for r in refs], abs=1e-4)
    assert len({round(m, 3) for m in margins}) > len(pairs) // 2  # real per-pair values, not one constant


def test_quantized_reference_goes_through_a_disabled_adapter(tiny, monkeypatch):
    """QLoRA's reference (4-bit, GPU only) is computed under a LoRA adapter that TRL disables; on CPU
    the same path on the fp32 model must give the plain reference log-probs."""
    import safealign.train.run as run

    ref, pairs = tiny
    plain = compute_ref_logps(ref, pairs, {"max_length": SETTINGS["max_length"]})
    seen = []

    def fp32_instead_of_4bit(model_ref, dtype="float32", quantization=None):
        seen.append(quantization)
        return load_model(model_ref, dtype=dtype)

    monkeypatch.setattr(run, "load_model", fp32_instead_of_4bit)
    via_adapter = compute_ref_logps(ref, pairs, {"max_length": SETTINGS["max_length"], "quantization": "4bit"})
    assert seen == ["4bit"]
    for a, b in zip(plain, via_adapter, strict=True):
        assert a["ref_chosen_logps"] == pytest.approx(b["ref_chosen_logps"], abs=1e-4)
        assert a["ref_rejected_logps"] == pytest.approx(b["ref_rejected_logps"], abs=1e-4)


def test_shared_reference_never_hashes_the_model(tiny, tmp_path, monkeypatch):
    """TRL's precompute path hashes every weight for a cache key nothing here uses: neither the
    shared path nor the ref_logps job may pay for it."""
    import trl.trainer.dpo_trainer as dpo_module

    def boom(module):
        raise AssertionError("hash_module called")

    monkeypatch.setattr(dpo_module, "hash_module", boom)
    ref, pairs = tiny
    refs = [{"id": p["id"], "ref_chosen_logps": -1.0, "ref_rejected_logps": -2.0} for p in pairs]
    log = train(ref, pairs, {**SETTINGS, "num_train_epochs": 0.25}, tmp_path / "out", refs)
    assert log["shared_reference"] and log["margin_before"] == pytest.approx(1.0)
    computed = compute_ref_logps(ref, pairs, {"max_length": SETTINGS["max_length"]})
    assert len(computed) == len(pairs) and all(r["ref_chosen_logps"] < 0 for r in computed)
    # TRL's own precompute does hash (what the patch avoids): a DPOTrainer made without it calls boom.
    from trl import DPOConfig, DPOTrainer

    from safealign.models import load_model, load_tokenizer
    from safealign.train.run import _dataset

    args = DPOConfig(output_dir=str(tmp_path / "trl"), use_cpu=True, bf16=False, report_to=[],
                     precompute_ref_log_probs=True, max_length=SETTINGS["max_length"])
    with pytest.raises(AssertionError, match="hash_module called"):
        DPOTrainer(model=load_model(ref), args=args, train_dataset=_dataset(pairs, "dpo"),
                   processing_class=load_tokenizer(ref, padding_side="right"))


def test_reference_and_training_score_only_labelled_positions(tiny, tmp_path, monkeypatch, lm_head_rows):
    """The ref_logps and train entry points make TRL's fused LM head score only the completion's
    positions on CPU (safealign.train.trl_compat): fewer rows, the same reference log-probs."""
    import trl.trainer.utils as trl_utils

    from safealign.train import trl_compat

    ref, pairs = tiny
    rows = lm_head_rows
    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)  # TRL's own CPU rule
    settings = {"max_length": SETTINGS["max_length"]}
    with monkeypatch.context() as m:
        m.setattr(trl_compat, "score_labelled_positions_only", lambda: False)
        every_position = compute_ref_logps(ref, pairs, settings)
    n_every, rows[:] = sum(rows), []
    labelled_only = compute_ref_logps(ref, pairs, settings)
    assert 0 < sum(rows) < 0.8 * n_every
    for a, b in zip(every_position, labelled_only, strict=True):
        assert a["ref_chosen_logps"] == pytest.approx(b["ref_chosen_logps"], abs=1e-4)
        assert a["ref_rejected_logps"] == pytest.approx(b["ref_rejected_logps"], abs=1e-4)
    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)
    train(ref, pairs, {**SETTINGS, "num_train_epochs": 0.25}, tmp_path / "out", labelled_only)
    assert trl_utils._use_triton(torch.device("cpu"))


def test_wrong_shared_reference_changes_the_loss(tiny, tmp_path):
    ref, pairs = tiny
    refs = compute_ref_logps(ref, pairs, {"max_length": SETTINGS["max_length"]})
    skewed = [{**r, "ref_chosen_logps": r["ref_chosen_logps"] + 5.0} for r in refs]
    a = train(ref, pairs, SETTINGS, tmp_path / "a", refs)["log_history"][0]["loss"]
    b = train(ref, pairs, SETTINGS, tmp_path / "b", skewed)["log_history"][0]["loss"]
    assert abs(a - b) > 1e-3


@pytest.mark.parametrize("trainer, loss_type", [("dpo", "nca_pair"), ("dpo", "ipo"), ("kto", "kto"),
                                                ("orpo", None), ("cpo", "simpo")])
def test_each_trainer_moves_the_margin_toward_chosen(tiny, tmp_path, trainer, loss_type):
    ref, pairs = tiny
    s = {**SETTINGS, "trainer": trainer, "loss_type": loss_type, "num_train_epochs": 2}
    if trainer in ("kto", "orpo"):
        del s["label_smoothing"]  # KTOConfig and ORPOConfig have none: trl_config refuses it
    if trainer == "orpo":
        del s["loss_type"]
        # ORPO's beta is its odds-ratio weight lambda; at the ORPO paper's 0.1 the SFT term dominates
        # and, on this 32-pair world, moves the mean margin by about 0 in two epochs (measured
        # 25.581 -> 25.575; 25.716 at 0.5, 25.884 at 1.0): weight the term this test is about.
        s["beta"] = 1.0
    if loss_type == "simpo":
        s.update(simpo_gamma=0.5, cpo_alpha=0.0)
    log = train(ref, pairs, s, tmp_path / "out", None)
    assert log["margin_after"] > log["margin_before"], (log["margin_before"], log["margin_after"])
    eff = log["effective_hyperparameters"]  # what train.json shows: the values the trainer ran with
    assert eff["trainer"] == trainer and eff["beta"] == s["beta"] and eff["num_train_epochs"] == 2
    assert eff["loss_type"] == loss_type if trainer != "orpo" else "loss_type" not in eff
    assert eff["lora_r"] == 8 and eff["dtype"] == "float32" and eff["bf16"] is False
    assert (tmp_path / "out" / "adapter_config.json").exists()


def test_kto_rows_are_unpaired():
    pairs = [{"prompt": "p", "chosen": "c", "rejected": "r"}]
    assert methods.to_unpaired(pairs, 16) == [{"prompt": "p", "completion": "c", "label": True},
                                              {"prompt": "p", "completion": "r", "label": False}]


def test_trl_config_carries_the_method_settings(tmp_path):
    cfg = methods.trl_config({**SETTINGS, "loss_type": "exo_pair", "label_smoothing": 1e-3}, str(tmp_path), True, False)
    assert cfg.loss_type == ["exo_pair"] and cfg.label_smoothing == 1e-3 and cfg.beta == 0.1
    with pytest.raises(ValueError, match="exo_pair needs label_smoothing > 0"):
        methods.trl_config({**SETTINGS, "loss_type": "exo_pair"}, str(tmp_path), True, False)
    simpo = methods.trl_config({**SETTINGS, "trainer": "cpo", "loss_type": "simpo", "simpo_gamma": 0.5,
                                "cpo_alpha": 0.0}, str(tmp_path), True, False)
    assert type(simpo).__name__ == "CPOConfig" and simpo.loss_type == "simpo" and simpo.cpo_alpha == 0.0


def test_static_trl_field_table_matches_installed_trl():
    """checks.py decides at parse time from trl_fields; it must be what the installed TRL accepts."""
    from transformers import TrainingArguments

    base = {f.name for f in dataclasses.fields(TrainingArguments)}
    assert set(trl_fields.TRAINING_ARGUMENTS_FIELDS) == base, sorted(base ^ trl_fields.TRAINING_ARGUMENTS_FIELDS)
    for trainer in methods.TRAINERS:
        config_cls, _ = methods.classes(trainer)
        fields = {f.name for f in dataclasses.fields(config_cls)}
        assert trl_fields.config_class_name(trainer) == config_cls.__name__
        assert trl_fields.accepted_fields(trainer) == fields, (trainer, sorted(fields - base))


def test_label_smoothing_default_is_trls():
    """methods.TRL_LABEL_SMOOTHING (what the parse-time checks assume when no block sets
    label_smoothing) is the default of every installed TRL config class that has the field."""
    seen = 0
    for trainer in methods.TRAINERS:
        config_cls, _ = methods.classes(trainer)
        field = {f.name: f for f in dataclasses.fields(config_cls)}.get("label_smoothing")
        if field is not None:
            seen += 1
            assert field.default == methods.TRL_LABEL_SMOOTHING, (config_cls.__name__, field.default)
    assert seen, "no TRL config class has label_smoothing"


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml", "paper.yaml+paper-extended.yaml"])
def test_every_configured_training_key_reaches_the_trainer(name, tmp_path):
    """For every method of a shipped config: each merged training key is on the TRL config with its
    configured value (warmup_ratio as warmup_steps, a DPO loss_type as a one-element list) or is one
    of the keys the workflow itself consumes."""
    from snakemake.utils import update_config

    first, *overlays = name.split("+")  # an overlay is given after the config it extends
    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / first).read_text())
    for overlay in overlays:
        update_config(cfg, yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / overlay).read_text()))
    seen = set()
    for v in grid.variants(cfg):
        if not v.method:
            continue
        args = methods.trl_config(v.settings, str(tmp_path), use_cpu=True, bf16=False)
        for key, value in v.settings.items():
            if key in methods.WORKFLOW_KEYS:
                continue
            if key == "loss_type" and v.settings["trainer"] == "dpo":
                assert args.loss_type == [value], (v.name, key)
            elif key in methods.MAPPED:  # warmup_ratio -> warmup_steps, gradient_checkpointing -> activation_...
                assert getattr(args, methods.MAPPED[key]) == value, (v.name, key)
            else:
                assert getattr(args, key) == value, (v.name, key, getattr(args, key), value)
            seen.add(key)
        seen.add(v.settings["trainer"])
    assert {"warmup_ratio", "gradient_checkpointing", "beta", "learning_rate", "optim", "max_length",
            "seed"} <= seen
    assert {m["trainer"] for m in cfg["methods"].values()} <= seen


def test_workflow_keys_are_not_trl_fields_except_bf16():
    """The workflow-consumed keys must not shadow a TRL field (bf16 is the one it passes on a GPU)."""
    for trainer in methods.TRAINERS:
        assert set(methods.WORKFLOW_KEYS) & trl_fields.accepted_fields(trainer) == {"bf16"}


@pytest.mark.parametrize("trainer, key, needle", [
    ("kto", "label_smoothing", "label_smoothing is not a setting of TRL's KTOConfig (trainer 'kto')"),
    ("orpo", "label_smoothing", "label_smoothing is not a setting of TRL's ORPOConfig (trainer 'orpo')"),
    ("dpo", "simpo_gamma", "simpo_gamma is not a setting of TRL's DPOConfig (trainer 'dpo')"),
    ("dpo", "max_prompt_length", "max_prompt_length has no TRL 1.16 field"),
])
def test_trl_config_refuses_a_key_the_trainer_does_not_have(tmp_path, trainer, key, needle):
    s = {**SETTINGS, "trainer": trainer, "loss_type": None if trainer == "orpo" else SETTINGS["loss_type"]}
    s.pop("label_smoothing")
    if trainer == "kto":
        s["loss_type"] = "kto"
    with pytest.raises(ValueError, match=re.escape(needle)):
        methods.trl_config({**s, key: 1}, str(tmp_path), True, False)


def test_effective_hyperparameters_are_what_the_trl_config_carries(tmp_path):
    from peft import LoraConfig

    s = {**SETTINGS, "trainer": "cpo", "loss_type": "simpo", "beta": 2.0, "simpo_gamma": 0.5,
         "cpo_alpha": 0.0, "warmup_ratio": 0.1, "lr_scheduler_type": "cosine", "weight_decay": 0.01}
    args = methods.trl_config(s, str(tmp_path), True, False)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["v_proj", "q_proj"])
    eff = methods.effective_hyperparameters(args, s, "CPOTrainer", lora, "float32")
    assert eff["trainer"] == "cpo" and eff["trainer_class"] == "CPOTrainer" and eff["config_class"] == "CPOConfig"
    assert eff["loss_type"] == "simpo" and eff["beta"] == 2.0 and eff["simpo_gamma"] == 0.5
    assert eff["cpo_alpha"] == 0.0 and eff["label_smoothing"] == 0.0
    assert eff["warmup_steps"] == 0.1 and eff["lr_scheduler_type"] == "cosine" and eff["optim"] == "adamw_torch"
    assert eff["learning_rate"] == 5e-3 and eff["per_device_train_batch_size"] == 8
    assert eff["gradient_accumulation_steps"] == 1 and eff["max_length"] == 96 and eff["seed"] == 0
    assert eff["weight_decay"] == 0.01  # a configured key beyond the listed ones shows too
    assert eff["bf16"] is False and eff["use_cpu"] is True and eff["peft"] == "lora" and eff["dtype"] == "float32"
    assert (eff["lora_r"], eff["lora_alpha"], eff["lora_dropout"]) == (8, 16, 0.0)
    assert eff["lora_target_modules"] == ["q_proj", "v_proj"]
    json.dumps(eff)  # plain values only
    dpo = methods.effective_hyperparameters(methods.trl_config(SETTINGS, str(tmp_path), True, False),
                                            SETTINGS, "DPOTrainer")
    assert dpo["loss_type"] == "sigmoid" and dpo["beta"] == 0.1 and "simpo_gamma" not in dpo
    assert "lora_r" not in dpo


def test_pinned_trl_loss_types_match_the_adapter():
    assert set(methods.trl_dpo_loss_types()) == set(methods.DPO_LOSS_TYPES)


def test_full_fine_tuning_variant_is_loaded_as_the_model(tiny, tmp_path):
    """peft: full saves a whole model; generation and lm-eval then load it instead of base+adapter."""
    from safealign.capability.harness import model_args
    from safealign.generate import generate_texts
    from safealign.models import resolve_trained

    ref, pairs = tiny
    s = {**SETTINGS, "peft": "full", "learning_rate": 1e-3}
    train(ref, pairs[:8], s, tmp_path / "full", None)
    assert not (tmp_path / "full" / "adapter_config.json").exists()
    assert resolve_trained(ref, str(tmp_path / "full")) == ({"path": str(tmp_path / "full")}, None)
    assert model_args(ref, str(tmp_path / "full"), "float32")["pretrained"] == str(tmp_path / "full")
    out = generate_texts(ref, str(tmp_path / "full"), ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"],
                         {"max_new_tokens": 4, "batch_size": 1})
    assert len(out) == 1 and isinstance(out[0]["text"], str)


@pytest.mark.parametrize("key", ["output_dir", "use_cpu", "report_to", "save_strategy", "logging_steps",
                                 "disable_tqdm", "dataloader_num_workers", "precompute_ref_log_probs"])
def test_fields_the_workflow_sets_cannot_be_configured(tmp_path, key):
    """trl_config sets these itself: a configured one is a named error, not a clash or an override."""
    with pytest.raises(ValueError, match=f"^{key} is set by the workflow"):
        methods.trl_config({**SETTINGS, key: 1}, str(tmp_path), True, False)
