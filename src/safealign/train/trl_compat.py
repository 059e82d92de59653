"""Every place safealign touches a name TRL does not make public, in one module, for one TRL version.

TRL is pinned (``trl==1.16.0``, pyproject.toml and envs/*.yaml). Three of its private names are
used, each because TRL offers no public way to do what the workflow needs:

1. ``DPOTrainer._precompute_ref_logps`` (overridden): every reference-based DPO-family method on the
   same base model and data reads one shared file of reference log-probs instead of re-running the
   reference model per method (:func:`shared_reference_trainer`).
2. ``hash_module`` in the DPO trainer's module (patched while a trainer is made): TRL sha256-hashes
   every weight (on CPU) when it precomputes reference log-probs (0.57 s on SmolLM2-135M, tens of
   seconds on an 11B model), only to name a cache file of the result in the process's temporary
   datasets directory. A new random name instead: a file no later call in the process can take
   for its own (a constant name could, for the same pairs and tokenizer) (:func:`without_weight_hash`).
3. ``trl.trainer.utils._use_triton`` (wrapped): TRL's fused LM head scores only the labelled
   positions on CPU too (:func:`score_labelled_positions_only`).

:func:`check` holds the version guard: on another TRL version, or where a touched name is gone, it
raises naming the TRL version and the name (tests/test_trl_compat.py runs it), so an upgrade of the
pin fails in one test instead of silently changing what a run computes.

On (3): TRL's fused LM head scores only the labelled positions on CPU too.

TRL 1.16's trainers (DPO, KTO, SFT) get per-token log-probs from a chunked LM-head kernel
(``trl.trainer.utils._fused_forward``). On devices with Triton it scores only the positions that
carry a label; elsewhere it scores every position, prompt and padding included, because on Neuron a
varying number of rows would recompile the graph (its comment). On a CPU in eager mode nothing is
recompiled, and the skipped positions can be most of the LM head's work: the tiny
Llama-Guard-format judge learns only its verdict tokens (a few of ~250 per example): one epoch
29.5 s -> 17.2 s; a SmolLM2-135M LoRA DPO run on 8 pairs (one step, TRL's own reference, margins
before and after) 16.6 -> 13.5 s (docs/performance.md, "CPU training scores only the labelled tokens"). The
labelled rows and their products are the same, so the log-probs agree to float rounding
(tests/test_fused_head.py).

TRL has no option for this, so the module-level ``_use_triton`` that ``_fused_forward`` asks is
wrapped to answer yes for a CPU tensor outside ``torch.compile``: written here, as no library does
it. The kernel's own choice of Triton or torch tiles (``trl.kernels.chunked_logprob``) is untouched.
"""

from __future__ import annotations

import sys
import uuid
from importlib import import_module
from typing import Any
from unittest import mock

TESTED_TRL = "1.16.0"
# (module, attribute) of every private name this module touches.
TOUCHED = (
    ("trl.trainer.dpo_trainer", "DPOTrainer._precompute_ref_logps"),
    ("trl.trainer.dpo_trainer", "hash_module"),
    ("trl.trainer.utils", "_use_triton"),
)


class TRLCompatError(RuntimeError):
    pass


def check(version: str | None = None) -> None:
    """Raise :class:`TRLCompatError` naming the TRL version when it is not :data:`TESTED_TRL` or a
    name in :data:`TOUCHED` is missing. Every function below calls it first."""
    import trl

    version = version or trl.__version__
    missing = []
    for module, attr in TOUCHED:
        obj: Any = import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part, None)
        if obj is None:
            missing.append(f"{module}.{attr}")
    if version != TESTED_TRL or missing:
        raise TRLCompatError(
            f"safealign.train.trl_compat is written for TRL {TESTED_TRL}, this is TRL {version}"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + ": read each touched name's use in src/safealign/train/trl_compat.py against the new TRL, "
              "then update TESTED_TRL with the pins")


def without_weight_hash(dpo_trainer: type):
    """A context in which making ``dpo_trainer`` hashes no weights (point 2 above)."""
    check()
    return mock.patch.object(sys.modules[dpo_trainer.__module__], "hash_module", lambda module: uuid.uuid4().hex)


def shared_reference_trainer(dpo_trainer: type) -> type:
    """``dpo_trainer`` whose precompute step reads reference log-probs from
    ``shared_ref_logps`` (one dict per row, ``ref_chosen_logps`` / ``ref_rejected_logps``)
    instead of running a reference model (point 1 above)."""
    check()

    class SharedReferenceDPOTrainer(dpo_trainer):
        shared_ref_logps: list[dict[str, float]] = []

        def __init__(self, *args, **kwargs):
            with without_weight_hash(dpo_trainer):
                super().__init__(*args, **kwargs)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            refs = self.shared_ref_logps
            if len(refs) != len(dataset):
                raise ValueError(f"shared reference log-probs have {len(refs)} rows, "
                                 f"the {name} dataset {len(dataset)}: recompute them")
            dataset = dataset.add_column("ref_chosen_logps", [r["ref_chosen_logps"] for r in refs])
            return dataset.add_column("ref_rejected_logps", [r["ref_rejected_logps"] for r in refs])

    return SharedReferenceDPOTrainer


def score_labelled_positions_only() -> bool:
    """Install the CPU rule once per process (True once installed).

    Called where a trainer is made: ``train.run.train`` and ``compute_ref_logps``, and the tiny
    world's SFT builders."""
    import torch
    import trl.trainer.utils as trl_utils

    check()
    current = trl_utils._use_triton
    if getattr(current, "safealign_cpu", False):
        return True

    def compact(device: torch.device) -> bool:
        return (device.type == "cpu" and not torch.compiler.is_compiling()) or current(device)

    compact.safealign_cpu = True
    trl_utils._use_triton = compact
    return True
