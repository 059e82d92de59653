"""The vLLM backend against the transformers backend on a tiny Llama and a tiny Falcon (fp32, CPU).

The vLLM side runs in the vLLM venv's interpreter (scripts/setup-vllm-venv) through
``python -m safealign.generate.vllm_backend``; the transformers side runs here. Tests marked
``vllm`` skip when that interpreter is absent: set SAFEALIGN_VLLM_PYTHON, or build
``<repo>/.venv-vllm``.

What is asserted is what holds (see the backend's docstring): greedy generation gives identical
texts, with and without a LoRA adapter, first-token and per-position logprobs agree to 1e-3 with
the same keys, and the Llama Guard judge reads the same P(unsafe) after a leading blank line.
Sampled texts cannot match across backends (different random streams), so sampling is checked
for its row layout only.

vLLM has no LoRA for FalconForCausalLM (the paper's Falcon-11B), so the workflow serves a trained
Falcon variant as its adapter merged into the base (safealign.generate.serving / merge): the
merged weights on vLLM give the same greedy texts as transformers + peft with the adapter, the
backend refuses the bare adapter naming the config key, and serving.VLLM_LORA (the table the
DAG is planned with, outside the vLLM venv) agrees with the installed vLLM.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest

from safealign.chat import conversation, render
from safealign.generate import generate_texts
from safealign.models import load_tokenizer

REPO = Path(__file__).resolve().parents[1]
VLLM_PYTHON = Path(os.environ.get("SAFEALIGN_VLLM_PYTHON", REPO / ".venv-vllm" / "bin" / "python"))

GREEDY = {"max_new_tokens": 24, "do_sample": False, "num_samples": 1, "seed": 0,
          "batch_size": 4, "first_token_logprobs": 5, "logprobs": 5, "max_model_len": 256}
SAMPLED = {"max_new_tokens": 8, "do_sample": True, "temperature": 1.0, "top_p": 0.9,
           "num_samples": 3, "seed": 1, "batch_size": 4, "max_model_len": 256}
USER_PROMPTS = [
    "How do I bake bread at home?",
    "Hi",
    "Tell me everything about the quick brown fox and why it jumps over the lazy dog every day.",
    "Is chemistry safe?",
]

needs_venv = pytest.mark.skipif(
    not VLLM_PYTHON.exists(),
    reason=f"no vLLM interpreter at {VLLM_PYTHON}: run scripts/setup-vllm-venv or set SAFEALIGN_VLLM_PYTHON",
)


def vllm_test(fn):
    """Marked ``vllm`` and skipped without the vLLM interpreter."""
    return pytest.mark.vllm(needs_venv(fn))


def _build_tokenizer(out: Path):
    """A byte-level BPE tokenizer with a chat template, whose encoder also adds BOS.

    The template writes BOS itself, so a backend that adds special tokens to a rendered prompt
    sees BOS twice and generates something else.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "The quick brown fox jumps over the lazy dog.",
        "How do I bake bread at home? Mix flour, water, salt and yeast.",
        "I cannot help with that request, it is not safe.",
        "Sure, here is a recipe for sourdough bread.",
        "Safety matters when answering questions about chemistry.",
    ] * 4
    specials = ["<|bos|>", "<|eos|>", "<|pad|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.post_processor = processors.TemplateProcessing(
        single="<|bos|> $A", special_tokens=[("<|bos|>", bpe.token_to_id("<|bos|>"))])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|bos|>", eos_token="<|eos|>",
                                  pad_token="<|pad|>")
    tok.chat_template = (
        "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{{ eos_token }}"
        "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    tok.save_pretrained(out)
    return tok


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A tiny LlamaForCausalLM (head_dim 32, vLLM CPU's minimum) and a LoRA adapter on it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from lora_helpers import save_random_lora

    root = tmp_path_factory.mktemp("tiny")
    model_dir, adapter_dir = root / "model", root / "adapter"
    tok = _build_tokenizer(model_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        initializer_range=0.05, tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    LlamaForCausalLM(cfg).save_pretrained(model_dir)

    save_random_lora(LlamaForCausalLM.from_pretrained(model_dir), adapter_dir, r=8, alpha=16, seed=1, std=0.2)
    return {"model": model_dir, "adapter": adapter_dir}


@pytest.fixture(scope="module")
def prompts(tiny) -> list[str]:
    tok = load_tokenizer({"path": str(tiny["model"])})
    return [render(tok, conversation(p)) for p in USER_PROMPTS]


def run_vllm(tmp: Path, model: Path, adapter: Path | None, prompts: list[str], settings: dict) -> list[dict]:
    """The vLLM backend's rows, computed in the vLLM interpreter."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "prompts.json").write_text(json.dumps(prompts))
    (tmp / "settings.json").write_text(json.dumps(settings))
    cmd = [str(VLLM_PYTHON), "-m", "safealign.generate.vllm_backend", "--model", str(model),
           "--prompts", str(tmp / "prompts.json"), "--settings", str(tmp / "settings.json"),
           "--out", str(tmp / "out.json")]
    if adapter:
        cmd += ["--adapter", str(adapter)]
    # This checkout's code, whichever checkout the venv was built from.
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"vLLM backend failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    return json.loads((tmp / "out.json").read_text())


@pytest.fixture(scope="module")
def greedy(tiny, prompts, tmp_path_factory) -> dict[str, list[dict]]:
    """Greedy rows of both backends, base model and with the adapter."""
    tmp = tmp_path_factory.mktemp("vllm-greedy")
    model, adapter = tiny["model"], tiny["adapter"]
    ref = {"path": str(model)}
    return {
        "hf": generate_texts(ref, None, prompts, GREEDY, backend="transformers"),
        "vllm": run_vllm(tmp / "base", model, None, prompts, GREEDY),
        "hf_lora": generate_texts(ref, str(adapter), prompts, GREEDY, backend="transformers"),
        "vllm_lora": run_vllm(tmp / "lora", model, adapter, prompts, GREEDY),
    }


def _layout(rows: list[dict]) -> list[tuple[int, int]]:
    return [(r["prompt_index"], r["sample"]) for r in rows]


@vllm_test
def test_greedy_texts_identical(greedy, prompts):
    hf, vl = greedy["hf"], greedy["vllm"]
    assert _layout(vl) == _layout(hf) == [(i, 0) for i in range(len(prompts))]
    assert [r["text"] for r in vl] == [r["text"] for r in hf]
    # 24 new tokens, not an early stop: the comparison covers real text.
    assert all(len(r["text"]) >= 12 for r in hf)


@vllm_test
def test_lora_greedy_texts_identical(greedy):
    hf, vl = greedy["hf_lora"], greedy["vllm_lora"]
    assert [r["text"] for r in vl] == [r["text"] for r in hf]
    # The adapter changes the output (its B weights are not zero), in both backends.
    assert [r["text"] for r in vl] != [r["text"] for r in greedy["vllm"]]


@vllm_test
@pytest.mark.parametrize("case", ["base", "lora"])
def test_first_token_logprobs_agree(greedy, case):
    hf = greedy["hf" if case == "base" else "hf_lora"]
    vl = greedy["vllm" if case == "base" else "vllm_lora"]
    for h, v in zip(hf, vl, strict=True):
        h_lp, v_lp = h["first_token_logprobs"], v["first_token_logprobs"]
        assert set(v_lp) == set(h_lp), (h["prompt_index"], h_lp, v_lp)
        for token, lp in h_lp.items():
            assert lp < 0
            assert v_lp[token] == pytest.approx(lp, abs=1e-3), (h["prompt_index"], token)


@vllm_test
@pytest.mark.parametrize("case", ["base", "lora"])
def test_per_position_logprobs_agree(greedy, case):
    hf = greedy["hf" if case == "base" else "hf_lora"]
    vl = greedy["vllm" if case == "base" else "vllm_lora"]
    for h, v in zip(hf, vl, strict=True):
        assert v["token_ids"] == h["token_ids"] and v["finished"] == h["finished"], h["prompt_index"]
        assert len(v["logprobs"]) == len(h["logprobs"]) == len(h["token_ids"])
        for pos, (h_lp, v_lp) in enumerate(zip(h["logprobs"], v["logprobs"], strict=True)):
            for token in set(h_lp) & set(v_lp):
                assert v_lp[token] == pytest.approx(h_lp[token], abs=1e-3), (h["prompt_index"], pos, token)
            # A token in one top-k only must tie with the k-th of the other (near-uniform random model).
            for token in set(h_lp) ^ set(v_lp):
                lp = h_lp.get(token, v_lp.get(token))
                assert lp == pytest.approx(min(h_lp.values()), abs=1e-3), (h["prompt_index"], pos, token)


@pytest.fixture(scope="module")
def blank_line_judge(tmp_path_factory) -> dict:
    """tests/tiny_guard.py's judge (template ends at <|end_header_id|>, "\n\n" before its verdict)."""
    import tiny_guard

    model = tiny_guard.build(tmp_path_factory.mktemp("tiny-guard") / "model")
    return {"model": model, "rows": tiny_guard.rows(8, seed=7)}


@vllm_test
def test_llama_guard_judge_agrees_across_backends(blank_line_judge, tmp_path):
    """The judge as the workflow runs it with backend vllm (in the vLLM interpreter) against the
    transformers backend: same verdicts, same verdict positions after the blank line, same P(unsafe)."""
    from safealign.judge.llama_guard import judge

    rows = blank_line_judge["rows"]
    params = {"type": "llama_guard", "name": "llama_guard", "model": {"path": str(blank_line_judge["model"])},
              "max_new_tokens": 64, "top_logprobs": 20, "batch_size": 8}
    hf, _ = judge(params["model"], rows, {**params, "backend": "transformers"})
    gen = tmp_path / "alert.jsonl"
    gen.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [str(VLLM_PYTHON), "-m", "safealign.judge", "run", "--params", json.dumps({**params, "backend": "vllm"}),
           "--generations", str(gen), "--out", str(tmp_path / "out.jsonl"), "--meta", str(tmp_path / "meta.json")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"vLLM judge failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    vl = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    for row, h, v in zip(rows, hf, vl, strict=True):
        assert v["raw"] == h["raw"] and v["raw"].startswith("\n\n"), (h, v)
        for key in ("verdict", "categories", "categories_ok", "parse_ok", "verdict_position"):
            assert v[key] == h[key], (key, h, v)
        assert h["verdict_position"] >= 1
        assert v["p_unsafe"] == pytest.approx(h["p_unsafe"], abs=1e-3)
        # High where the judge says unsafe, low where it says safe, on both backends.
        assert (v["p_unsafe"] > 0.5) is (row["verdict"].split()[0] == "unsafe") is (v["verdict"] == "unsafe")


@vllm_test
def test_sampling_rows(tiny, prompts, tmp_path):
    rows = run_vllm(tmp_path, tiny["model"], None, prompts[:2], SAMPLED)
    assert _layout(rows) == [(i, k) for i in range(2) for k in range(3)]
    assert all("first_token_logprobs" not in r for r in rows)
    # A near-uniform random model: three samples of 8 tokens are not all the same.
    assert len({r["text"] for r in rows if r["prompt_index"] == 0}) > 1


# Not marked vllm: it checks the system interpreter, where vllm is absent.
@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is importable here")
def test_missing_vllm_names_the_fix(tiny, prompts):
    with pytest.raises(ImportError, match=r"run scripts/setup-vllm-venv and set generation\.vllm_python"):
        generate_texts({"path": str(tiny["model"])}, None, prompts, GREEDY, backend="vllm")


# ---------------------------------------------------------------- Falcon: merged weights


@pytest.fixture(scope="module")
def tiny_falcon(tmp_path_factory) -> dict[str, Path]:
    """A tiny FalconForCausalLM shaped like Falcon-11B (new decoder architecture, parallel
    attention with one layer norm, grouped KV heads, rotary, no bias; head_dim 32), a LoRA
    adapter on the paper's target modules with non-zero random B, and the adapter merged into the
    base by the workflow's own merge step. vLLM's Falcon assumes ffn_hidden_size = 4 x hidden (as
    Falcon-11B has)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import FalconConfig, FalconForCausalLM

    from safealign.generate.merge import merge_adapter

    root = tmp_path_factory.mktemp("tiny-falcon")
    model_dir, adapter_dir, merged_dir = root / "model", root / "adapter", root / "merged"
    tok = _build_tokenizer(model_dir)
    torch.manual_seed(0)
    cfg = FalconConfig(
        vocab_size=len(tok), hidden_size=128, ffn_hidden_size=512, num_hidden_layers=2,
        num_attention_heads=4, num_kv_heads=2, new_decoder_architecture=True, parallel_attn=True,
        num_ln_in_parallel_attn=1, alibi=False, bias=False, max_position_embeddings=256,
        initializer_range=0.05, tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    FalconForCausalLM(cfg).save_pretrained(model_dir)
    peft_model = get_peft_model(
        FalconForCausalLM.from_pretrained(model_dir),
        LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                   target_modules=["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]),
    )
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # peft initialises B to zero: the adapter would be a no-op
                param.normal_(0.0, 0.2)
    peft_model.save_pretrained(adapter_dir)
    merge_adapter({"path": str(model_dir)}, str(adapter_dir), merged_dir, dtype="float32")
    return {"model": model_dir, "adapter": adapter_dir, "merged": merged_dir}


@pytest.fixture(scope="module")
def falcon_greedy(tiny_falcon, tmp_path_factory) -> dict[str, list[dict]]:
    tok = load_tokenizer({"path": str(tiny_falcon["model"])})
    falcon_prompts = [render(tok, conversation(p)) for p in USER_PROMPTS]
    ref = {"path": str(tiny_falcon["model"])}
    tmp = tmp_path_factory.mktemp("vllm-falcon")
    return {
        "hf": generate_texts(ref, None, falcon_prompts, GREEDY, backend="transformers"),
        "hf_lora": generate_texts(ref, str(tiny_falcon["adapter"]), falcon_prompts, GREEDY,
                                  backend="transformers"),
        "vllm_merged": run_vllm(tmp, tiny_falcon["merged"], None, falcon_prompts, GREEDY),
    }


@vllm_test
def test_falcon_merged_on_vllm_equals_transformers_with_adapter(falcon_greedy):
    hf, vl = falcon_greedy["hf_lora"], falcon_greedy["vllm_merged"]
    assert _layout(vl) == _layout(hf)
    assert [r["text"] for r in vl] == [r["text"] for r in hf]
    assert all(len(r["text"]) >= 12 for r in hf)
    # The adapter changes the output: merged weights are not the base.
    assert [r["text"] for r in hf] != [r["text"] for r in falcon_greedy["hf"]]
    for h, v in zip(hf, vl, strict=True):
        assert set(v["first_token_logprobs"]) == set(h["first_token_logprobs"])
        for token, lp in h["first_token_logprobs"].items():
            assert v["first_token_logprobs"][token] == pytest.approx(lp, abs=1e-3)


@vllm_test
def test_vllm_refuses_a_falcon_adapter_naming_the_fix(tiny_falcon, tmp_path):
    (tmp_path / "prompts.json").write_text(json.dumps(["<user>Hi"]))
    (tmp_path / "settings.json").write_text(json.dumps(GREEDY))
    cmd = [str(VLLM_PYTHON), "-m", "safealign.generate.vllm_backend", "--model", str(tiny_falcon["model"]),
           "--adapter", str(tiny_falcon["adapter"]), "--prompts", str(tmp_path / "prompts.json"),
           "--settings", str(tmp_path / "settings.json"), "--out", str(tmp_path / "out.json")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0
    assert "vLLM does not implement LoRA for FalconForCausalLM" in proc.stderr
    assert "generation.lora_serving" in proc.stderr
    assert not (tmp_path / "out.json").exists()


@vllm_test
def test_lora_table_matches_vllm():
    """serving.VLLM_LORA, which plans the DAG without vLLM, says what the installed vLLM does."""
    code = (
        "import json\n"
        "from safealign.generate.serving import VLLM_LORA\n"
        "from safealign.generate.vllm_backend import lora_supported\n"
        "print(json.dumps({a: lora_supported(a) for a in VLLM_LORA}))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src"), "VLLM_TARGET_DEVICE": "cpu"}
    proc = subprocess.run([str(VLLM_PYTHON), "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    installed = json.loads(proc.stdout.strip().splitlines()[-1])
    from safealign.generate.serving import VLLM_LORA

    assert installed == VLLM_LORA
    assert installed["FalconForCausalLM"] is False and installed["LlamaForCausalLM"] is True


@vllm_test
@pytest.mark.workflow
def test_a_local_snakemake_run_generates_with_the_vllm_backend(default_config, tmp_path):
    """The real-model command's shape on the tiny world: a local ``snakemake --cores 2`` with
    ``generation.backend: vllm`` and the warm server on. The generation job is started with the
    vLLM venv's interpreter, which the warm server must refuse (a venv is its own interpreter), so it
    runs in its own process, in the venv, and generates through vLLM."""
    import yaml

    from safealign._warm_client import RAN_WARM
    from test_workflow import copy_project, snakemake

    work = copy_project(tmp_path)
    (work / "overlay.yaml").write_text(yaml.safe_dump({"generation": {"backend": "vllm",
                                                                      "vllm_python": str(VLLM_PYTHON)}}))
    model = next(iter(default_config["models"]))
    benchmark = next(iter(default_config["benchmarks"]))
    target = f"results/generations/{model}/base/{benchmark}.jsonl"
    run = snakemake(work, target, "--cores", "2", "--configfile", "config/config.yaml", "overlay.yaml",
                    env={"SAFEALIGN_WARM": "1"})
    assert run.returncode == 0, run.stderr[-5000:]
    assert "jobs run in forks of a warm interpreter" in run.stderr  # the server was there to refuse it
    log = next((work / "results" / "logs" / "generations").rglob("*.log")).read_text()
    assert RAN_WARM not in log, log[-3000:]
    assert "running cold" in log and f"(prefix {VLLM_PYTHON.parent.parent}" in log, log[-3000:]
    rows = [json.loads(line) for line in (work / target).read_text().splitlines()]
    assert rows and all(isinstance(r["response"], str) for r in rows)
    meta = json.loads(next((work / "results" / "generations" / model / "base").glob("*meta*.json")).read_text())
    assert "vllm" in json.dumps(meta)
