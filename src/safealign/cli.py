"""The one command-line convention of every stage a rule runs, and its shared setup.

    python -m safealign.<stage> [STEP] --params JSON <files...> [--gpus N]

``--params`` is the rule's config slice (canonical JSON, safealign.dag); ``STEP`` names the step of
a stage that has several (``world data|base|judge|toxicity``, ``judge run|validate``,
``train.run ref-logps|train``); ``--gpus`` is there where the stage runs a model. A stage builds
its parser with :func:`parser` or :func:`steps` and calls :func:`setup` first.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

# Stage docstrings show their usage lines as written.
RAW = argparse.RawDescriptionHelpFormatter


def _stage_arguments(p: argparse.ArgumentParser, gpus: bool) -> argparse.ArgumentParser:
    p.add_argument("--params", required=True, help="the rule's config slice, as canonical JSON")
    if gpus:
        add_gpus_argument(p)
    return p


def parser(description: str, gpus: bool = False) -> argparse.ArgumentParser:
    """A one-step stage's parser: ``--params`` (and ``--gpus`` where it runs a model)."""
    return _stage_arguments(argparse.ArgumentParser(description=description, formatter_class=RAW), gpus)


def steps(description: str) -> tuple[argparse.ArgumentParser, Callable[..., argparse.ArgumentParser]]:
    """A stage of several steps: the parser (the step lands in ``args.step``) and ``add(name,
    help, gpus=False)``, which adds one step's parser with ``--params`` (and ``--gpus``)."""
    p = argparse.ArgumentParser(description=description, formatter_class=RAW)
    sub = p.add_subparsers(dest="step", required=True, metavar="STEP")

    def add(name: str, help: str, gpus: bool = False) -> argparse.ArgumentParser:
        return _stage_arguments(sub.add_parser(name, help=help, description=help, formatter_class=RAW), gpus)

    return p, add


# The GPUs of the job (a rule's resources gpu, passed as --gpus): models.job_gpus reads it, so a
# model spreads over them (transformers device_map="auto", vLLM tensor parallelism).
JOB_GPUS_ENV = "SAFEALIGN_JOB_GPUS"


def add_gpus_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gpus", type=int, default=None,
                   help="GPUs of this job (the rule's resources gpu); more than 1 spreads the work over them")


# Where the hub client reads a token from the environment; its value must never reach a log.
TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


class RedactSecrets(logging.Filter):
    """Replace the environment's hub token(s) in every record a handler emits with ``***``."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = [v for v in (os.environ.get(k) for k in TOKEN_ENV) if v and len(v) >= 8]
        if secrets:
            text = record.getMessage()
            if any(s in text for s in secrets):
                for s in secrets:
                    text = text.replace(s, "***")
                record.msg, record.args = text, ()
        return True


def redact_logs() -> None:
    """Install :class:`RedactSecrets` on the root logger's handlers (once)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())


# The hub clients' offline switches. The workflow exports them from config.offline to every job
# (export_offline: not in params, going offline changes no result); a stage run by hand without
# them stays offline.
OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def export_offline(offline: bool) -> None:
    """Set :data:`OFFLINE_ENV` to ``1`` (``offline``) or ``0`` unless the environment already sets
    them (called by rules/common.smk at parse time; jobs inherit the environment, Slurm jobs
    re-parse the workflow). Not in any params or shell command: toggling it reruns nothing."""
    for key in OFFLINE_ENV:
        os.environ.setdefault(key, "1" if offline else "0")


def gpu_present() -> bool:
    """Whether this host has an NVIDIA GPU (its device nodes; no CUDA call, no torch import)."""
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl")


# glibc's malloc hands freed memory back to the kernel as soon as the heap's free top passes its
# trim threshold (64 MiB once its dynamic mmap threshold settles at 32 MiB). A CPU training step
# frees and reallocates a few hundred MB of activations, so every step faulted the same pages in
# again: system time was a quarter of the tiny grid's job CPU (123 of 489 s). Keeping up to 1 GiB
# of freed heap took one epoch of the Llama-Guard-format judge from 46 s to 33 s with the same
# weights byte for byte and the same peak RSS (the mmap threshold stays at glibc's own 32 MiB
# ceiling: raising it too grew peak RSS by 70 %). PyTorch's CPU allocator is plain malloc and no
# library sets these, hence mallopt by hand. Not on GPU hosts (host memory there holds checkpoints
# on their way to the GPU), and never over the user's own MALLOC_*_ / GLIBC_TUNABLES settings.
MALLOPT = {-3: 32 << 20, -1: 1 << 30, -2: 64 << 20}  # M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, M_TOP_PAD


def tune_malloc() -> bool:
    """Apply :data:`MALLOPT` to this process (glibc on Linux, no GPU, not set by the user); True if
    it did."""
    if not sys.platform.startswith("linux") or gpu_present():
        return False
    if "GLIBC_TUNABLES" in os.environ or any(k.startswith("MALLOC_") and k.endswith("_") for k in os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return all(mallopt(param, value) == 1 for param, value in MALLOPT.items())


_HEAP_FROZEN: list[bool] = []


def freeze_heap() -> bool:
    """Exempt every object alive now from the cyclic garbage collector, once per process
    (``gc.freeze``); True the first time.

    Called where a model job has imported its libraries (:func:`safealign.models.load_model`, the
    lm-eval stage): torch, transformers, TRL and datasets leave about 460,000 tracked objects, which
    every full collection scans again (0.24 s each on 2 cores; accelerate forces one per trainer and
    Python runs more as a job allocates). They live as long as the job, so nothing is lost: objects
    made afterwards are collected as before, and reference counting frees frozen objects as usual.
    The warm server (:mod:`safealign.warm`) freezes its preloaded heap the same way.
    """
    if _HEAP_FROZEN:
        return False
    import gc

    gc.freeze()
    _HEAP_FROZEN.append(True)
    return True


def setup(args: argparse.Namespace) -> dict[str, Any]:
    """Tune malloc for CPU jobs (:func:`tune_malloc`), parse ``--params``, configure logging (hub
    tokens redacted), record the job's GPUs (and, with ``--gpus`` >= 1, check the node's driver
    against torch's CUDA: :mod:`safealign.preflight`) and go offline unless the environment says otherwise
    (:data:`OFFLINE_ENV`). Torch's threads follow ``OMP_NUM_THREADS`` (the rule's threads, set in
    the shell prefix)."""
    tune_malloc()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact_logs()
    params = json.loads(args.params)
    if getattr(args, "gpus", None) is not None:
        os.environ[JOB_GPUS_ENV] = str(max(1, int(args.gpus)))
        if int(args.gpus) >= 1:
            # Before any model is read: a driver too old for torch's CUDA fails the job here.
            from .preflight import check_cuda_driver

            summary = check_cuda_driver()
            if summary:
                logging.getLogger(__name__).info("preflight: %s", summary)
    for key in OFFLINE_ENV:
        os.environ.setdefault(key, "1")
    return params


def export_source_path(src: str) -> None:
    """Put ``src`` first on PYTHONPATH so every job's interpreter imports this checkout's package
    (called by rules/common.smk; jobs inherit the environment, Slurm jobs re-parse the workflow)."""
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    os.environ["PYTHONPATH"] = os.pathsep.join([src, *current])
