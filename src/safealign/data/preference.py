"""Preference data: PKU-SafeRLHF-schema rows -> TRL's conversational preference format.

Input rows (the hub dataset ``PKU-Alignment/PKU-SafeRLHF`` or the tiny world's file) have
``prompt``, ``response_0``, ``response_1``, ``safer_response_id`` and the per-response safety
flags. Output rows are what TRL's trainers read::

    {"id": ..., "prompt": [{"role": "user", ...}], "chosen": [{"role": "assistant", ...}],
     "rejected": [{"role": "assistant", ...}], "category": ...}

Every row is checked against that schema before anything is written: a bad row stops the job
with an error naming the file and the 1-based row (the line, for JSON lines), so bad data never
trains.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .. import io
from ..cli import parser, setup
from ..specs import PreferenceSpec
from .loaders import _a, _as_bool, _id, _missing, _text, describe_source, read_source

log = logging.getLogger(__name__)

SCHEMAS = ("pku_saferlhf", "hh_rlhf")
REQUIRED = ("prompt", "response_0", "response_1", "safer_response_id")


def _safer_id(value: Any, where: str, rowno: int) -> int:
    """``safer_response_id`` as 0 or 1: an int, a float that went through a numeric column, or
    the text of either (a CSV cell)."""
    parsed: Any = None
    if isinstance(value, bool):
        parsed = None
    elif isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        parsed = int(value)
    elif isinstance(value, str) and value.strip() in ("0", "1", "0.0", "1.0"):
        parsed = int(float(value))
    if parsed not in (0, 1):
        raise ValueError(
            f"{where}: row {rowno} field 'safer_response_id' must be 0 or 1 (the index of the "
            f"safer response), got {value!r}"
        )
    return parsed


def _response(row: Mapping, key: str, where: str, rowno: int) -> str:
    value = row[key]
    if value is None or (isinstance(value, float) and value != value):
        raise ValueError(f"{where}: row {rowno} field {key!r} is null; a response must be text")
    if not isinstance(value, str):
        raise ValueError(f"{where}: row {rowno} field {key!r} is {_a(value)}, not text")
    return value


def _category(row: Mapping, rejected: int, where: str, rowno: int) -> str:
    if not _missing(row.get("category")):
        return _text(row, "category", where, rowno).strip()
    harm = row.get(f"response_{rejected}_harm_category")
    if isinstance(harm, str) and harm.strip():
        return harm.strip()
    if isinstance(harm, Mapping):  # the hub dataset: {category name: bool}
        hits = sorted(str(k) for k, v in harm.items() if v is True)
        return ",".join(hits) if hits else "unknown"
    return "unknown"


def from_pku(
    rows: Iterable[dict[str, Any] | tuple[int, dict[str, Any]]],
    require_safe_chosen: bool = True,
    where: str = "preference data",
) -> list[dict[str, Any]]:
    """TRL preference pairs from PKU-SafeRLHF rows, given as dicts (numbered 1, 2, ...) or as
    ``(row_number, dict)`` pairs (what :func:`read_source` returns).

    Guarantees: every kept pair has a non-empty text prompt and text responses; the safety flags
    are real booleans (the CSV cell "False" is false); a row whose safer response is flagged
    unsafe (both unsafe: nothing safe to prefer) or whose two responses are equal is dropped and
    counted in the log. A row that breaks the schema raises ``ValueError`` naming ``where`` and its
    1-based row number. Ids (the row's ``id``, else its 0-based position) are unique.
    """
    out = []
    seen: dict[str, int] = {}
    dropped = {"both responses unsafe": 0, "identical responses": 0}
    for pos, item in enumerate(rows):
        rowno, r = item if isinstance(item, tuple) else (pos + 1, item)
        if not isinstance(r, Mapping):
            raise ValueError(f"{where}: row {rowno} is a {type(r).__name__}, not an object")
        for key in REQUIRED:
            if key not in r:
                raise ValueError(
                    f"{where}: row {rowno} has no {key!r} field (PKU-SafeRLHF schema: "
                    f"{', '.join(REQUIRED)})"
                )
        prompt = _text(r, "prompt", where, rowno)
        responses = [_response(r, f"response_{k}", where, rowno) for k in (0, 1)]
        safer = _safer_id(r["safer_response_id"], where, rowno)
        flags = {
            k: _as_bool(r[f"is_response_{k}_safe"], f"is_response_{k}_safe", where, rowno)
            for k in (0, 1)
            if f"is_response_{k}_safe" in r
        }
        rid = str(pos) if _missing(r.get("id")) else _id(r["id"], where, rowno)
        if rid in seen:
            raise ValueError(f"{where}: row {rowno} repeats the id {rid!r} of row {seen[rid]}")
        seen[rid] = rowno
        category = _category(r, 1 - safer, where, rowno)
        chosen, rejected = responses[safer], responses[1 - safer]
        if require_safe_chosen and flags.get(safer) is False:
            dropped["both responses unsafe"] += 1
            continue
        if chosen == rejected:
            dropped["identical responses"] += 1
            continue
        out.append({
            "id": rid,
            "prompt": [{"role": "user", "content": prompt}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "category": category,
        })
    for why, n in dropped.items():
        if n:
            log.info("%s: dropped %d row(s): %s", where, n, why)
    return out


_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def _hh_dialogue(text: Any, key: str, where: str, rowno: int) -> list[dict[str, str]]:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: row {rowno} field {key!r} must be a dialogue text")
    parts = _HH_TURN.split("\n\n" + text.lstrip("\n") if not text.startswith("\n\n") else text)
    if parts[0].strip() or len(parts) < 5 or parts[1] != "Human":
        raise ValueError(f"{where}: row {rowno} field {key!r} is not a '\\n\\nHuman: ... \\n\\nAssistant: "
                         "...' dialogue")
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[parts[i]], "content": parts[i + 1].strip()} for i in range(1, len(parts), 2)]


def from_hh_rlhf(rows: Iterable[tuple[int, dict[str, Any]]], single_turn_only: bool = True,
                 where: str = "preference data") -> list[dict[str, Any]]:
    """TRL pairs from Anthropic HH-RLHF rows (``chosen``/``rejected``: whole dialogues that differ
    in the last assistant turn). The prompt is every turn before the last (earlier turns are
    history, rendered by the policy's chat template); ``single_turn_only`` drops multi-turn rows.
    Rows whose last turns are equal, empty, or whose histories differ are dropped and counted."""
    out, dropped = [], {"multi-turn": 0, "identical or empty last turns": 0, "histories differ": 0}
    for rowno, r in rows:
        chosen = _hh_dialogue(r.get("chosen"), "chosen", where, rowno)
        rejected = _hh_dialogue(r.get("rejected"), "rejected", where, rowno)
        if chosen[:-1] != rejected[:-1] or chosen[-1]["role"] != "assistant":
            dropped["histories differ"] += 1
            continue
        if single_turn_only and len(chosen) > 2:
            dropped["multi-turn"] += 1
            continue
        if not chosen[-1]["content"] or not rejected[-1]["content"] or chosen[-1] == rejected[-1]:
            dropped["identical or empty last turns"] += 1
            continue
        out.append({"id": f"hh{rowno}", "prompt": chosen[:-1], "chosen": [chosen[-1]],
                    "rejected": [rejected[-1]], "category": "hh_rlhf_harmless", "origin": "hh_rlhf"})
    for why, n in dropped.items():
        if n:
            log.info("%s: dropped %d row(s): %s", where, n, why)
    return out


def check_disjoint(pairs: list[dict[str, Any]], eval_files: list[str]) -> None:
    """No pair's user turn is an evaluation prompt (normalised: :func:`onpolicy.norm`); the error
    names the pair and the evaluation file and row."""
    from .onpolicy import eval_prompts, norm

    banned = eval_prompts(eval_files)
    for i, p in enumerate(pairs, start=1):
        for turn in p["prompt"]:
            hit = banned.get(norm(turn["content"])) if turn["role"] == "user" else None
            if hit:
                raise ValueError(f"preference pair {i} (id {p['id']!r}) has an evaluation prompt as a "
                                 f"user turn: {hit}; training must not see evaluation prompts")


def prepare(params: dict[str, Any] | PreferenceSpec, out: str, onpolicy: list[str] | None = None,
            exclude: list[str] | None = None) -> int:
    """The ``preference_data`` rule: read, validate, subsample and write the pairs to ``out``
    (atomically; nothing is written when any row is bad). ``onpolicy``: the on-policy generation
    files, each named by its arm (``<arm>.jsonl``, :data:`onpolicy.ARMS`); ``exclude``: the evaluation prompt files no
    pair may share a prompt with. Returns the number of pairs."""
    from . import onpolicy as op

    spec = PreferenceSpec.from_params(params)
    schema = spec.schema
    if schema not in SCHEMAS:
        raise ValueError(f"config.preference_data.schema must be one of {list(SCHEMAS)}, got {schema!r}")
    pairs: list[dict[str, Any]] = []
    where, rows = "preference_data", []
    if spec.source:
        where = describe_source(spec.source, "preference_data")
        rows = read_source(spec.source, what="preference_data", default_split="train")
        if schema == "hh_rlhf":
            pairs = from_hh_rlhf(rows, spec.single_turn_only, where=where)
        else:
            pairs = from_pku(rows, where=where)
    if spec.on_policy:
        gens = {arm: io.read_jsonl(f) for arm, f in op.arm_files(onpolicy or []).items()}
        made, counts = op.pairs(gens)
        log.info("on-policy pairs: %s", counts)
        pairs += made
    if spec.max_pairs:
        pairs = sorted(random.Random(spec.seed).sample(pairs, min(len(pairs), spec.max_pairs)),
                       key=lambda r: r["id"])
    if not pairs:
        raise ValueError(f"{where}: no usable pairs in {len(rows)} row(s) (every row was dropped: the safer "
                         "response flagged unsafe, both responses equal, or no on-policy prompt had both a "
                         "refusal and a compliance)")
    check_disjoint(pairs, exclude or [])
    return io.write_jsonl(out, pairs)


def main(argv: list[str] | None = None) -> None:
    p = parser("prepare preference pairs")
    p.add_argument("--out", required=True)
    p.add_argument("--onpolicy", nargs="*", default=[], help="on-policy generation files")
    p.add_argument("--exclude", nargs="*", default=[], help="evaluation prompt files")
    args = p.parse_args(argv)
    prepare(setup(args), args.out, args.onpolicy, args.exclude)


if __name__ == "__main__":
    main()
