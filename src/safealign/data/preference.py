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

import argparse
import logging
import random
from collections.abc import Iterable, Mapping
from typing import Any

from .. import io
from ..cli import setup
from .loaders import _a, _as_bool, _id, _missing, _text, describe_source, read_source

log = logging.getLogger(__name__)

SCHEMAS = ("pku_saferlhf",)
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


def prepare(params: dict[str, Any], out: str) -> int:
    """The ``preference_data`` rule: read, validate, subsample and write the pairs to ``out``
    (atomically; nothing is written when any row is bad). Returns the number of pairs."""
    schema = params.get("schema", "pku_saferlhf")
    if schema not in SCHEMAS:
        raise ValueError(f"config.preference_data.schema must be one of {list(SCHEMAS)}, got {schema!r}")
    where = describe_source(params["source"], "preference_data")
    rows = read_source(params["source"], what="preference_data", default_split="train")
    pairs = from_pku(rows, where=where)
    if params.get("max_pairs"):
        pairs = sorted(random.Random(params.get("seed", 0)).sample(pairs, min(len(pairs), params["max_pairs"])),
                       key=lambda r: r["id"])
    if not pairs:
        raise ValueError(f"{where}: no usable pairs in {len(rows)} row(s) (every row was dropped: "
                         "the safer response flagged unsafe, or both responses equal)")
    return io.write_jsonl(out, pairs)


def main() -> None:
    p = argparse.ArgumentParser(description="prepare preference pairs")
    p.add_argument("--params", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    prepare(setup(args), args.out)


if __name__ == "__main__":
    main()
