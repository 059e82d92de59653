"""A paper-scale planning grid: config/paper.yaml plus two more hub models, per-method sweeps of
beta and learning rate, and more seeds (issue 13, item 3).

Writes an overlay config to give after config/paper.yaml::

    python bench/paper_grid.py --size L --out /tmp/grid-L.yaml
    snakemake -n --configfile config/paper.yaml /tmp/grid-L.yaml --sdm env-modules

Sizes (variants = models x 14 methods x betas x learning rates x seeds; about 7.4 jobs each):
``S`` 2 x 14 x 3 x 2 x 2 (about 2,500 jobs), ``M`` 3 x 14 x 4 x 4 x 1 (about 5,000),
``L`` 3 x 14 x 4 x 4 x 2 (about 10,000). Three sizes, each about twice the previous, show how
planning grows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# Two more hub models of architectures vLLM serves with LoRA (the paper's Falcon is merged).
# Revisions are placeholders: planning never downloads anything.
EXTRA_MODELS = {
    "mistral_7b_instruct": {
        "hub": "mistralai/Mistral-7B-Instruct-v0.3",
        "revision": "0" * 40,
        "architecture": "MistralForCausalLM",
        "training": {"lora": {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}},
    },
    "qwen2_7b_instruct": {
        "hub": "Qwen/Qwen2-7B-Instruct",
        "revision": "1" * 40,
        "architecture": "Qwen2ForCausalLM",
        "training": {"lora": {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}},
    },
}

# (extra models, betas, learning rates, seeds) per size.
BETAS = [0.01, 0.02, 0.05, 0.1]
LRS = [1.0e-6, 2.0e-6, 5.0e-6, 1.0e-5]
SIZES = {
    "S": (1, BETAS[:3], LRS[2:], [42, 43]),
    "M": (2, BETAS, LRS, [42]),
    "L": (2, BETAS, LRS, [42, 43]),
}


def overlay(size: str) -> dict:
    """The overlay config of one size (given after config/paper.yaml)."""
    n_extra, betas, lrs, seeds = SIZES[size]
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    methods = {}
    for name in paper["methods"]:
        methods[name] = {"beta": list(betas), "learning_rate": list(lrs)}
    models = dict(list(EXTRA_MODELS.items())[:n_extra])
    return {"seeds": list(seeds), "methods": methods, "models": models}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="L")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    args.out.write_text(yaml.safe_dump(overlay(args.size), sort_keys=False))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
