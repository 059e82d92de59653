"""Benchmark loaders: ALERT, Adversarial ALERT, XSTest and RealToxicityPrompts in one record format.

Every loader returns ``list[dict]``; each record has at least

- ``id``: ``str``, stable (the dataset's own id, or one derived from fields that never change),
  unique within one load;
- ``prompt``: ``str``, clean (ALERT's "### Instruction: … ### Response:" wrapper removed, outer
  whitespace stripped, never empty);
- ``category``: ``str``.

plus, per benchmark, ``attack_type`` (ALERT: ``str`` for the adversarial config, ``None`` for the
base config), ``type``/``label``/``contrast``/``focus``/``note`` (XSTest) and
``challenging``/``prompt_toxicity`` (RealToxicityPrompts).

Where the data come from is a ``source`` dict, the same dict the workflow config carries:

- ``{"path": "data/alert.jsonl"}``: a local ``.jsonl``, ``.json`` (a list of objects) or ``.csv``
  file with the hub dataset's schema. Tests, CI and the tiny synthetic world use this override.
  A relative path is relative to the working directory. ``config`` may accompany ``path``
  (``alert_adversarial`` makes ``attack_type`` mandatory).
- ``{"hub": "Babelscape/ALERT", "config": "alert", "revision": "<sha>", "split": "test"}``:
  ``datasets.load_dataset(hub, config, revision=revision, split=split)``. ``revision`` is
  mandatory (hub datasets are revised in place); ``config`` and ``split`` default per benchmark.

Unknown source keys are an error, so a typo such as ``revison`` cannot silently unpin a dataset.
Subsampling is by a seeded hash of each record's id: deterministic for a seed, independent of
row order and of the other categories, and nested (the sample for ``n`` contains the sample for
any smaller ``n`` at the same seed).
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import json
import math
import re
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ALIASES",
    "BENCHMARKS",
    "LOADER_OPTIONS",
    "SOURCE_KEYS",
    "describe_source",
    "load_alert",
    "load_alert_constructed",
    "load_alpaca",
    "load_benchmark",
    "load_rtp",
    "load_xstest",
    "loader_options",
    "loaders_taking",
    "read_source",
    "strip_alert_wrapper",
    "subsample",
]

SOURCE_KEYS = frozenset({"path", "hub", "config", "revision", "split"})
FILE_SUFFIXES = (".jsonl", ".json", ".csv")

# The ALERT wrapper is "### Instruction:\n{q}\n### Response:\n". Each marker is matched only at its
# end of the string (so an instruction that quotes "### Response:" mid-text keeps it), tolerant of
# whitespace and case, and stripped independently so a half-wrapped prompt is cleaned too.
_INSTRUCTION_HEAD = re.compile(r"\A\s*#{2,4}\s*instruction\s*:[ \t]*", re.IGNORECASE)
_RESPONSE_TAIL = re.compile(r"\s*#{2,4}\s*response\s*:\s*\Z", re.IGNORECASE)

RTP_TOXIC_THRESHOLD = (
    0.5  # Perspective-score convention used by RealToxicityPrompts and DecodingTrust
)


# ----------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------
def _check_source(source: Any, what: str) -> dict:
    if not isinstance(source, Mapping):
        raise TypeError(
            f"{what} source must be a dict with 'path' or 'hub', got {type(source).__name__}"
        )
    unknown = sorted(set(source) - SOURCE_KEYS)
    if unknown:
        raise ValueError(
            f"{what} source has unknown key(s) {unknown}; allowed: {sorted(SOURCE_KEYS)}"
        )
    has_path, has_hub = source.get("path") is not None, source.get("hub") is not None
    if has_path == has_hub:
        raise ValueError(f"{what} source needs exactly one of 'path' or 'hub', got {dict(source)}")
    if has_hub:
        revision = source.get("revision")
        if not isinstance(revision, str) or not revision.strip():
            raise ValueError(
                f"{what} source hub {source['hub']!r} has no 'revision': pin the dataset to a "
                "commit sha (hub datasets are revised in place)"
            )
    return dict(source)


def describe_source(source: Mapping, what: str = "dataset") -> str:
    """A short human-readable name for a source, used in every error message."""
    if source.get("path") is not None:
        return f"{what} source {source['path']}"
    config = f"/{source['config']}" if source.get("config") else ""
    split = f"[{source['split']}]" if source.get("split") else ""
    return f"{what} source {source.get('hub')}{config}@{source.get('revision')}{split}"


def _decode(path: Path, where: str) -> str:
    """The file's text. UTF-8 only, with or without a byte-order mark (every format alike); any
    other encoding is an error naming the file and line, never a guess that could garble text."""
    data = path.read_bytes()
    if path.suffix.lower() == ".gz":  # e.g. HH-RLHF's .jsonl.gz as published
        import gzip
        import zlib

        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
            what = "is cut short (truncated)" if isinstance(exc, EOFError) else f"is not valid gzip ({exc})"
            raise ValueError(f"{where}: the .gz file {what}; download or compress it again, or give the "
                             "uncompressed file (without .gz)") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"{where}: line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x}); re-save the "
            "file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None


def _read_jsonl(path: Path, where: str) -> list[tuple[int, dict]]:
    rows = []
    # split on "\n" only, as file iteration does: str.splitlines() would also split inside JSON
    # strings that hold U+2028 or similar characters.
    for lineno, line in enumerate(_decode(path, where).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: line {lineno} is not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: line {lineno} is a {type(obj).__name__}, not an object")
        rows.append((lineno, obj))
    return rows


def _read_json(path: Path, where: str) -> list[tuple[int, dict]]:
    try:
        data = json.loads(_decode(path, where))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, list):
        raise ValueError(f"{where}: expected a JSON list of objects, got {type(data).__name__}")
    for i, obj in enumerate(data, start=1):
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: row {i} is a {type(obj).__name__}, not an object")
    return list(enumerate(data, start=1))


# Delimiters a spreadsheet may write instead of a comma (locales with a decimal comma use ';').
CSV_OTHER_DELIMITERS = {";": "semicolon", "\t": "tab", "|": "pipe"}


def _read_csv(path: Path, where: str) -> list[tuple[int, dict]]:
    # csv (not pandas) so every cell stays a string and ids never turn into floats.
    reader = csv.DictReader(io.StringIO(_decode(path, where), newline=""))
    if not reader.fieldnames:
        raise ValueError(f"{where}: empty CSV (no header)")
    header = list(reader.fieldnames)
    if len(header) == 1:
        for sep, name in CSV_OTHER_DELIMITERS.items():
            if sep in header[0]:
                raise ValueError(
                    f"{where}: the header is one column {header[0][:80]!r}: the file is "
                    f"{name}-separated, and CSV files are read comma-separated; re-save it with commas "
                    "(or as .jsonl)"
                )
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise ValueError(
            f"{where}: the header has the column {repeated[0]!r} {header.count(repeated[0])} times "
            "(a CSV reader keeps only the last one); rename or remove the others"
        )
    rows = []
    for i, row in enumerate(reader, start=1):
        if None in row:
            raise ValueError(f"{where}: row {i} has more cells than the header")
        rows.append((i, dict(row)))
    return rows


def read_source(
    source: Mapping,
    what: str = "dataset",
    *,
    default_config: str | None = None,
    default_split: str | None = None,
) -> list[tuple[int, dict]]:
    """Raw rows of a source as ``(row_number, row_dict)``, row numbers 1-based.

    For JSON-lines files the row number is the line number; for CSV and JSON files and for hub
    datasets it counts data rows. Files are UTF-8, with or without a byte-order mark; another
    encoding, a missing file and a file without data rows are errors naming the file.
    """
    source = _check_source(source, what)
    where = describe_source(source, what)
    if source.get("path") is not None:
        path = Path(source["path"]).expanduser()
        suffix = path.suffix.lower()
        if suffix == ".gz":  # gzip-compressed: the format is the suffix before .gz
            suffix = Path(path.stem).suffix.lower()
        if suffix not in FILE_SUFFIXES:
            raise ValueError(
                f"{where}: unsupported file type {suffix!r}; use one of {list(FILE_SUFFIXES)} "
                "(each optionally gzip-compressed, + '.gz')"
            )
        if not path.is_file():
            raise FileNotFoundError(f"{where}: no such file")
        reader = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv}[suffix]
        rows = reader(path, where)
        if not rows:
            raise ValueError(f"{where}: the file has no data rows")
        return rows

    import datasets  # deferred: importing datasets is slow and file sources do not need it

    config = source.get("config") or default_config
    split = source.get("split") or default_split
    try:
        ds = datasets.load_dataset(source["hub"], config, revision=source["revision"], split=split)
    except Exception as exc:  # re-raise with the dataset named; the cause stays chained
        raise RuntimeError(
            f"{where}: datasets.load_dataset({source['hub']!r}, {config!r}, "
            f"revision={source['revision']!r}, split={split!r}) failed: {exc}"
        ) from exc
    if isinstance(ds, Mapping):  # a DatasetDict: the caller must say which split
        raise ValueError(f"{where}: name a 'split' (available: {sorted(ds)})")
    rows = [(i, dict(row)) for i, row in enumerate(ds, start=1)]
    if not rows:
        raise ValueError(f"{where}: the dataset has no rows")
    return rows


# ----------------------------------------------------------------------------------------------
# Field helpers
# ----------------------------------------------------------------------------------------------
def _missing(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def _field(row: dict, name: str, where: str, rowno: int) -> Any:
    if name not in row:
        raise ValueError(f"{where}: row {rowno} has no {name!r} field")
    value = row[name]
    if value is None:
        raise ValueError(f"{where}: row {rowno} field {name!r} is null")
    if _missing(value):
        raise ValueError(f"{where}: row {rowno} has an empty {name!r} field")
    return value


def _a(value: Any) -> str:
    """'an int', 'a list': the type of ``value`` with its article, for messages."""
    name = type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _text(row: dict, name: str, where: str, rowno: int) -> str:
    value = _field(row, name, where, rowno)
    if not isinstance(value, str):
        raise ValueError(f"{where}: row {rowno} field {name!r} is {_a(value)}, not text")
    return value


def _id(value: Any, where: str, rowno: int) -> str:
    if isinstance(value, bool) or _missing(value):
        raise ValueError(f"{where}: row {rowno} has an invalid 'id' {value!r}")
    if isinstance(value, float) and value.is_integer():  # ids that went through a float column
        value = int(value)
    return str(value).strip()


def _optional_text(value: Any) -> str | None:
    return None if _missing(value) else str(value).strip()


def _as_bool(value: Any, name: str, where: str, rowno: int) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0"}:
        return value.strip().lower() in {"true", "1"}
    raise ValueError(f"{where}: row {rowno} field {name!r} is not a boolean: {value!r}")


def _check_unique(records: list[dict], where: str, rownos: list[int] | None = None) -> None:
    """Ids are unique; ``rownos`` (each record's row) lets the message name both rows."""
    seen: dict[str, int] = {}
    for i, rec in enumerate(records):
        if rec["id"] in seen:
            if rownos is None:
                raise ValueError(f"{where}: duplicate id {rec['id']!r}")
            raise ValueError(f"{where}: row {rownos[i]} has the duplicate id {rec['id']!r} "
                             f"(first in row {rownos[seen[rec['id']]]})")
        seen[rec["id"]] = i


def _check_count(n: Any, name: str) -> None:
    if n is None:
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {n!r}")


def strip_alert_wrapper(prompt: str) -> str:
    """Remove ALERT's "### Instruction:\\n…\\n### Response:\\n" wrapper; strip outer whitespace.

    Whitespace- and case-tolerant; an unwrapped prompt comes back unchanged except for outer
    whitespace.
    """
    text = _INSTRUCTION_HEAD.sub("", prompt, count=1)
    text = _RESPONSE_TAIL.sub("", text, count=1)
    return text.strip()


# ----------------------------------------------------------------------------------------------
# Subsampling
# ----------------------------------------------------------------------------------------------
def _rank(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"{seed}\x00{record_id}".encode()).hexdigest()


def subsample(
    records: list[dict], n: int | None, seed: int = 0, by: Callable[[dict], Hashable] | None = None,
    offset: int = 0,
) -> list[dict]:
    """Keep ``n`` records per group (all of a group with fewer), in their original order.

    ``by`` maps a record to its group (``None``: one group). The records kept are those whose
    ``sha256(seed, id)`` ranks lowest in their group, so the choice depends only on the seed and
    the ids. ``offset`` skips that many of the lowest-ranked first: the samples at one seed with
    offsets 0 and ``n`` are disjoint (a held-apart split beside an evaluation sample).
    """
    _check_count(n, "n")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValueError(f"offset must be an integer >= 0, got {offset!r}")
    if n is None and not offset:
        return list(records)
    groups: dict[Hashable, list[int]] = {}
    for i, rec in enumerate(records):
        groups.setdefault(by(rec) if by else None, []).append(i)
    keep: set[int] = set()
    for members in groups.values():
        members = sorted(members, key=lambda i: _rank(seed, records[i]["id"]))
        keep.update(members[offset:] if n is None else members[offset : offset + n])
    return [rec for i, rec in enumerate(records) if i in keep]


# ----------------------------------------------------------------------------------------------
# Loaders
# ----------------------------------------------------------------------------------------------
def load_alert(
    source: Mapping, n_per_category: int | None = None, seed: int = 0, offset_per_category: int = 0
) -> list[dict]:
    """ALERT (config ``alert``) or Adversarial ALERT (config ``alert_adversarial``).

    Records: ``id``, ``prompt`` (wrapper stripped), ``category``, ``attack_type`` (``None`` for
    the base set). The adversarial schema is used when ``source['config']`` is
    ``alert_adversarial`` (then every row must have ``attack_type``) or when the rows carry an
    ``attack_type`` field. ``n_per_category`` keeps that many prompts per category (per
    (category, attack_type) for the adversarial set), chosen deterministically from ``seed``,
    after skipping the ``offset_per_category`` lowest-ranked (a split disjoint from offset 0).
    """
    _check_count(n_per_category, "n_per_category")
    src = _check_source(source, "alert")
    where = describe_source(src, "alert")
    config = src.get("config")
    if config is not None and config not in ("alert", "alert_adversarial"):
        raise ValueError(f"{where}: config must be 'alert' or 'alert_adversarial', got {config!r}")
    rows = read_source(src, "alert", default_config="alert", default_split="test")
    adversarial = config == "alert_adversarial" or (
        config is None and any("attack_type" in row for _, row in rows)
    )
    records, rownos = [], []
    for rowno, row in rows:
        prompt = strip_alert_wrapper(_text(row, "prompt", where, rowno))
        if not prompt:
            raise ValueError(
                f"{where}: row {rowno} has an empty prompt once the wrapper is stripped"
            )
        rownos.append(rowno)
        records.append(
            {
                "id": _id(_field(row, "id", where, rowno), where, rowno),
                "prompt": prompt,
                "category": _text(row, "category", where, rowno).strip(),
                "attack_type": (
                    _text(row, "attack_type", where, rowno).strip() if adversarial else None
                ),
            }
        )
    _check_unique(records, where, rownos)
    if adversarial:
        return subsample(
            records, n_per_category, seed, by=lambda r: (r["category"], r["attack_type"]),
            offset=offset_per_category,
        )
    return subsample(records, n_per_category, seed, by=lambda r: r["category"],
                     offset=offset_per_category)


def load_xstest(source: Mapping, n: int | None = None, seed: int = 0, offset: int = 0) -> list[dict]:
    """XSTest prompts (hub ``Paul/XSTest``; columns id, prompt, type, label, focus, note).

    Records: ``id``, ``prompt``, ``category`` (= ``type``), ``type``, ``label`` ("safe" or
    "unsafe"), ``contrast`` (``type`` starts with ``contrast_``), ``focus`` and ``note`` (``None``
    when empty). ``n`` keeps that many prompts per label, chosen deterministically from ``seed``
    after skipping the ``offset`` lowest-ranked of each label (None: all, 250 safe + 200 unsafe).
    """
    _check_count(n, "n")
    src = _check_source(source, "xstest")
    where = describe_source(src, "xstest")
    records, rownos = [], []
    for rowno, row in read_source(src, "xstest", default_split="train"):
        label = _text(row, "label", where, rowno).strip().lower()
        if label not in ("safe", "unsafe"):
            raise ValueError(
                f"{where}: row {rowno} label must be 'safe' or 'unsafe', got {label!r}"
            )
        kind = _text(row, "type", where, rowno).strip()
        rownos.append(rowno)
        records.append(
            {
                "id": _id(_field(row, "id", where, rowno), where, rowno),
                "prompt": _text(row, "prompt", where, rowno).strip(),
                "category": kind,
                "type": kind,
                "label": label,
                "contrast": kind.startswith("contrast_"),
                "focus": _optional_text(row.get("focus")),
                "note": _optional_text(row.get("note")),
            }
        )
    _check_unique(records, where, rownos)
    return subsample(records, n, seed, by=lambda r: r["label"], offset=offset)


def _rtp_prompt(row: dict, where: str, rowno: int) -> tuple[str, float | None]:
    """(text, toxicity) of RTP's nested ``prompt``; accepts a dict, its JSON text (a CSV cell) or
    flattened ``prompt.text``/``prompt.toxicity`` columns."""
    prompt = row.get("prompt")
    if isinstance(prompt, str) and prompt.lstrip().startswith("{"):
        try:
            prompt = json.loads(prompt)
        except json.JSONDecodeError:
            raise ValueError(f"{where}: row {rowno} field 'prompt' is not valid JSON") from None
    if isinstance(prompt, Mapping):
        nested = {f"prompt.{k}": v for k, v in prompt.items()}
    elif "prompt.text" in row:
        nested = {k: v for k, v in row.items() if k.startswith("prompt.")}
    elif "prompt" in row:
        raise ValueError(
            f"{where}: row {rowno} field 'prompt' must be an object with 'text' "
            f"(RealToxicityPrompts schema), got {type(prompt).__name__}"
        )
    else:
        raise ValueError(f"{where}: row {rowno} has no 'prompt' field")
    text = _text(nested, "prompt.text", where, rowno).strip()
    tox = nested.get("prompt.toxicity")
    if _missing(tox):
        return text, None
    try:
        return text, float(tox)
    except (TypeError, ValueError):
        raise ValueError(
            f"{where}: row {rowno} field 'prompt.toxicity' is not a number: {tox!r}"
        ) from None


def load_rtp(
    source: Mapping, n: int | None = None, seed: int = 0, challenging_only: bool = True
) -> list[dict]:
    """RealToxicityPrompts (hub ``allenai/real-toxicity-prompts``).

    Records: ``id`` (``filename:begin-end`` when those fields exist, else the row's ``id``, else
    ``row<N>``), ``prompt`` (= ``prompt.text``), ``category`` ("toxic" when the prompt's
    toxicity >= 0.5, "nontoxic" below, "unknown" when unscored), ``challenging``,
    ``prompt_toxicity``. ``challenging_only`` keeps the challenging subset; ``n`` then keeps
    ``n`` prompts chosen deterministically from ``seed``.
    """
    _check_count(n, "n")
    src = _check_source(source, "rtp")
    where = describe_source(src, "rtp")
    records, rownos = [], []
    for rowno, row in read_source(src, "rtp", default_split="train"):
        if "challenging" in row and not _missing(row["challenging"]):
            challenging: bool | None = _as_bool(row["challenging"], "challenging", where, rowno)
        elif challenging_only:
            raise ValueError(
                f"{where}: row {rowno} has no 'challenging' field; pass challenging_only=False"
            )
        else:
            challenging = None
        if challenging_only and not challenging:
            continue
        text, tox = _rtp_prompt(row, where, rowno)
        if not _missing(row.get("filename")):
            rid = f"{str(row['filename']).strip()}:{row.get('begin')}-{row.get('end')}"
        elif not _missing(row.get("id")):
            rid = _id(row["id"], where, rowno)
        else:
            rid = f"row{rowno}"
        category = (
            "unknown" if tox is None else ("toxic" if tox >= RTP_TOXIC_THRESHOLD else "nontoxic")
        )
        rownos.append(rowno)
        records.append(
            {
                "id": rid,
                "prompt": text,
                "category": category,
                "challenging": challenging,
                "prompt_toxicity": tox,
            }
        )
    _check_unique(records, where, rownos)
    return subsample(records, n, seed)


def _load_alert_adversarial(
    source: Mapping, n_per_category: int | None = None, seed: int = 0, offset_per_category: int = 0
) -> list[dict]:
    src = dict(_check_source(source, "alert_adversarial"))
    if src.get("config") not in (None, "alert_adversarial"):
        raise ValueError(
            f"{describe_source(src, 'alert_adversarial')}: config must be 'alert_adversarial', "
            f"got {src['config']!r}"
        )
    src["config"] = "alert_adversarial"
    return load_alert(src, n_per_category=n_per_category, seed=seed, offset_per_category=offset_per_category)


def load_alert_constructed(
    source: Mapping,
    n_per_category: int | None = None,
    seed: int = 0,
    offset_per_category: int = 0,
    attack_types: list[str] | None = None,
    attacks_per_prompt: int = 1,
) -> list[dict]:
    """A CONSTRUCTED adversarial set (not the official Adversarial ALERT): the ALERT base sample
    that :func:`load_alert` returns for the same ``source``, ``n_per_category``, ``seed`` and
    ``offset_per_category``, each prompt under ``attacks_per_prompt`` of ALERT's four attack
    types (:mod:`safealign.data.attacks`; all four when ``attack_types`` is None). Records carry
    ``attack_type`` and ``constructed: True``."""
    from .attacks import ATTACK_TYPES, construct

    base = load_alert(source, n_per_category, seed, offset_per_category)
    if any(r["attack_type"] for r in base):
        raise ValueError(f"{describe_source(source, 'alert_constructed')}: the source already has "
                         "'attack_type' (an adversarial set); give the ALERT base set")
    return construct(base, attack_types or list(ATTACK_TYPES), attacks_per_prompt, seed)


def load_alpaca(source: Mapping, n: int | None = None, seed: int = 0, offset: int = 0) -> list[dict]:
    """Benign instructions: the self-instruct seed tasks of Stanford Alpaca (``instruction``,
    ``instances[].input/output``; also flat ``instruction``/``input``/``output`` rows).

    Records: ``id``, ``prompt`` (the instruction, then the first instance's input after a blank
    line when there is one), ``category`` ("benign"), ``label`` ("safe": a model should answer),
    ``reference`` (the first instance's output, or None). ``n`` keeps that many, chosen
    deterministically from ``seed`` after skipping the ``offset`` lowest-ranked.
    """
    _check_count(n, "n")
    src = _check_source(source, "alpaca")
    where = describe_source(src, "alpaca")
    records, rownos = [], []
    for rowno, row in read_source(src, "alpaca", default_split="train"):
        instruction = _text(row, "instruction", where, rowno).strip()
        instances = row.get("instances")
        if isinstance(instances, list) and instances:
            first = instances[0]
            if not isinstance(first, Mapping):
                raise ValueError(f"{where}: row {rowno} field 'instances' must hold objects")
        elif instances is None:
            first = row
        else:
            raise ValueError(f"{where}: row {rowno} field 'instances' must be a non-empty list")
        extra = _optional_text(first.get("input"))
        rid = _id(row["id"], where, rowno) if not _missing(row.get("id")) else f"row{rowno}"
        rownos.append(rowno)
        records.append({
            "id": rid,
            "prompt": f"{instruction}\n\n{extra}" if extra else instruction,
            "category": "benign",
            "label": "safe",
            "reference": _optional_text(first.get("output")),
        })
    _check_unique(records, where, rownos)
    return subsample(records, n, seed, offset=offset)


# The loaders: one table from which the schema's `benchmarks.<name>.loader` enum (checked by
# tests/test_registries.py), the parse-time option checks (:func:`loaders_taking`,
# safealign.checks) and the benchmark stage's dispatch (:func:`load_benchmark`) derive. A loader is
# ``load_<format>(source, **options) -> list[dict]``; its keyword arguments are its options, each
# one of LOADER_OPTIONS (the benchmark's config keys that reach a loader).
BENCHMARKS: dict[str, Callable[..., list[dict]]] = {
    "alert": load_alert,
    "alert_adversarial": _load_alert_adversarial,
    "alert_constructed": load_alert_constructed,
    "alpaca": load_alpaca,
    "xstest": load_xstest,
    "rtp": load_rtp,
}
# Other names load_benchmark accepts for a loader (not config values).
ALIASES = {"real_toxicity_prompts": "rtp"}

# Config keys of a benchmark (config.benchmarks.<name>.<key>) that are loader options: those every
# config entry carries (schema defaults), and the optional ones (schema default null), which
# only the loaders taking them accept (a parse-time error elsewhere).
ALWAYS_SET_OPTIONS = ("seed", "challenging_only")
OPTIONAL_OPTIONS = ("n_per_category", "n", "offset_per_category", "offset", "attack_types", "attacks_per_prompt")
LOADER_OPTIONS = ALWAYS_SET_OPTIONS + OPTIONAL_OPTIONS


def loader_options(loader: str) -> tuple[str, ...]:
    """The options (keyword arguments) loader ``loader`` takes."""
    return tuple(p for p in inspect.signature(BENCHMARKS[loader]).parameters if p != "source")


def loaders_taking(option: str) -> tuple[str, ...]:
    """The loaders that take ``option``, in registry order."""
    return tuple(name for name in BENCHMARKS if option in loader_options(name))


def load_benchmark(kind_or_loader_name: str, source: Mapping, **options: Any) -> list[dict]:
    """Dispatch to a loader by benchmark kind (``alert``, ``alert_adversarial``, ``xstest``,
    ``rtp``/``real_toxicity_prompts``) or loader name (``load_alert``, ``load_xstest``,
    ``load_rtp``). ``options`` are that loader's keyword arguments; unknown ones are an error."""
    name = str(kind_or_loader_name).strip().lower()
    name = ALIASES.get(name, name)
    loader = BENCHMARKS.get(name) or BENCHMARKS.get(name.removeprefix("load_"))
    if loader is None:
        raise ValueError(
            f"unknown benchmark {kind_or_loader_name!r}; known: {sorted(BENCHMARKS)} "
            "(or load_alert, load_xstest, load_rtp)"
        )
    accepted = [p for p in inspect.signature(loader).parameters if p != "source"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"benchmark {kind_or_loader_name!r}: unknown option(s) {unknown}; accepted: {accepted}"
        )
    return loader(source, **options)

