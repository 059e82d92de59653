#!/usr/bin/env python
"""Benchmark: the grid's DPO-family training time with and without shared reference log-probs
(bench/run.py item 6; was scripts/bench-shared-ref).

    HF_HUB_OFFLINE=1 python bench/shared_ref.py [--model results/models/tiny/base] [--config config/config.yaml]
    HF_HUB_OFFLINE=1 python bench/shared_ref.py --hidden-size 384 --layers 4
    HF_HUB_OFFLINE=1 python bench/shared_ref.py --model results/bench/smollm2-135m-instruct --methods 5 \
        --pairs 64 --epochs 1 --target-modules q_proj,k_proj,v_proj,o_proj

Trains every reference-based DPO-family method of the config on the tiny world's preference pairs
twice in one run: (a) "shared": reference log-probs computed once per reference key (the
ref_logps rule's code) and fed to every trainer; (b) "per-method": each trainer runs the reference
model itself (TRL's default). Prints each method's time, both totals (a includes the reference
passes) and their ratio (target <= 0.7), plus the same ratio over TRL's own train() runtimes.

By default it times the grid's own base model (run the workflow first). ``--hidden-size`` and
``--layers`` instead pretrain a larger tiny-world base model with the workflow's own code
(``safealign.world.build.build_base_model``, one epoch, cached under results/bench/shared-ref/):
the saving grows with model size, as the reference forward becomes a larger share of each step.
``--methods N`` keeps the first N such methods (a 5-method grid), ``--pairs`` / ``--epochs`` shrink
the data and training for a larger model (SmolLM2-135M-Instruct converted by bench/gen_tokens.py),
``--target-modules`` sets the LoRA modules for a model that is not the tiny world's.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from safealign import grid, io
from safealign.data.preference import from_pku
from safealign.models import load_model
from safealign.train import methods
from safealign.train.run import compute_ref_logps, train
from safealign.world import build, data


def larger_base(cfg: dict, world: dict, hidden: int, layers: int) -> Path:
    """The first model's tiny-world spec at a larger size, pretrained once (1 epoch) and cached."""
    out = Path("results/bench/shared-ref") / f"base-h{hidden}-l{layers}"
    if (out / "config.json").exists():
        return out
    spec = json.loads(json.dumps(next(iter(cfg["models"].values()))["world"]))
    spec["architecture"].update(hidden_size=hidden, num_attention_heads=hidden // 32,
                                intermediate_size=2 * hidden, num_hidden_layers=layers)
    spec["train"]["epochs"] = 1
    with io.atomic_dir(out) as tmp:
        build.build_base_model(world["corpus"], spec, tmp, seed=int(spec.get("seed", 0)))
    return out


def world_pairs(cfg: dict, n: int | None = None) -> tuple[dict, list[dict]]:
    """The tiny world of ``cfg`` and its first ``n`` preference pairs (all without ``n``)."""
    world = data.build(data.WorldParams(**cfg.get("world", {})))
    return world, from_pku(world["preference"])[:n]


def reference_variants(cfg: dict, target_modules: str | None = None) -> list:
    """The grid's reference-based DPO-family variants of its first model; ``target_modules``
    (comma-separated) replaces their LoRA modules, for a model that is not the tiny world's."""
    variants = [v for v in grid.variants(cfg) if v.method and grid.shares_reference(v.settings)]
    variants = [v for v in variants if v.model == variants[0].model]
    if target_modules:
        for v in variants:
            v.settings.setdefault("lora", {})["target_modules"] = target_modules.split(",")
    return variants


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="results/models/tiny/base", help="base model dir (run the workflow first)")
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hidden-size", type=int, help="pretrain a larger base model: hidden size (head_dim 32)")
    p.add_argument("--layers", type=int, default=4, help="with --hidden-size: number of layers")
    p.add_argument("--methods", type=int, help="keep the first N reference-based DPO-family methods")
    p.add_argument("--pairs", type=int, help="keep the first N preference pairs")
    p.add_argument("--epochs", type=float, help="num_train_epochs of every method")
    p.add_argument("--target-modules", help="LoRA target modules, comma-separated (another model's names)")
    args = p.parse_args()
    from safealign.cli import tune_malloc

    tune_malloc()  # as every workflow job's setup does
    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load(Path(args.config).read_text())
    world, pairs = world_pairs(cfg, args.pairs)
    model_dir = Path(args.model) if args.hidden_size is None else larger_base(cfg, world, args.hidden_size, args.layers)
    if not (model_dir / "config.json").exists():
        raise SystemExit(f"{model_dir}: no base model there; run the workflow first or pass --model")
    ref = {"path": str(model_dir)}
    variants = reference_variants(cfg, args.target_modules)[: args.methods]
    for v in variants:
        if args.epochs is not None:
            v.settings["num_train_epochs"] = args.epochs
    methods.classes("dpo")  # import TRL before the clock starts: both arms run in this one process
    with tempfile.TemporaryDirectory() as tmp:  # and one untimed run, so no arm pays the first run's set-up
        train(ref, pairs[:2], variants[0].settings, Path(tmp) / "warm-up", None)
    refs, t0 = {}, time.perf_counter()
    for key in sorted({grid.reference_key(v.settings) for v in variants}):  # as the ref_logps rule
        refs[key] = compute_ref_logps(ref, pairs, grid.reference_settings(key))
    ref_time = time.perf_counter() - t0
    shared, alone, runtime = {}, {}, {"shared": 0.0, "alone": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for v in variants:
            for mode, table in (("shared", shared), ("alone", alone)):
                t = time.perf_counter()
                shared_refs = refs[grid.reference_key(v.settings)] if mode == "shared" else None
                log = train(ref, pairs, v.settings, Path(tmp) / f"{v.name}-{mode}", shared_refs)
                table[v.name] = time.perf_counter() - t
                runtime[mode] += next(h["train_runtime"] for h in log["log_history"] if "train_runtime" in h)
    total_shared = ref_time + sum(shared.values())
    total_alone = sum(alone.values())
    for name in shared:
        print(f"{name:28s} shared {shared[name]:7.1f} s   per-method {alone[name]:7.1f} s")
    print(f"reference log-probs once: {ref_time:.1f} s")
    n_params = load_model(ref).num_parameters()
    print(json.dumps({"model": str(model_dir), "parameters": n_params, "methods": len(variants),
                      "pairs": len(pairs), "total_shared_s": round(total_shared, 1),
                      "total_per_method_s": round(total_alone, 1), "ratio": round(total_shared / total_alone, 3),
                      # Trainer.train() alone (no model loading, no margin evaluation):
                      "train_only_ratio": round((ref_time + runtime["shared"]) / runtime["alone"], 3)}))


if __name__ == "__main__":
    main()
