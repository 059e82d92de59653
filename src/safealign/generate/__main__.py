"""Generate one variant's responses to every benchmark (the model is loaded once).

    python -m safealign.generate --params JSON [--adapter DIR] --prompts P1 P2 .. --out G1 G2 .. --meta FILE

``params["benchmarks"]`` lists, in the order of ``--prompts``/``--out``, each benchmark's name,
system prompt, user-turn template (``{prompt}`` stands for the benchmark prompt) and generation
settings. Prompts are rendered with the policy tokenizer's own chat template, then sent to the
configured backend (transformers or vLLM). A row keeps the benchmark's ``prompt``; where a template
wraps it, ``user_turn`` holds what the model was sent.
"""

from __future__ import annotations

import argparse

from .. import io
from ..chat import conversation, render, user_turn
from ..cli import setup
from ..models import describe, load_tokenizer
from . import generate_texts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", required=True)
    p.add_argument("--prompts", nargs="+", required=True)
    p.add_argument("--adapter")
    p.add_argument("--out", nargs="+", required=True)
    p.add_argument("--meta", required=True)
    args = p.parse_args()
    params = setup(args)
    benches = params["benchmarks"]
    if not len(benches) == len(args.prompts) == len(args.out):
        raise ValueError("--prompts, --out and params.benchmarks must have the same length")
    tok = load_tokenizer(params["model"])
    meta = {}
    for bench, prompts_file, out in zip(benches, args.prompts, args.out, strict=True):
        records = io.read_jsonl(prompts_file)
        system = bench.get("system_prompt")
        template = bench.get("user_template") or "{prompt}"
        turns = [user_turn(template, r["prompt"]) for r in records]
        rendered = [render(tok, conversation(t, system=system)) for t in turns]
        settings = bench["generation"]
        outputs = generate_texts(params["model"], args.adapter, rendered, settings, settings["backend"])
        wrapped = template != "{prompt}"
        rows = [{**records[o["prompt_index"]], **({"user_turn": turns[o["prompt_index"]]} if wrapped else {}),
                 "sample": o["sample"], "response": o["text"].strip()} for o in outputs]
        io.write_jsonl(out, rows)
        meta[bench["name"]] = {"settings": settings, "system_prompt": system, "user_template": template,
                               "n_prompts": len(records), "n_responses": len(rows)}
    io.write_json(args.meta, io.provenance(model=describe(params["model"], args.adapter), benchmarks=meta))


if __name__ == "__main__":
    main()
