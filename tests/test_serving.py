"""How trained variants are served at generation (safealign.generate.serving), planned without vLLM.

The per-architecture decision, its errors (each names the config key), the merge step against
peft's own merged model, and the DAG: a dry run schedules ``merge_adapter`` exactly for the
variants served as merged weights (the paper's Falcon variants with backend vllm).
The vLLM side (the table against the installed vLLM, Falcon merged weights against transformers +
adapter) is in tests/test_vllm.py.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from safealign.checks import ConfigError, check_config
from safealign.dag import Dag
from safealign.generate.__main__ import served_model
from safealign.generate.serving import VLLM_LORA, ServingError, model_architecture, serving_plan, warnings
from safealign.grid import variants

REPO = Path(__file__).resolve().parents[1]
LORA = {"peft": "lora", "trainer": "dpo"}
QLORA = {"peft": "qlora", "trainer": "dpo"}


def falcon_config(default_config: dict, **generation) -> dict:
    cfg = copy.deepcopy(default_config)
    cfg["models"]["falcon"] = {"hub": "tiiuae/Falcon-11B-Instruct", "revision": "0" * 40,
                               "architecture": "FalconForCausalLM"}
    cfg["generation"].update({"backend": "vllm", **generation})
    return cfg


def test_falcon_on_vllm_is_merged_llama_keeps_its_adapter(default_config):
    cfg = falcon_config(default_config)
    falcon = serving_plan(cfg, "falcon", LORA)
    assert falcon["mode"] == "merged" and falcon["architecture"] == "FalconForCausalLM"
    assert falcon["vllm_lora"] is False and "does not implement LoRA" in falcon["reason"]
    tiny = next(iter(default_config["models"]))
    llama = serving_plan(cfg, tiny, LORA)
    assert llama["mode"] == "adapter" and llama["architecture"] == "LlamaForCausalLM"
    assert serving_plan(cfg, "falcon", {})["mode"] == "base"
    assert serving_plan(cfg, "falcon", {"peft": "full"})["mode"] == "full"


def test_transformers_backend_applies_every_adapter(default_config):
    cfg = falcon_config(default_config, backend="transformers")
    plan = serving_plan(cfg, "falcon", LORA)
    assert plan["mode"] == "adapter" and plan["quantization"] is None
    assert serving_plan(falcon_config(default_config, backend="transformers", lora_serving="merged"),
                        "falcon", LORA)["mode"] == "merged"


def test_lora_serving_forces_a_mode(default_config):
    tiny = next(iter(default_config["models"]))
    assert serving_plan(falcon_config(default_config, lora_serving="merged"), tiny, LORA)["mode"] == "merged"
    assert serving_plan(falcon_config(default_config, lora_serving="adapter"), tiny, LORA)["mode"] == "adapter"
    with pytest.raises(ServingError, match=r"generation\.lora_serving 'adapter'.*FalconForCausalLM"):
        serving_plan(falcon_config(default_config, lora_serving="adapter"), "falcon", LORA)


def test_qlora_base_choice(default_config):
    plan = serving_plan(falcon_config(default_config), "falcon", QLORA)
    assert (plan["mode"], plan["qlora_base"], plan["quantization"]) == ("merged", "unquantized", None)
    # A plain LoRA variant records no QLoRA choice.
    assert serving_plan(falcon_config(default_config), "falcon", LORA)["qlora_base"] is None
    # nf4: the adapter on the 4-bit base it was trained against.
    hf = serving_plan(falcon_config(default_config, backend="transformers", qlora_base="nf4"), "falcon", QLORA)
    assert (hf["mode"], hf["qlora_base"], hf["quantization"]) == ("adapter", "nf4", "4bit")
    tiny = next(iter(default_config["models"]))
    vl = serving_plan(falcon_config(default_config, qlora_base="nf4"), tiny, QLORA)
    assert (vl["mode"], vl["quantization"]) == ("adapter", "4bit")
    with pytest.raises(ServingError, match=r"qlora_base 'nf4'.*FalconForCausalLM"):
        serving_plan(falcon_config(default_config, qlora_base="nf4"), "falcon", QLORA)
    with pytest.raises(ServingError, match=r"cannot be merged into the 4-bit base"):
        serving_plan(falcon_config(default_config, qlora_base="nf4", lora_serving="merged"), tiny, QLORA)


def test_architecture_sources(default_config, tmp_path):
    cfg = falcon_config(default_config)
    # A hub model without `architecture` is unknown: merged (always servable) and a warning.
    del cfg["models"]["falcon"]["architecture"]
    assert model_architecture(cfg, "falcon") is None
    assert serving_plan(cfg, "falcon", LORA)["mode"] == "merged"
    assert any("config.models.falcon" in w and "merged" in w for w in warnings(cfg))
    # A local directory's config.json is read; a declared architecture must agree with it.
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["FalconForCausalLM"]}))
    cfg["models"]["falcon"] = {"path": str(tmp_path)}
    assert model_architecture(cfg, "falcon") == "FalconForCausalLM"
    cfg["models"]["falcon"]["architecture"] = "LlamaForCausalLM"
    with pytest.raises(ServingError, match=r"config\.models\.falcon\.architecture is 'LlamaForCausalLM'"):
        model_architecture(cfg, "falcon")


def test_check_config_names_the_key(default_config):
    with pytest.raises(ConfigError, match=r"config\.generation\.lora_serving 'adapter'"):
        check_config(falcon_config(default_config, lora_serving="adapter"))
    cfg = copy.deepcopy(default_config)
    bench = next(iter(cfg["benchmarks"]))
    cfg["benchmarks"][bench].setdefault("generation", {})["lora_serving"] = "merged"
    with pytest.raises(ConfigError, match=rf"config\.benchmarks\.{bench}\.generation\.lora_serving"):
        check_config(cfg)


def test_serving_keys_stay_out_of_benchmark_settings(default_config):
    cfg = falcon_config(default_config, lora_serving="merged", qlora_base="nf4")
    for bench in cfg["benchmarks"]:
        settings = Dag(cfg).generation_settings(bench)
        assert "lora_serving" not in settings and "qlora_base" not in settings
        assert settings["backend"] == "vllm"


def test_paper_config_merges_every_trained_falcon_variant():
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    trained = [v for v in variants(cfg) if v.method]
    assert trained and cfg["generation"]["backend"] == "vllm"
    for v in trained:
        plan = serving_plan(cfg, v.model, v.settings)
        assert (plan["mode"], plan["qlora_base"]) == ("merged", "unquantized"), v.name


def test_served_model():
    base = {"hub": "x", "revision": "0" * 40}
    assert served_model(base, "a", "m", {"mode": "merged"}) == ({"path": "m"}, None)
    assert served_model(base, "a", None, {"mode": "adapter"}) == (base, "a")
    with pytest.raises(ValueError, match="needs --adapter and --merged"):
        served_model(base, "a", None, {"mode": "merged"})
    with pytest.raises(ValueError, match="--merged given"):
        served_model(base, "a", "m", {"mode": "adapter"})


def test_merge_equals_peft_merged_model(tmp_path):
    """The merge step writes the base + adapter that peft computes, with the base's tokenizer."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from safealign.generate.merge import merge_adapter

    model_dir, adapter_dir, out = tmp_path / "model", tmp_path / "adapter", tmp_path / "merged"
    vocab = {c: i for i, c in enumerate(["<unk>", *"abcdefgh "])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="<unk>").save_pretrained(model_dir)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128,
                                 num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                 max_position_embeddings=32)).save_pretrained(model_dir)
    peft_model = get_peft_model(LlamaForCausalLM.from_pretrained(model_dir),
                                LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.2)
    peft_model.save_pretrained(adapter_dir)

    merge_adapter({"path": str(model_dir)}, str(adapter_dir), out, dtype="float32")
    assert not (tmp_path / "merged.tmp").exists()
    meta = json.loads((out / "merge.json").read_text())
    assert meta["dtype"] == "float32" and meta["model"]["adapter"]
    assert (out / "tokenizer.json").exists() and not (out / "adapter_config.json").exists()
    ids = torch.tensor([[1, 2, 3, 4, 5, 9]])
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    base = LlamaForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        want = PeftModel.from_pretrained(LlamaForCausalLM.from_pretrained(model_dir), adapter_dir).eval()(ids).logits
        got = merged(ids).logits
        assert torch.allclose(got, want, atol=1e-5)
        assert not torch.allclose(got, base(ids).logits, atol=1e-3)  # the adapter is not a no-op


# ---------------------------------------------------------------- the DAG (snakemake -n)


def dry_run(tmp_path: Path, *configfiles: str) -> dict[str, int]:
    for name in ("workflow", "rules", "envs", "config", "src"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    args = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--sdm", "apptainer"]
    if configfiles:
        args += ["--configfile", *configfiles]
    proc = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout.split("Job stats:")[-1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_dag_merges_falcon_variants_only(tmp_path):
    paper = dry_run(tmp_path / "paper", "config/paper.yaml")
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    trained = [v for v in variants(cfg) if v.method]
    assert paper["merge_adapter"] == paper["train"] == len(trained) == len(cfg["methods"]) * len(cfg["seeds"])
    # One generation cell per (variant, benchmark).
    assert paper["generate"] == len(variants(cfg)) * len(cfg["benchmarks"])
    tiny = dry_run(tmp_path / "tiny")
    assert "merge_adapter" not in tiny and tiny["train"] == len(trained_variants("config.yaml"))


def test_dag_forced_merge_on_the_tiny_world(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"generation": {"backend": "vllm", "lora_serving": "merged"}}))
    counts = dry_run(tmp_path / "w", "config/config.yaml", str(overlay))
    assert counts["merge_adapter"] == counts["train"] == len(trained_variants("config.yaml"))


def trained_variants(name: str) -> list:
    """The trained variants (one train job each) of config/<name>."""
    return [v for v in variants(yaml.safe_load((REPO / "config" / name).read_text())) if v.method]


def test_known_architectures_table_has_falcon():
    assert VLLM_LORA["FalconForCausalLM"] is False and VLLM_LORA["LlamaForCausalLM"] is True
