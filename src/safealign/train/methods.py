"""One adapter over TRL's preference trainers (stable and ``trl.experimental`` import paths).

``trainer`` names in the config: ``dpo`` (DPOTrainer, every paper loss), ``kto`` (KTOTrainer,
unpaired), ``orpo`` (trl.experimental.orpo) and ``cpo`` (trl.experimental.cpo; loss_type
``simpo`` gives SimPO). Only this module knows where each class lives.
"""

from __future__ import annotations

import os
import re
from functools import cache
from typing import Any

# TRL 1.16's DPOTrainer loss types (its DPOConfig docstring); tests/test_losses.py checks them.
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)
TRAINERS = ("dpo", "kto", "orpo", "cpo")
LOSS_TYPES = {
    "dpo": DPO_LOSS_TYPES,
    "kto": ("kto", "apo_zero_unpaired"),
    "orpo": (None,),
    "cpo": ("sigmoid", "hinge", "ipo", "simpo", "alphapo"),
}


def trl_dpo_loss_types() -> tuple[str, ...]:
    """Loss types the installed TRL's DPOConfig documents (to catch a TRL upgrade)."""
    from trl import DPOConfig

    doc = DPOConfig.__doc__ or ""
    block = doc[doc.find("loss_type") : doc.find("loss_weights")]
    return tuple(re.findall(r"`'([a-z_]+)'`", block))


@cache
def classes(trainer: str) -> tuple[type, type]:
    """(ConfigClass, TrainerClass) for a trainer name."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    if trainer == "dpo":
        from trl import DPOConfig, DPOTrainer

        return DPOConfig, DPOTrainer
    if trainer == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOConfig, KTOTrainer
    if trainer == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer
    if trainer == "cpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        return CPOConfig, CPOTrainer
    raise ValueError(f"trainer must be one of {TRAINERS}, got {trainer!r}")


def to_unpaired(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Split preference pairs into KTO's unpaired rows (desirable chosen, undesirable rejected)."""
    rows = []
    for r in pairs:
        rows.append({"prompt": r["prompt"], "completion": r["chosen"], "label": True})
        rows.append({"prompt": r["prompt"], "completion": r["rejected"], "label": False})
    return rows


# Config keys (training settings) passed straight to the TRL config class when it accepts them.
PASSTHROUGH = (
    "beta", "learning_rate", "lr_scheduler_type", "warmup_ratio", "num_train_epochs",
    "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "optim",
    "label_smoothing", "gradient_checkpointing", "seed", "simpo_gamma", "cpo_alpha",
    "desirable_weight", "undesirable_weight", "max_prompt_length", "weight_decay",
)


def trl_config(settings: dict[str, Any], output_dir: str, use_cpu: bool, bf16: bool):
    """Build the TRL config for a method's merged settings."""
    import inspect

    config_cls, _ = classes(settings["trainer"])
    accepted = set(inspect.signature(config_cls).parameters)
    kwargs: dict[str, Any] = {k: settings[k] for k in PASSTHROUGH if k in settings and k in accepted}
    # transformers 5 has no warmup_ratio: its warmup_steps takes a float in [0, 1) as a ratio.
    if "warmup_ratio" in settings:
        kwargs["warmup_steps"] = float(settings["warmup_ratio"])
    loss_type = settings.get("loss_type")
    if loss_type is not None and "loss_type" in accepted:
        kwargs["loss_type"] = [loss_type] if settings["trainer"] == "dpo" else loss_type
    if settings["trainer"] == "dpo" and loss_type == "exo_pair" and not settings.get("label_smoothing"):
        raise ValueError("loss_type exo_pair needs label_smoothing > 0")
    return config_cls(
        output_dir=output_dir, use_cpu=use_cpu, bf16=bf16, report_to=[], save_strategy="no",
        logging_steps=1, disable_tqdm=False, dataloader_num_workers=0, **kwargs,
    )
