"""Interruptions and pre-emption: a killed job resumes, a nan loss stops training, no stale temporaries.

The kill tests run the real entry points (``python -m safealign.train.run``, ``python -m
safealign.generate``) as subprocesses on a tiny model built here, SIGKILL them once they have made
progress (a trainer checkpoint, finished generation shards), rerun them and compare with an
uninterrupted run.
"""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from safealign import grid, io, shards
from safealign.data.preference import from_pku
from safealign.train import methods
from safealign.train.run import NonFiniteLossError, resume_point, train
from safealign.world import build, data

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "trainer": "dpo", "loss_type": "sigmoid", "peft": "lora",
    "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
    "beta": 0.1, "learning_rate": 5e-3, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1,
    "num_train_epochs": 3, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1,
    "max_length": 96, "optim": "adamw_torch", "label_smoothing": 0.0, "seed": 0,
}
N_PAIRS = 32
TOTAL_STEPS = N_PAIRS * SETTINGS["num_train_epochs"]  # batch size 1, one optimizer step per pair
# The resumed adapter must equal the uninterrupted one to this (max abs difference of any weight):
# the Trainer restores weights, optimizer, scheduler, RNG and data position from the checkpoint.
ADAPTER_ATOL = 1e-6


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(1)
    world = data.build(data.WorldParams(n_preference_pairs=N_PAIRS))
    spec = {"vocab_size": 400,
            "architecture": {"hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128,
                             "num_hidden_layers": 1, "max_position_embeddings": 128},
            "train": {"epochs": 0.3, "learning_rate": 3e-3, "batch_size": 32}}
    out = tmp_path_factory.mktemp("base")
    build.build_base_model(world["corpus"][:600], spec, out, seed=0)
    return {"path": str(out)}, from_pku(world["preference"]), world["alert"]


def _kill_when(cmd: list[str], log: Path, ready, what: str) -> None:
    """Run ``cmd`` (stdout+stderr to ``log``) and SIGKILL it as soon as ``ready()``; it must still be running."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env(), cwd=REPO)
        try:
            while not ready():
                assert proc.poll() is None, f"{what} ended before it could be killed:\n{log.read_text()[-3000:]}"
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"{what} was not killed mid-run (exit {proc.returncode})"


def _run(cmd: list[str], log: Path) -> str:
    with open(log, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env(), cwd=REPO).returncode
    text = log.read_text()
    assert rc == 0, text[-3000:]
    return text


def _complete_checkpoints(ckpt: Path) -> list[int]:
    return sorted(int(d.name.split("-")[1]) for d in ckpt.glob("checkpoint-*") if (d / "trainer_state.json").exists())


def test_killed_training_resumes_from_its_last_checkpoint(tiny, tmp_path):
    """SIGKILL after the first checkpoint; the rerun resumes at that step, runs only the remaining
    steps and writes the adapter an uninterrupted run writes; checkpoints and temporaries are gone."""
    from safetensors.torch import load_file

    model_ref, pairs, _ = tiny
    io.write_jsonl(tmp_path / "pairs.jsonl", pairs)
    reference = train(model_ref, pairs, SETTINGS, tmp_path / "uninterrupted")  # no checkpoints at all

    work = tmp_path / "models" / "tiny" / "safe_dpo-seed0"
    adapter, ckpt = work / "adapter", work / "checkpoints"
    params = json.dumps({"model": model_ref, "settings": SETTINGS})
    cmd = [sys.executable, "-m", "safealign.train.run", "train", "--params", params,
           "--pairs", str(tmp_path / "pairs.jsonl"), "--out", str(adapter), "--log", str(work / "train.json"),
           "--checkpoint-dir", str(ckpt), "--checkpoint-steps", "10", "--method", "safe_dpo",
           "--variant", "tiny/safe_dpo-seed0"]
    _kill_when(cmd, tmp_path / "killed.log", lambda: bool(_complete_checkpoints(ckpt)) if ckpt.exists() else False,
               "training")
    assert not adapter.exists()
    assert list(work.glob(".adapter.*.tmp")), "the killed job should have left its temporary behind"
    resumed_at = _complete_checkpoints(ckpt)[-1]
    assert 10 <= resumed_at < TOTAL_STEPS

    log = _run(cmd, tmp_path / "rerun.log")
    assert f"resuming from checkpoint at step {resumed_at}" in log
    assert f"{TOTAL_STEPS - resumed_at} optimizer steps run in this job, {TOTAL_STEPS} in all" in log
    record = io.read_json(work / "train.json")
    assert record["resumed_from_step"] == resumed_at
    assert record["steps_run_in_this_job"] == TOTAL_STEPS - resumed_at
    losses = [h["loss"] for h in record["log_history"] if "loss" in h]
    ref_losses = [h["loss"] for h in reference["log_history"] if "loss" in h]
    assert len(losses) == len(ref_losses) == TOTAL_STEPS  # the checkpoint's history is kept
    assert losses == pytest.approx(ref_losses, abs=1e-5)
    assert not ckpt.exists() and not list(work.glob(".adapter.*.tmp"))

    got = load_file(adapter / "adapter_model.safetensors")
    want = load_file(tmp_path / "uninterrupted" / "adapter_model.safetensors")
    assert got.keys() == want.keys() and got
    diff = max(float((got[k] - want[k]).abs().max()) for k in got)
    print(f"training resumed at step {resumed_at} of {TOTAL_STEPS}; max |resumed - uninterrupted| = {diff:.3g}")
    assert diff <= ADAPTER_ATOL, f"resumed adapter differs from the uninterrupted one by {diff}"
    moved = max(float(v.abs().max()) for k, v in got.items() if "lora_B" in k)
    assert moved > 1e-3  # it did train (LoRA B starts at zero)


def test_checkpoints_of_other_settings_or_incomplete_ones_are_not_resumed(tmp_path):
    ckpt = tmp_path / "checkpoints"
    assert resume_point(ckpt, "key-a\n") is None and (ckpt / "key.json").read_text() == "key-a\n"
    for step, complete in ((10, True), (20, True), (30, False)):
        d = ckpt / f"checkpoint-{step}"
        d.mkdir()
        if complete:
            (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (ckpt / "checkpoint-30" / "adapter_model.safetensors").write_text("half written")
    assert resume_point(ckpt, "key-a\n") == str(ckpt / "checkpoint-20")
    assert not (ckpt / "checkpoint-30").exists()  # incomplete (no trainer_state.json): deleted
    assert resume_point(ckpt, "key-b\n") is None  # made for other settings: deleted
    assert sorted(p.name for p in ckpt.iterdir()) == ["key.json"]


def test_nan_loss_stops_training_naming_the_method_and_step(tiny, tmp_path):
    model_ref, pairs, _ = tiny
    s = {**SETTINGS, "learning_rate": 1e30, "num_train_epochs": 1, "lr_scheduler_type": "constant",
         "warmup_ratio": 0.0}
    with pytest.raises(NonFiniteLossError) as err:
        train(model_ref, pairs[:8], s, tmp_path / "out", name="method safe_dpo (variant tiny/safe_dpo-seed0)")
    msg = str(err.value)
    assert re.match(r"method safe_dpo \(variant tiny/safe_dpo-seed0\): training loss is (nan|inf|-inf) "
                    r"at step \d+ of 8 \(learning_rate 1e\+30\)", msg), msg
    step = int(re.search(r"at step (\d+)", msg)[1])
    assert 1 <= step < 8  # it stopped at the first non-finite step, not at the end
    assert not (tmp_path / "out").exists()


def test_a_nan_loss_is_not_hidden_by_transformers_logging_filter(tmp_path):
    args = methods.trl_config(SETTINGS, str(tmp_path), True, False)
    assert args.logging_nan_inf_filter is False and args.logging_steps == 1 and args.save_strategy == "no"
    args = methods.trl_config(SETTINGS, str(tmp_path), True, False, checkpoint_steps=25)
    assert (args.save_strategy, args.save_steps, args.save_total_limit, args.save_only_model) == ("steps", 25, 1, False)


@pytest.mark.parametrize("key", ["save_steps", "save_total_limit", "save_only_model", "resume_from_checkpoint",
                                 "logging_nan_inf_filter"])
def test_checkpoint_and_nan_fields_cannot_be_configured(tmp_path, key):
    """The workflow sets them itself (a configured one would be silently overridden)."""
    with pytest.raises(ValueError, match=f"^{key} is set by the workflow"):
        methods.trl_config({**SETTINGS, key: 1}, str(tmp_path), True, False)
    assert "checkpoint_steps" in methods.WORKFLOW_KEYS
    assert methods.key_problems({**SETTINGS, "checkpoint_steps": 5}) == []


def test_checkpoint_interval_is_kept_out_of_the_train_params(default_config):
    """Changing checkpoint_steps changes how the job runs, not its params (which would rerun it)."""
    import copy

    def train_params(cfg):
        return {(v.model, v.name): grid.computed_settings(v.settings) for v in grid.variants(cfg) if v.method}

    a, b = copy.deepcopy(default_config), copy.deepcopy(default_config)
    b["training"]["checkpoint_steps"] = 7
    b["methods"]["safe_dpo"]["checkpoint_steps"] = 0
    assert train_params(a) == train_params(b)
    vb = grid.variant_index(b)
    dpo, ipo = vb[("tiny", "safe_dpo-seed0")], vb[("tiny", "safe_ipo-seed0")]
    adapter = "results/models/tiny/safe_ipo-seed0/adapter"
    assert grid.train_run_args(ipo, adapter) == (
        "--checkpoint-dir results/models/tiny/safe_ipo-seed0/checkpoints --checkpoint-steps 7 "
        "--method safe_ipo --variant tiny/safe_ipo-seed0")
    assert "--checkpoint-steps 0 " in grid.train_run_args(dpo, adapter)
    va = grid.variant_index(a)[("tiny", "safe_ipo-seed0")]
    assert f"--checkpoint-steps {grid.DEFAULT_CHECKPOINT_STEPS} " in grid.train_run_args(va, adapter)
    doc = (REPO / "config" / "README.md").read_text()
    assert f"| `training.checkpoint_steps` | integer | {grid.DEFAULT_CHECKPOINT_STEPS} (when unset) |" in doc
    # The rule passes them through a params function of `output`, which Snakemake does not count as a
    # rerun trigger (next test); p_train itself drops the run keys.
    dag = (REPO / "src" / "safealign" / "dag" / "params.py").read_text()
    assert "def p_train_run(self, wildcards: Any, output: Any) -> str:" in dag
    assert '"settings": grid.computed_settings(v.settings)' in dag
    assert "run=p_train_run," in (REPO / "rules" / "train.smk").read_text()


def test_snakemake_does_not_rerun_for_a_params_function_of_output(tmp_path):
    """The mechanism p_train_run relies on: a param computed from `output` is not a rerun trigger,
    one computed from wildcards only is."""
    (tmp_path / "Snakefile").write_text(textwrap.dedent('''
        rule all:
            input: "out.txt"

        rule make:
            output: "out.txt"
            params:
                run=lambda wildcards, output: config["run"],
                cfg=lambda wildcards: config["cfg"],
            shell: "echo {params.cfg} > {output}"
    '''))

    def snake(*extra):
        res = subprocess.run([sys.executable, "-m", "snakemake", "-c1", *extra], cwd=tmp_path,
                             capture_output=True, text=True, env=_env())
        assert res.returncode == 0, res.stderr
        return res.stdout + res.stderr

    snake("--config", "run=1", "cfg=a")
    assert "Nothing to be done" in snake("-n", "--config", "run=2", "cfg=a")
    assert "rule make:" in snake("-n", "--config", "run=1", "cfg=b")


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    stale_dir = tmp_path / ".adapter.ab12cd_9.tmp"
    stale_dir.mkdir()
    (stale_dir / "half.bin").write_text("x")
    stale_file = tmp_path / ".train.json.zz99yy00.tmp"
    stale_file.write_text("{")
    others = [tmp_path / ".adapter.json.ab12cd_9.tmp", tmp_path / ".adapter2.ab12cd_9.tmp",
              tmp_path / "adapter.ab12cd_9.tmp"]
    for p in others:
        p.write_text("not ours")
    with io.atomic_dir(tmp_path / "adapter") as tmp:
        assert not stale_dir.exists()
        (tmp / "a").write_text("1")
    io.write_json(tmp_path / "train.json", {"ok": 1})
    assert not stale_file.exists() and (tmp_path / "adapter" / "a").read_text() == "1"
    assert all(p.exists() for p in others)
    assert sorted(p.name for p in tmp_path.glob(".*.tmp")) == sorted(p.name for p in others if p.name.startswith("."))


def test_sharded_run_reuses_finished_shards_of_the_same_key_only(tmp_path):
    calls = []

    def work(k, lo, hi):
        calls.append((lo, hi))
        return [{"i": i} for i in range(lo, hi)], {"shard": k}

    progress = tmp_path / ".out.jsonl.shards"
    rows, meta = shards.run_sharded(progress, {"a": 1}, 7, 3, work)
    assert rows == [{"i": i} for i in range(7)] and calls == [(0, 3), (3, 6), (6, 7)] and meta == {"shard": 2}
    (progress / "shard-000002.jsonl").unlink()  # as if killed before the last shard
    calls.clear()
    rows2, meta2 = shards.run_sharded(progress, {"a": 1}, 7, 3, work)
    assert rows2 == rows and calls == [(6, 7)] and meta2 == {"shard": 2}
    calls.clear()
    assert shards.run_sharded(progress, {"a": 1}, 7, 3, work)[1] == {"shard": 2} and calls == []
    shards.run_sharded(progress, {"a": 2}, 7, 3, work)  # other settings: everything is redone
    assert calls == [(0, 3), (3, 6), (6, 7)]
    calls.clear()
    shards.run_sharded(progress, {"a": 2}, 7, 2, work)  # other shard size: everything is redone
    assert calls == [(0, 2), (2, 4), (4, 6), (6, 7)]


def test_judge_reads_back_finished_shards(tmp_path, monkeypatch):
    """The judge entry point resumes from its shards (a planted shard's rows are used as they are)."""
    from safealign.judge import __main__ as judge_main

    rows = [{"id": f"r{i}", "prompt": "p", "response": "I cannot help with that." if i % 2 else "Sure, here."}
            for i in range(5)]
    gen, out, meta = tmp_path / "gen.jsonl", tmp_path / "refusal.jsonl", tmp_path / "refusal.meta.json"
    io.write_jsonl(gen, rows)
    params = {"name": "refusal", "type": "refusal"}
    argv = ["judge", "run", "--params", json.dumps(params), "--generations", str(gen), "--out", str(out),
            "--meta", str(meta), "--shard-size", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    judge_main.main()
    whole = io.read_jsonl(out)
    assert [r["refusal"] for r in whole] == [False, True, False, True, False]
    assert not shards.progress_dir(out).exists()
    # A killed run left shard 0 (planted with a marker) and its key: the rerun reuses it as it is.
    progress = shards.progress_dir(out)
    key = {"params": params, "generations": io.sha256_file(gen), "model_files": None}
    planted = {"refusal": False, "matched": None, "verdict": "unsafe", "parse_ok": True}
    shards.run_sharded(progress, key, 5, 2, lambda k, lo, hi: ([{**planted, "planted": k}] * (hi - lo), {"m": 1}))
    (progress / "shard-000001.jsonl").unlink()
    (progress / "shard-000002.jsonl").unlink()
    judge_main.main()
    again = io.read_jsonl(out)
    assert [r.get("planted") for r in again] == [0, 0, None, None, None]
    assert again[2:] == whole[2:]


def test_killed_generation_resumes_without_redoing_finished_shards(tiny, tmp_path, monkeypatch):
    """SIGKILL after a few shards; the rerun reads them back, generates only the rest, and its file
    equals an uninterrupted run's (sampled, so every shard's seeding must be reproducible)."""
    from safealign.generate import __main__ as gen_main

    model_ref, _, alert = tiny
    n, size = 48, 4
    prompts = tmp_path / "alert.jsonl"
    io.write_jsonl(prompts, [{"id": r["id"] if "id" in r else f"a{i}", "prompt": r["prompt"]}
                             for i, r in enumerate(alert[:n])])
    settings = {"backend": "transformers", "max_new_tokens": 24, "do_sample": True, "temperature": 1.0,
                "top_p": 1.0, "num_samples": 1, "batch_size": 4, "seed": 3, "dtype": "float32"}
    params = json.dumps({"model": model_ref,
                         "benchmarks": [{"name": "alert", "system_prompt": None, "generation": settings}]})

    def cmd(out_dir):
        return ["-m", "safealign.generate", "--params", params, "--prompts", str(prompts),
                "--out", str(out_dir / "alert.jsonl"), "--meta", str(out_dir / "meta.json"),
                "--shard-size", str(size)]

    monkeypatch.setattr(sys, "argv", ["generate", *cmd(tmp_path / "whole")[2:]])
    gen_main.main()
    whole = io.read_jsonl(tmp_path / "whole" / "alert.jsonl")
    assert len(whole) == n and len({r["response"] for r in whole}) > n // 2

    run = tmp_path / "run"
    progress = shards.progress_dir(run / "alert.jsonl")
    _kill_when([sys.executable, *cmd(run)], tmp_path / "killed.log",
               lambda: (progress / "shard-000002.jsonl").exists(), "generation")
    done = sorted(p.name for p in progress.glob("shard-*.jsonl"))
    n_shards = n // size
    assert 3 <= len(done) < n_shards and not (run / "alert.jsonl").exists()

    log = _run([sys.executable, *cmd(run)], tmp_path / "rerun.log")
    read_back = re.findall(r"shard (\d+)/\d+ \(prompts \d+-\d+\): finished by an earlier run", log)
    computed = re.findall(r"shard (\d+)/\d+ \(prompts \d+-\d+\): computed", log)
    assert [int(k) for k in read_back] == list(range(1, len(done) + 1))
    assert [int(k) for k in computed] == list(range(len(done) + 1, n_shards + 1))
    assert io.read_jsonl(run / "alert.jsonl") == whole
    print(f"generation killed after {len(done)} of {n_shards} shards; the rerun computed {len(computed)}")
    assert not progress.exists()


class _Killed(Exception):
    pass


@pytest.mark.parametrize("trainer, loss_type, shared", [("dpo", "sigmoid", True), ("kto", "kto", False)])
def test_resume_gives_the_uninterrupted_adapter_for_other_trainers(tiny, tmp_path, monkeypatch, trainer,
                                                                     loss_type, shared):
    """In process: a run stopped at step 12 (after its checkpoint at step 10) is resumed by a second
    run, which runs the remaining steps and writes the adapter of a run without checkpoints (shared
    reference log-probs; KTO's unpaired rows)."""
    from safetensors.torch import load_file

    import safealign.train.run as run

    model_ref, pairs, _ = tiny
    s = {**SETTINGS, "trainer": trainer, "loss_type": loss_type, "num_train_epochs": 1,
         "per_device_train_batch_size": 2}
    if trainer == "kto":
        del s["label_smoothing"]
    steps = N_PAIRS * (2 if trainer == "kto" else 1) // 2
    refs = run.compute_ref_logps(model_ref, pairs, {"max_length": s["max_length"]}) if shared else None
    train(model_ref, pairs, s, tmp_path / "plain", refs)

    counter = run.step_counter

    def killing_counter():
        cb = counter()
        on_step_end = cb.on_step_end

        def stop_at_12(args, state, control, **kwargs):
            on_step_end(args, state, control, **kwargs)
            if state.global_step == 12:
                raise _Killed

        cb.on_step_end = stop_at_12
        return cb

    ckpt = tmp_path / "checkpoints"
    monkeypatch.setattr(run, "step_counter", killing_counter)
    with pytest.raises(_Killed):
        train(model_ref, pairs, s, tmp_path / "killed", refs, ckpt, checkpoint_steps=5)
    assert _complete_checkpoints(ckpt) == [10]  # only the last one is kept
    monkeypatch.setattr(run, "step_counter", counter)
    resumed = train(model_ref, pairs, s, tmp_path / "resumed", refs, ckpt, checkpoint_steps=5)
    assert resumed["resumed_from_step"] == 10 and resumed["steps_run_in_this_job"] == steps - 10
    a = load_file(tmp_path / "plain" / "adapter_model.safetensors")
    b = load_file(tmp_path / "resumed" / "adapter_model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= ADAPTER_ATOL
