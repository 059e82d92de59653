"""Write config/README.md from the config schema (every key, its meaning, its default).

    python -m safealign.configdocs > config/README.md

tests/test_config.py checks that config/README.md is what this prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

HEADER = """# Configuration keys

`config/config.yaml` is the embedded default (the tiny world, CPU, offline); `config/paper.yaml` is
the paper's setup. Both are validated at parse time by `workflow/schemas/config.schema.yaml`
(JSON Schema 2020-12, with defaults) and by `src/safealign/configload.py`, `src/safealign/checks.py`
and `src/safealign/configenv.py`, in one pass; a bad config fails before any job starts with every
problem at once, one line each: the key path, what is wrong, what is allowed. Unknown keys are
errors everywhere, and so is a key written twice in one YAML mapping (named with file and line).
Override keys with `snakemake --config
'training={beta: 0.2}'` (top-level names only: Snakemake's own parser refuses `training.beta=0.2`;
the nested dict merges into the block) or a whole overlay with `--configfile config/config.yaml
overlay.yaml` (dicts merge recursively). Because dicts merge, an overlay switches a source or a
model ref by writing null for the keys it drops, e.g. `source: {world: null, path: pairs.jsonl}`.

`<name>` stands for a key you choose (a model, method, benchmark or judge name: letters, digits
and `_`). This page is generated from the schema: `python -m safealign.configdocs > config/README.md`.

| key | type | default | meaning |
|---|---|---|---|
"""


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"].removeprefix("#/$defs/")
        node = {**root["$defs"][ref], **{k: v for k, v in node.items() if k != "$ref"}}
    if "allOf" in node:
        merged: dict[str, Any] = {"properties": {}}
        for part in node["allOf"]:
            part = _resolve(part, root)
            merged["properties"].update(part.get("properties", {}))
            merged.setdefault("required", []).extend(part.get("required", []))
            merged.setdefault("description", part.get("description"))
        return merged
    return node


def _type(node: dict[str, Any]) -> str:
    t = node.get("type")
    if isinstance(t, list):
        return " or ".join(t)
    if t:
        return t
    if "oneOf" in node:
        return " or ".join(sorted({_type(o) for o in node["oneOf"] if _type(o)}))
    return ""


def _workflow_default(prefix: str) -> str:
    """A training key's meaning when unset (train.methods.WORKFLOW_DEFAULTS: the schema gives
    training keys no default, which would be merged into every block), marked as such."""
    from .train.methods import WORKFLOW_DEFAULTS

    block, _, key = prefix.rpartition(".")
    if key in WORKFLOW_DEFAULTS and (block.endswith("training") or block == "methods.<name>"):
        return f"{json.dumps(WORKFLOW_DEFAULTS[key])} (when unset)"
    return ""


def rows(node: dict[str, Any], root: dict[str, Any], prefix: str, seen: set[str],
         required: bool = False) -> list[str]:
    node = _resolve(node, root)
    out = []
    if prefix:
        default = json.dumps(node["default"]) if "default" in node else ""
        if not default and not required:
            default = _workflow_default(prefix)
        desc = (node.get("description") or "").replace("\n", " ").replace("|", "\\|")
        out.append(f"| `{prefix}` | {_type(node)} | {default} | {desc} |")
    if prefix in seen:
        return out
    seen = seen | {prefix}
    for key, child in node.get("properties", {}).items():
        out += rows(child, root, f"{prefix}.{key}" if prefix else key, seen, key in node.get("required", ()))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out += rows(extra, root, f"{prefix}.<name>", seen)
    if node.get("type") == "array" and isinstance(node.get("items"), dict) and node["items"].get("properties"):
        out += rows(node["items"], root, f"{prefix}[]", seen)
    for alt in node.get("oneOf", []):
        alt = _resolve(alt, root)
        for key, child in alt.get("properties", {}).items():
            sub = f"{prefix}.{key}"
            if not any(r.startswith(f"| `{sub}`") for r in out):
                out += rows(child, root, sub, seen)
    return out


def render(schema_path: Path) -> str:
    schema = yaml.safe_load(schema_path.read_text())
    return HEADER + "\n".join(rows(schema, schema, "", set())) + "\n"


def main() -> None:
    repo = Path(__file__).resolve().parents[2]
    print(render(repo / "workflow" / "schemas" / "config.schema.yaml"), end="")


if __name__ == "__main__":
    main()
