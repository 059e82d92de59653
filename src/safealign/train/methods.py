"""One adapter over TRL's preference trainers (stable and ``trl.experimental`` import paths).

``trainer`` names in the config: ``dpo`` (DPOTrainer, every paper loss), ``kto`` (KTOTrainer,
unpaired), ``orpo`` (trl.experimental.orpo) and ``cpo`` (trl.experimental.cpo; loss_type
``simpo`` gives SimPO). Only this module knows where each class lives.
"""

from __future__ import annotations

import enum
import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from . import trl_fields

# TRL 1.16's DPOTrainer loss types (its DPOConfig docstring); tests/test_losses.py checks them.
DPO_LOSS_TYPES = (
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
    "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
)
# The trainers: one table (trainer -> TRL module, config class, trainer class) from which the
# schema's `methods.<name>.trainer` enum (checked by tests/test_registries.py), the parse-time checks
# (safealign.checks, safealign.configload) and :func:`classes` derive; LOSS_TYPES has one entry per
# trainer (checked by the same test).
TRAINER_CLASSES = {
    "dpo": ("trl", "DPOConfig", "DPOTrainer"),
    "kto": ("trl", "KTOConfig", "KTOTrainer"),
    "orpo": ("trl.experimental.orpo", "ORPOConfig", "ORPOTrainer"),
    "cpo": ("trl.experimental.cpo", "CPOConfig", "CPOTrainer"),
}
TRAINERS = tuple(TRAINER_CLASSES)
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
    if trainer in TRAINER_CLASSES:
        module, config_cls, trainer_cls = TRAINER_CLASSES[trainer]
        mod = importlib.import_module(module)
        return getattr(mod, config_cls), getattr(mod, trainer_cls)
    raise ValueError(f"trainer must be one of {TRAINERS}, got {trainer!r}")


def to_unpaired(pairs: list[dict[str, Any]], batch_size: int) -> list[dict[str, Any]]:
    """Split preference pairs into KTO's unpaired rows (desirable chosen, undesirable rejected),
    ordered so that TRL's KL estimate never pairs a prompt with a completion of its own.

    TRL's KTO (``trl.trainer.kto_trainer``, sequential sampling) estimates its KL term from
    mismatched (prompt, completion) pairs made by rotating the completions by one within each
    chunk of ``batch_size`` (``per_device_train_batch_size``) rows: row i is scored with row i-1's
    completion, a chunk's first row with its last. Written as chosen, rejected of each pair in
    turn, every rejected row would be scored with its own prompt's chosen completion.

    Here the pairs go in blocks of k prompts, written ``c_1 r_2 c_3 ... `` then the opposite labels
    ``r_1 c_2 r_3 ...``: within a block neighbours differ in prompt, the wrap (last to first) too,
    and every batch mixes both labels. With an even ``batch_size`` B, k = B / 2 (2 for B = 2), so
    a block is exactly one chunk (two for B = 2), and a last block of one prompt trades a row with
    the block before: no KL pair matches. With an odd B, k = 3: a match is then possible only at
    a chunk's wrap. Exact as long as TRL drops no rows before it rotates (it drops prompts longer
    than ``max_length``). Hand-written: TRL has no option for it. tests/test_losses.py checks the
    rows TRL builds."""

    def row(r: dict[str, Any], desirable: bool) -> dict[str, Any]:
        return {"prompt": r["prompt"], "completion": r["chosen" if desirable else "rejected"], "label": desirable}

    k = max(2, batch_size // 2) if batch_size % 2 == 0 else 3
    blocks = [pairs[i:i + k] for i in range(0, len(pairs), k)]
    rows: list[dict[str, Any]] = []
    for block in blocks:
        rows += [row(r, i % 2 == 0) for i, r in enumerate(block)]
        rows += [row(r, i % 2 == 1) for i, r in enumerate(block)]
    if len(blocks) > 1 and len(blocks[-1]) == 1:
        # A last block of one prompt (c_x r_x) would pair x with itself: its r_x trades places with
        # the previous block's last row, a prompt that appears nowhere near x.
        rows[-1], rows[-3] = rows[-3], rows[-1]
    return rows


# Every key of a method's merged training settings either reaches the TRL config class (as itself,
# or through MAPPED) or is one of these, which the workflow itself consumes; anything else is a
# parse-time error (checks.py) and an error here (trl_config). Values: where it is consumed.
WORKFLOW_KEYS = {
    "trainer": "picks the TRL trainer and config class (classes)",
    "peft": "lora / qlora / full: peft adapter and 4-bit loading (run.train)",
    "lora": "peft LoraConfig r / alpha / dropout / target_modules (run.train)",
    "lora_r": "sweep shorthand for lora.r (grid.merged_training folds it into lora)",
    "dtype": "weights dtype when loading the model (models.load_model)",
    "bf16": "bf16 autocast; reaches TRL's bf16 only on a GPU (run._device_flags)",
    "share_reference": "DPO family: read the shared reference log-probs (grid.shares_reference)",
    "seeds": "one variant per seed (grid.variants)",
    "enabled": "drops a method from the grid (grid.variants)",
    "checkpoint_steps": ("trainer checkpoint interval for resuming a killed job; kept out of the train "
                         "rule's params, so changing it never reruns training (grid.RUN_KEYS, run.train)"),
    "keep_global_batch": ("with N data-parallel processes (resources gpu: N), split the global batch "
                          "instead of multiplying it by N (distribute_batch)"),
}
# What a workflow key means where a method's merged settings leave it out (the schema has no
# default for training keys: a default there would be merged into every block; a method must name
# its trainer, so "trainer" serves settings built without one). Read them with
# workflow_setting; keep_global_batch: N data-parallel processes keep the method's global batch
# (per-device x accumulation, as configured for one process).
WORKFLOW_DEFAULTS: dict[str, Any] = {
    "trainer": "dpo",
    "peft": "lora",
    "dtype": "float32",
    "share_reference": True,
    "checkpoint_steps": 100,
    "keep_global_batch": True,
}
# TRL's label_smoothing default (tests/test_training.py checks it against the installed TRL).
TRL_LABEL_SMOOTHING = 0.0


def workflow_setting(settings: dict[str, Any], key: str) -> Any:
    """A workflow key of a method's (merged) settings, or its :data:`WORKFLOW_DEFAULTS` value."""
    return settings.get(key, WORKFLOW_DEFAULTS[key])
# Keys that reach TRL under another name or shape (documented in config/README.md).
MAPPED = {
    # transformers 5 has no warmup_ratio: its warmup_steps takes a float in [0, 1) as a ratio.
    "warmup_ratio": "warmup_steps",
    # transformers 5.23 renamed it (the old name still works, with a FutureWarning).
    "gradient_checkpointing": "activation_checkpointing",
    # DPOConfig.loss_type is a list (TRL 1.16 can mix losses); the other trainers take a string.
    "loss_type": "loss_type",
}
# TRL config fields a config may not set, and why.
REJECTED = {
    "max_prompt_length": (
        "has no TRL 1.16 field: TRL 1.16 truncates prompt + completion together to max_length "
        "(see its truncation_mode), where TRL 0.11 first cut the prompt to max_prompt_length; "
        "remove the key and set max_length"),
    "output_dir": "is set by the workflow (the rule's output)",
    "use_cpu": "is set by the workflow (CPU exactly when no GPU is visible)",
    "fp16": "is not supported: set bf16 (autocast on a GPU) or dtype",
    "report_to": "is set by the workflow (the log goes to train.json)",
    "save_strategy": "is set by the workflow (from checkpoint_steps)",
    "save_steps": "is set by the workflow: set checkpoint_steps",
    "save_total_limit": "is set by the workflow (the last checkpoint is kept until the adapter is written)",
    "save_only_model": "is set by the workflow (checkpoints keep optimizer and RNG state to resume exactly)",
    "resume_from_checkpoint": "is set by the workflow (a rerun resumes from the last checkpoint)",
    "logging_nan_inf_filter": "is set by the workflow (off: a non-finite loss stops training)",
    "logging_steps": "is set by the workflow (every step is logged to train.json)",
    "precompute_ref_log_probs": "is set by the workflow (see share_reference)",
    "disable_tqdm": "is set by the workflow",
    "dataloader_num_workers": "is set by the workflow (0: data is tokenized in the job's process)",
    "label_smoothing_factor": ("is ignored by TRL's preference trainers (their compute_loss has no label "
                               "smoother): set label_smoothing where the trainer has it"),
}

# What beta means differs per trainer: DPO's KL weight (TRL default 0.1; the paper's recipe 0.01),
# ORPO's odds-ratio weight lambda (ORPO paper: 0.1), SimPO's reward scale (SimPO paper: 2.0-2.5,
# with gamma), KTO's own (KTO paper, TRL default: 0.1), CPO's (CPO paper, TRL default: 0.1).
# Precedence (config/README.md, schema `training.beta`): a method's own `beta` wins; otherwise a
# (trainer, loss_type) listed here takes this default; only the DPO family (trainer dpo) inherits
# `training.beta` / `models.<m>.training.beta`. Key (trainer, None) covers that trainer's other
# loss types.
BETA_DEFAULTS: dict[tuple[str, str | None], float] = {
    ("kto", None): 0.1,
    ("orpo", None): 0.1,
    ("cpo", None): 0.1,
    ("cpo", "simpo"): 2.0,
}


def default_beta(trainer: str, loss_type: str | None) -> float | None:
    """The registry beta of a (trainer, loss_type); None for the DPO family (training.beta applies)."""
    return BETA_DEFAULTS.get((trainer, loss_type), BETA_DEFAULTS.get((trainer, None)))


def key_problems(settings: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, why) for every merged training key that would not reach the method's trainer.

    Pure and import-free (the static table in :mod:`.trl_fields`), so parse-time checks stay fast.
    """
    trainer = workflow_setting(settings, "trainer")
    accepted = trl_fields.accepted_fields(trainer)
    cls = trl_fields.config_class_name(trainer)
    out = []
    for key in sorted(settings):
        if key in WORKFLOW_KEYS:
            continue
        if key in REJECTED:
            out.append((key, REJECTED[key]))
        elif key == "loss_type":
            if settings[key] is not None and "loss_type" not in accepted:
                out.append((key, f"is not a setting of TRL's {cls} (trainer {trainer!r}; it has one loss)"))
        elif key in MAPPED:
            if MAPPED[key] in settings:
                out.append((key, f"and {MAPPED[key]} are the same setting ({key} becomes {MAPPED[key]}); set one"))
        elif key not in accepted:
            out.append((key, f"is not a setting of TRL's {cls} (trainer {trainer!r})"))
    return out


def distribute_batch(settings: dict[str, Any], processes: int) -> tuple[dict[str, Any], dict[str, int]]:
    """The settings for ``processes`` data-parallel ranks, and the batch record for train.json.

    The configured ``per_device_train_batch_size`` x ``gradient_accumulation_steps`` (the TRL config
    class's defaults where unset) is the global batch of one process. With ``keep_global_batch``
    (default) N ranks keep it: accumulation is divided by N where it divides, else the per-device
    batch; neither dividing is an error naming both keys. Without it each rank keeps the configured
    values and the global batch grows N-fold.
    """
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(classes(settings["trainer"])[0])}
    per_device = int(settings.get("per_device_train_batch_size", defaults["per_device_train_batch_size"]))
    accumulation = int(settings.get("gradient_accumulation_steps", defaults["gradient_accumulation_steps"]))
    if processes > 1 and bool(workflow_setting(settings, "keep_global_batch")):
        if accumulation % processes == 0:
            accumulation //= processes
        elif per_device % processes == 0:
            per_device //= processes
        else:
            raise ValueError(
                f"keep_global_batch: a global batch of per_device_train_batch_size {per_device} x "
                f"gradient_accumulation_steps {accumulation} cannot be split over {processes} processes "
                f"(resources gpu: {processes}): make one of them divisible by {processes}, or set "
                "keep_global_batch: false to let the global batch grow with the GPU count")
    record = {"processes": processes, "per_device_train_batch_size": per_device,
              "gradient_accumulation_steps": accumulation,
              "global_batch_size": per_device * accumulation * processes}
    if processes == 1:
        return settings, record
    return ({**settings, "per_device_train_batch_size": per_device, "gradient_accumulation_steps": accumulation},
            record)


def trl_config(settings: dict[str, Any], output_dir: str, use_cpu: bool, bf16: bool,
               checkpoint_steps: int = 0):
    """Build the TRL config for a method's merged settings.

    Every key reaches the config (itself, or through :data:`MAPPED`) or is in :data:`WORKFLOW_KEYS`;
    any other key raises (checks.py reports the same at parse time, naming where it was written).
    ``checkpoint_steps`` > 0 saves a resumable checkpoint (weights, optimizer, scheduler, RNG) in
    ``output_dir`` every that many optimizer steps, keeping only the last one.
    """
    trainer = settings["trainer"]
    problems = key_problems(settings)
    if problems:
        raise ValueError("; ".join(f"{k} {why}" for k, why in problems))
    config_cls, _ = classes(trainer)
    kwargs: dict[str, Any] = {k: v for k, v in settings.items() if k not in WORKFLOW_KEYS and k not in MAPPED}
    if "warmup_ratio" in settings:
        kwargs["warmup_steps"] = float(settings["warmup_ratio"])
    if "activation_checkpointing" not in settings:
        # Set even when unconfigured (as transformers' default, off): else its deprecated
        # gradient_checkpointing default warns on every run.
        kwargs["activation_checkpointing"] = bool(settings.get("gradient_checkpointing", False))
    loss_type = settings.get("loss_type")
    if loss_type is not None:
        kwargs["loss_type"] = [loss_type] if trainer == "dpo" else loss_type
    if trainer == "dpo" and loss_type == "exo_pair" and not settings.get("label_smoothing"):
        raise ValueError("loss_type exo_pair needs label_smoothing > 0")
    if checkpoint_steps:
        kwargs.update(save_strategy="steps", save_steps=int(checkpoint_steps), save_total_limit=1,
                      save_only_model=False)
    else:
        kwargs["save_strategy"] = "no"
    # logging_nan_inf_filter (on by default) logs the window's mean instead of a nan / inf loss,
    # which would hide it from the NaN check (run.FiniteLossCallback).
    return config_cls(
        output_dir=output_dir, use_cpu=use_cpu, bf16=bf16, report_to=[], logging_steps=1,
        logging_nan_inf_filter=False, disable_tqdm=False, dataloader_num_workers=0, **kwargs,
    )


# The TRL config fields train.json's effective_hyperparameters shows (where the class has them),
# besides every other key the config set.
EFFECTIVE_FIELDS = (
    "loss_type", "beta", "learning_rate", "lr_scheduler_type", "warmup_steps", "num_train_epochs",
    "max_steps", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length",
    "truncation_mode", "max_completion_length", "optim", "weight_decay", "max_grad_norm",
    "adam_beta1", "adam_beta2", "adam_epsilon", "label_smoothing", "simpo_gamma", "cpo_alpha",
    "desirable_weight", "undesirable_weight", "f_divergence_type", "activation_checkpointing",
    "seed", "bf16", "use_cpu", "precompute_ref_log_probs",
)


def _plain(value: Any) -> Any:
    """JSON-able form of a TRL config value (enums by value, a one-element loss list flattened)."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        return items[0] if len(items) == 1 else items
    return value


def effective_hyperparameters(args: Any, settings: dict[str, Any], trainer_class: str,
                              peft_config: Any = None, dtype: str | None = None) -> dict[str, Any]:
    """Flat dict of what the run's TRL config (and its adapter) actually carry.

    ``args`` is the config :func:`trl_config` built; ``trainer_class`` the trainer class that ran;
    ``dtype`` the loaded model's weights dtype. Keys are TRL's field names, plus ``trainer``,
    ``trainer_class``, ``config_class``, ``peft``, ``dtype`` and ``lora_*``.
    """
    out: dict[str, Any] = {"trainer": settings["trainer"], "trainer_class": trainer_class,
                           "config_class": type(args).__name__}
    configured = [k for k in settings if k not in WORKFLOW_KEYS and k not in MAPPED]
    for name in (*EFFECTIVE_FIELDS, *sorted(configured)):
        if name in out or not hasattr(args, name):
            continue
        out[name] = _plain(getattr(args, name))
    out["peft"] = workflow_setting(settings, "peft")
    out["dtype"] = dtype or workflow_setting(settings, "dtype")
    if peft_config is not None:
        out["lora_r"] = peft_config.r
        out["lora_alpha"] = peft_config.lora_alpha
        out["lora_dropout"] = peft_config.lora_dropout
        targets = peft_config.target_modules
        out["lora_target_modules"] = targets if isinstance(targets, str) else sorted(targets)
    return out


@dataclass(frozen=True)
class Deviation:
    """A documented difference between TRL 1.16.0 and TRL 0.11.4 (the paper's era) in a loss or its
    inputs. ``applies(settings)`` says whether a method's merged settings depend on it (None: it
    depends on the data, not on the config, and is documented only). docs/configuration.md (Methods) lists them."""

    name: str
    text: str
    applies: Callable[[dict[str, Any]], bool] | None


def _ls(settings: dict[str, Any]) -> float:
    value = settings.get("label_smoothing", TRL_LABEL_SMOOTHING)
    return max(value) if isinstance(value, list) else float(value or 0.0)


# Checked line by line against trl/trainer/{dpo,kto,orpo,cpo}_trainer.py at v0.11.4 and the
# installed 1.16.0. Equal in both (no entry): robust, hinge, ipo (0.11 also divided policy and
# reference log-probs by the completion length, EOS included), exo_pair (0.11 silently replaced
# label_smoothing 0 by 1e-3; 1.16 raises, checks.py requires > 0), nca_pair, sppo_hard, aot,
# aot_unpaired (0.11's "aot_pair", renamed), apo_zero, ORPO (0.11 took log(sigmoid(.)), 1.16
# logsigmoid(.): the same value, stabler) and SimPO/CPO.
DEVIATIONS = (
    Deviation(
        "sigmoid_label_smoothing",
        "TRL 0.11's 'sigmoid' with label_smoothing eps > 0 was conservative DPO "
        "-(1-eps) log s(b h) - eps log s(-b h); TRL 1.16's 'sigmoid' ignores eps (plain DPO)",
        lambda s: workflow_setting(s, "trainer") == "dpo" and s.get("loss_type") == "sigmoid" and _ls(s) > 0,
    ),
    Deviation(
        "bco_pair_running_mean",
        "TRL 0.11's 'bco_pair' shifted the rewards by a running mean delta of the batch rewards "
        "(RunningMoments): -log s(b r_w - delta) - log s(-(b r_l - delta)); TRL 1.16 keeps no "
        "running mean (delta = 0)",
        lambda s: workflow_setting(s, "trainer") == "dpo" and s.get("loss_type") == "bco_pair",
    ),
    Deviation(
        "kto_kl_chunks",
        "KTO's mismatched (prompt, completion) pairs for z_ref rotate completions by one within chunks "
        "of per_device_train_batch_size rows in TRL 1.16, of per_device_train_batch_size x "
        "gradient_accumulation_steps x processes rows in TRL 0.11 (the first row of each chunk differs)",
        lambda s: s.get("trainer") == "kto" and s.get("loss_type", "kto") == "kto"
        and int(s.get("gradient_accumulation_steps", 1)) > 1,
    ),
    Deviation(
        "truncation",
        "over-long rows: TRL 0.11 cut the prompt (keeping its end) to max_prompt_length, then the "
        "completions to max_length - max_prompt_length; TRL 1.16 cuts prompt + completion together to "
        "max_length, keeping the start (no max_prompt_length, which the config therefore rejects)",
        None,
    ),
)


def deviations(settings: dict[str, Any]) -> list[Deviation]:
    """The documented TRL 1.16 vs 0.11 deviations a method's merged settings depend on."""
    return [d for d in DEVIATIONS if d.applies is not None and d.applies(settings)]
