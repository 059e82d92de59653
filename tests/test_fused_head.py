"""TRL's fused LM head on CPU: only the labelled positions are scored, with the same log-probs
(the training entry points install it: tests/test_training.py)."""

import torch
import trl.trainer.utils as trl_utils
from transformers import LlamaConfig, LlamaForCausalLM

from safealign.train import trl_compat


def _model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, max_position_embeddings=64)
    model = LlamaForCausalLM(cfg)
    trl_utils.add_fused_lm_head(model)
    return model


def _scored(model, ids, labels, rows):
    """(log-probs, loss, lm_head grad, rows the kernel was given) of one fused forward/backward."""
    rows.clear()
    model.zero_grad()
    out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    out.loss.backward()
    return out.log_probs.detach(), out.loss.detach(), model.lm_head.weight.grad.clone(), list(rows)


def test_cpu_scores_only_labelled_positions_with_the_same_log_probs(monkeypatch, lm_head_rows):
    model = _model()
    ids = torch.randint(0, 97, (3, 20))
    labels = torch.full_like(ids, -100)
    labels[:, 15:] = ids[:, 15:]  # a completion of 5 tokens after a 15-token prompt
    labels[2, 18:] = -100  # and padding
    n_labelled = int((labels[:, 1:] != -100).sum())

    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)  # TRL's own CPU rule
    full = _scored(model, ids, labels, lm_head_rows)
    assert full[3] == [3 * 19]  # every shifted position
    assert trl_compat.score_labelled_positions_only()
    compact = _scored(model, ids, labels, lm_head_rows)
    assert compact[3] == [n_labelled] and n_labelled < 3 * 19
    for a, b in zip(full[:3], compact[:3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    mask = labels[:, 1:] != -100
    assert torch.all(compact[0][~mask] == 0)  # unscored positions stay 0, as TRL's full path leaves them


def test_installed_once(monkeypatch):
    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)
    assert trl_compat.score_labelled_positions_only()
    wrapped = trl_utils._use_triton
    assert wrapped(torch.device("cpu")) and getattr(wrapped, "safealign_cpu", False)
    assert trl_compat.score_labelled_positions_only()
    assert trl_utils._use_triton is wrapped  # not wrapped twice
    assert not wrapped(torch.device("meta"))  # other devices keep TRL's answer
