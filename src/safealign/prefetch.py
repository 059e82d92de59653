"""Download every hub model and data set a config names, and lock each revision to its commit.

    python -m safealign.prefetch --configfile config/paper.yaml [OVERLAY.yaml ...] [--cache DIR]
                                 [--lock FILE] [--no-capability]

Run on a node with internet (the login node) before the workflow. It lists the hub references of
the merged config (:func:`hub_refs`: models, judges' models, preference, benchmark and capability
sources) and the data sets of the lm-eval tasks ``capability.tasks`` names (:func:`task_datasets`),
resolves each revision (``main``, a tag, a sha) to its commit through the hub API, and downloads:

- a model: ``huggingface_hub.snapshot_download`` at that commit (safetensors weights, config and
  tokenizer files: not ``*.bin``/``*.pth``/``original/`` copies, which safe loading never reads);
- a data set: ``datasets.load_dataset`` at that commit, with the config and split the workflow
  loads (lm-eval's: every split of the task's config), which fills the ``datasets`` cache that an
  offline ``load_dataset`` reads.

Everything goes to one cache: ``$HF_HOME`` (``--cache DIR`` sets it), read by every job that
inherits the same ``HF_HOME``. The hub token is huggingface_hub's own (``HF_TOKEN`` or
``hf auth login``); gated repositories need it and an accepted licence.

The lock file (``config.hub_lock``, or ``--lock``) maps ``kind -> repo id -> requested revision ->
commit``. With ``hub_lock`` set, the workflow replaces every hub reference's revision by its locked
commit when it parses the config (:func:`apply_lock`, called by
:func:`safealign.configload.load_config`), so the jobs' params, the loaders and the provenance all
carry the commit. lm-eval loads its data sets without a revision: their commits are recorded in
the lock (section ``lm_eval``) but not enforced.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Repository files a model download skips: the workflow loads safetensors weights only
# (safealign.models, vLLM load_format safetensors); Meta's repositories keep a second copy of the
# weights under original/.
MODEL_IGNORE = ("*.bin", "*.pth", "*.pt", "*.msgpack", "*.h5", "*.onnx", "*.gguf", "original/*")
LOCK_KINDS = ("model", "dataset", "lm_eval")


@dataclass(frozen=True)
class HubRef:
    """One hub reference of a config: where it is written, what it names."""

    key: str  # the config key path, e.g. config.judges.llama_guard.model
    kind: str  # "model" or "dataset" (a config's refs) or "lm_eval" (a task's data set)
    repo_id: str
    revision: str | None
    config_name: str | None = None  # a data set's config (datasets' `name`)
    split: str | None = None
    gguf_file: str | None = None


def hub_refs(config: dict[str, Any]) -> list[HubRef]:
    """Every ``hub:`` reference of a config, in config order (models and judges' models are
    models; preference, benchmark and capability sources are data sets)."""
    from .configload import _refs, dotted

    out = []
    for parts, ref in _refs(config):
        if "hub" not in ref:
            continue
        kind = "model" if parts[0] in ("models", "judges") else "dataset"
        out.append(HubRef(dotted(parts), kind, str(ref["hub"]), ref.get("revision"), ref.get("config"),
                          ref.get("split"), ref.get("gguf_file")))
    return out


def task_datasets(tasks: list[str]) -> list[HubRef]:
    """The hub data sets (``dataset_path``, ``dataset_name``) of lm-eval's leaf tasks for
    ``tasks`` (groups and tags expanded through lm-eval's task index), one per pair."""
    from lm_eval.tasks import TaskManager

    from .capability.taskcode import leaf_tasks

    index = TaskManager().task_index
    seen: dict[tuple[str, str | None], HubRef] = {}
    for name in leaf_tasks(list(tasks), index):
        cfg = index[name].cfg or {}
        path = cfg.get("dataset_path")
        if not path or Path(str(path)).exists() or str(path).count("/") != 1:
            continue  # a local or a builder-script data set: nothing on the hub to fetch
        pair = (str(path), cfg.get("dataset_name"))
        seen.setdefault(pair, HubRef(f"lm-eval task {name}", "lm_eval", pair[0], None, pair[1]))
    return list(seen.values())


# ---------------------------------------------------------------- the lock file


def read_lock(path: str | Path) -> dict[str, dict[str, dict[str, str]]]:
    """The lock file: ``{kind: {repo id: {requested revision: commit}}}``; ValueError naming the
    file when it has another shape."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    ok = isinstance(data, dict) and all(
        k in LOCK_KINDS and isinstance(v, dict)
        and all(isinstance(revs, dict) and all(isinstance(c, str) for c in revs.values()) for revs in v.values())
        for k, v in data.items())
    if not ok:
        raise ValueError(f"{path}: not a hub lock file (expected {{{' / '.join(LOCK_KINDS)}: "
                         "{repo id: {revision: commit sha}}}); rewrite it with python -m safealign.prefetch")
    return data


def write_lock(lock: dict[str, dict[str, dict[str, str]]], path: str | Path, command: str) -> None:
    """Write ``lock`` atomically (temp file, then rename), keeping entries of an earlier lock at
    ``path`` that this one does not name (several configs may share one lock file)."""
    path = Path(path)
    merged: dict[str, dict[str, dict[str, str]]] = read_lock(path) if path.exists() else {}
    for kind, repos in lock.items():
        for repo, revs in repos.items():
            merged.setdefault(kind, {}).setdefault(repo, {}).update(revs)
    ordered = {k: {r: dict(sorted(merged[k][r].items())) for r in sorted(merged[k])}
               for k in LOCK_KINDS if merged.get(k)}
    head = (f"# Hub commits, written by: {command}\n"
            "# kind -> repo id -> requested revision -> commit. Read when config.hub_lock names this file:\n"
            "# every hub reference's revision is replaced by its commit (src/safealign/prefetch.py).\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(head + yaml.safe_dump(ordered, sort_keys=False), encoding="utf-8")
    tmp.replace(path)


def apply_lock(config: dict[str, Any]) -> list[str]:
    """Replace, in place, each hub reference's revision by its commit from ``config.hub_lock``.

    Returns one problem line per thing that stops an offline run: with ``offline: true``, a lock
    file that does not exist or a reference it does not name (run the prefetch). Online, those
    references keep their revision (and :func:`safealign.checks.unpinned` warns)."""
    path = config.get("hub_lock")
    if not path:
        return []
    fix = "run `python -m safealign.prefetch --configfile <the same config files>` on a node with internet"
    if not Path(path).exists():
        return [f"config.hub_lock: {path} does not exist; {fix}"] if config.get("offline") else []
    try:
        lock = read_lock(path)
    except (ValueError, yaml.YAMLError) as exc:
        return [f"config.hub_lock: {exc}"]
    out = []
    for ref in hub_refs(config):
        commit = lock.get(ref.kind, {}).get(ref.repo_id, {}).get(str(ref.revision))
        if commit:
            _ref_at(config, ref.key)["revision"] = commit
        elif config.get("offline"):
            out.append(f"{ref.key}: {ref.repo_id}@{ref.revision} is not in the lock file {path} "
                       f"(config.hub_lock), so offline it may not be in the cache; {fix}")
    return out


def _ref_at(config: dict[str, Any], key: str) -> dict[str, Any]:
    node: Any = config
    for part in key.removeprefix("config.").split("."):
        node = node[part]
    return node


# ---------------------------------------------------------------- resolving and downloading


def resolve(ref: HubRef) -> str:
    """The commit sha of ``ref``'s revision (``main`` when unset), from the hub API."""
    from huggingface_hub import HfApi

    api = HfApi()
    if ref.kind == "model":
        return api.model_info(ref.repo_id, revision=ref.revision).sha
    return api.dataset_info(ref.repo_id, revision=ref.revision).sha


def download(ref: HubRef, commit: str) -> None:
    """Put ``ref`` at ``commit`` into the cache the jobs read ($HF_HOME)."""
    if ref.kind == "model":
        from huggingface_hub import snapshot_download

        ignore = [p for p in MODEL_IGNORE if not (ref.gguf_file and p == "*.gguf")]
        snapshot_download(ref.repo_id, revision=commit, ignore_patterns=ignore)
        return
    import datasets

    split = ref.split if ref.kind == "dataset" else None
    datasets.load_dataset(ref.repo_id, ref.config_name, revision=commit, split=split)


def _why(exc: Exception) -> str:
    """An error's text, with the fix for a gated or private repository."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, GatedRepoError):
            return (f"gated: accept its licence on the hub page and log in (`hf auth login`, or "
                    f"HF_TOKEN in the environment) ({type(cause).__name__})")
        if isinstance(cause, RepositoryNotFoundError):
            return f"not found, or private without a token ({type(cause).__name__})"
        cause = cause.__cause__
    return f"{type(exc).__name__}: {exc}"


def prefetch(refs: list[HubRef], log: Any = print) -> tuple[dict[str, dict[str, dict[str, str]]], list[str]]:
    """Resolve and download each distinct reference; (the lock of those that worked, one problem
    line per one that did not). A failure does not stop the others."""
    lock: dict[str, dict[str, dict[str, str]]] = {}
    problems: list[str] = []
    done: set[tuple[str, str, str | None, str | None, str | None]] = set()
    for ref in refs:
        ident = (ref.kind, ref.repo_id, ref.revision, ref.config_name, ref.split)
        if ident in done:
            continue
        done.add(ident)
        where = f"{ref.repo_id}@{ref.revision or 'main'}" + (f" ({ref.config_name})" if ref.config_name else "")
        try:
            commit = resolve(ref)
            log(f"prefetch: {ref.kind} {where} -> {commit} ({ref.key})")
            download(ref, commit)
        except Exception as exc:  # one line per failure; the others still run
            problems.append(f"{ref.key}: {ref.kind} {where}: {_why(exc)}")
            continue
        lock.setdefault(ref.kind, {}).setdefault(ref.repo_id, {})[str(ref.revision or "main")] = commit
    return lock, problems


def load(configfiles: list[str]) -> dict[str, Any]:
    """The config Snakemake would merge from ``configfiles`` (later files update earlier ones),
    checked by :func:`safealign.configload.load_config` without applying a lock."""
    from snakemake.utils import update_config

    from .configload import load_config

    config: dict[str, Any] = {}
    for f in configfiles:
        update_config(config, yaml.safe_load(Path(f).read_text(encoding="utf-8")) or {})
    return load_config(config, configfiles, lock=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m safealign.prefetch", description=__doc__.split("\n\n")[0])
    ap.add_argument("--configfile", nargs="+", required=True, help="the config files the run is given, in order")
    ap.add_argument("--cache", help="the hub cache (sets HF_HOME; default: $HF_HOME or ~/.cache/huggingface)")
    ap.add_argument("--lock", help="the lock file to write (default: config.hub_lock)")
    ap.add_argument("--no-capability", action="store_true", help="skip the data sets of lm-eval's tasks")
    args = ap.parse_args(argv)
    if args.cache:
        # Before huggingface_hub / datasets are imported: both read HF_HOME once, at import.
        os.environ["HF_HOME"] = str(Path(args.cache).resolve())
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(key, "0") not in ("0", "", "false", "False"):
            ap.error(f"{key}={os.environ[key]} is set: the prefetch needs the hub (unset it)")
    config = load(args.configfile)
    lock_path = args.lock or config.get("hub_lock")
    if not lock_path:
        ap.error("no lock file: set hub_lock in the config (e.g. config/hub.lock.yaml) or pass --lock FILE")
    refs = hub_refs(config)
    if not args.no_capability and config.get("capability", {}).get("tasks") and "source" not in config["capability"]:
        refs += task_datasets(config["capability"]["tasks"])
    lock, problems = prefetch(refs)
    command = "python -m safealign.prefetch --configfile " + " ".join(args.configfile)
    write_lock(lock, lock_path, command)
    cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
    print(f"prefetch: {sum(len(r) for k in lock.values() for r in k.values())} commits locked in "
          f"{lock_path}; cache {cache} (export HF_HOME={cache} for the run)")
    if problems:
        print(f"prefetch: {len(problems)} not fetched:\n" + "\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
