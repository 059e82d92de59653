"""Preference training of one variant, and the shared reference log-probs.

    python -m safealign.train.run ref-logps --params JSON --pairs FILE --out FILE
    python -m safealign.train.run train --params JSON --pairs FILE [--ref-logps FILE] --out DIR --log FILE
        [--checkpoint-dir DIR --checkpoint-steps N] [--method NAME --variant NAME]

Every reference-based DPO-family method on the same (base model, data, max_length) reads the same
reference log-probs: ``ref-logps`` computes them once through TRL's own precompute path and
``train`` feeds them back through :func:`safealign.train.trl_compat.shared_reference_trainer`, so
the reference model is never re-run per method.

``train`` saves a trainer checkpoint (weights, optimizer, scheduler, RNG states) every
``--checkpoint-steps`` optimizer steps into ``--checkpoint-dir``; a rerun of a killed job resumes
from the last complete one (if it was made for the same settings and data), and the directory is
deleted once the adapter and its log are written. A nan or infinite loss stops training with an
error naming the method and the step.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from .. import io, shards
from ..chat import template_hash
from ..cli import setup, steps
from ..models import describe, load_model, load_tokenizer
from ..specs import RefLogpsSpec, TrainSpec
from . import methods, trl_compat

log = logging.getLogger(__name__)


def _device_flags(bf16: bool) -> tuple[bool, bool]:
    """(use_cpu, bf16) for TRL: bf16 autocast only on a GPU."""
    import torch

    cuda = torch.cuda.is_available()
    return (not cuda, bool(cuda and bf16))


def _dataset(pairs: list[dict[str, Any]], trainer: str, batch_size: int = 1):
    """The trainer's dataset; KTO's unpaired rows ordered for its per-device batches of ``batch_size``."""
    from datasets import Dataset

    cols = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in pairs]
    if trainer == "kto":
        cols = methods.to_unpaired(cols, batch_size)
    return Dataset.from_list(cols)


def shared_reference_trainer():
    """DPOTrainer whose precompute step reads reference log-probs from a file instead of a model."""
    _, dpo_trainer = methods.classes("dpo")
    return trl_compat.shared_reference_trainer(dpo_trainer)


def compute_ref_logps(model_ref: dict, pairs: list[dict], settings: dict | RefLogpsSpec) -> list[dict[str, float]]:
    """Reference log-probs of every pair, through TRL's precompute path on the base model.

    ``settings`` are :func:`safealign.grid.reference_settings`: the base model is loaded exactly as
    the policy of every variant that reads these log-probs (dtype, 4-bit, bf16 autocast), so they
    equal the reference TRL would compute inside each training run.
    """
    spec = RefLogpsSpec.from_params(settings)
    trl_compat.score_labelled_positions_only()  # as the training runs that read these
    config_cls, trainer_cls = methods.classes("dpo")
    use_cpu, bf16 = _device_flags(spec.bf16)
    tok = load_tokenizer(model_ref, padding_side="right")
    model = load_model(model_ref, dtype=spec.dtype, quantization=spec.quantization)
    peft_config = None
    if spec.quantization:
        from peft import LoraConfig

        # The Trainer refuses a purely quantized model. With a LoRA adapter that TRL disables while
        # it computes the reference, this is the reference a QLoRA run computes for itself.
        peft_config = LoraConfig(r=8, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    with tempfile.TemporaryDirectory() as tmp:
        args = config_cls(output_dir=tmp, use_cpu=use_cpu, bf16=bf16, report_to=[],
                          precompute_ref_log_probs=True, max_length=spec.max_length,
                          precompute_ref_batch_size=spec.batch_size)
        with trl_compat.without_weight_hash(trainer_cls):
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


class NonFiniteLossError(RuntimeError):
    """Training produced a nan or infinite loss."""


def finite_loss_callback(name: str):
    """A TrainerCallback that stops training at the first logged nan / infinite loss.

    trl_config logs every step and turns off transformers' ``logging_nan_inf_filter`` (which would
    log the window's mean instead), so the loss seen here is the step's own.
    """
    from transformers import TrainerCallback

    class FiniteLossCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise NonFiniteLossError(
                    f"{name}: training loss is {loss} at step {state.global_step} of {state.max_steps} "
                    f"(learning_rate {args.learning_rate}); lower the learning rate, check the data, or "
                    "use bf16/float32 instead of float16")

    return FiniteLossCallback()


def step_counter():
    """A TrainerCallback counting the optimizer steps this process runs (a resumed run skips the
    checkpoint's); its ``steps`` attribute holds the count."""
    from transformers import TrainerCallback

    class StepCounter(TrainerCallback):
        steps = 0

        def on_step_end(self, args, state, control, **kwargs):
            self.steps += 1

    return StepCounter()


_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def resume_point(checkpoint_dir: Path, key: str) -> str | None:
    """The last complete checkpoint in ``checkpoint_dir`` made for ``key``, or None.

    Checkpoints of another key (settings, data or base model changed since) are deleted, and so are
    incomplete ones (killed while saving: the Trainer writes trainer_state.json last).
    """
    key_file = checkpoint_dir / "key.json"
    if checkpoint_dir.exists() and (not key_file.exists() or key_file.read_text(encoding="utf-8") != key):
        log.warning("deleting the checkpoints in %s: they were made for other settings or data", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        io.write_text(key_file, key)
    complete = []
    for d in checkpoint_dir.iterdir():
        m = _CHECKPOINT.fullmatch(d.name)
        if not (m and d.is_dir()):
            continue
        try:
            json.loads((d / "trainer_state.json").read_text(encoding="utf-8"))
            complete.append((int(m[1]), d))
        except (OSError, ValueError):
            log.warning("deleting the incomplete checkpoint %s (the job was killed while saving it)", d)
            shutil.rmtree(d)
    return str(max(complete)[1]) if complete else None


def _checkpoint_key(model_ref: dict, pairs: list[dict], settings: dict, ref_logps: list[dict] | None) -> str:
    """What a checkpoint is valid for: the computed settings, the data and the base model's files."""
    from ..grid import computed_settings

    return json.dumps({"model": model_ref, "model_files": shards.file_stamp(model_ref.get("path")),
                       "settings": computed_settings(settings),
                       "pairs": io.sha256_text(json.dumps(pairs, sort_keys=True)),
                       "ref_logps": io.sha256_text(json.dumps(ref_logps, sort_keys=True))},
                      sort_keys=True, default=str) + "\n"


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
          ref_logps: list[dict] | None = None, checkpoint_dir: Path | None = None,
          checkpoint_steps: int = 0, name: str = "training") -> dict[str, Any]:
    """Train one variant; saves the adapter (or full model) in ``out``; returns the training log.

    With ``checkpoint_dir`` and ``checkpoint_steps`` > 0 it checkpoints there and resumes from the
    last valid checkpoint (the caller deletes the directory once the outputs are written). A
    non-finite loss raises :class:`NonFiniteLossError` naming ``name`` and the step.
    """
    import torch

    torch.manual_seed(int(settings["seed"]))
    trl_compat.score_labelled_positions_only()  # on CPU: the completion's tokens, not every position
    use_cpu, bf16 = _device_flags(settings.get("bf16", False))
    settings, batch = methods.distribute_batch(settings, world_size())
    tok = load_tokenizer(model_ref, padding_side="right")
    peft_kind = methods.workflow_setting(settings, "peft")
    model = load_model(model_ref, dtype=methods.workflow_setting(settings, "dtype"),
                       quantization="4bit" if peft_kind == "qlora" else None,
                       # QLoRA under data parallelism: each rank's 4-bit copy on its own GPU (TRL #921).
                       device_map=({"": local_rank()} if peft_kind == "qlora" and world_size() > 1 else None))
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
    checkpointing = checkpoint_dir is not None and checkpoint_steps > 0
    resume = None
    if checkpointing:
        resume = resume_point(Path(checkpoint_dir), _checkpoint_key(model_ref, pairs, settings, ref_logps))
    with tempfile.TemporaryDirectory() as tmp:
        args = methods.trl_config(settings, str(checkpoint_dir) if checkpointing else tmp, use_cpu, bf16,
                                  checkpoint_steps=checkpoint_steps if checkpointing else 0)
        if shared:
            args.precompute_ref_log_probs = True
        counter = step_counter()
        dataset = _dataset(pairs, trainer_name, args.per_device_train_batch_size)
        trainer = trainer_cls(model=model, args=args, train_dataset=dataset,
                              processing_class=tok, peft_config=peft_config,
                              callbacks=[finite_loss_callback(name), counter])
        if trainer.args.world_size != batch["processes"]:
            raise RuntimeError(f"{name}: {batch['processes']} processes were launched but the trainer runs on "
                               f"{trainer.args.world_size}: the data-parallel launch did not take effect")
        effective = methods.effective_hyperparameters(
            trainer.args, settings, trainer_cls.__name__, peft_config, str(model.dtype).removeprefix("torch."))
        resumed_from = None
        if resume is not None:
            resumed_from = int(_CHECKPOINT.fullmatch(Path(resume).name)[1])
            log.info("resuming %s from %s (step %d)", name, resume, resumed_from)
            print(f"safealign: resuming from checkpoint at step {resumed_from}", file=sys.stderr, flush=True)
        result = trainer.train(resume_from_checkpoint=resume)
        print(f"safealign: {counter.steps} optimizer steps run in this job, {trainer.state.global_step} in all",
              file=sys.stderr, flush=True)
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
        "resumed_from_step": resumed_from,
        "steps_run_in_this_job": counter.steps,
        "settings": settings,
        # Data-parallel processes and the batch each rank and all together took (distribute_batch).
        "batch": batch,
        # The template the pairs were rendered with (generation and capability must match it).
        "chat_template_sha256": template_hash(tok),
        # What the TRL config and adapter actually carried (the report shows it).
        "effective_hyperparameters": effective,
    }


def world_size() -> int:
    """Data-parallel processes of this run (torchrun / accelerate set WORLD_SIZE; 1 without)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def launch_data_parallel(processes: int, argv: list[str]) -> int:
    """Run this module as ``processes`` data-parallel ranks through ``accelerate launch`` (one per GPU
    of the job; on a machine without CUDA they train on the CPU with gloo) and return its exit status.

    A free port per job, so two multi-GPU jobs on one node do not collide on accelerate's default.
    """
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(port), "-m", "safealign.train.run", *argv]
    print(f"safealign: launching {processes} data-parallel processes: {' '.join(cmd)}", file=sys.stderr, flush=True)
    return subprocess.call(cmd)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p, step = steps(__doc__)
    ref = step("ref-logps", "the shared reference log-probs of the pairs", gpus=True)
    train_ = step("train", "one variant's adapter", gpus=True)
    for sp in (ref, train_):
        sp.add_argument("--pairs", required=True)
        sp.add_argument("--out", required=True)
    train_.add_argument("--ref-logps")
    train_.add_argument("--log")
    train_.add_argument("--checkpoint-dir", help="resumable trainer checkpoints (deleted once --out is written)")
    train_.add_argument("--checkpoint-steps", type=int, default=0,
                        help="optimizer steps between checkpoints (0: none)")
    train_.add_argument("--method", help="the method's name, for error messages")
    train_.add_argument("--variant", help="the variant's name, for error messages")
    args = p.parse_args(argv)
    if args.step == "train" and (args.gpus or 1) > 1 and "LOCAL_RANK" not in os.environ:
        # One process per GPU of the job (resources gpu: N), launched here, once per job.
        raise SystemExit(launch_data_parallel(args.gpus, argv))
    params = setup(args)
    pairs = io.read_jsonl(args.pairs)
    model_ref = params["model"]
    if args.step == "ref-logps":
        rows = compute_ref_logps(model_ref, pairs, RefLogpsSpec.from_params(params))
        io.write_jsonl(args.out, rows)
        return
    spec = TrainSpec.from_params(params)
    refs = io.read_jsonl(args.ref_logps) if args.ref_logps else None
    if refs is not None and [r["id"] for r in refs] != [p_["id"] for p_ in pairs]:
        raise ValueError(f"{args.ref_logps} does not match {args.pairs} row for row")
    name = f"method {args.method}" if args.method else "training"
    if args.variant:
        name += f" (variant {args.variant})"
    checkpoints = Path(args.checkpoint_dir) if args.checkpoint_dir else None
    if int(os.environ.get("RANK", "0")) != 0:
        # Ranks other than the first train in step with it (the Trainer synchronises them, and only
        # the first saves checkpoints); the adapter and train.json are the first rank's alone.
        with tempfile.TemporaryDirectory() as tmp:
            try:
                train(spec.model, pairs, spec.settings, Path(tmp), refs, checkpoints, args.checkpoint_steps, name)
            except NonFiniteLossError as err:
                raise SystemExit(f"safealign: {err}") from None
        return
    try:
        with io.atomic_dir(args.out) as tmp:
            record = train(spec.model, pairs, spec.settings, tmp, refs, checkpoints, args.checkpoint_steps, name)
    except NonFiniteLossError as err:
        raise SystemExit(f"safealign: {err}") from None
    io.write_json(args.log, io.provenance(model=describe(spec.model), **record))
    if checkpoints is not None:  # only now: a job killed before this point resumes from them
        shutil.rmtree(checkpoints, ignore_errors=True)


if __name__ == "__main__":
    main()
