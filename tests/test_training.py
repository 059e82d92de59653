"""Training stage: shared reference log-probs are TRL's own, every trainer moves the margin."""

from pathlib import Path

import pytest
import torch

from safealign.data.preference import from_pku
from safealign.train import methods
from safealign.models import load_model, load_tokenizer
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
    """TRL's precompute path hashes every weight for its cache key; the shared path must not."""
    import trl.trainer.dpo_trainer as dpo_module

    def boom(module):
        raise AssertionError("hash_module called")

    monkeypatch.setattr(dpo_module, "hash_module", boom)
    ref, pairs = tiny
    refs = [{"id": p["id"], "ref_chosen_logps": -1.0, "ref_rejected_logps": -2.0} for p in pairs]
    log = train(ref, pairs, {**SETTINGS, "num_train_epochs": 0.25}, tmp_path / "out", refs)
    assert log["shared_reference"] and log["margin_before"] == pytest.approx(1.0)
    with pytest.raises(AssertionError, match="hash_module called"):  # TRL's own precompute does hash
        compute_ref_logps(ref, pairs, {"max_length": SETTINGS["max_length"]})


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
    if loss_type == "simpo":
        s.update(simpo_gamma=0.5, cpo_alpha=0.0)
    log = train(ref, pairs, s, tmp_path / "out", None)
    assert log["margin_after"] > log["margin_before"], (log["margin_before"], log["margin_after"])
    assert (tmp_path / "out" / "adapter_config.json").exists()


def test_kto_rows_are_unpaired():
    pairs = [{"prompt": "p", "chosen": "c", "rejected": "r"}]
    assert methods.to_unpaired(pairs) == [{"prompt": "p", "completion": "c", "label": True},
                                          {"prompt": "p", "completion": "r", "label": False}]


def test_trl_config_carries_the_method_settings(tmp_path):
    cfg = methods.trl_config({**SETTINGS, "loss_type": "exo_pair", "label_smoothing": 1e-3}, str(tmp_path), True, False)
    assert cfg.loss_type == ["exo_pair"] and cfg.label_smoothing == 1e-3 and cfg.beta == 0.1
    with pytest.raises(ValueError, match="exo_pair needs label_smoothing > 0"):
        methods.trl_config({**SETTINGS, "loss_type": "exo_pair"}, str(tmp_path), True, False)
    simpo = methods.trl_config({**SETTINGS, "trainer": "cpo", "loss_type": "simpo", "simpo_gamma": 0.5,
                                "cpo_alpha": 0.0}, str(tmp_path), True, False)
    assert type(simpo).__name__ == "CPOConfig" and simpo.loss_type == "simpo" and simpo.cpo_alpha == 0.0


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
