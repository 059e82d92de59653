"""The one loader for "model + tokenizer from a local dir or a pinned hub id".

A *model reference* is a plain dict, as carried in rule params:

- ``{"path": "results/world/models/tiny/base"}``: a directory written by ``save_pretrained``
  (the tiny world builds these);
- ``{"hub": "tiiuae/falcon-11B", "revision": "<commit sha>"}``: a pinned hub id (the paper's
  models). ``HF_HUB_OFFLINE=1`` makes this read only the local cache;
- either may add ``"gguf_file": "name.gguf"`` to load GGUF weights through transformers.

An optional ``adapter`` directory (a PEFT LoRA adapter) is applied on top.

Loading is safe by construction: ``trust_remote_code=False`` (a repository's own Python never
runs) and safetensors weights only (``use_safetensors=True``; a pickled ``.bin`` checkpoint, which
can execute code when unpickled, is refused). GGUF files hold no code and stay allowed.
lm-eval's and vLLM's model arguments (capability/harness.py, generate/vllm_backend.py) say the
same.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .cli import freeze_heap

ModelRef = dict[str, Any]

_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16"}


# The keyword arguments every from_pretrained call gets (see the module docstring).
SAFE_LOADING: dict[str, Any] = {"trust_remote_code": False}


# PEFT reads this file when it exists and falls back to a pickled adapter_model.bin otherwise.
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def check_safetensors(directory: str | os.PathLike, what: str = "model directory",
                      name: str = "*.safetensors") -> None:
    """A local model or adapter directory must hold safetensors weights ``name`` (a glob), not
    pickled ones."""
    directory = Path(directory)
    if directory.is_dir() and not any(directory.glob(name)):
        pickled = sorted(p.name for p in directory.glob("*.bin")) + sorted(
            p.name for p in directory.glob("*.pt"))
        found = f"it has {pickled}" if pickled else "it has no weights"
        raise ValueError(
            f"{what} {directory} has no {name} weights ({found}); safealign loads "
            "safetensors only (a pickled checkpoint can run code when loaded): re-save it with "
            "`save_pretrained`, which writes safetensors"
        )


def resolve_ref(ref: ModelRef) -> tuple[str, dict[str, Any]]:
    """The one resolution of a model reference: the ``from_pretrained`` name (a checked local
    directory, or the hub id) and the weights arguments (``revision``, ``gguf_file``;
    :data:`SAFE_LOADING` is added by the loaders). The transformers loaders here, lm-eval's
    ``model_args`` (capability/harness.py) and vLLM's ``LLM`` arguments (generate/vllm_backend.py)
    all start from it. A local directory must exist and (without ``gguf_file``) hold safetensors;
    a hub id needs a pinned ``revision``."""
    if "path" in ref:
        path = Path(ref["path"])
        if not path.exists():
            raise FileNotFoundError(f"model directory {path} does not exist")
        if not ref.get("gguf_file"):
            check_safetensors(path)
        kwargs: dict[str, Any] = {}
        name = str(path)
    elif "hub" in ref:
        if not ref.get("revision"):
            raise ValueError(f"hub model {ref['hub']!r} needs a pinned 'revision'")
        name, kwargs = ref["hub"], {"revision": ref["revision"]}
    else:
        raise ValueError(f"a model reference needs 'path' or 'hub', got {sorted(ref)}")
    if ref.get("gguf_file"):
        kwargs["gguf_file"] = ref["gguf_file"]
    return name, kwargs


def resolve_trained(ref: ModelRef, adapter: str | os.PathLike | None) -> tuple[ModelRef, str | None]:
    """A trained variant's directory holds a LoRA adapter, or (peft: full) a whole model: then
    that directory is the model and there is no adapter."""
    if adapter and not (Path(adapter) / "adapter_config.json").exists() \
            and (Path(adapter) / "config.json").exists():
        return {"path": str(adapter)}, None
    return ref, (str(adapter) if adapter else None)


def describe(ref: ModelRef, adapter: str | None = None) -> dict[str, Any]:
    """Provenance of a reference: hub id + revision, or the local dir's weight hash."""
    from .io import sha256_file

    out: dict[str, Any] = {k: v for k, v in ref.items()}
    if "hub" in ref:
        # The commit actually loaded (a branch name in the config resolves to this sha).
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(ref["hub"], "config.json", revision=ref["revision"])
        if isinstance(cached, str):
            out["resolved_commit"] = Path(cached).parent.name
    if "path" in ref:
        weights = sorted(Path(ref["path"]).glob("*.safetensors"))
        out["weights_sha256"] = {w.name: sha256_file(w) for w in weights}
    if adapter:
        weights = sorted(Path(adapter).glob("*.safetensors"))
        out["adapter"] = {w.name: sha256_file(w) for w in weights}
    return out


def load_tokenizer(ref: ModelRef, padding_side: str = "left"):
    from transformers import AutoTokenizer

    name, kwargs = resolve_ref(ref)
    tok = AutoTokenizer.from_pretrained(name, **kwargs, **SAFE_LOADING)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def job_gpus() -> int:
    """GPUs this process may spread a model over: the job's (``--gpus``, see
    :func:`safealign.cli.add_gpus_argument`), 1 without, and 1 in a data-parallel training rank (each
    rank owns one GPU and a whole copy of the model)."""
    from .cli import JOB_GPUS_ENV

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return 1
    return max(1, int(os.environ.get(JOB_GPUS_ENV, "1") or 1))


def load_model(
    ref: ModelRef,
    adapter: str | os.PathLike | None = None,
    dtype: str = "float32",
    quantization: str | None = None,
    task: str = "causal-lm",
    merge: bool = False,
    device_map: str | dict | None = None,
):
    """Load a model (optionally with a LoRA adapter) in eval mode.

    ``quantization="4bit"`` loads through bitsandbytes (cluster only). ``task`` is
    ``causal-lm`` or ``sequence-classification``. ``device_map`` goes to ``from_pretrained``
    (``"auto"`` spreads a model over a job's GPUs; ``{"": rank}`` puts a rank's copy on its GPU).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    freeze_heap()  # the job's libraries are imported by now
    name, kwargs = resolve_ref(ref)
    kwargs.update(SAFE_LOADING)
    if not kwargs.get("gguf_file"):
        kwargs["use_safetensors"] = True
    kwargs["dtype"] = getattr(torch, _DTYPES[dtype])
    if quantization == "4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    if device_map is None and quantization is None and job_gpus() > 1 and torch.cuda.is_available():
        device_map = "auto"  # a job with several GPUs spreads the model over them
    if device_map is not None:
        kwargs["device_map"] = device_map
    cls = AutoModelForSequenceClassification if task == "sequence-classification" else AutoModelForCausalLM
    model = cls.from_pretrained(name, **kwargs)
    if adapter:
        from peft import PeftModel

        check_safetensors(adapter, "LoRA adapter directory", ADAPTER_WEIGHTS)
        model = PeftModel.from_pretrained(model, str(adapter))
        if merge:
            model = model.merge_and_unload()
    model.eval()
    return model
