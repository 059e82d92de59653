"""The parse-time path from the config Snakemake loaded to a validated config (workflow/Snakefile).

:func:`load_config` is what the Snakefile runs before any rule exists: it re-reads the config files
with a YAML loader that refuses duplicate keys, resolves ``null`` removals in sources and model refs,
coerces ``--config`` strings, validates against the schema, checks every training key where it was
written, fills the schema's defaults and checks values against the installed libraries and the
models, the semantic checks of :mod:`safealign.checks` and the values checked against the installed
libraries, the models and the hub cache (:mod:`safealign.configenv`). Every problem is one line
(key path, what is wrong, what is allowed); all of them are raised together as one
:class:`~safealign.checks.ConfigError`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from .checks import ConfigError, coerce_cli_scalars, config_problems, print_warnings, raise_problems  # noqa: F401
from .grid import RESERVED_NAMES, SWEEPABLE
from .train import trl_fields
from .train.methods import MAPPED, REJECTED, TRAINERS, WORKFLOW_KEYS, key_problems, workflow_setting

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

# Keys of which a source / model ref holds exactly one (the others must be absent or null); a base
# model may also be a package (src/safealign/package_model.py).
EXCLUSIVE = ("world", "path", "hub")
MODEL_EXCLUSIVE = (*EXCLUSIVE, "package")
# Keys a later config file may remove from a source or model ref by writing null.
REMOVABLE = (*MODEL_EXCLUSIVE, "revision", "config", "split", "gguf_file")
# Keys only a method sets (in `training` or `models.<name>.training` they would be ignored).
METHOD_ONLY = {
    "trainer": "each method names its trainer",
    "loss_type": "each method names its loss",
    "enabled": "it drops one method from the grid",
    "seeds": "a grid setting: write config.seeds, or seeds on a method",
}
CLI_FORM = "--config 'training={beta: 0.2}'"
# libyaml's loader where PyYAML was built with it (8x faster on the 30 KB schema, read at every
# Snakemake start); the same documents and line marks as the pure-Python SafeLoader.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dotted(parts: Iterable[Any]) -> str:
    out = "config"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _suggest(word: str, choices: Iterable[str], first: Iterable[str] = ()) -> str:
    """" (did you mean X?)" for a close match, looking in ``first`` before ``choices``."""
    for pool in (list(first), list(choices)):
        close = difflib.get_close_matches(word, pool, n=1, cutoff=0.75)
        if close:
            return f" (did you mean {close[0]}?)"
    return ""


def _listing(values: Iterable[Any], limit: int = 40) -> str:
    values = [str(v) for v in values]
    more = f", ... ({len(values) - limit} more)" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more


# ---------------------------------------------------------------- duplicate YAML keys


def duplicate_keys(path: str | Path, root: yaml.Node | None = None) -> list[str]:
    """One line per key written twice in the same mapping of a YAML/JSON config file (``root``:
    its composed node tree, when the caller has it).

    Snakemake's loader keeps the last of two equal keys silently; this walks the composed YAML
    node tree (line numbers are 1-based) so the first one is not lost without a word.
    """
    if root is None:
        try:
            root = yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=YAML_LOADER)
        except (OSError, yaml.YAMLError):
            return []  # file_problems names unreadable files
    out: list[str] = []

    def walk(node: yaml.Node, parts: list[Any]) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
                line = key_node.start_mark.line + 1
                if key in seen and key != "<<":
                    out.append(f"{path}:{line}: {dotted([*parts, key])} is written twice (first on line "
                               f"{seen[key]}); YAML keeps only the last one, so remove or rename one")
                seen.setdefault(key, line)
                walk(value_node, [*parts, key])
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, [*parts, i])

    if root is not None:
        walk(root, [])
    return out


# ---------------------------------------------------------------- names and empty mappings

NAMED = ("methods", "models", "benchmarks", "judges")


def reserved_name_problems(config: dict[str, Any]) -> list[str]:
    """One line per method, model, benchmark or judge named like a name the workflow reserves
    (:data:`safealign.grid.RESERVED_NAMES`), with what that name means."""
    out = []
    for kind in NAMED:
        for name in config.get(kind) or {}:
            if name in RESERVED_NAMES:
                out.append(f"config.{kind}.{name}: the name {name!r} is reserved: it is "
                           f"{RESERVED_NAMES[name]}; rename it (reserved: {', '.join(RESERVED_NAMES)})")
    return out


# `methods: {}` as YAML or JSON writes it (a quick test before parsing the files).
EMPTY_METHODS = re.compile(r"""["']?methods["']?\s*:\s*\{\s*\}""")


def emptied_methods(config: dict[str, Any], configfiles: Iterable[str | Path]) -> bool:
    """Apply an explicit ``methods: {}`` and say whether there was one.

    Config files merge into the earlier ones, so an empty mapping would leave every method of
    ``config/config.yaml`` in place; written in the last config file that sets ``methods``, it
    means "no methods" (the grid is the base models alone): every method the files before it
    wrote is dropped. A method ``--config`` adds under a name no earlier file used is kept.
    """
    texts = []
    for f in configfiles:
        try:
            texts.append(Path(f).read_text(encoding="utf-8"))
        except OSError:
            continue
    if not any(EMPTY_METHODS.search(t) for t in texts):
        return False  # the common case, without parsing every file again
    written: list[set[str] | None] = []  # per file setting methods: its names, None for {}
    for text in texts:
        try:
            doc = yaml.load(text, Loader=YAML_LOADER)
        except yaml.YAMLError:
            continue
        methods = doc.get("methods") if isinstance(doc, dict) else None
        if isinstance(methods, dict):
            written.append(set(methods) if methods else None)
    if None not in written:
        return False
    last = len(written) - 1 - written[::-1].index(None)
    before = set().union(*(w for w in written[:last] if w))
    after = set().union(*(w for w in written[last + 1:] if w))
    if isinstance(config.get("methods"), dict):
        for name in before - after:
            config["methods"].pop(name, None)
    return True


def file_problems(path: str | Path) -> list[str]:
    """One line for a config file that cannot be read as YAML (a missing file; a syntax error with
    its line, column and what to do), else one line per key written twice (:func:`duplicate_keys`).

    Snakemake reads ``--configfile`` itself before the workflow starts, and says only "Config file
    is not valid JSON or YAML" or prints a traceback for a missing file; ``python -m
    safealign.configload FILE...`` prints these lines for the same files."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return [f"{path}: no such config file (paths are relative to the working directory; "
                "--configfile takes every later word as a file, so put targets before it)"]
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{path}: cannot be read ({exc})"]
    try:
        root = yaml.compose(text, Loader=YAML_LOADER)  # syntax errors surface here
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        lines = text.splitlines()
        at = lines[mark.line] if mark and mark.line < len(lines) else ""
        hint = ""
        if "\t" in at:
            hint = " (a tab: indent YAML with spaces only)"
        elif "flow" in (context or ""):
            hint = " (an unclosed [ or { before this point?)"
        cmark = getattr(exc, "context_mark", None)
        if context and cmark is not None and mark is not None and cmark.line != mark.line:
            context += f" that starts on line {cmark.line + 1}"
        return [f"{where}: not valid YAML: {problem}{f' {context}' if context else ''}{hint}"]
    return duplicate_keys(path, root)


# ---------------------------------------------------------------- sources and model refs


def _refs(config: dict[str, Any]) -> list[tuple[list[Any], dict[str, Any]]]:
    """(key path, dict) of every source and model ref (the dicts holding one of world/path/hub)."""
    out: list[tuple[list[Any], dict[str, Any]]] = []

    def add(parts: list[Any], node: Any) -> None:
        if isinstance(node, dict):
            out.append((parts, node))

    add(["preference_data", "source"], (config.get("preference_data") or {}).get("source"))
    on_policy = (config.get("preference_data") or {}).get("on_policy")
    for kind in ("harmful", "benign"):
        if isinstance(on_policy, dict) and isinstance(on_policy.get(kind), dict):
            add(["preference_data", "on_policy", kind, "source"], on_policy[kind].get("source"))
    add(["capability", "source"], (config.get("capability") or {}).get("source"))
    for name, split in (((config.get("selection") or {}).get("splits") or {}).items()
                        if isinstance((config.get("selection") or {}).get("splits"), dict) else []):
        if isinstance(split, dict):
            add(["selection", "splits", name, "source"], split.get("source"))
    for kind in ("benchmarks", "models", "judges"):
        for name, spec in (config.get(kind) or {}).items():
            if not isinstance(spec, dict):
                continue
            if kind == "benchmarks":
                add([kind, name, "source"], spec.get("source"))
            elif kind == "models":
                add([kind, name], spec)
            else:
                add([kind, name, "model"], spec.get("model"))
    return out


def resolve_removals(config: dict[str, Any]) -> list[str]:
    """Drop null keys of sources and model refs (null = "removed"); one line per ref left with two
    of world / path / hub (config files and --config merge dicts, so an overlay cannot replace one)."""
    out = []
    for parts, ref in _refs(config):
        for key in REMOVABLE:
            if key in ref and ref[key] is None:
                del ref[key]
        exclusive = MODEL_EXCLUSIVE if parts[0] == "models" else EXCLUSIVE
        both = [k for k in exclusive if k in ref]
        if len(both) > 1:
            keep = both[-1]
            drop = [k for k in both if k != keep]
            out.append(f"{dotted(parts)}: sets both {' and '.join(both)}, but takes exactly one of "
                       f"{' / '.join(exclusive)}; config files and --config merge into the earlier one, "
                       f"so to switch to {keep} write {', '.join(f'{k}: null' for k in drop)} next to it "
                       "(null removes a key)")
    objective = (config.get("selection") or {}).get("objective")
    if isinstance(objective, dict):
        for key in ("maximize", "minimize"):
            if key in objective and objective[key] is None:
                del objective[key]
        if "maximize" in objective and "minimize" in objective:
            out.append("config.selection.objective: sets both maximize and minimize, but takes exactly one; config "
                       "files and --config merge into the earlier objective, so to switch write `maximize: null` "
                       "(or `minimize: null`) next to the other (null removes a key)")
    return out


# ---------------------------------------------------------------- schema errors, one line each


def _schema_at(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = root["$defs"][schema["$ref"].removeprefix("#/$defs/")]
    return schema


def _type_name(t: Any) -> str:
    names = {"number": "a number", "integer": "an integer", "string": "a string", "boolean": "true or false",
             "object": "a mapping", "array": "a list", "null": "null"}
    return " or ".join(names.get(x, x) for x in (t if isinstance(t, list) else [t]))


def _allowed_of(schema: dict[str, Any], root: dict[str, Any]) -> str:
    """What a oneOf/type-only schema allows, in words."""
    schema = _schema_at(schema, root)
    if "oneOf" in schema:
        alts = [_schema_at(a, root) for a in schema["oneOf"]]
        if all("required" in a and "type" not in a for a in alts):
            return "exactly one of " + " / ".join("+".join(a["required"]) for a in alts)
        return " or ".join(_allowed_of(a, root) for a in alts)
    words = _type_name(schema.get("type", "any"))
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        item = re.sub(r"^(?:a|an) (\w+)", r"\1s", _allowed_of(schema["items"], root))
        words += f" of {item}"
    for key, op in (("exclusiveMinimum", ">"), ("minimum", ">="), ("maximum", "<=")):
        if key in schema:
            words += f" {op} {schema[key]}"
    return words


def _error_lines(err: Any, root: dict[str, Any]) -> list[str]:
    path = list(err.absolute_path)
    where = dotted(path)
    v, value, inst = err.validator, err.validator_value, err.instance
    if "propertyNames" in err.absolute_schema_path:
        what = (f"must match {value}" if v == "pattern"
                else f"is not allowed{_suggest(str(inst), map(str, value))}; allowed: {_listing(value)}")
        return [f"{where}.{inst}: the name {inst!r} {what}"]
    if v == "additionalProperties":
        props = err.schema.get("properties", {})
        out = []
        for key in inst:
            if key in props:
                continue
            hint = _suggest(str(key), props)
            if "." in str(key) and not path:
                head, _, rest = str(key).partition(".")
                hint = (f" (a dotted key is not nested: in a config file write `{head}: {{{rest}: ...}}`, "
                        f"on the command line {CLI_FORM})")
            out.append(f"{dotted([*path, key])}: unknown key{hint}; allowed: {_listing(props)}")
        return out
    if v == "required":
        return [f"{where}: missing required key {k!r}" for k in value if k not in inst]
    if v == "dependentRequired":
        return [f"{dotted([*path, k])}: needs {' and '.join(need)} next to it; remove it (write {k}: null) "
                f"or set {' and '.join(need)}" for k, need in value.items() if k in inst
                and any(n not in inst for n in need)]
    if v == "type":
        hint = ""
        if isinstance(inst, str) and re.fullmatch(r"[+-]?\d+(\.\d*)?[eE][+-]?\d+", inst):
            hint = " (YAML reads 1e-5 as a string: write 1.0e-5)"
        return [f"{where}: must be {_type_name(value)}, got {inst!r}{hint}"]
    if v == "enum":
        return [f"{where}: {inst!r} is not allowed{_suggest(str(inst), map(str, value))}; allowed: {_listing(value)}"]
    if v in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[v]
        return [f"{where}: must be {op} {value}, got {inst!r}"]
    if v == "uniqueItems":
        dup = next(x for i, x in enumerate(inst) if x in inst[:i])
        why = " (equal seeds would collapse into one variant)" if path and "seeds" in path[-1:] else ""
        return [f"{where}: lists {dup!r} twice in {inst}{why}; each value must appear once"]
    if v in ("minItems", "minProperties"):
        return [f"{where}: must not be empty (at least {value})"]
    if v == "pattern":
        return [f"{where}: {inst!r} must match {value}"]
    if v == "oneOf":
        ctx = list(err.context)
        # The alternative the value came closest to (fewest errors, none of them a wrong type or
        # a missing key): report its errors, e.g. a bound it breaks or an unknown key it has.
        alts: dict[Any, list[Any]] = {}
        for e in ctx:
            alts.setdefault(e.relative_schema_path[0], []).append(e)
        near = [errs for errs in alts.values()
                if not any(e.validator in ("type", "required", "oneOf") for e in errs)]
        if near:
            best = min(near, key=len)
            return [line for e in best for line in _error_lines(e, root)]
        if not ctx:
            return [f"{where}: matches more than one form; allowed: {_allowed_of(err.schema, root)}"]
        return [f"{where}: got {json.dumps(inst)}; allowed: {_allowed_of(err.schema, root)}"]
    return [f"{where}: {err.message}"]


def schema_problems(config: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """One line per schema violation: key path, what is wrong, what is allowed."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    out: list[str] = []
    for err in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        for line in _error_lines(err, schema):
            if line not in out:
                out.append(line)
    return out


# ---------------------------------------------------------------- training keys where written


def training_blocks(config: dict[str, Any]) -> list[tuple[str, dict[str, Any], str | None]]:
    """(key path, block, trainer or None) of every block of training keys, disabled methods too."""
    out: list[tuple[str, dict[str, Any], str | None]] = []
    if isinstance(config.get("training"), dict):
        out.append(("config.training", config["training"], None))
    for name, spec in (config.get("models") or {}).items():
        if isinstance(spec, dict) and isinstance(spec.get("training"), dict):
            out.append((f"config.models.{name}.training", spec["training"], None))
    for name, spec in (config.get("methods") or {}).items():
        if isinstance(spec, dict):
            out.append((f"config.methods.{name}", spec, workflow_setting(spec, "trainer")))
    return out


def training_key_problems(config: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Unknown, misplaced and list-valued training keys, each reported where it was written."""
    listed = set(schema["$defs"]["training"]["properties"])
    any_trainer = set().union(*(trl_fields.accepted_fields(t) for t in TRAINERS))
    known = listed | any_trainer | set(WORKFLOW_KEYS) | set(MAPPED) | set(REJECTED) | set(METHOD_ONLY)
    out = []
    for where, block, trainer in training_blocks(config):
        for key, value in block.items():
            at = f"{where}.{key}"
            if trainer is None:
                if key in METHOD_ONLY:
                    out.append(f"{at}: only a method sets {key} ({METHOD_ONLY[key]}): write it as "
                               f"config.methods.<name>.{key}")
                elif key in REJECTED:
                    out.append(f"{at}: {REJECTED[key]}")
                elif key not in known:
                    hint = _suggest(key, known, listed | set(WORKFLOW_KEYS))
                    out.append(f"{at}: unknown key{hint}; allowed: a key of the `training` "
                               "block (config/README.md) or a field of every configured method's TRL config "
                               "class (src/safealign/train/trl_fields.py)")
                elif key in SWEEPABLE and isinstance(value, list):
                    out.append(f"{at}: a list ({value}) is a sweep, and sweeps go on a method: write "
                               f"config.methods.<name>.{key}: {value} (each value becomes its own grid cell); "
                               f"{where} takes one value")
            elif trainer in TRAINERS:
                known_here = listed | trl_fields.accepted_fields(trainer) | set(WORKFLOW_KEYS) | set(MAPPED)
                for k, why in key_problems({"trainer": trainer, key: value}):
                    if k == key:
                        hint = _suggest(key, known_here, listed | set(WORKFLOW_KEYS)) if key not in known else ""
                        out.append(f"{at} {why}{hint}")
    return out


# ---------------------------------------------------------------- seeds, tasks and hub ids

# The seeds every library a job seeds accepts: transformers.set_seed calls numpy's
# np.random.seed, which takes [0, 2**32 - 1] only (torch.manual_seed takes more).
SEED_RANGE = (0, 2**32 - 1)


def seed_problems(config: dict[str, Any]) -> list[str]:
    """One line per ``seed`` / ``seeds`` value anywhere in the config outside :data:`SEED_RANGE`."""
    lo, hi = SEED_RANGE
    out = []

    def walk(node: Any, parts: list[Any]) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "seed" and isinstance(v, int) and not isinstance(v, bool):
                    check(v, [*parts, k])
                elif k == "seeds" and isinstance(v, list):
                    for i, x in enumerate(v):
                        if isinstance(x, int) and not isinstance(x, bool):
                            check(x, [*parts, k, i])
                else:
                    walk(v, [*parts, k])

    def check(value: int, parts: list[Any]) -> None:
        if not lo <= value <= hi:
            out.append(f"{dotted(parts)}: the seed {value} is outside [{lo}, {hi}], the range "
                       "numpy's np.random.seed (called by transformers.set_seed) accepts; pick a seed in it")

    walk(config, [])
    return out


# ---------------------------------------------------------------- the whole path


def load_config(config: dict[str, Any], configfiles: Iterable[str | Path] = (),
                schema_path: str | Path = SCHEMA, lock: bool = True, warn: bool = False) -> dict[str, Any]:
    """Check and complete, in place, the config Snakemake merged from ``configfiles`` and --config.

    One pass: every problem is collected and raised together as one :class:`ConfigError`, one line
    per problem, each naming its key. Checks of the config as written come first (files, null
    removals, the schema, training keys where written, reserved names, seeds); when the config has
    the schema's shape, the schema's defaults are filled in (Snakemake's own ``validate``), with
    ``lock`` each hub revision is replaced by its commit from ``config.hub_lock``
    (:func:`safealign.prefetch.apply_lock`), and the checks that need the complete config run too:
    :func:`safealign.checks.config_problems` and those against the installed libraries, the
    models and the hub cache (:mod:`safealign.configenv`). With ``warn``, a valid config's warnings
    are printed (:func:`safealign.checks.print_warnings`). Returns ``config``.
    """
    from . import configenv

    schema = yaml.load(Path(schema_path).read_text(), Loader=YAML_LOADER)
    shape = [line for f in dict.fromkeys(map(str, configfiles)) for line in file_problems(f)]
    emptied_methods(config, configfiles)
    coerce_cli_scalars(config)
    both = resolve_removals(config)
    # A ref with two of world/path/hub also fails the schema's oneOf: the line above says more.
    refs = tuple(f"{ref}{key}:" for ref in (line.split(": ", 1)[0] for line in both)
                 for key in ("", *(f".{k}" for k in REMOVABLE)))
    shape += both + [line for line in schema_problems(config, schema) if not line.startswith(refs) or not refs]
    default = (Path(schema_path).resolve().parents[2] / "config" / "config.yaml").resolve()
    files = [Path(f).resolve() for f in configfiles]
    if files and default not in files and any(p.startswith("config: missing required key") for p in shape):
        shape.append(f"config: --configfile replaces the default config/config.yaml instead of adding to "
                     f"it, and {', '.join(str(f) for f in configfiles)} is not a complete config: give the "
                     "default first (`--configfile config/config.yaml <overlay.yaml>`) or a complete "
                     "config such as config/paper.yaml")
    training = training_key_problems(config, schema)
    problems = shape + training + reserved_name_problems(config) + seed_problems(config)
    if not shape:
        from snakemake.utils import validate

        validate(config, str(schema_path))  # fills the defaults (valid by now)
        locked = []
        if lock:
            from .prefetch import apply_lock

            locked = apply_lock(config)
        # A training block with a problem would expand into a grid of settings no trainer takes.
        problems += locked + config_problems(config, grid=not training)
        problems += configenv.library_problems(config) + configenv.capability_task_problems(config)
        if not locked:  # a reference missing from the lock file is already named above
            problems += configenv.hub_problems(config)
    raise_problems(problems)
    if warn:
        print_warnings(config)
    return config


if __name__ == "__main__":
    import sys

    lines = [line for f in sys.argv[1:] for line in file_problems(f)] if len(sys.argv) > 1 else [
        "usage: python -m safealign.configload CONFIGFILE..."]
    for line in lines:
        print(line, file=sys.stderr)
    sys.exit(1 if lines else 0)
