#!/usr/bin/env python
"""Training throughput (bench/run.py item 8): tokens per second of the workflow's own DPO training
(safealign.train.run.train) with LoRA or QLoRA.

    HF_HUB_OFFLINE=1 python bench/train_tp.py --model results/bench/smollm2-135m-instruct --peft lora \\
        --pairs 64 --target-modules q_proj,k_proj,v_proj,o_proj [--repeats 3]

Trains the embedded default's first reference-based DPO-family method (config/config.yaml) on the
tiny world's preference pairs for one epoch: one untimed run on 2 pairs (model load, CUDA and
kernel warm-up), then ``--repeats`` timed runs. Tokens are TRL's own count (``num_tokens`` in the
trainer's log: the attention mask's tokens, prompt and completion, of every chosen and rejected
sequence the policy was fed; padding excluded), seconds the
trainer's ``train_runtime`` (the optimisation loop, without loading and saving). Prints one JSON
line. ``--peft qlora`` needs CUDA and bitsandbytes (train() loads the base in 4-bit NF4); without
either it prints a line saying which is missing and exits 0, so bench/run.py can report the skip.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))


def missing_for(peft: str) -> str | None:
    """Why ``peft`` cannot train here, or None."""
    if peft != "qlora":
        return None
    import torch

    if not torch.cuda.is_available():
        return "QLoRA needs a CUDA device (bitsandbytes' 4-bit kernels)"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "QLoRA needs bitsandbytes, which is not installed"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="base model directory")
    p.add_argument("--config", default=str(SRC.parent / "config" / "config.yaml"))
    p.add_argument("--peft", choices=("lora", "qlora"), default="lora")
    p.add_argument("--pairs", type=int, default=64, help="the first N preference pairs")
    p.add_argument("--target-modules", help="LoRA target modules, comma-separated (another model's names)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch threads on a CPU")
    args = p.parse_args(argv)
    from safealign.cli import tune_malloc

    tune_malloc()  # as every workflow job's setup does
    why = missing_for(args.peft)
    if why:
        print(json.dumps({"peft": args.peft, "skipped": why}), flush=True)
        return 0
    import torch
    import yaml
    from shared_ref import reference_variants, world_pairs  # bench/ (this script's directory)

    from safealign.train.run import train

    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load(Path(args.config).read_text())
    _, pairs = world_pairs(cfg, args.pairs)
    variant = reference_variants(cfg, args.target_modules)[0]
    settings = {**variant.settings, "peft": args.peft, "num_train_epochs": 1}
    if args.peft == "qlora":
        settings["bf16"] = True  # as config/paper.yaml's QLoRA runs: bf16 compute over the 4-bit base
    ref = {"path": args.model}
    tokens, seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        train(ref, pairs[:2], settings, Path(tmp) / "warm-up")
        for r in range(args.repeats):
            log = train(ref, pairs, settings, Path(tmp) / f"run-{r}")
            history = log["log_history"]
            tokens.append(max(float(h["num_tokens"]) for h in history if "num_tokens" in h))
            seconds.append(next(h["train_runtime"] for h in history if "train_runtime" in h))
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(json.dumps({"peft": args.peft, "model": args.model, "device": device, "method": variant.method,
                      "pairs": len(pairs), "tokens": tokens, "seconds": seconds,
                      "tokens_per_s": [t / s for t, s in zip(tokens, seconds, strict=True)]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
