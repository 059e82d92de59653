"""Compare two finished ``results/`` trees file by file (SHA-256), logs and benchmark TSVs aside.

    python bench/compare_results.py OLD/results NEW/results

Prints how many files are byte-identical, which differ (grouped by top folder) and, for judgment
files, whether they differ only by keys the new rows add (``judge``, ``judge_type``, ``safe``: the
row contract of issue 12). Used to show that a restructure changed no result.
"""

import hashlib
import json
import sys
from pathlib import Path

SKIP = ("logs/", "benchmarks_tsv/", ".snakemake")
NEW_KEYS = {"judge", "judge_type", "safe"}


def files(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*")
            if p.is_file() and not str(p.relative_to(root)).startswith(SKIP)}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def same_but_added_keys(old: Path, new: Path) -> tuple[bool, list[str]]:
    ra = [json.loads(line) for line in old.read_text().splitlines()]
    rb = [json.loads(line) for line in new.read_text().splitlines()]
    ok = len(ra) == len(rb) and all(
        {k: v for k, v in y.items() if not (k in NEW_KEYS and k not in x)} == x for x, y in zip(ra, rb))
    added = sorted(set().union(*[set(y) - set(x) for x, y in zip(ra, rb)])) if ra else []
    return ok, added


def main(argv: list[str]) -> int:
    old, new = Path(argv[0]), Path(argv[1])
    a, b = files(old), files(new)
    common = sorted(set(a) & set(b))
    diff = [k for k in common if sha(a[k]) != sha(b[k])]
    print(f"identical {len(common) - len(diff)}; differ {len(diff)}; "
          f"only old {len(set(a) - set(b))}; only new {len(set(b) - set(a))}")
    for k in sorted(set(a) ^ set(b)):
        print(("  only old: " if k in a else "  only new: ") + k)
    groups: dict[str, list[str]] = {}
    for k in diff:
        groups.setdefault(k.split("/")[0], []).append(k)
    for top, ks in groups.items():
        print(f"differ in {top}: {len(ks)}, e.g. {ks[:3]}")
    for k in [k for k in diff if k.startswith("judgments/") and k.endswith(".jsonl")]:
        ok, added = same_but_added_keys(a[k], b[k])
        print(f"  {k}: " + (f"same but the added keys {added}" if ok else "CONTENT DIFFERS"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
