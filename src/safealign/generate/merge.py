"""Merge a LoRA adapter into its base model, for a backend that cannot serve the adapter.

    python -m safealign.generate.merge --params JSON --adapter DIR --out DIR

``params``: ``{"model": <model ref>, "dtype": "float32" | "bfloat16" | "float16"}``.
The base is loaded in ``dtype`` (the generation dtype), the adapter applied with peft and merged
with ``merge_and_unload``; the merged model, the base's tokenizer and ``merge.json`` (what was
merged) are written to ``--out`` atomically (a sibling temporary directory, then a rename). See
:mod:`safealign.generate.serving` for when the workflow merges.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from .. import io
from ..cli import parser, setup
from ..models import describe, load_model, load_tokenizer
from ..specs import MergeSpec


def merge_adapter(model_ref: dict[str, Any], adapter: str, out: str | Path, dtype: str = "float32") -> Path:
    """Write ``model_ref`` + ``adapter`` merged (peft ``merge_and_unload``) to ``out``."""
    if not (Path(adapter) / "adapter_config.json").exists():
        raise FileNotFoundError(f"{adapter} is not a PEFT adapter directory (no adapter_config.json)")
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = load_model(model_ref, adapter=adapter, dtype=dtype, merge=True)
    model.save_pretrained(tmp)
    load_tokenizer(model_ref).save_pretrained(tmp)
    io.write_json(tmp / "merge.json", io.provenance(
        model=describe(model_ref, adapter), dtype=dtype, method="peft merge_and_unload"))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--adapter", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    spec = MergeSpec.from_params(setup(args))
    merge_adapter(spec.model, args.adapter, args.out, spec.dtype)


if __name__ == "__main__":
    main()
