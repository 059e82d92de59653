"""bench/: the GPU item's behaviour on a machine without CUDA (the suite's figures come from
bench/run.py itself, never from timed tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from safealign import cli

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(cli.gpu_present(), reason="a GPU host: item 8 measures instead of skipping")


def test_item_8_without_a_gpu_is_one_skipped_row_saying_why(tmp_path):
    out = tmp_path / "bench.json"
    subprocess.run([sys.executable, str(REPO / "bench" / "run.py"), "--only", "8", "--work", str(tmp_path / "w"),
                    "--out", str(out)], check=True, capture_output=True, text=True)
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 and rows[0]["item"] == "8" and rows[0]["runs"] == []
    assert "skipped, no CUDA device" in rows[0]["name"]


def test_qlora_training_throughput_without_cuda_says_what_is_missing():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "train_tp.py"), "--model", "unused", "--peft",
                           "qlora"], check=True, capture_output=True, text=True)
    assert json.loads(proc.stdout.splitlines()[-1]) == {
        "peft": "qlora", "skipped": "QLoRA needs a CUDA device (bitsandbytes' 4-bit kernels)"}
