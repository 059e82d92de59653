"""The Python code of lm-eval's built-in tasks, imported before any model is loaded.

lm-eval loads the model first and the tasks' code (the ``utils.py`` beside each task YAML, named
by ``!function utils.<name>``) after it, so a task whose code needs a package the env lacks (the
Open LLM Leaderboard's IFEval and MATH need lm-eval's ``ifeval`` and ``math`` extras) fails only
once the model is in memory. :func:`import_task_code` expands the task names the way lm-eval's
TaskManager indexes them (groups, tags) and imports every leaf task's code, so such a job fails
in seconds, naming the task and the missing module; :func:`check_nltk_data` does the same for the
NLTK tokenizer data that IFEval reads (and would otherwise try to download on a compute node).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# The NLTK data packages lm-eval's task code reads, by the module that reads them: IFEval's
# instruction checks tokenize sentences and words with Punkt (``punkt_tab``; the pickled
# ``punkt`` it names is served from ``punkt_tab`` by nltk >= 3.9).
NLTK_DATA: dict[str, tuple[str, ...]] = {
    "lm_eval.tasks.ifeval.instructions_util": ("punkt_tab",),
    "lm_eval.tasks.leaderboard.ifeval.instructions_util": ("punkt_tab",),
}
# The task names (groups included) whose code imports one of those modules; the workflow adds the
# NLTK data rule's output to a capability job's inputs when its tasks name one
# (tests/test_capability_tasks.py checks this list against lm-eval's own index).
NLTK_TASKS: tuple[str, ...] = ("leaderboard", "leaderboard_ifeval", "ifeval")


def nltk_packages(tasks: list[str]) -> list[str]:
    """The NLTK data packages the named tasks need (from :data:`NLTK_TASKS`), sorted."""
    if any(t in NLTK_TASKS for t in tasks):
        return sorted({p for ps in NLTK_DATA.values() for p in ps})
    return []


def leaf_tasks(tasks: list[str], index: dict[str, Any]) -> dict[str, Path | None]:
    """``{leaf task: its YAML}`` for ``tasks``, groups and tags expanded through lm-eval's
    TaskManager index (``TaskManager.task_index``). Raises KeyError naming an unknown task."""
    from lm_eval.tasks._index import Kind

    out: dict[str, Path | None] = {}

    def visit(name: str, via: str) -> None:
        entry = index.get(name)
        if entry is None:
            raise KeyError(f"lm-eval has no task, group or tag {name!r} (from {via})")
        if entry.kind == Kind.GROUP:
            members = (entry.cfg or {}).get("task") or []
            for m in members if isinstance(members, list) else [members]:
                visit(m if isinstance(m, str) else (m.get("task") or m.get("group")), name)
        elif entry.kind == Kind.TAG:
            for m in sorted(entry.tags):
                visit(m, name)
        else:
            out[name] = entry.yaml_path

    for t in tasks:
        visit(t, "capability.tasks")
    return out


def _functions(cfg: Any) -> set[str]:
    if callable(cfg) and hasattr(cfg, "__module__"):
        return {cfg.__module__}
    if isinstance(cfg, dict):
        return set().union(*(_functions(v) for v in cfg.values()))
    if isinstance(cfg, list):
        return set().union(*(_functions(v) for v in cfg))
    return set()


def import_task_code(tasks: list[str], task_manager: Any = None) -> dict[str, list[str]]:
    """Import the code of every leaf task of ``tasks`` (lm-eval's built-ins unless a TaskManager
    is given) and return ``{leaf task: [modules its YAML's functions come from]}``.

    Reads YAML and imports Python only: no data set or model is touched. An import that fails
    raises ImportError naming the task, its YAML and the missing module.
    """
    from lm_eval.tasks import TaskManager
    from lm_eval.tasks._yaml_loader import load_yaml

    tm = task_manager or TaskManager()
    out: dict[str, list[str]] = {}
    for task, yaml_path in sorted(leaf_tasks(list(tasks), tm.task_index).items()):
        if yaml_path is None:  # a Python-defined task: its code is lm-eval's own, imported already
            out[task] = []
            continue
        try:
            cfg = load_yaml(yaml_path, resolve_func=True)
        except ImportError as e:
            missing = getattr(e.__cause__, "name", None) or getattr(e, "name", None)
            raise ImportError(
                f"lm-eval task {task!r} ({yaml_path}): its code cannot be imported, module "
                f"{missing!r} is missing ({e.__cause__ or e}); envs/eval.yaml must install it "
                f"(lm-eval's task extras, e.g. lm-eval[ifeval,math])"
            ) from e
        out[task] = sorted(_functions(cfg))
    return out


def check_nltk_data(data_dir: str | None = None) -> list[str]:
    """Raise LookupError unless the NLTK data that the imported task code reads (modules of
    :data:`NLTK_DATA` in ``sys.modules``) is found, in ``data_dir`` first if given; return the
    packages checked."""
    import nltk

    if data_dir:
        nltk.data.path.insert(0, str(data_dir))
    needed = sorted({p for m, ps in NLTK_DATA.items() if m in sys.modules for p in ps})
    for pkg in needed:
        try:
            nltk.data.find(f"tokenizers/{pkg}")
        except LookupError as e:
            raise LookupError(
                f"NLTK data {pkg!r} not found (searched {nltk.data.path}); the workflow's nltk_data "
                f"rule downloads it, or run `python -m nltk.downloader -d DIR {pkg}` and set NLTK_DATA=DIR"
            ) from e
    return needed


def download_nltk_data(packages: list[str], out: Path) -> None:
    """Download NLTK data ``packages`` into ``out`` (a directory written whole or not at all)."""
    import shutil
    import tempfile

    import nltk

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for pkg in packages:
            if not nltk.download(pkg, download_dir=str(tmp), quiet=True, raise_on_error=True):
                raise RuntimeError(f"NLTK data {pkg!r} could not be downloaded into {tmp}")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description="Download the NLTK data lm-eval's task code reads.")
    ap.add_argument("--out", required=True, help="directory to write (NLTK_DATA layout)")
    ap.add_argument("packages", nargs="+", help="NLTK data packages, e.g. punkt_tab")
    a = ap.parse_args(argv)
    download_nltk_data(a.packages, Path(a.out))


if __name__ == "__main__":
    main()
