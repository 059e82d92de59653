"""Judge one variant's generations on one benchmark with one judge, or validate a judge.

    python -m safealign.judge run --params JSON --generations FILE --out FILE --meta FILE
    python -m safealign.judge validate --params JSON --examples FILE --out FILE

Judging is separate from generation: adding or swapping a judge never regenerates. ``run`` judges
one shard of ``--shard-size`` rows at a time: a killed or pre-empted job's rerun reads back the
finished shards (:mod:`safealign.shards`) and judges only the rest.

**A judgment row** keeps the generation row's identifying keys (``id``, ``benchmark``,
``category``, ``attack_type``, ``label``, ``type``, ``sample``, ``prompt``, ``response``), adds the
judge type's own fields, and always carries ``judge`` (the judge's config name), ``judge_type``
(a key of :data:`safealign.judge.registry.JUDGE_TYPES`) and ``safe``, the one normalised verdict
every later stage reads (:func:`safe_value`: the type module's ``safe``), computed here once:

- llama_guard: ``safe`` is ``verdict == "safe"``; None when the output could not be parsed
  (``parse_ok`` false), never silently safe or unsafe;
- refusal: the judge answers "did the model refuse", which says whether the response is safe only
  on a harmful prompt, where the safe answer is a refusal. ``safe`` is ``refusal`` on every prompt
  not labelled safe (every prompt of a safety benchmark; XSTest's unsafe contrast prompts), and
  None (not applicable) on a prompt labelled ``safe`` (XSTest's safe prompts, alpaca), where a
  compliance is no harm and a refusal is an over-refusal, read from ``refusal``;
- toxicity: ``safe`` is ``not toxic``, i.e. P(toxic) < the judge's ``threshold``: a continuation
  the classifier calls toxic is not a safe response. Toxicity metrics read the scores
  (``toxicity``) and ``toxic``; ``safe`` is there so every judgment says the same thing the same way.
"""

from __future__ import annotations

from typing import Any

from .. import io, shards
from ..cli import setup, steps
from ..specs import JudgeSpec
from . import registry


def safe_value(judge_type: str, row: dict[str, Any], judged: dict[str, Any]) -> bool | None:
    """The normalised ``safe`` of one judgment (the module docstring defines it): ``row`` is the
    generation row judged, ``judged`` the judge's own fields for it."""
    return registry.module(judge_type).safe(row, judged)


def run_judge(params: dict[str, Any] | JudgeSpec, rows: list[dict[str, Any]]) -> tuple[list[dict], dict]:
    """The judge's own fields for each row (see the module docstring), and its provenance: the
    type's module (:mod:`safealign.judge.registry`) judges."""
    spec = JudgeSpec.from_params(params)
    judged, meta = registry.module(spec.type).run(spec, rows)
    if len(judged) != len(rows):
        raise ValueError(f"judge type {spec.type!r} returned {len(judged)} judgments for {len(rows)} rows")
    return judged, meta


def judgment_rows(spec: JudgeSpec, rows: list[dict[str, Any]], judged: list[dict[str, Any]]) -> list[dict]:
    """The judgment rows written (the module docstring lists their keys)."""
    return [{**{k: r[k] for k in KEEP if k in r}, **j, "judge": spec.name, "judge_type": spec.type,
             "safe": safe_value(spec.type, r, j)}
            for r, j in zip(rows, judged, strict=True)]


# The generation row's keys a judgment keeps.
KEEP = ("id", "benchmark", "category", "attack_type", "label", "type", "sample", "prompt", "response")


def validate(params: dict[str, Any], examples: list[dict[str, Any]],
             min_accuracy: float | None = None) -> dict[str, Any]:
    """Accuracy of a judge on held-out labelled examples (the tiny world's judges); ``min_accuracy``
    (config ``min_validation_accuracy``, recorded beside it) is the gate the caller applies."""
    spec = JudgeSpec.from_params(params)
    if not registry.judge_type(spec.type).world_data:
        raise ValueError(f"judge type {spec.type!r} has no labelled examples to validate against "
                         "(safealign.judge.registry: world_data)")
    truth, pred, extra = registry.module(spec.type).validate(spec, examples)
    acc = sum(t == p for t, p in zip(truth, pred, strict=True)) / len(truth)
    return {"accuracy": acc, "n": len(truth), "min_accuracy": min_accuracy, **extra}


def main(argv: list[str] | None = None) -> None:
    p, step = steps(__doc__)
    run = step("run", "judge generations", gpus=True)
    run.add_argument("--generations", nargs="*", default=[])
    run.add_argument("--out", nargs="+", required=True)
    run.add_argument("--meta")
    run.add_argument("--shard-size", type=int, default=shards.DEFAULT_SHARD_SIZE,
                     help="rows per resumable shard (default %(default)s)")
    val = step("validate", "a judge's accuracy on held-out labelled examples", gpus=True)
    val.add_argument("--examples", required=True)
    val.add_argument("--out", nargs="+", required=True)
    # Not in --params: a gate on the judge, not a setting of it (safealign.dag, NOT_EXPERIMENT_SETTINGS).
    val.add_argument("--min-validation-accuracy", type=float, default=None,
                     help="fail below this accuracy (config judges.<name>.min_validation_accuracy)")
    args = p.parse_args(argv)
    params = setup(args)
    if args.step == "validate":
        minimum = args.min_validation_accuracy
        result = validate(params, io.read_jsonl(args.examples), minimum)
        print(f"validation: {result}")
        io.write_json(args.out[0], io.provenance(**result))
        if minimum is not None and result["accuracy"] < minimum:
            raise SystemExit(f"judge accuracy {result['accuracy']:.3f} on held-out examples is below "
                             f"judges.<name>.min_validation_accuracy = {minimum} (see {args.out[0]})")
        return
    if len(args.generations) != len(args.out):
        raise ValueError("--generations and --out must have the same length")
    spec = JudgeSpec.from_params(params)
    metas = {}
    for gen_file, out in zip(args.generations, args.out, strict=True):
        rows = io.read_jsonl(gen_file)

        def work(k: int, lo: int, hi: int, rows: list[dict] = rows) -> tuple[list[dict], dict]:
            return run_judge(params, rows[lo:hi])

        key = {"params": params, "generations": io.sha256_file(gen_file),
               "model_files": shards.file_stamp((spec.model or {}).get("path"))}
        judged, meta = shards.run_sharded(shards.progress_dir(out), key, len(rows), args.shard_size, work, "rows")
        io.write_jsonl(out, judgment_rows(spec, rows, judged))
        metas[gen_file] = meta
    io.write_json(args.meta, io.provenance(judge=spec.name, type=spec.type, files=metas))
    for out in args.out:  # only now: Snakemake deletes every output of a job that did not finish
        shards.clean(shards.progress_dir(out))


if __name__ == "__main__":
    main()
