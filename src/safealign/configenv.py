"""Config values checked against what is installed and on disk: transformers' schedulers and
optimizers, the models' positions and LoRA modules (local, packaged or in the hub cache), lm-eval's
tasks and, offline, the hub cache. Each function returns one line per problem (key path, what is
wrong, what is allowed); :func:`safealign.configload.load_config` collects them with every other
check and raises them together.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .checks import written_at
from .configload import _listing, _refs, _suggest, dotted, training_blocks
from .grid import variants
from .train import trl_fields
from .train.methods import workflow_setting

# ---------------------------------------------------------------- installed libraries and models


def _local_model_dir(spec: dict[str, Any]) -> Path | None:
    """The local directory of a model ref, or None (world models are built later)."""
    if "path" in spec and Path(spec["path"]).is_dir():
        return Path(spec["path"])
    return None


def _hub_config(spec: dict[str, Any]) -> dict[str, Any] | None:
    """A hub model's config.json from the local Hugging Face cache (no network), or None."""
    if "hub" not in spec:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(spec["hub"], "config.json", revision=spec.get("revision"))
    except Exception:  # noqa: BLE001 - a cache we cannot read tells us nothing
        return None
    return json.loads(Path(found).read_text()) if isinstance(found, str) else None


def _package_config(spec: dict[str, Any]) -> dict[str, Any] | None:
    """A package model's parse-time facts (package_model.model_facts: config, architecture, LoRA
    module names), or None if it is not installed as configured (package_model.spec_problems
    says why)."""
    if not isinstance(spec.get("package"), dict):
        return None
    from . import package_model

    try:
        located = package_model.locate(spec["package"], "")
    except package_model.PackageModelError:
        return None
    return package_model.model_facts(located.path)


POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def model_positions(spec: dict[str, Any], name: str) -> tuple[int, str] | None:
    """(positions, where they come from) of a model, where knowable without network."""
    if "world" in spec:
        return (int(spec["world"]["architecture"]["max_position_embeddings"]),
                f"config.models.{name}.world.architecture.max_position_embeddings")
    local = _local_model_dir(spec)
    cfg = None
    if local is not None and (local / "config.json").is_file():
        cfg, origin = json.loads((local / "config.json").read_text()), f"{local / 'config.json'}"
    elif "hub" in spec:
        cfg, origin = _hub_config(spec), f"the cached config.json of {spec['hub']}"
    elif "package" in spec:
        facts = _package_config(spec)
        cfg, origin = facts and facts["config"], f"the GGUF metadata of config.models.{name}.package"
    if not cfg:
        return None
    cfg = {**cfg.get("text_config", {}), **cfg}
    for key in POSITION_KEYS:
        if isinstance(cfg.get(key), int):
            return int(cfg[key]), f"{origin} {key}"
    return None


def lora_modules(spec: dict[str, Any]) -> tuple[list[str], str] | None:
    """(names of the LoRA-adaptable modules, origin) of a world or local model; None if unknown."""
    if "world" in spec:
        layers = int(spec["world"]["architecture"]["num_hidden_layers"])
        return trl_fields.world_llama_lora_modules(layers), "a tiny-world LlamaForCausalLM"
    package = _package_config(spec)
    if package is not None:
        return package["lora_modules"], f"the GGUF model of package {spec['package']['name']}"
    local = _local_model_dir(spec)
    files = sorted(local.glob("*.safetensors")) if local is not None else []
    if not files:
        return None
    from safetensors import safe_open

    names = set()
    for f in files:
        with safe_open(str(f), framework="numpy") as st:
            for key in st.keys():
                # 2-D weights are Linear / Embedding / Conv1D, what LoRA adapts (1-D ones are norms).
                if key.endswith(".weight") and len(st.get_slice(key).get_shape()) == 2:
                    names.add(key.removesuffix(".weight"))
    return sorted(names), f"the weights in {local}"


def _matches(target: str, modules: list[str]) -> bool:
    # peft's rule for a list of names: the module's name is the entry or ends with "." + entry.
    return any(m == target or m.endswith(f".{target}") for m in modules)


def library_problems(config: dict[str, Any]) -> list[str]:
    """Values the installed transformers or the models cannot take, found before any job runs."""
    from . import package_model

    out: list[str] = package_model.spec_problems(config)
    for where, block, _ in training_blocks(config):
        for key, table, lib in (("lr_scheduler_type", trl_fields.LR_SCHEDULER_TYPES, "scheduler"),
                                ("optim", trl_fields.OPTIMIZERS, "optimizer")):
            value = block.get(key)
            if isinstance(value, str) and value not in table:
                out.append(f"{where}.{key}: {value!r} is not a transformers {lib}{_suggest(value, table)}; "
                           f"allowed: {_listing(sorted(table), 60)}")
    positions = {m: model_positions(spec, m) for m, spec in config["models"].items()}
    gens = [("config.generation.max_new_tokens", config["generation"].get("max_new_tokens"))]
    gens += [(f"config.benchmarks.{b}.generation.max_new_tokens", s.get("generation", {}).get("max_new_tokens"))
             for b, s in config["benchmarks"].items()]
    for model, known in positions.items():
        if known is None:
            continue
        n, origin = known
        for at, value in gens:
            if isinstance(value, int) and value >= n:
                out.append(f"{at}: {value} new tokens leave no room for a prompt in model {model}'s {n} positions "
                           f"({origin}); allowed: at most {n - 1}")
    modules = {m: lora_modules(spec) for m, spec in config["models"].items()}
    for v in variants(config):
        if not v.method:
            continue
        s = v.settings
        known = positions[v.model]
        if known and isinstance(s.get("max_length"), int) and s["max_length"] > known[0]:
            out.append(f"{written_at(config, v.model, v.method, 'max_length')}: {s['max_length']} tokens exceed "
                       f"model {v.model}'s {known[0]} positions ({known[1]}); allowed: at most {known[0]}")
        found = modules[v.model]
        targets = (s.get("lora") or {}).get("target_modules")
        if found and workflow_setting(s, "peft") != "full" and isinstance(targets, list):
            names, origin = found
            leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
            missing = [t for t in targets if isinstance(t, str) and not _matches(t, names)]
            if missing:
                at = written_at(config, v.model, v.method, "lora", "target_modules")
                verb = "names" if len(missing) == 1 else "name"
                hint = _suggest(missing[0], leaves) if len(missing) == 1 else ""
                out.append(f"{at}: {', '.join(map(repr, missing))} {verb} no Linear/Embedding module of model "
                           f"{v.model} ({origin}){hint}; allowed: {_listing(leaves)}")
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------- capability tasks and hub ids


def _user_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "safealign"


def lm_eval_builtin_tasks() -> set[str]:
    """Every task, group and tag name of the installed lm-eval's own registry.

    Indexing the registry (``TaskManager()``) takes about 11 s, so the names are kept per lm-eval
    version in the user's cache (``~/.cache/safealign``) and indexed again only when lm-eval
    changes."""
    import importlib.metadata

    import lm_eval

    tasks_dir = Path(lm_eval.__file__).parent / "tasks"
    key = f"{importlib.metadata.version('lm_eval')}-{int(tasks_dir.stat().st_mtime)}"
    cache = _user_cache() / f"lm_eval_tasks-{key}.json"
    try:
        return set(json.loads(cache.read_text()))
    except (OSError, ValueError):
        pass
    from lm_eval.tasks import TaskManager

    names = sorted(TaskManager().all_tasks)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(names))
        tmp.replace(cache)
    except OSError:  # a read-only home: index again next time
        pass
    return set(names)


def _item_tasks(path: Path) -> set[str]:
    names = set()
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        try:
            row = json.loads(line) if line.strip() else None
        except ValueError:
            continue  # the capability job names a bad line with its number
        if isinstance(row, dict) and isinstance(row.get("task"), str):
            names.add(row["task"])
    return names


def capability_task_problems(config: dict[str, Any]) -> list[str]:
    """``capability.tasks`` names lm-eval cannot run: with a ``world`` source, the world's tasks;
    with a ``path`` source, the task names of its items (lm-eval runs only those,
    ``include_defaults=False``); without a source, lm-eval's own registry."""
    cap = config.get("capability") or {}
    tasks = [t for t in cap.get("tasks") or [] if isinstance(t, str)]
    source = cap.get("source") or {}
    if not tasks or "hub" in source:
        return []
    if "world" in source:
        from .world.data import WORLD_CAPABILITY_TASKS

        known, origin = set(WORLD_CAPABILITY_TASKS), "the tiny world's capability tasks"
    elif "path" in source:
        path = Path(str(source["path"])).expanduser()
        if not path.is_file():
            return []  # checks.check_local_paths names it
        known, origin = _item_tasks(path), f"the 'task' names in {source['path']}"
    else:
        try:
            import lm_eval  # noqa: F401
        except ImportError:
            return []  # the capability job runs in its own environment (envs/)
        known, origin = lm_eval_builtin_tasks(), "the installed lm-eval's task registry"
    out = []
    for i, task in enumerate(tasks):
        if task not in known:
            out.append(f"config.capability.tasks[{i}]: {task!r} is not a task of {origin}"
                       f"{_suggest(task, known)}; "
                       + (f"allowed: {_listing(sorted(known))}" if len(known) <= 40 else
                          "list them with `lm_eval --tasks list`"))
    return out


def _cached_revision(repo: str, revision: str | None, repo_type: str) -> bool:
    """Whether the local hub cache holds ``repo`` at ``revision`` (a commit, branch or tag)."""
    import huggingface_hub.constants as hub_constants
    from huggingface_hub.file_download import repo_folder_name

    folder = Path(hub_constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type=repo_type)
    if revision is None:
        return (folder / "snapshots").is_dir() and any((folder / "snapshots").iterdir())
    ref = folder / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    return (folder / "snapshots" / commit).is_dir()


def _datasets_cached(repo: str) -> bool:
    """Whether the datasets library's own cache holds a prepared copy of ``repo``."""
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    root = Path(os.environ.get("HF_DATASETS_CACHE") or Path(home) / "datasets")
    return (root / repo.replace("/", "___")).is_dir()


def offline(config: dict[str, Any]) -> bool:
    """Whether config.offline is true and the environment does not turn it off (an HF_HUB_OFFLINE
    already set wins, cli.export_offline)."""
    value = os.environ.get("HF_HUB_OFFLINE")
    env_online = value is not None and value.strip().lower() in ("0", "false", "no", "off", "")
    return bool(config["offline"]) and not env_online


def hub_problems(config: dict[str, Any]) -> list[str]:
    """Hub ids the hub client rejects, and, offline, hub models and datasets not in the local cache."""
    hub_refs = [(parts, ref) for parts, ref in _refs(config) if isinstance(ref.get("hub"), str)]
    if not hub_refs:
        return []  # importing the hub client costs about 0.3 s of every parse
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    out = []
    is_offline = offline(config)
    for parts, ref in hub_refs:
        repo = ref["hub"]
        at = dotted([*parts, "hub"])
        try:
            validate_repo_id(repo)
        except HFValidationError as exc:
            why = str(exc).split(" Use `repo_type`")[0].rstrip(".")
            out.append(f"{at}: {repo!r} is not a hub id the hub client accepts ({why}); "
                       "write it as <owner>/<name>, e.g. meta-llama/Llama-Guard-3-1B")
            continue
        if not is_offline:
            continue
        revision = ref.get("revision")
        is_model = parts[0] in ("models", "judges")
        if is_model:
            from huggingface_hub import try_to_load_from_cache

            try:
                found = isinstance(try_to_load_from_cache(repo, ref.get("gguf_file") or "config.json",
                                                          revision=revision), str)
            except Exception:  # noqa: BLE001 - an unreadable cache holds nothing we can use
                found = False
        else:
            found = _cached_revision(repo, revision, "dataset") or _datasets_cached(repo)
        if not found:
            kind = "model" if is_model else "dataset"
            flags = " --repo-type dataset" if not is_model else ""
            rev = f" --revision {revision}" if revision else ""
            out.append(f"{at}: the hub {kind} {repo!r}{f' at revision {revision}' if revision else ''} is not "
                       "in the local Hugging Face cache, and config.offline is true (the jobs read only the "
                       f"cache); download it first (`hf download {repo}{flags}{rev}`) or set "
                       "offline: false")
    return out


