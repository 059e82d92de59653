"""Per-backend GPU defaults reach the place that uses them: vLLM's enforce_eager follows the
device a job has unless the config sets it."""

from pathlib import Path

import pytest
import torch
import yaml

from safealign.generate import vllm_backend

SCHEMA = yaml.safe_load((Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml").read_text())
REF = {"hub": "org/model", "revision": "0" * 40}


@pytest.mark.parametrize("cuda", [True, False])
@pytest.mark.parametrize("setting", ["default", True, False])
def test_enforce_eager_reaches_vllm_by_device_or_setting(monkeypatch, cuda, setting):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    default = SCHEMA["properties"]["generation"]["properties"]["enforce_eager"]["default"]
    value = default if setting == "default" else setting
    kwargs = vllm_backend._llm_kwargs(REF, None, {"backend": "vllm", "enforce_eager": value})
    # None (the schema's default): eager on CPU, CUDA graphs on a GPU; a boolean is kept as set.
    want = (not cuda) if value is None else value
    assert kwargs["enforce_eager"] is want
