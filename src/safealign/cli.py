"""Shared helpers for the thin command-line entry points that rules call."""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", required=True, help="the rule's config slice, as canonical JSON")
    return p


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


def setup(args: argparse.Namespace) -> dict[str, Any]:
    """Parse ``--params``, configure logging (hub tokens redacted), go offline on request and pin
    torch threads."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redact_logs()
    params = json.loads(args.params)
    if getattr(args, "gpus", None) is not None:
        os.environ[JOB_GPUS_ENV] = str(max(1, int(args.gpus)))
    if params.get("offline", True):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    threads = params.get("threads")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    return params


def export_source_path(src: str) -> None:
    """Put ``src`` first on PYTHONPATH so every job's interpreter imports this checkout's package
    (called by rules/common.smk; jobs inherit the environment, Slurm jobs re-parse the workflow)."""
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src]
    os.environ["PYTHONPATH"] = os.pathsep.join([src, *current])
