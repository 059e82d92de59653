"""Preference training of one variant, and the shared reference log-probs.

    python -m safealign.train.run ref-logps --params JSON --pairs FILE --out FILE
    python -m safealign.train.run train --params JSON --pairs FILE [--ref-logps FILE] --out DIR --log FILE

Every reference-based DPO-family method on the same (base model, data, max_length) reads the same
reference log-probs: ``ref-logps`` computes them once through TRL's own precompute path
(``DPOTrainer._precompute_ref_logps``) and ``train`` feeds them back through
:class:`SharedReferenceDPOTrainer`, so the reference model is never re-run per method.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

from .. import io
from ..cli import setup
from ..models import describe, load_model, load_tokenizer
from . import methods

log = logging.getLogger(__name__)


def _device_flags(settings: dict[str, Any]) -> tuple[bool, bool]:
    import torch

    cuda = torch.cuda.is_available()
    return (not cuda, bool(cuda and settings.get("bf16", False)))


def _dataset(pairs: list[dict[str, Any]], trainer: str):
    from datasets import Dataset

    cols = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in pairs]
    if trainer == "kto":
        cols = methods.to_unpaired(cols)
    return Dataset.from_list(cols)


def shared_reference_trainer():
    """DPOTrainer whose precompute step reads reference log-probs from a file instead of a model."""
    _, dpo_trainer = methods.classes("dpo")

    class SharedReferenceDPOTrainer(dpo_trainer):
        shared_ref_logps: list[dict[str, float]] = []

        def __init__(self, *args, **kwargs):
            # TRL sha256-hashes every weight (on CPU) to key its precompute cache, which the shared
            # file bypasses; on an 11B model that hash alone costs tens of seconds per method.
            trl_module = sys.modules[dpo_trainer.__module__]
            with mock.patch.object(trl_module, "hash_module", lambda module: "shared-reference-file"):
                super().__init__(*args, **kwargs)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            refs = self.shared_ref_logps
            if len(refs) != len(dataset):
                raise ValueError(f"shared reference log-probs have {len(refs)} rows, "
                                 f"the {name} dataset {len(dataset)}: recompute them")
            dataset = dataset.add_column("ref_chosen_logps", [r["ref_chosen_logps"] for r in refs])
            return dataset.add_column("ref_rejected_logps", [r["ref_rejected_logps"] for r in refs])

    return SharedReferenceDPOTrainer


def compute_ref_logps(model_ref: dict, pairs: list[dict], settings: dict) -> list[dict[str, float]]:
    """Reference log-probs of every pair, through TRL's precompute path on the base model.

    ``settings`` are :func:`safealign.grid.reference_settings`: the base model is loaded exactly as
    the policy of every variant that reads these log-probs (dtype, 4-bit, bf16 autocast), so they
    equal the reference TRL would compute inside each training run.
    """
    config_cls, trainer_cls = methods.classes("dpo")
    use_cpu, bf16 = _device_flags(settings)
    tok = load_tokenizer(model_ref, padding_side="right")
    model = load_model(model_ref, dtype=settings.get("dtype", "float32"), quantization=settings.get("quantization"))
    peft_config = None
    if settings.get("quantization"):
        from peft import LoraConfig

        # The Trainer refuses a purely quantized model. With a LoRA adapter that TRL disables while
        # it computes the reference, this is the reference a QLoRA run computes for itself.
        peft_config = LoraConfig(r=8, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory() as tmp:
        args = config_cls(output_dir=tmp, use_cpu=use_cpu, bf16=bf16, report_to=[],
                          precompute_ref_log_probs=True, max_length=settings["max_length"],
                          precompute_ref_batch_size=settings.get("batch_size", 16))
        trainer = trainer_cls(model=model, args=args, train_dataset=_dataset(pairs, "dpo"),
                              processing_class=tok, peft_config=peft_config)
        ds = trainer.train_dataset
        return [{"id": p["id"], "ref_chosen_logps": float(c), "ref_rejected_logps": float(r)}
                for p, c, r in zip(pairs, ds["ref_chosen_logps"], ds["ref_rejected_logps"], strict=True)]


def pair_margins(model, tok, pairs: list[dict], max_length: int | None = None, batch_size: int = 32) -> list[float]:
    """log pi(chosen|x) - log pi(rejected|x), summed over completion tokens, per pair.

    Sequences are cut to ``max_length`` tokens keeping the start, as TRL's trainers cut them, so on
    the untrained model these are exactly the reference log-prob margins. Written here (not TRL)
    because it must work the same for every trainer, KTO/ORPO included.
    """
    import torch

    from ..chat import render

    def logps(convs_prompt, convs_full):
        out = []
        for i in range(0, len(convs_full), batch_size):
            prompts = [render(tok, c, add_generation_prompt=True) for c in convs_prompt[i : i + batch_size]]
            fulls = [render(tok, c, add_generation_prompt=False) for c in convs_full[i : i + batch_size]]
            enc = tok(fulls, return_tensors="pt", padding=True, add_special_tokens=False,
                      truncation=max_length is not None, max_length=max_length).to(model.device)
            with torch.no_grad():
                logits = model(**enc).logits[:, :-1].float()
            lp = torch.log_softmax(logits, -1).gather(-1, enc["input_ids"][:, 1:, None])[..., 0]
            for j, prompt in enumerate(prompts):
                n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
                mask = enc["attention_mask"][j, 1:].clone()
                mask[: n_prompt - 1] = 0
                out.append(float((lp[j] * mask).sum()))
        return out

    prompts = [p["prompt"] for p in pairs]
    chosen = logps(prompts, [p["prompt"] + p["chosen"] for p in pairs])
    rejected = logps(prompts, [p["prompt"] + p["rejected"] for p in pairs])
    return [c - r for c, r in zip(chosen, rejected, strict=True)]


def _make_reproducible(out: Path) -> None:
    """Same training, same bytes: peft writes target_modules from a set (order varies between
    processes) and the Trainer pickles its arguments with the temporary output dir; the settings
    are recorded in train.json instead."""
    cfg_path = out / "adapter_config.json"
    if cfg_path.exists():
        cfg = json.loads(cfg_path.read_text())
        if isinstance(cfg.get("target_modules"), list):
            cfg["target_modules"] = sorted(cfg["target_modules"])
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    (out / "training_args.bin").unlink(missing_ok=True)


def train(model_ref: dict, pairs: list[dict], settings: dict, out: Path,
          ref_logps: list[dict] | None = None) -> dict[str, Any]:
    """Train one variant; saves the adapter (or full model) in ``out``; returns the training log."""
    import torch

    torch.manual_seed(int(settings["seed"]))
    use_cpu, bf16 = _device_flags(settings)
    tok = load_tokenizer(model_ref, padding_side="right")
    peft_kind = settings.get("peft", "lora")
    model = load_model(model_ref, dtype=settings.get("dtype", "float32"),
                       quantization="4bit" if peft_kind == "qlora" else None)
    model.train()
    peft_config = None
    if peft_kind in ("lora", "qlora"):
        from peft import LoraConfig

        lora = settings["lora"]
        peft_config = LoraConfig(r=int(lora["r"]), lora_alpha=int(lora["alpha"]),
                                 lora_dropout=float(lora["dropout"]),
                                 target_modules=list(lora["target_modules"]), task_type="CAUSAL_LM")
    trainer_name = settings["trainer"]
    shared = ref_logps is not None
    _, trainer_cls = methods.classes(trainer_name)
    if shared:
        trainer_cls = shared_reference_trainer()
        trainer_cls.shared_ref_logps = ref_logps
        # Before training the policy is the reference, so its margins are the shared reference
        # log-probs' (tests/test_training.py checks they agree): sharing skips this pass too.
        before = [r["ref_chosen_logps"] - r["ref_rejected_logps"] for r in ref_logps]
    else:
        model.eval()
        before = pair_margins(model, tok, pairs, settings["max_length"])
        model.train()
    with tempfile.TemporaryDirectory() as tmp:
        args = methods.trl_config(settings, tmp, use_cpu, bf16)
        if shared:
            args.precompute_ref_log_probs = True
        trainer = trainer_cls(model=model, args=args, train_dataset=_dataset(pairs, trainer_name),
                              processing_class=tok, peft_config=peft_config)
        result = trainer.train()
        trainer.model.eval()
        after = pair_margins(trainer.model, tok, pairs, settings["max_length"])
        trainer.save_model(str(out))
    _make_reproducible(out)
    tok.save_pretrained(out)
    return {
        "train_loss": result.training_loss,
        "log_history": trainer.state.log_history,
        "margin_before": sum(before) / len(before),
        "margin_after": sum(after) / len(after),
        "shared_reference": shared,
        "settings": settings,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("what", choices=["ref-logps", "train"])
    p.add_argument("--params", required=True)
    p.add_argument("--pairs", required=True)
    p.add_argument("--ref-logps")
    p.add_argument("--out", required=True)
    p.add_argument("--log")
    args = p.parse_args()
    params = setup(args)
    pairs = io.read_jsonl(args.pairs)
    model_ref = params["model"]
    if args.what == "ref-logps":
        rows = compute_ref_logps(model_ref, pairs, params)
        io.write_jsonl(args.out, rows)
        return
    refs = io.read_jsonl(args.ref_logps) if args.ref_logps else None
    if refs is not None and [r["id"] for r in refs] != [p_["id"] for p_ in pairs]:
        raise ValueError(f"{args.ref_logps} does not match {args.pairs} row for row")
    with io.atomic_dir(args.out) as tmp:
        record = train(model_ref, pairs, params["settings"], tmp, refs)
    io.write_json(args.log, io.provenance(model=describe(model_ref), **record))


if __name__ == "__main__":
    main()
