"""Preference data: PKU-SafeRLHF-schema rows -> TRL's conversational preference format.

Input rows (the hub dataset ``PKU-Alignment/PKU-SafeRLHF`` or the tiny world's file) have
``prompt``, ``response_0``, ``response_1``, ``safer_response_id`` and the per-response safety
flags. Output rows are what TRL's trainers read::

    {"id": ..., "prompt": [{"role": "user", ...}], "chosen": [{"role": "assistant", ...}],
     "rejected": [{"role": "assistant", ...}], "category": ...}
"""

from __future__ import annotations

import argparse
import random
from typing import Any

from .. import io
from ..cli import setup
from .loaders import read_source


def from_pku(rows: list[dict[str, Any]], require_safe_chosen: bool = True) -> list[dict[str, Any]]:
    out = []
    for i, r in enumerate(rows):
        for key in ("prompt", "response_0", "response_1", "safer_response_id"):
            if key not in r:
                raise ValueError(f"preference row {i} has no {key!r} field (PKU-SafeRLHF schema expected)")
        safer = int(r["safer_response_id"])
        chosen, rejected = r[f"response_{safer}"], r[f"response_{1 - safer}"]
        if require_safe_chosen and f"is_response_{safer}_safe" in r and not r[f"is_response_{safer}_safe"]:
            continue  # both unsafe: no safe response to prefer
        if chosen == rejected:
            continue
        out.append({
            "id": str(r.get("id", i)),
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "category": r.get("category") or r.get(f"response_{1 - safer}_harm_category") or "unknown",
        })
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="prepare preference pairs")
    p.add_argument("--params", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    params = setup(args)
    rows = [r for _, r in read_source(params["source"], what="preference_data.source",
                                      default_split="train")]
    pairs = from_pku(rows)
    if params.get("max_pairs"):
        pairs = sorted(random.Random(params.get("seed", 0)).sample(pairs, min(len(pairs), params["max_pairs"])),
                       key=lambda r: r["id"])
    if not pairs:
        raise ValueError("preference_data.source yielded no usable pairs")
    io.write_jsonl(args.out, pairs)


if __name__ == "__main__":
    main()
