"""Agreement between two judges (or a judge and humans): Cohen's kappa and the disagreements.

The one place that decides which judgments of two judges are compared (:func:`safe_pairs`) and
what a disagreement record holds (:func:`judge_disagreements`); metrics.py computes kappa on them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from .registry import JUDGE_TYPES

__all__ = ["accuracy", "cohen_kappa", "comparable_rows", "disagreements", "judge_disagreements", "safe_pairs"]

Key = str | Callable[[dict], Any]


def _check_pair(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"judgements differ in length: {len(a)} vs {len(b)}")
    if not len(a):
        raise ValueError("no judgements to compare")


def accuracy(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Fraction of positions where ``a`` and ``b`` agree."""
    a, b = list(a), list(b)
    _check_pair(a, b)
    return sum(x == y for x, y in zip(a, b)) / len(a)


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two label sequences, as sklearn's ``cohen_kappa_score`` (unweighted)
    computes it: ``1 - observed disagreement / disagreement expected from the two marginals``.

    Perfect agreement is 1.0 even when both judges use a single label (where kappa is otherwise
    undefined); a kappa that is still undefined comes back as NaN.

    Written out rather than imported: ``sklearn.metrics`` takes about 2 s to import (scipy.stats
    included), most of a metrics job's time, once per variant (bench/, item 1).
    tests/test_refusal_judge.py compares it with sklearn's.
    """
    a, b = list(a), list(b)
    _check_pair(a, b)
    if a == b:
        return 1.0
    n = len(a)
    count_a, count_b = Counter(a), Counter(b)
    observed = sum(x != y for x, y in zip(a, b)) / n
    expected = 1.0 - sum(count_a[label] * count_b[label] for label in count_a) / (n * n)
    if expected == 0:
        return math.nan
    return 1.0 - observed / expected


def _getter(key: Key, side: str) -> Callable[[dict], Any]:
    if callable(key):
        return key

    def get(row: dict) -> Any:
        if key not in row:
            raise KeyError(f"judge {side} row has no {key!r} field: {row}")
        return row[key]

    return get


def disagreements(
    rows_a: Sequence[dict],
    rows_b: Sequence[dict],
    key: Key,
    *,
    key_b: Key | None = None,
    id_key: str | None = "id",
) -> list[dict]:
    """The examples on which two judges disagree.

    ``key`` names the judgement field (or is a function of a row) in ``rows_a``; ``key_b`` the
    one in ``rows_b`` (default: the same). Rows are paired by ``id_key`` (both sides must hold
    the same ids, each once) or, with ``id_key=None``, by position. Returns, in ``rows_a``'s
    order, ``{"id", "a", "b", "row_a", "row_b"}`` for every pair whose judgements differ
    (``id`` is the position when pairing by position).
    """
    get_a, get_b = _getter(key, "a"), _getter(key if key_b is None else key_b, "b")
    rows_a, rows_b = list(rows_a), list(rows_b)
    if id_key is None:
        if len(rows_a) != len(rows_b):
            raise ValueError(
                f"judges rated different numbers of rows: {len(rows_a)} vs {len(rows_b)}"
            )
        pairs = [(i, ra, rb) for i, (ra, rb) in enumerate(zip(rows_a, rows_b))]
    else:
        by_id: dict[Any, dict] = {}
        for side, rows in (("a", rows_a), ("b", rows_b)):
            seen = set()
            for row in rows:
                if id_key not in row:
                    raise KeyError(f"judge {side} row has no {id_key!r} field: {row}")
                if row[id_key] in seen:
                    raise ValueError(f"judge {side} has duplicate {id_key} {row[id_key]!r}")
                seen.add(row[id_key])
            if side == "b":
                ids_a = {r[id_key] for r in rows_a}
                if seen != ids_a:
                    only_a, only_b = sorted(map(str, ids_a - seen)), sorted(map(str, seen - ids_a))
                    raise ValueError(
                        f"judges rated different {id_key}s: only in a {only_a[:5]}, "
                        f"only in b {only_b[:5]}"
                    )
                by_id = {r[id_key]: r for r in rows}
        pairs = [(ra[id_key], ra, by_id[ra[id_key]]) for ra in rows_a]
    out = []
    for rid, ra, rb in pairs:
        va, vb = get_a(ra), get_b(rb)
        if va != vb:
            out.append({"id": rid, "a": va, "b": vb, "row_a": ra, "row_b": rb})
    return out


def binary_kappa(a, b, axis: int = -1):
    """Cohen's kappa of two binary label arrays along ``axis`` (vectorized, for the bootstrap);
    equals :func:`cohen_kappa` on 0/1 labels. Both raters constant and equal: 1.0 (as
    :func:`cohen_kappa`); expected agreement 1 with an observed disagreement cannot happen."""
    import numpy as np

    a, b = np.asarray(a, float), np.asarray(b, float)
    po = np.mean(a == b, axis=axis)
    pa, pb = a.mean(axis=axis), b.mean(axis=axis)
    pe = pa * pb + (1 - pa) * (1 - pb)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = (po - pe) / (1 - pe)
    return np.where(pe >= 1.0, 1.0, kappa)


# The question each judge type answers about a response; agreement is measured only on rows where
# two judges answer the same question.
# (safealign.judge.registry: question).
JUDGE_QUESTION = {name: t.question for name, t in JUDGE_TYPES.items() if t.question}


def comparable_rows(kind: str, type_a: str, type_b: str, row: dict) -> bool:
    """Whether two judges of types ``type_a`` / ``type_b`` measure the same thing on ``row``
    (a judgment of a benchmark of ``kind``).

    Two judges of one type always do. Llama Guard ("is the response safe") and the refusal judge
    ("did the model refuse") do only on harmful prompts, where the safe answer is the refusal:
    every prompt of a safety benchmark, and XSTest's unsafe contrast prompts (``label`` unsafe).
    On XSTest's safe prompts a compliant answer is safe for Llama Guard and not a refusal for the
    refusal judge: there they answer different questions, and their "disagreement" is no error.
    """
    if type_a == type_b:
        return True
    if kind == "safety":
        return True
    if kind == "overrefusal":
        return row.get("label") == "unsafe"
    return False


def safe_pairs(kind: str, rows_a: Sequence[dict], rows_b: Sequence[dict]) -> list[tuple[dict, dict]]:
    """The pairs (by position: the same response, sample by sample) of two judges' judgments of
    one benchmark of ``kind`` on which their ``safe`` values can be compared: both judges measure
    the same thing there (:func:`comparable_rows`, by each row's ``judge_type``) and both have a
    verdict (``safe`` not None)."""
    rows_a, rows_b = list(rows_a), list(rows_b)
    if len(rows_a) != len(rows_b):
        raise ValueError(f"judges rated different numbers of rows: {len(rows_a)} vs {len(rows_b)}")
    return [(x, y) for x, y in zip(rows_a, rows_b, strict=True)
            if comparable_rows(kind, x["judge_type"], y["judge_type"], x)
            and x["safe"] is not None and y["safe"] is not None]


# Keys of a judgment row a disagreement record keeps (beside id, prompt and response), when set.
DISAGREEMENT_KEYS = ("category", "attack_type", "label", "sample")


def judge_disagreements(pairs: Sequence[tuple[dict, dict]]) -> list[dict]:
    """The report's record of every pair (:func:`safe_pairs`) on which two judges' ``safe``
    differ: ``id``, ``prompt``, ``response``, the slice keys that are set, ``a`` and ``b``."""
    diff = disagreements([x for x, _ in pairs], [y for _, y in pairs], "safe", id_key=None)
    return [{"id": d["row_a"]["id"], "prompt": d["row_a"].get("prompt"), "response": d["row_a"].get("response"),
             **{k: d["row_a"][k] for k in DISAGREEMENT_KEYS if d["row_a"].get(k) is not None},
             "a": d["a"], "b": d["b"]}
            for d in diff]
