"""The GPU jobs' preflight (safealign.preflight) against a fake nvidia-smi on PATH."""

import argparse
import json
import stat

import pytest

from safealign import cli, preflight

HEADER = """Mon Dec  7 10:00:00 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI {driver}              Driver Version: {driver}      CUDA Version: {cuda}     |
|-----------------------------------------+------------------------+----------------------+
"""


@pytest.fixture
def fake_smi(tmp_path, monkeypatch):
    """Put an nvidia-smi printing the given driver and CUDA versions first on PATH."""

    def make(driver: str, cuda: str, exit_code: int = 0) -> None:
        exe = tmp_path / "nvidia-smi"
        exe.write_text(f"#!/bin/sh\ncat <<'OUT'\n{HEADER.format(driver=driver, cuda=cuda)}OUT\nexit {exit_code}\n")
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
        monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")

    return make


def test_old_driver_fails_naming_both(fake_smi):
    fake_smi("550.54.15", "12.4")
    with pytest.raises(preflight.PreflightError) as err:
        preflight.check_cuda_driver(("2.13.0", "13.0"))
    msg = str(err.value)
    assert "torch 2.13.0 built for CUDA 13.0" in msg and "NVIDIA driver 550.54.15 supports CUDA 12.4" in msg


@pytest.mark.parametrize("cuda", ["13.0", "13.2", "14.1"])
def test_driver_of_the_same_or_newer_major_passes(fake_smi, cuda):
    fake_smi("580.65.06", cuda)
    assert preflight.check_cuda_driver(("2.13.0", "13.0")).endswith(f"supports CUDA {cuda}")


def test_cpu_build_has_nothing_to_check(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert preflight.check_cuda_driver(("2.13.0+cpu", None)) is None


def test_missing_or_broken_nvidia_smi(fake_smi, monkeypatch, tmp_path):
    fake_smi("580.65.06", "13.0", exit_code=9)
    with pytest.raises(preflight.PreflightError, match="exit 9"):
        preflight.check_cuda_driver(("2.13.0", "13.0"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(preflight.PreflightError, match="nvidia-smi is not on PATH"):
        preflight.check_cuda_driver(("2.13.0", "13.0"))


def test_setup_of_a_gpu_job_runs_the_preflight(fake_smi, monkeypatch):
    """A stage's setup with --gpus >= 1 fails before anything else when the driver is too old;
    with --gpus 0 (a CPU run of a GPU rule) it does not look."""
    fake_smi("535.104.05", "12.2")
    monkeypatch.setattr(preflight, "torch_cuda", lambda: ("2.13.0", "13.0"))
    monkeypatch.setattr(cli, "tune_malloc", lambda: None)
    for key in (cli.JOB_GPUS_ENV, *cli.OFFLINE_ENV):  # setup sets them; restored after the test
        monkeypatch.setenv(key, "1")
    args = argparse.Namespace(params=json.dumps({"a": 1}), gpus=1)
    with pytest.raises(preflight.PreflightError, match="driver 535.104.05 supports CUDA 12.2"):
        cli.setup(args)
    assert cli.setup(argparse.Namespace(params=json.dumps({"a": 1}), gpus=0)) == {"a": 1}
