"""Generate one variant's responses to one or more benchmarks (the model is loaded once).

    python -m safealign.generate --params JSON [--adapter DIR [--merged DIR]] --prompts P1 P2 .. \
        --out G1 G2 .. --meta FILE [--shard-size N]

The workflow runs one job per grid cell (model, variant, benchmark): one benchmark, its
generations file and its own ``--meta``. ``params["benchmarks"]`` lists, in the order of
``--prompts``/``--out``, each benchmark's name,
system prompt, user-turn template (``{prompt}`` stands for the benchmark prompt) and generation
settings. Prompts are rendered with the policy tokenizer's own chat template, then sent to the
configured backend (transformers or vLLM) one shard of ``--shard-size`` prompts at a time: a killed
or pre-empted job's rerun reads back the finished shards (:mod:`safealign.shards`) and generates only
the rest. Each shard is one backend call whose seed is the configured seed plus the shard's first
prompt index, so shards draw independent random streams (vLLM: per-prompt seed = seed + global
prompt index, the same samples as one unsharded call). A row keeps the benchmark's ``prompt``; where
a template wraps it, ``user_turn`` holds what the model was sent.

``params["serving"]`` is the variant's plan (:func:`safealign.generate.serving.serving_plan`):
with mode ``merged`` the model generated from is ``--merged`` (the adapter merged into the base),
and ``--adapter`` is given for provenance only. The plan is recorded in ``--meta``.
"""

from __future__ import annotations

from .. import io, shards
from ..chat import conversation, render, template_hash, user_turn
from ..cli import parser, setup
from ..models import describe, load_tokenizer
from ..specs import GenerateSpec, GenerationSettings
from . import generate_texts


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, gpus=True)
    p.add_argument("--prompts", nargs="+", required=True)
    p.add_argument("--adapter")
    p.add_argument("--merged", help="the adapter merged into the base (serving mode 'merged')")
    p.add_argument("--out", nargs="+", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--shard-size", type=int, default=shards.DEFAULT_SHARD_SIZE,
                   help="prompts per resumable shard (default %(default)s)")
    args = p.parse_args(argv)
    params = setup(args)
    spec = GenerateSpec.from_params(params)
    benches = params["benchmarks"]  # as given: recorded in meta.json and in the shard keys
    if not len(benches) == len(args.prompts) == len(args.out):
        raise ValueError("--prompts, --out and params.benchmarks must have the same length")
    tok = load_tokenizer(spec.model)
    serving = spec.serving or {"mode": "adapter" if args.adapter else "base"}
    model_ref, adapter = served_model(spec.model, args.adapter, args.merged, serving)
    meta = {}
    for bench, b, prompts_file, out in zip(benches, spec.benchmarks, args.prompts, args.out, strict=True):
        records = io.read_jsonl(prompts_file)
        system = b.system_prompt
        template = b.user_template
        turns = [user_turn(template, r["prompt"]) for r in records]
        # A response prefix (on-policy refusals: preference_data.on_policy.refusal_prefix) is
        # written into the assistant turn; the model continues it and the row's response keeps it.
        prefix = b.response_prefix or ""
        rendered = [render(tok, conversation(t, system=system)) + prefix for t in turns]
        settings = bench["generation"]
        if serving.get("quantization"):
            settings = {**settings, "quantization": serving["quantization"]}
        outputs, _ = shards.run_sharded(
            shards.progress_dir(out), _shard_key(params, bench, prompts_file, args.adapter, serving),
            len(rendered), args.shard_size, _shard_work(model_ref, adapter, rendered, settings), "prompts")
        wrapped = template != "{prompt}"
        rows = [{**records[o["prompt_index"]], **({"user_turn": turns[o["prompt_index"]]} if wrapped else {}),
                 "sample": o["sample"], "response": (prefix + o["text"]).strip()} for o in outputs]
        io.write_jsonl(out, rows)
        meta[bench["name"]] = {"settings": settings, "system_prompt": system, "user_template": template,
                               **({"response_prefix": prefix} if prefix else {}),
                               "n_prompts": len(records), "n_responses": len(rows)}
    io.write_json(args.meta, io.provenance(model=describe(params["model"], args.adapter),
                                           chat_template_sha256=template_hash(tok),
                                           serving=serving, benchmarks=meta))
    for out in args.out:  # only now: Snakemake deletes every output of a job that did not finish
        shards.clean(shards.progress_dir(out))


def served_model(model_ref: dict, adapter: str | None, merged: str | None,
                 serving: dict) -> tuple[dict, str | None]:
    """The (model reference, adapter) generation loads for a serving plan."""
    if serving["mode"] == "merged":
        if not (adapter and merged):
            raise ValueError("serving mode 'merged' needs --adapter and --merged (the merge_adapter rule's output)")
        return {"path": str(merged)}, None
    if merged:
        raise ValueError(f"--merged given but the serving mode is {serving['mode']!r}")
    return model_ref, adapter


def _shard_key(params: dict, bench: dict, prompts_file: str, adapter: str | None, serving: dict) -> dict:
    """What a benchmark's generations depend on: finished shards are reused only if all are equal."""
    return {"model": params["model"], "model_files": shards.file_stamp(params["model"].get("path")),
            "adapter": shards.file_stamp(adapter), "benchmark": bench, "serving": serving,
            "prompts": io.sha256_file(prompts_file)}


def _shard_work(model: dict, adapter: str | None, rendered: list[str], settings: dict):
    """Generate prompts [lo, hi) in one backend call; prompt_index is made global again, and the
    seed is offset by ``lo`` so that shards do not repeat one random stream."""
    s = GenerationSettings.from_params(settings)

    def work(k: int, lo: int, hi: int) -> tuple[list[dict], None]:
        shard_settings = {**settings, "seed": s.seed + lo}
        outs = generate_texts(model, adapter, rendered[lo:hi], shard_settings, s.backend)
        return [{**o, "prompt_index": o["prompt_index"] + lo} for o in outs], None

    return work


if __name__ == "__main__":
    main()
