"""TRL's fused LM head scores only the labelled positions on CPU too.

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

import logging

log = logging.getLogger(__name__)


def score_labelled_positions_only() -> bool:
    """Install the CPU rule once per process; False (and a warning) where TRL has no such hook.

    Called where a trainer is made: ``train.run.train`` and ``compute_ref_logps``, and the tiny
    world's SFT builders."""
    import torch
    import trl.trainer.utils as trl_utils

    current = getattr(trl_utils, "_use_triton", None)
    if current is None:
        log.warning("trl.trainer.utils has no _use_triton: TRL scores every position on CPU")
        return False
    if getattr(current, "safealign_cpu", False):
        return True

    def compact(device: torch.device) -> bool:
        return (device.type == "cpu" and not torch.compiler.is_compiling()) or current(device)

    compact.safealign_cpu = True
    trl_utils._use_triton = compact
    return True
