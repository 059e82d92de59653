"""Semantic config checks the JSON Schema cannot express, run at parse time (before any job).

Every message names the config key, e.g.
``config.methods.safe_exo.label_smoothing must be > 0 for loss_type exo_pair``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from .chat import PROMPT_PLACEHOLDER
from .data.loaders import OPTIONAL_OPTIONS, loaders_taking
from .grid import SWEEPABLE, variants
from .headline import check_report_config, global_parts
from .judge.registry import JUDGE_TYPES
from .selection import config_problems as selection_problems
from .train.methods import (
    LOSS_TYPES,
    REJECTED,
    TRAINERS,
    TRL_LABEL_SMOOTHING,
    deviations,
    distribute_batch,
    key_problems,
    workflow_setting,
)

BENCHMARK_KINDS = ("safety", "overrefusal", "toxicity")
ATTACK_NAMES = ("suffix_injection", "prefix_injection", "token_manipulation", "jailbreaking")


class ConfigError(ValueError):
    """A config value the workflow cannot run with; the message names the key."""


def raise_problems(problems: list[str]) -> None:
    """Raise one :class:`ConfigError` listing every problem (one line each, duplicates once)."""
    problems = list(dict.fromkeys(problems))
    if problems:
        noun = "problem" if len(problems) == 1 else "problems"
        raise ConfigError(f"{len(problems)} config {noun}:\n" + "\n".join(problems))


SHA = re.compile(r"^[0-9a-f]{40}$")
NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
# Free-text keys whose values stay strings even when they look like numbers.
TEXT_KEYS = {"revision", "hub", "path", "system_prompt", "title", "gguf_file", "split", "config",
             "user_template", "label", "source", "version"}


def coerce_cli_scalars(node: Any, key: str = "") -> Any:
    """Turn number- and boolean-looking strings into numbers and booleans, in place.

    ``snakemake --config methods={safe_nca: {beta: 0.2}}`` parses nested values as strings
    ("0.2"), and YAML reads ``1e-5`` as a string; both then mean what a researcher wrote.
    """
    if isinstance(node, dict):
        for k, v in node.items():
            node[k] = coerce_cli_scalars(v, k)
        return node
    if isinstance(node, list):
        return [coerce_cli_scalars(v, key) for v in node]
    if isinstance(node, str) and key not in TEXT_KEYS:
        if NUMBER.match(node):
            return int(node) if re.fullmatch(r"[+-]?\d+", node) else float(node)
        if node.lower() in ("true", "false"):
            return node.lower() == "true"
        if node.lower() in ("null", "none", "~"):
            return None
    return node


def unpinned(config: dict[str, Any]) -> list[str]:
    """Config keys whose hub revision is not a commit sha (a branch or tag floats)."""
    refs = [(f"models.{n}", s) for n, s in config["models"].items()]
    refs += [(f"judges.{n}.model", s.get("model", {})) for n, s in config["judges"].items()]
    refs += [(f"benchmarks.{n}.source", s["source"]) for n, s in config["benchmarks"].items()]
    refs.append(("preference_data.source", config.get("preference_data", {}).get("source") or {}))
    if "source" in config.get("capability", {}):
        refs.append(("capability.source", config["capability"]["source"]))
    return [f"config.{k}.revision = {r['revision']!r}" for k, r in refs
            if "hub" in r and r.get("revision") and not SHA.match(str(r["revision"]))]


def written_at(config: dict[str, Any], model: str, method: str, *keys: str) -> str:
    """Where a merged training key of (model, method) was written (the last writer of
    config.methods.<method>, config.models.<model>.training, config.training), as a dotted path."""
    blocks = (config["methods"][method], config["models"][model].get("training", {}), config.get("training", {}))
    names = (f"config.methods.{method}", f"config.models.{model}.training", "config.training")
    for block, name in zip(blocks, names, strict=True):
        node: Any = block
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
        if node is not None:
            return ".".join([name, *keys])
    return ".".join(["config.training", *keys])


def check_training_keys(config: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for :func:`training_key_lines`."""
    raise_problems(training_key_lines(config))


def training_key_lines(config: dict[str, Any]) -> list[str]:
    """Every merged training key reaches the method's TRL config or the workflow (train/methods.py).

    A key the trainer does not have is an error naming the key where it was written (the method,
    ``models.<name>.training`` or ``training``), the trainer and, when inherited, the method that
    inherits it (a global key must suit every method's trainer). One line per problem.
    """
    inherited: dict[tuple[str, str], list[str]] = {}  # (where.key, why) -> methods inheriting it
    for v in variants(config):
        if not v.method:
            continue
        for key, why in key_problems(v.settings):
            at = written_at(config, v.model, v.method, key)
            heirs = inherited.setdefault((at, why), [])
            if at != f"config.methods.{v.method}.{key}" and f"config.methods.{v.method}" not in heirs:
                heirs.append(f"config.methods.{v.method}")
    lines = []
    for (at, why), heirs in inherited.items():
        msg = f"{at} {why}"
        where, key = at.rsplit(".", 1)
        if heirs and key not in REJECTED:  # a rejected key suits no trainer: its reason says what to do
            msg += (f", and {', '.join(heirs)} {'inherits' if len(heirs) == 1 else 'inherit'} it; set it on the "
                    f"methods whose trainer has it, not in {where}")
        lines.append(msg)
    return lines


def deviation_warnings(config: dict[str, Any], root: str | Path = ".") -> list[str]:
    """One line per documented TRL 1.16 vs 0.11 deviation that a method still to be trained depends
    on (its ``results/models/<model>/<variant>/train.json`` is not under ``root`` yet), saying what
    differs and how to leave the method out. Nothing once every such variant is trained."""
    from .dag import R

    hits: dict[str, tuple[str, dict[str, int]]] = {}
    for v in variants(config):
        if not v.method or (Path(root) / R / "models" / v.model / v.name / "train.json").exists():
            continue
        for d in deviations(v.settings):
            counts = hits.setdefault(d.name, (d.text, {}))[1]
            counts[v.method] = counts.get(v.method, 0) + 1
    out = []
    for name, (text, counts) in hits.items():
        n = sum(counts.values())
        methods = ", ".join(f"config.methods.{m}" for m in counts)
        off = ", ".join(f"{m}: {{enabled: false}}" for m in counts)
        out.append(f"safealign: NOTE {methods} ({n} variant{'s' if n > 1 else ''} to train) "
                   f"{'uses' if len(counts) == 1 else 'use'} TRL 1.16's loss, which deviates from the "
                   f"paper's TRL 0.11 ({name}): {text}. Its figures may differ from the paper's; to leave "
                   f"it out: --config 'methods={{{off}}}' (docs/configuration.md, Methods)")
    return out


def local_paths(config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(config key, path, "file"|"directory")`` of every local path the config names: dataset
    sources (``path:`` without ``world:``), local model and judge directories."""
    out = []
    sources = [("preference_data.source", config.get("preference_data", {}).get("source") or {})]
    on_policy = config.get("preference_data", {}).get("on_policy") or {}
    sources += [(f"preference_data.on_policy.{k}.source", on_policy[k]["source"]) for k in ("harmful", "benign")
                if k in on_policy]
    sources += [(f"benchmarks.{n}.source", s.get("source", {})) for n, s in config["benchmarks"].items()]
    sources += [(f"selection.splits.{n}.source", s["source"])
                for n, s in ((config.get("selection") or {}).get("splits") or {}).items() if s.get("source")]
    if "source" in config.get("capability", {}):
        sources.append(("capability.source", config["capability"]["source"]))
    for key, src in sources:
        if src.get("path") is not None and src.get("world") is None:
            out.append((f"config.{key}.path", str(src["path"]), "file"))
    for name, spec in config["models"].items():
        if spec.get("path") is not None and spec.get("world") is None:
            out.append((f"config.models.{name}.path", str(spec["path"]), "directory"))
    for name, spec in config["judges"].items():
        model = spec.get("model", {})
        if model.get("path") is not None and model.get("world") is None:
            out.append((f"config.judges.{name}.model.path", str(model["path"]), "directory"))
    return out


def check_local_paths(config: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for :func:`local_path_problems`."""
    raise_problems(local_path_problems(config))


def local_path_problems(config: dict[str, Any]) -> list[str]:
    """A local path that does not exist is an error at parse time, not in the job that reads it.
    Relative paths are relative to the working directory, as the jobs read them. One line per
    missing path."""
    lines = []
    for key, path, kind in local_paths(config):
        p = Path(path).expanduser()
        if p.is_file() if kind == "file" else p.is_dir():
            continue
        what = f"is not a {kind}" if p.exists() else "does not exist"
        lines.append(f"{key} = {path!r}: {what} (relative paths are relative to the working "
                     f"directory {os.getcwd()})")
    return lines


def config_problems(config: dict[str, Any], grid: bool = True) -> list[str]:
    """One line per semantic problem of a schema-valid config, each naming its key.

    Every group of checks runs; the ones that expand the grid (merged training keys, variants,
    serving) need valid models and methods, and run only with ``grid`` (the caller found the
    training blocks sound)."""
    out = _model_problems(config) + _method_problems(config)
    if grid and not out:
        out += training_key_lines(config) + _variant_problems(config) + _serving_problems(config)
    out += local_path_problems(config) + _benchmark_problems(config) + _preference_problems(config)
    out += check_report_config(config) + _judge_problems(config) + _resource_problems(config)
    out += selection_problems(config)
    return list(dict.fromkeys(out))


def print_warnings(config: dict[str, Any]) -> None:
    """Print what a valid config may want changed: floating hub revisions, TRL deviations a method
    still to be trained depends on, no global safety score, serving fallbacks."""
    from .generate.serving import print_warnings as serving_warnings

    for key in unpinned(config):
        print(f"safealign: WARNING {key} is not a commit sha; pin it for reproducible results",
              file=sys.stderr)
    for line in deviation_warnings(config):
        print(line, file=sys.stderr)
    if not global_parts(config):
        print("safealign: WARNING no config.benchmarks.<name>.global_safety is true: "
              "no global safety score is computed", file=sys.stderr)
    serving_warnings(config)


def check_config(config: dict[str, Any], warn: bool = True) -> None:
    """Raise one :class:`ConfigError` naming every semantic problem (:func:`config_problems`); on a
    valid config with ``warn``, print the warnings (:func:`print_warnings`)."""
    problems = config_problems(config)
    raise_problems(problems)
    if warn:
        print_warnings(config)


def _model_problems(config: dict[str, Any]) -> list[str]:
    out = []
    for name, spec in config["models"].items():
        if not any(k in spec for k in ("world", "hub", "path", "package")):
            out.append(f"config.models.{name} needs one of 'world', 'hub' (with 'revision'), 'path' or 'package'")
        if "hub" in spec and not spec.get("revision"):
            out.append(f"config.models.{name}.revision is required for hub model {spec['hub']!r} (pin it)")
    return out


def _method_problems(config: dict[str, Any]) -> list[str]:
    out = []
    for name, method in config["methods"].items():
        trainer = workflow_setting(method, "trainer")
        if trainer not in TRAINERS:
            out.append(f"config.methods.{name}.trainer must be one of {list(TRAINERS)}, got {trainer!r}")
            continue
        lt = method.get("loss_type")
        valid = LOSS_TYPES[trainer]
        if trainer != "orpo" and lt is not None and lt not in valid:
            out.append(f"config.methods.{name}.loss_type {lt!r} is not a TRL {trainer} loss type; "
                       f"valid for the pinned TRL: {', '.join(v for v in valid if v)}")
        for key in SWEEPABLE:
            values = method.get(key)
            if isinstance(values, list) and len(values) != len(set(values)):
                out.append(f"config.methods.{name}.{key} lists a value twice: {values}")
        ls = method.get("label_smoothing", config["training"].get("label_smoothing", TRL_LABEL_SMOOTHING))
        for v in ls if isinstance(ls, list) else [ls]:
            if lt == "exo_pair" and (not v or v <= 0):
                out.append(f"config.methods.{name}.label_smoothing must be > 0 for loss_type exo_pair")
            if lt == "robust" and not 0 <= v < 0.5:
                out.append(f"config.methods.{name}.label_smoothing must be in [0, 0.5) for robust, got {v}")
    return out


def _variant_problems(config: dict[str, Any]) -> list[str]:
    out = []
    batch: dict[str, list[Any]] = {}  # a batch that cannot be split -> the variants it holds for
    qlora: dict[str, dict[str, None]] = {}  # where peft: qlora is written -> (model, method) it reaches
    for v in variants(config):
        if v.method and v.settings.get("peft") == "qlora" and "world" in config["models"][v.model]:
            cells = qlora.setdefault(written_at(config, v.model, v.method, "peft"), {})
            cells[f"model {v.model!r}, method {v.method!r}"] = None
        for key in ("beta", "learning_rate"):
            if key in v.settings and not v.settings[key] > 0:
                out.append(f"config.methods.{v.method}.{key} must be > 0, got {v.settings[key]}")
        gpus = train_gpus(config, v.model)
        if v.method and gpus > 1:
            try:
                distribute_batch(v.settings, gpus)
            except ValueError as exc:
                batch.setdefault(str(exc), []).append(v)
    for where, cells in qlora.items():
        out.append(f"{where}: 'qlora' needs a GPU and bitsandbytes; it is validated but not run on "
                   f"the tiny world ({'; '.join(cells)}); allowed there: lora, full")
    for why, held in batch.items():
        first, more = held[0], held[1:]
        line = f"config.methods.{first.method} (variant {first.model}/{first.name}) {why}"
        if more:
            methods = ", ".join(dict.fromkeys(f"config.methods.{v.method}" for v in more))
            line += f"; the same for {len(more)} more variant{'s' if len(more) > 1 else ''} ({methods})"
        out.append(line)
    return out


def loader_option_problems(where: str, loader: str, spec: dict[str, Any]) -> list[str]:
    """The options set in ``spec`` (at config key ``where``) that ``loader`` does not take (only
    some loaders take them: their signatures say which)."""
    return [f"{where}.{key} is an option of loader(s) {list(loaders)}, not of loader {loader!r}; remove it"
            for key in OPTIONAL_OPTIONS
            if spec.get(key) is not None and loader not in (loaders := loaders_taking(key))]


def _benchmark_problems(config: dict[str, Any]) -> list[str]:
    out = []
    for name, spec in config["benchmarks"].items():
        if spec["kind"] not in BENCHMARK_KINDS:
            out.append(f"config.benchmarks.{name}.kind must be one of {BENCHMARK_KINDS}")
        if not any(spec["kind"] in j["applies_to"] for j in config["judges"].values()):
            out.append(f"config.benchmarks.{name}: no judge applies to kind {spec['kind']!r} "
                       "(see config.judges.<name>.applies_to)")
        src = spec["source"]
        if "hub" in src and not src.get("revision"):
            out.append(f"config.benchmarks.{name}.source.revision is required for {src['hub']!r} (pin it)")
        template = spec.get("user_template")
        if template is not None and PROMPT_PLACEHOLDER not in template:
            out.append(f"config.benchmarks.{name}.user_template must contain the placeholder "
                       f"{PROMPT_PLACEHOLDER} (where the benchmark prompt goes), got {template!r}")
        if spec.get("global_safety") and spec["kind"] != "safety":
            out.append(f"config.benchmarks.{name}.global_safety: only a benchmark of kind 'safety' can be "
                       f"part of the global safety score (kind is {spec['kind']!r})")
        out += loader_option_problems(f"config.benchmarks.{name}", spec["loader"], spec)
        types = spec.get("attack_types") or ATTACK_NAMES
        if spec.get("attacks_per_prompt") is not None and spec["attacks_per_prompt"] > len(types):
            out.append(f"config.benchmarks.{name}.attacks_per_prompt must be at most the number of attack_types "
                       f"({len(types)}), got {spec['attacks_per_prompt']}")
    return out


def _preference_problems(config: dict[str, Any]) -> list[str]:
    out = []
    pref = config.get("preference_data", {})
    trains = any(v.method for v in variants(config))  # an evaluation-only grid (methods: {}) reads no pairs
    if trains and not pref.get("source") and not pref.get("on_policy"):
        out.append("config.preference_data needs a source or on_policy (or both); it has neither")
    on_policy = pref.get("on_policy") or {}
    if on_policy and on_policy["model"] not in config["models"]:
        out.append(f"config.preference_data.on_policy.model must be one of config.models {list(config['models'])}, "
                   f"got {on_policy['model']!r}")
    if on_policy and not (on_policy.get("refusal_system_prompt") or on_policy.get("refusal_prefix")):
        out.append("config.preference_data.on_policy needs refusal_system_prompt or refusal_prefix (or both): "
                   "without either, the refusal arm is the plain arm")
    return out


def _judge_problems(config: dict[str, Any]) -> list[str]:
    out = []
    for name, spec in config["judges"].items():
        for kind in spec["applies_to"]:
            if kind not in BENCHMARK_KINDS:
                out.append(f"config.judges.{name}.applies_to: unknown benchmark kind {kind!r}; "
                           f"valid: {list(BENCHMARK_KINDS)}")
        if JUDGE_TYPES[spec["type"]].needs_model and "model" not in spec:
            out.append(f"config.judges.{name}.model is required for judge type {spec['type']!r}")
        model = spec.get("model", {})
        if "hub" in model and not model.get("revision"):
            out.append(f"config.judges.{name}.model.revision is required for {model['hub']!r} (pin it)")
    return out


def _resource_problems(config: dict[str, Any]) -> list[str]:
    out = []
    families = config.get("resources", {})
    for kind in ("models", "judges"):
        for name, spec in config[kind].items():
            for family, res in spec.get("resources", {}).items():
                for key in ("slurm_partition", "slurm_account"):
                    if key in res and key not in families.get(family, {}) and key not in families.get("default", {}):
                        out.append(f"config.{kind}.{name}.resources.{family}.{key} needs a fallback in "
                                   f"config.resources.{family}.{key} or config.resources.default.{key} "
                                   "for the jobs of other models/judges")
    return out


def train_gpus(config: dict[str, Any], model: str) -> int:
    """GPUs of a model's training jobs (resources default < train < models.<m>.resources.train)."""
    res = config.get("resources", {})
    merged = {**res.get("default", {}), **res.get("train", {}),
              **config["models"][model].get("resources", {}).get("train", {})}
    return int(merged.get("gpu", 0) or 0)


def _serving_problems(config: dict[str, Any]) -> list[str]:
    """Every variant can be served as configured (safealign.generate.serving)."""
    from .generate.serving import SERVING_KEYS, ServingError, serving_plan

    out = []
    for name, spec in config["benchmarks"].items():
        for key in SERVING_KEYS:
            if key in spec.get("generation", {}):
                out.append(f"config.benchmarks.{name}.generation.{key}: serving is chosen per variant, "
                           f"not per benchmark; set config.generation.{key}")
    for v in variants(config):
        try:
            serving_plan(config, v.model, v.settings)
        except ServingError as exc:
            out.append(str(exc))
    return out
