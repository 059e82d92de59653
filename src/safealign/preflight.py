"""Preflight of a GPU job: the node's NVIDIA driver can run the CUDA that torch was built for.

The pinned envs install torch from PyPI (``torch==2.13.0`` in envs/train.yaml, judge.yaml and
eval.yaml; vLLM's ``torch==2.14.0``), whose wheels are CUDA 13 builds: a node whose driver supports
only CUDA 12 fails at the first CUDA call, after the job has started and maybe after it has read
an 11B model. :func:`check_cuda_driver` runs first in every job that asks for GPUs
(:func:`safealign.cli.setup`), reads the driver's CUDA version from ``nvidia-smi`` and fails at
once, naming both. A CPU build of torch (``torch.version.cuda`` None) has nothing to check.
"""

from __future__ import annotations

import re
import shutil
import subprocess

# nvidia-smi's header: "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |"
_DRIVER = re.compile(r"Driver Version:\s*([0-9.]+)")
_CUDA = re.compile(r"CUDA Version:\s*([0-9]+)\.([0-9]+)")


class PreflightError(RuntimeError):
    """The node cannot run this job's torch build."""


def driver_cuda(nvidia_smi: str = "nvidia-smi") -> tuple[tuple[int, int], str]:
    """``((major, minor), driver version)``: the newest CUDA the node's driver supports, from
    ``nvidia-smi``'s header. Raises PreflightError when nvidia-smi is missing or says neither."""
    exe = shutil.which(nvidia_smi)
    if exe is None:
        raise PreflightError(f"{nvidia_smi} is not on PATH on this node: cannot tell which CUDA its NVIDIA driver runs "
                             "(a GPU job needs the driver; is this a GPU node?)")
    proc = subprocess.run([exe], capture_output=True, text=True, timeout=60)
    cuda, driver = _CUDA.search(proc.stdout), _DRIVER.search(proc.stdout)
    if proc.returncode != 0 or cuda is None:
        raise PreflightError(f"{exe} failed or printed no 'CUDA Version' (exit {proc.returncode}): "
                             f"{(proc.stdout + proc.stderr).strip()[:500]}")
    return (int(cuda[1]), int(cuda[2])), driver[1] if driver else "unknown"


def torch_cuda() -> tuple[str, str | None]:
    """``(torch version, the CUDA it was built for or None)``."""
    import torch

    return torch.__version__, torch.version.cuda


def check_cuda_driver(build: tuple[str, str | None] | None = None, nvidia_smi: str = "nvidia-smi") -> str | None:
    """Raise PreflightError unless the node's driver supports the CUDA major version torch was built
    for (CUDA's minor version compatibility covers the minors of one major); return a one-line
    summary, or None for a CPU build of torch."""
    version, cuda = build if build is not None else torch_cuda()
    if not cuda:
        return None
    need = tuple(int(x) for x in cuda.split(".")[:2])
    have, driver = driver_cuda(nvidia_smi)
    summary = f"torch {version} built for CUDA {cuda}; NVIDIA driver {driver} supports CUDA {have[0]}.{have[1]}"
    if have[0] < need[0]:
        raise PreflightError(
            f"{summary}: this node's driver is too old for this env's torch (CUDA {need[0]} needs a driver that "
            f"nvidia-smi reports as 'CUDA Version: {need[0]}.0' or newer). Run on nodes with a newer driver "
            f"(a Slurm `constraint`), or install a torch built for CUDA {have[0]} into the envs (docs/cluster.md)")
    return summary
