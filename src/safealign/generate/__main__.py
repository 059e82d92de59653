"""Generate one variant's responses to one benchmark.

    python -m safealign.generate --params JSON --prompts FILE [--adapter DIR] --out FILE --meta FILE

Prompts are rendered with the policy tokenizer's own chat template (optionally with the
benchmark's system prompt), then sent to the configured backend (transformers or vLLM).
"""

from __future__ import annotations

import argparse

from .. import io
from ..chat import conversation, render
from ..cli import setup
from ..models import describe, load_tokenizer
from . import generate_texts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", required=True)
    p.add_argument("--prompts", required=True)
    p.add_argument("--adapter")
    p.add_argument("--out", required=True)
    p.add_argument("--meta", required=True)
    args = p.parse_args()
    params = setup(args)
    records = io.read_jsonl(args.prompts)
    tok = load_tokenizer(params["model"])
    system = params.get("system_prompt")
    rendered = [render(tok, conversation(r["prompt"], system=system)) for r in records]
    settings = params["generation"]
    outputs = generate_texts(params["model"], args.adapter, rendered, settings, settings["backend"])
    rows = []
    for o in outputs:
        rec = records[o["prompt_index"]]
        rows.append({**rec, "sample": o["sample"], "response": o["text"].strip()})
    io.write_jsonl(args.out, rows)
    io.write_json(args.meta, io.provenance(model=describe(params["model"], args.adapter),
                                           settings=settings, system_prompt=system,
                                           n_prompts=len(records), n_responses=len(rows)))


if __name__ == "__main__":
    main()
