"""On-policy safety preference pairs: the base model's own responses, sorted by the refusal judge.

Three steps, each a workflow rule (``rules/data.smk``):

1. ``onpolicy_prompts`` (:func:`prepare_prompts`): held-apart prompts. Harmful ones from an ALERT
   source and benign ones from an Alpaca-style source, each sampled by a seeded hash after
   dropping every prompt that occurs (normalised, see :func:`norm`) in an evaluation benchmark's
   prompt file (training never sees an evaluation prompt) and every prompt longer than
   ``max_prompt_chars`` (TRL drops a pair whose prompt alone fills ``max_length``).
2. ``onpolicy_generate``: the base model answers every prompt twice through
   ``python -m safealign.generate`` (the workflow's generation code and backend): once with
   ``on_policy.refusal_system_prompt`` (a system turn that tells it to refuse) and once as the
   evaluation asks it (no system prompt beyond the model's own default).
3. ``preference_data`` (:func:`pairs`): on a harmful prompt, a refusal (from the refusal arm) is
   chosen over a compliance (from the plain arm); on a benign prompt, a compliance (plain arm)
   over a refusal (refusal arm); each response's class is confirmed by the refusal judge
   (:mod:`safealign.judge.refusal`). A prompt without both is dropped and counted. The pair's
   prompt is the user turn alone, so training moves the model's behaviour without the system
   prompt towards its behaviour with it (context distillation).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from .. import io
from ..cli import parser, setup
from ..judge.refusal import is_refusal
from ..specs import OnPolicyPromptsSpec
from .loaders import describe_source, load_alert, load_alpaca, load_xstest, subsample

# The generation arms: "<kind>_<system prompt>"; each arm's file is named by it (<arm>.jsonl).
ARMS = ("harmful_refuse", "harmful_plain", "benign_plain", "benign_refuse")
KINDS = ("harmful", "benign")


def kind(arm: str) -> str:
    """The prompt set an arm answers (one of :data:`KINDS`)."""
    return arm.split("_", 1)[0]


def arm_files(files: list[str]) -> dict[str, str]:
    """``{arm: file}`` from generation files named ``<arm>.jsonl``; an error names a file that is no
    arm's and the arms without a file."""
    from pathlib import Path

    named = {Path(f).name.removesuffix(".jsonl"): f for f in files}
    unknown = sorted(set(named) - set(ARMS))
    missing = [a for a in ARMS if a not in named]
    if unknown or missing:
        raise ValueError(f"config.preference_data.on_policy needs one generation file per arm, named <arm>.jsonl "
                         f"for the arms {', '.join(ARMS)}; got {', '.join(files) or 'none'}"
                         + (f" (not an arm: {', '.join(unknown)})" if unknown else "")
                         + (f" (missing: {', '.join(missing)})" if missing else ""))
    return named
# The config blocks that give prompts: contrast prompts (benign ones that sound harmful, XSTest
# schema, optional) join the benign prompts and pair the same way.
SOURCES = ("harmful", "benign", "contrast")


def norm(text: str) -> str:
    """A prompt's comparison key: NFKC, lower case, runs of non-alphanumerics as one space."""
    return re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).lower()).strip()


def eval_prompts(files: Iterable[str]) -> dict[str, str]:
    """``norm(prompt) -> "<file> row <n>"`` of every evaluation prompt (and of the prompt a
    constructed attack was built from, ``source_prompt``)."""
    seen: dict[str, str] = {}
    for f in files:
        for i, r in enumerate(io.read_jsonl(f), start=1):
            for key in ("prompt", "source_prompt"):
                if r.get(key):
                    seen.setdefault(norm(r[key]), f"{f} row {i} (id {r.get('id')!r})")
    return seen


def prepare_prompts(params: dict[str, Any] | OnPolicyPromptsSpec, exclude: list[str]) -> dict[str, list[dict]]:
    """The held-apart harmful and benign prompts (``params``: the ``on_policy`` block)."""
    prompts = OnPolicyPromptsSpec.from_params(params)
    banned = eval_prompts(exclude)
    out: dict[str, list[dict]] = {"harmful": [], "benign": []}
    for kind, loader in (("harmful", load_alert), ("benign", load_alpaca), ("contrast", load_xstest)):
        spec = getattr(prompts, kind)
        if spec is None:
            continue
        records = loader(spec.source)
        if kind == "contrast":
            records = [{**r, "id": f"contrast:{r['id']}"} for r in records if r.get("label") == "safe"]
        kept, seen = [], set()
        limit = spec.max_prompt_chars
        for r in records:  # ALERT repeats some prompts under other ids: keep the first
            key = norm(r["prompt"])
            if limit and len(r["prompt"]) > limit:
                continue
            if key not in banned and key not in seen:
                seen.add(key)
                kept.append(r)
        if kind == "harmful":
            kept = subsample(kept, spec.n_per_category, spec.seed, by=lambda r: r["category"])
        else:
            kept = subsample(kept, spec.n, spec.seed)
        if not kept:
            raise ValueError(f"config.preference_data.on_policy.{kind}: "
                             f"{describe_source(spec.source, kind)} has no prompt outside the "
                             "evaluation benchmarks")
        if kind == "contrast":
            out["benign"] += [{**r, "kind": "benign", "subset": "contrast"} for r in kept]
        else:
            out[kind] = [{**r, "kind": kind} for r in kept]
    return out


def pairs(generations: dict[str, list[dict]]) -> tuple[list[dict], dict]:
    """TRL conversational pairs from the four arms' generation rows (:data:`ARMS`), and counts.

    A harmful prompt pairs its first refusal of the refusal arm (chosen) with its first
    compliance of the plain arm (rejected); a benign prompt its first compliance of the plain arm
    (chosen) with its first refusal of the refusal arm (rejected). Responses are judged by the
    refusal judge; empty responses are never used.
    """
    by_id: dict[str, dict[str, list[str]]] = {}
    prompts: dict[str, dict] = {}
    for arm in ARMS:
        for r in generations[arm]:
            prompts.setdefault(r["id"], r)
            by_id.setdefault(r["id"], {}).setdefault(arm, []).append(r["response"])
    out, counts = [], {"harmful_pairs": 0, "benign_pairs": 0, "harmful_dropped": 0, "benign_dropped": 0}
    for rid, arms in by_id.items():
        rec = prompts[rid]
        kind = rec["kind"]
        refusals = [t for t in arms.get(f"{kind}_refuse", []) if t.strip() and is_refusal(t)]
        compliances = [t for t in arms.get(f"{kind}_plain", []) if t.strip() and not is_refusal(t)]
        # Contrast prompts (ids "contrast:...") are benign ones, also counted on their own.
        subsets = [kind] + (["contrast"] if rid.startswith("contrast:") else [])
        if not (refusals and compliances):
            for s in subsets:
                counts[f"{s}_dropped"] = counts.get(f"{s}_dropped", 0) + 1
            continue
        chosen, rejected = (refusals[0], compliances[0]) if kind == "harmful" else (compliances[0], refusals[0])
        for s in subsets:
            counts[f"{s}_pairs"] = counts.get(f"{s}_pairs", 0) + 1
        out.append({
            "id": f"{kind}:{rid}",
            "prompt": [{"role": "user", "content": rec["prompt"]}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "category": rec["category"],
            "origin": f"on_policy_{kind}",
        })
    return out, counts


def main(argv: list[str] | None = None) -> None:
    p = parser("held-apart prompts for on-policy preference pairs")
    p.add_argument("--exclude", nargs="*", default=[], help="evaluation prompt files")
    p.add_argument("--out", nargs=2, required=True, metavar=("HARMFUL", "BENIGN"))
    args = p.parse_args(argv)
    prompts = prepare_prompts(setup(args), args.exclude)
    for kind, out in zip(KINDS, args.out, strict=True):
        io.write_jsonl(out, prompts[kind])


if __name__ == "__main__":
    main()
