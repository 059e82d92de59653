"""Capability evaluation through lm-evaluation-harness.

Two kinds of task go through the one function :func:`evaluate`:

- the tiny world's math/QA items, written as lm-eval task YAMLs by :func:`write_world_tasks` and
  loaded with ``TaskManager(include_path=..., include_defaults=False)`` (indexing lm-eval's
  ~15k built-in tasks costs ~15 s per call, so it is skipped when it is not needed);
- the paper's tasks (``gsm8k``, the Open LLM Leaderboard v2 group ``leaderboard``), which are
  lm-eval built-ins: ``include_path=None`` loads the defaults.

The Python API (``lm_eval.simple_evaluate``) is used rather than the CLI for the same indexing
reason. :func:`eval_arguments` builds every argument without touching a model or a task, so the
arguments for the paper's tasks can be checked where they cannot be run.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from ..cli import freeze_heap, parser, setup
from ..io import provenance, read_jsonl, sha256_file, sha256_text, write_json, write_jsonl, write_text
from ..models import ADAPTER_WEIGHTS, SAFE_LOADING, ModelRef, check_safetensors, describe, resolve_ref, resolve_trained
from ..specs import CapabilitySpec
from .taskcode import check_nltk_data, import_task_code

# The last number in a generation ("The answer is 7." -> "7") and the last word ("It is yellow."
# -> "yellow"). ``group_select: -1`` picks the last match.
NUMBER_PATTERN = r"(-?\d+(?:\.\d+)?)"
WORD_PATTERN = r"([A-Za-z]+(?:['-][A-Za-z]+)*)"
_NUMBER = re.compile(rf"^{NUMBER_PATTERN}$")
_WORD = re.compile(rf"^{WORD_PATTERN}$")
FILTER_NAME = "extract"

# Which metric stands for a task when lm-eval reports several (paper tasks). A task not listed
# falls back to its first reported metric; world tasks report exactly one.
PRIMARY_METRICS: dict[str, str] = {
    "gsm8k": "exact_match,flexible-extract",
    "leaderboard_mmlu_pro": "acc,none",
    "leaderboard_bbh": "acc_norm,none",
    "leaderboard_gpqa": "acc_norm,none",
    "leaderboard_math_hard": "exact_match,none",
    "leaderboard_ifeval": "prompt_level_strict_acc,none",
    "leaderboard_musr": "acc_norm,none",
}


def _extractor(task: str, answers: list[str]) -> tuple[str, str]:
    """Pick the regex that extracts a gold-comparable answer from a generation."""
    if all(_NUMBER.match(a) for a in answers):
        return "number", NUMBER_PATTERN
    if all(_WORD.match(a) for a in answers):
        return "word", WORD_PATTERN
    bad = next(a for a in answers if not _WORD.match(a))
    raise ValueError(
        f"capability task {task!r}: answers must be all numbers or all single words "
        f"(the extraction regex takes the last number / last word), got {bad!r}"
    )


def task_config(task: str, data_file: Path, kind: str, pattern: str) -> dict[str, Any]:
    """The lm-eval task config for one world task whose items are in ``data_file``."""
    return {
        "task": task,
        "dataset_path": "json",
        # lm-eval resolves data_files against the working directory, not the YAML: absolute.
        "dataset_kwargs": {"data_files": {"test": str(Path(data_file).resolve())}},
        "output_type": "generate_until",
        "test_split": "test",
        # Few-shot examples, if asked for, come from the other items (lm-eval drops the doc itself).
        "fewshot_split": "test",
        "doc_to_text": "{{question}}",
        "doc_to_target": "{{answer}}",
        # lm-eval adds the tokenizer's EOS to ``until``; max_gen_toks comes from evaluate().
        "generation_kwargs": {"until": ["\n\n"], "do_sample": False},
        "filter_list": [
            {
                "name": FILTER_NAME,
                "filter": [
                    {"function": "regex", "regex_pattern": pattern, "group_select": -1},
                    {"function": "take_first"},
                ],
            }
        ],
        "metric_list": [
            {"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
             "ignore_case": True, "ignore_punctuation": False}
        ],
        "metadata": {"version": 1.0, "extract": kind},
    }


def write_world_tasks(items_jsonl: Path, out_dir: Path) -> list[str]:
    """Write one lm-eval task (``<task>.yaml`` + ``<task>.jsonl``) per ``task`` in the items.

    Items are ``{"id", "task", "question", "answer"}`` rows. Answers are written as strings and
    must be all numbers or all single words per task. Returns the task names, sorted.
    """
    items = read_jsonl(items_jsonl)
    if not items:
        raise ValueError(f"capability items file {items_jsonl} is empty")
    by_task: dict[str, list[dict[str, str]]] = defaultdict(list)
    for i, item in enumerate(items):
        missing = {"id", "task", "question", "answer"} - set(item)
        if missing:
            raise ValueError(f"{items_jsonl} line {i + 1} lacks {sorted(missing)}")
        by_task[item["task"]].append(
            {"id": str(item["id"]), "question": str(item["question"]), "answer": str(item["answer"]).strip()}
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for task, rows in sorted(by_task.items()):
        if not re.fullmatch(r"[A-Za-z0-9_]+", task):
            raise ValueError(f"capability task name must be [A-Za-z0-9_]+, got {task!r}")
        kind, pattern = _extractor(task, [r["answer"] for r in rows])
        data_file = out_dir / f"{task}.jsonl"
        write_jsonl(data_file, rows)
        cfg = task_config(task, data_file, kind, pattern)
        # Write the YAML last so that a task file always points at complete data.
        write_text(out_dir / f"{task}.yaml", yaml.safe_dump(cfg, sort_keys=False))
    return sorted(by_task)


def model_args(ref: ModelRef, adapter: str | None, dtype: str) -> dict[str, Any]:
    """lm-eval ``hf`` model_args for a model reference (+ optional PEFT adapter)."""
    ref, adapter = resolve_trained(ref, adapter)
    name, kwargs = resolve_ref(ref)
    # HFLM passes trust_remote_code and extra model_args on to from_pretrained: the same safe
    # loading as models.load_model (no repository code, safetensors only).
    args: dict[str, Any] = {"pretrained": name, "dtype": dtype, **SAFE_LOADING}
    if "revision" in kwargs:
        args["revision"] = kwargs["revision"]
    if "gguf_file" in kwargs:
        args["gguf_file"] = kwargs["gguf_file"]
    else:
        args["use_safetensors"] = True
    if adapter:
        check_safetensors(adapter, "LoRA adapter directory", ADAPTER_WEIGHTS)
        args["peft"] = str(Path(adapter).resolve()) if Path(adapter).exists() else str(adapter)
    return args


def eval_arguments(
    model_ref: ModelRef,
    adapter: str | None,
    tasks: list[str],
    include_path: str | None,
    num_fewshot: int | None,
    limit: int | None,
    batch_size: int,
    apply_chat_template: bool,
    max_gen_toks: int | None,
    device: str = "cpu",
    dtype: str | None = None,
) -> dict[str, Any]:
    """Every argument of the evaluation, as plain data: ``task_manager`` (TaskManager kwargs) and
    ``simple_evaluate`` (its kwargs, less ``task_manager``).

    Built-in tasks are indexed only when ``include_path`` is None. ``max_gen_toks=None`` keeps each
    task's own generation length (the paper's tasks set theirs); otherwise it overrides it.
    """
    if not tasks:
        raise ValueError("capability evaluation needs at least one task")
    if batch_size < 1:
        raise ValueError(f"capability batch_size must be >= 1, got {batch_size}")
    if max_gen_toks is not None and max_gen_toks < 1:
        raise ValueError(f"capability max_gen_toks must be >= 1, got {max_gen_toks}")
    dtype = dtype or ("float32" if device == "cpu" else "bfloat16")
    gen_kwargs = {"max_gen_toks": int(max_gen_toks)} if max_gen_toks is not None else None
    return {
        "task_manager": {
            "include_path": str(Path(include_path).resolve()) if include_path else None,
            "include_defaults": include_path is None,
        },
        "simple_evaluate": {
            "model": "hf",
            "model_args": model_args(model_ref, adapter, dtype),
            "tasks": list(tasks),
            "num_fewshot": num_fewshot,
            "limit": limit,
            "batch_size": int(batch_size),
            "device": device,
            "apply_chat_template": bool(apply_chat_template),
            "gen_kwargs": gen_kwargs,
            "log_samples": False,
        },
    }


@contextlib.contextmanager
def _no_git_describe() -> Iterator[None]:
    """lm-eval runs ``git describe`` in the working directory to stamp results; that says nothing
    about this evaluation (provenance comes from :func:`describe`), so it is skipped."""
    import lm_eval.evaluator as ev

    saved = ev.get_git_commit_hash
    ev.get_git_commit_hash = lambda: None
    try:
        yield
    finally:
        ev.get_git_commit_hash = saved


def _float_or_none(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _config_hash(cfg: dict[str, Any]) -> str:
    """SHA-256 of a task config as run, with local data files replaced by their content hash and
    lm-eval's ``metadata.config_source`` (the YAML's path) dropped, so the hash is the same
    wherever the files lie."""
    cfg = copy.deepcopy(cfg)
    if isinstance(cfg.get("metadata"), dict):
        cfg["metadata"].pop("config_source", None)
    files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    if isinstance(files, dict):
        cfg["dataset_kwargs"]["data_files"] = {
            split: f"sha256:{sha256_file(p)}" if isinstance(p, str) and Path(p).is_file() else p
            for split, p in files.items()
        }
    return sha256_text(json.dumps(cfg, sort_keys=True, default=str))


def _leaves(name: str, group_subtasks: dict[str, list[str]]) -> list[str]:
    subs = group_subtasks.get(name)
    if not subs:
        return [name]
    return [leaf for s in subs for leaf in _leaves(s, group_subtasks)]


def tidy(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{task: {"metric", "value", "stderr", "n"}}`` for every task and group lm-eval reports."""
    out: dict[str, dict[str, Any]] = {}
    n_samples = results.get("n-samples", {})
    groups = results.get("group_subtasks", {})
    for task, metrics in {**results.get("results", {}), **results.get("groups", {})}.items():
        keys = [k for k in metrics if "," in k and not k.split(",")[0].endswith("_stderr")]
        if not keys:
            continue
        key = PRIMARY_METRICS.get(task)
        if key not in keys:
            key = keys[0]
        value = _float_or_none(metrics[key])
        if value is None:
            continue
        metric, filt = key.split(",", 1)
        n = sum(int(n_samples.get(leaf, {}).get("effective", 0)) for leaf in _leaves(task, groups))
        out[task] = {
            "metric": key,
            "value": value,
            "stderr": _float_or_none(metrics.get(f"{metric}_stderr,{filt}")),
            "n": n,
        }
    return out


def evaluate(
    model_ref: ModelRef,
    adapter: str | None,
    tasks: list[str],
    include_path: str | None,
    num_fewshot: int | None,
    limit: int | None,
    batch_size: int,
    apply_chat_template: bool,
    max_gen_toks: int | None,
    device: str = "cpu",
    dtype: str | None = None,
    nltk_data: str | None = None,
) -> dict[str, Any]:
    """Run lm-eval on ``tasks`` and return the capability output, ``{"scores": {task: {"metric",
    "value", "stderr", "n"}}, "provenance": {...}}`` (lm_eval version, per-task config hashes and
    n-shot, model ref, settings).

    ``metric`` is lm-eval's ``"<metric>,<filter>"`` key; ``value`` is in [0, 1] for accuracy-like
    metrics; ``n`` counts the documents scored (after ``limit``).
    """
    import lm_eval
    from lm_eval.tasks import TaskManager

    freeze_heap()  # lm-eval loads the model itself (not through models.load_model)
    args = eval_arguments(model_ref, adapter, tasks, include_path, num_fewshot, limit, batch_size,
                          apply_chat_template, max_gen_toks, device, dtype)
    task_manager = TaskManager(**args["task_manager"])
    if include_path is None:
        # Fail before lm-eval loads the model: the built-in tasks' own code and the NLTK data it
        # reads (nltk_data first on NLTK's path, so IFEval's import finds it and downloads nothing).
        if nltk_data:
            import nltk

            nltk.data.path.insert(0, str(Path(nltk_data).resolve()))
        import_task_code(tasks, task_manager)
        check_nltk_data()
    with _no_git_describe():
        results = lm_eval.simple_evaluate(task_manager=task_manager, **args["simple_evaluate"])
    if results is None:  # only non-zero ranks return None; this runs single-process
        raise RuntimeError("lm_eval.simple_evaluate returned no results")
    scores = tidy(results)
    missing = [t for t in tasks if t not in scores]
    if missing:
        raise RuntimeError(f"lm-eval reported no metric for tasks {missing}; got {sorted(scores)}")
    configs = results.get("configs", {})
    out: dict[str, Any] = {"scores": scores}
    out["provenance"] = provenance(
        lm_eval=lm_eval.__version__,
        task_config_sha256={t: _config_hash(c) for t, c in sorted(configs.items())},
        task_versions=results.get("versions", {}),
        n_shot=results.get("n-shot", {}),
        model=describe(model_ref, adapter),
        num_fewshot=num_fewshot,
        limit=limit,
        apply_chat_template=bool(apply_chat_template),
        # lm-eval renders with the tokenizer of model_args' `pretrained`, the one loaded here.
        chat_template_sha256=_chat_template_sha256(model_ref) if apply_chat_template else None,
        max_gen_toks=max_gen_toks,
        dtype=args["simple_evaluate"]["model_args"]["dtype"],
        include_defaults=args["task_manager"]["include_defaults"],
    )
    return out


def _chat_template_sha256(model_ref: ModelRef) -> str:
    from ..chat import template_hash
    from ..models import load_tokenizer

    return template_hash(load_tokenizer(model_ref))


def main(argv: list[str] | None = None) -> None:
    ap = parser(__doc__)
    ap.add_argument("--model-ref", required=True, help="model reference as JSON")
    ap.add_argument("--adapter", default=None, help="PEFT adapter directory")
    ap.add_argument("--items", default=None,
                    help="world capability items (JSON lines); without it, params.tasks name "
                         "lm-eval built-ins")
    ap.add_argument("--tasks-dir", default=None,
                    help="where to write the world task YAMLs (default: <out>.tasks/)")
    ap.add_argument("--nltk-data", default=None,
                    help="NLTK data directory (the nltk_data rule's output) for tasks that read it")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)

    params = setup(a)  # the stages' one setup: logging, offline (params: tasks, num_fewshot, ...)
    ref = json.loads(a.model_ref)
    spec = CapabilitySpec.from_params(params)
    if a.items:
        tasks_dir = Path(a.tasks_dir) if a.tasks_dir else Path(f"{a.out}.tasks")
        world_tasks = write_world_tasks(Path(a.items), tasks_dir)
        tasks, include_path = spec.tasks or world_tasks, str(tasks_dir)
    else:
        if not spec.tasks:
            raise ValueError("params.tasks must name lm-eval tasks when --items is not given")
        tasks, include_path = spec.tasks, None
    result = evaluate(
        ref,
        a.adapter or None,
        tasks,
        include_path,
        spec.num_fewshot,
        spec.limit,
        int(spec.batch_size),
        bool(spec.apply_chat_template),
        spec.max_gen_toks,
        device=spec.device,
        dtype=spec.dtype,
        nltk_data=a.nltk_data,
    )
    write_json(a.out, result)


if __name__ == "__main__":
    main()
