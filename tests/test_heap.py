"""Model jobs exempt their imported libraries from the cyclic garbage collector once
(safealign.cli.freeze_heap): objects made afterwards are still collected."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# In a fresh interpreter: import what a model job imports, freeze, then check that a reference
# cycle made afterwards is still collected and a second call freezes nothing more.
PROBE = r"""
import gc, json, weakref
import torch, transformers
from safealign import cli
before = gc.get_freeze_count()
first = cli.freeze_heap()
frozen = gc.get_freeze_count()
second = cli.freeze_heap()
class Node: pass
a, b = Node(), Node()
a.other, b.other = b, a
alive = weakref.ref(a)
del a, b
gc.collect()
print(json.dumps({"before": before, "first": first, "frozen": frozen, "second": second,
                  "after_second": gc.get_freeze_count(), "cycle_collected": alive() is None}))
"""


def test_freeze_heap_freezes_the_imported_libraries_once_and_later_cycles_are_still_collected():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.splitlines()[-1])
    assert r["before"] == 0 and r["first"] is True
    assert r["frozen"] > 100_000  # torch and transformers' objects, not a handful
    assert r["second"] is False and r["after_second"] == r["frozen"]
    assert r["cycle_collected"]


def test_model_loading_and_lm_eval_freeze_the_heap_first(tmp_path, monkeypatch):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from safealign import models
    from safealign.capability import harness

    calls = []
    monkeypatch.setattr(models, "freeze_heap", lambda: calls.append("load_model"))
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, num_attention_heads=1, num_key_value_heads=1,
                      intermediate_size=32, num_hidden_layers=1, max_position_embeddings=32)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "m")
    models.load_model({"path": str(tmp_path / "m")})
    assert calls == ["load_model"]

    class Stop(Exception):
        pass

    def stop(**kwargs):
        raise Stop

    monkeypatch.setattr(harness, "freeze_heap", lambda: calls.append("lm_eval"))
    monkeypatch.setattr(harness, "eval_arguments", lambda *a, **k: stop())
    with pytest.raises(Stop):
        harness.evaluate({"path": str(tmp_path / "m")}, None, [], str(tmp_path), 0, None, 1, False, 8, "cpu",
                         "float32")
    assert calls == ["load_model", "lm_eval"]
