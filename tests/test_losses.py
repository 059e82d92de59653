"""Faithfulness of the preference losses: TRL's own code against the equations, on fixed tensors.

Every loss safealign trains with is a TRL ``loss_type``. These tests compute each loss *with TRL*
(a real ``DPOTrainer``/``KTOTrainer``/``ORPOTrainer``/``CPOTrainer`` built from its config on a tiny
Llama, called through ``compute_loss`` or the trainer's loss method) and compare the value with the
equation written out independently below, to 1e-6 in float64.

How TRL is driven: the trainers get their batch from their own collator, but the model they call
is a *bigram language model with a known table* (``BigramLM``): log p(t | prev) = table[prev, t].
It answers the ``fused_lm_head=True`` call the way TRL's fused LM head does (per-token log-probs of
shape (batch, seq_len - 1), zero where the label is -100); ``test_fused_lm_head_*`` checks that
convention against the real tiny Llama, and ``test_dpo_end_to_end_real_model`` runs sigmoid and
ipo through the real model. The reference side computes sequence log-probs from the raw word ids, so TRL's
tokenization, padding, chosen/rejected chunking and summation are all under test as well.

Notation: r_w = log pi(y_w|x) - log pi_ref(y_w|x), r_l likewise (summed over completion tokens, the
EOS TRL appends included), h = r_w - r_l, b = beta, eps = label_smoothing, s = sigmoid.

Where TRL 1.16.0 differs from shared/PAPER.md (the tests assert what TRL does). Against TRL 0.11.4,
the paper's era, only the sigmoid label-smoothing and bco_pair running-mean items below are changes
(the IPO averaging and AOT sorting are as 0.11 had them); docs/configuration.md (Methods) lists every
difference from 0.11 and ``safealign.train.methods.DEVIATIONS`` warns about them at parse time.
- sigmoid: PAPER.md writes the cDPO form -(1-eps) log s(b h) - eps log s(-b h); TRL 1.16 has no
  label-smoothing term for "sigmoid" (eps is ignored): -log s(b h).
  ``test_sigmoid_ignores_label_smoothing`` pins this.
- bco_pair: PAPER.md subtracts a running-mean reward d; TRL 1.16 keeps no running mean (d = 0):
  -log s(b r_w) - log s(-b r_l).
- ipo: as PAPER.md, but the average is over the completion tokens *including the appended EOS*
  (TRL divides by completion_mask.sum()).
- aot: TRL sorts the policy log-ratio log pi(y_w) - log pi(y_l) and the reference log-ratio over
  the batch *separately*, then d = sorted_policy - sorted_ref (not sort(h)); the loss is the
  label-smoothed sigmoid -(1-eps) log s(b d) - eps log s(-b d).
- aot_unpaired: d = sort(r_w) - sort(r_l) over the batch, same label-smoothed sigmoid.
- robust, hinge, exo_pair, sppo_hard, nca_pair: as PAPER.md. exo_pair needs eps > 0 (TRL raises
  otherwise) and builds eps as a float32 tensor, so its last digits are float32-accurate (~1e-7).
- apo_zero (APO paper eq. 7): 1 - s(b r_w) + s(b r_l).
- All DPO losses are averaged over pairs (mean, not sum).
- Precision: TRL's fused LM head computes the log-softmax in float32 even for a float64 model, so
  sequence log-probs from a real model are float32-accurate (~1e-6 relative); the real-model tests
  use ATOL_REAL_MODEL = 1e-5, the equation tests 1e-6.
Beyond the paper's ten:
- KTO (trl.KTOTrainer): z_ref = max(0, mean over the micro-batch of the log-ratio of mismatched
  pairs (x_i, y_{i-1}), completions rotated by one within the batch), detached; desirable
  w_D (1 - s(b (r - z_ref))), undesirable w_U (1 - s(b (z_ref - r))), mean over all examples.
- ORPO (trl.experimental.orpo): ``odds_ratio_loss`` returns +b log s(log odds ratio) (a
  log-likelihood, not a loss) and the trainer subtracts its mean; the odds use length-averaged
  log-probs; the NLL term covers the chosen prompt *and* response tokens (the ORPO paper's L_SFT
  covers the response); the odds-ratio term is computed in float32.
- SimPO (trl.experimental.cpo, loss_type="simpo"): -log s(b (avg_w - avg_l) - gamma) with
  length-averaged log-probs; cpo_alpha=0 is needed to drop CPO's NLL term (default cpo_alpha=1).
"""

from __future__ import annotations

import copy
import inspect
import os
import random
from collections.abc import Callable, Sequence
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer  # noqa: E402
from trl.experimental.cpo import CPOConfig, CPOTrainer  # noqa: E402
from trl.experimental.orpo import ORPOConfig, ORPOTrainer  # noqa: E402
from trl.trainer.utils import FusedCausalLMOutput  # noqa: E402

ATOL = 1e-6
# TRL's fused LM head computes the log-softmax in float32 tiles even for a float64 model, so the
# tests that run the real tiny Llama compare its sequence log-probs (|.| ~ 20) at float32 accuracy.
ATOL_REAL_MODEL = 1e-5

# The paper's ten TRL loss types, plus APO-zero.
PAPER_LOSS_TYPES = (
    "sigmoid",
    "robust",
    "hinge",
    "ipo",
    "exo_pair",
    "bco_pair",
    "sppo_hard",
    "nca_pair",
    "aot",
    "aot_unpaired",
)
DPO_LOSS_TYPES = PAPER_LOSS_TYPES + ("apo_zero",)

# ---------------------------------------------------------------------------------------------
# Vocabulary, data and the known-table language model
# ---------------------------------------------------------------------------------------------
PAD, EOS, UNK = "<pad>", "<eos>", "<unk>"
WORDS = [PAD, EOS, UNK] + [f"w{i}" for i in range(61)]
VOCAB = {w: i for i, w in enumerate(WORDS)}
EOS_ID = VOCAB[EOS]
V = len(WORDS)  # 64


def _random_text(rng: random.Random, lo: int, hi: int) -> list[str]:
    return [f"w{rng.randrange(61)}" for _ in range(rng.randint(lo, hi))]


def _pairs(n: int, seed: int) -> list[tuple[list[str], list[str], list[str]]]:
    rng = random.Random(seed)
    return [(_random_text(rng, 1, 3), _random_text(rng, 1, 5), _random_text(rng, 1, 5)) for _ in range(n)]


PAIRS = _pairs(6, seed=20240912)


def ids(words: Sequence[str]) -> list[int]:
    return [VOCAB[w] for w in words]


def completion_ids(words: Sequence[str]) -> list[int]:
    """TRL appends EOS to every completion."""
    return ids(words) + [EOS_ID]


def seq_logp(table: torch.Tensor, prompt: Sequence[str], completion: Sequence[str]) -> torch.Tensor:
    """sum_j log p(c_j | previous token) over the completion tokens (EOS included)."""
    full = ids(prompt) + completion_ids(completion)
    start = len(prompt)
    return sum(
        (table[full[j - 1], full[j]] for j in range(start, len(full))), torch.zeros((), dtype=torch.float64)
    )


def _tables(seed: int, noise: float, offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(policy, reference) bigram log-prob tables; the policy is the reference plus noise."""
    g = torch.Generator().manual_seed(seed)
    ref = -(0.5 + 2.5 * torch.rand(V, V, generator=g, dtype=torch.float64))
    policy = ref + noise * torch.randn(V, V, generator=g, dtype=torch.float64) + offset
    return policy, ref


POLICY, REF = _tables(seed=7, noise=0.8)


class BigramLM:
    """Stands in for a causal LM patched with TRL's fused LM head.

    Called with ``fused_lm_head=True`` it returns, like ``trl.trainer.utils.add_fused_lm_head``,
    per-token log-probs of shape (batch, seq_len - 1): position j scores label j+1 given token j,
    and is zero where the label is -100. Here log p(t | prev) = table[prev, t].
    """

    def __init__(self, table: torch.Tensor):
        self.table = table
        self.calls = 0

    def __call__(self, input_ids=None, attention_mask=None, labels=None, fused_lm_head=False, **kwargs):
        assert fused_lm_head, "TRL is expected to call the fused LM head"
        self.calls += 1
        shifted = labels[:, 1:]
        mask = shifted != -100
        log_probs = self.table[input_ids[:, :-1], shifted.clamp(min=0)] * mask
        zeros = torch.zeros_like(log_probs)
        return FusedCausalLMOutput(
            log_probs=log_probs,
            entropy=zeros,
            mean_logits=zeros,
            is_top1=torch.zeros_like(mask),
            log_sum_sq_probs=zeros,
            label_mask=mask,
        )


class BigramLogitsLM:
    """Stands in for a causal LM's plain forward (ORPO/CPO read ``outputs.logits``)."""

    def __init__(self, logits_table: torch.Tensor):
        self.logits_table = logits_table

    def __call__(self, input_ids, attention_mask=None, use_cache=False, **kwargs):
        return SimpleNamespace(logits=self.logits_table[input_ids])


# ---------------------------------------------------------------------------------------------
# The equations, written independently of TRL
# ---------------------------------------------------------------------------------------------
def log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """log s(x) = -log(1 + exp(-x)), computed stably."""
    return -torch.logaddexp(torch.zeros_like(x), -x)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(log_sigmoid(x))


def _smoothed_sigmoid(z: torch.Tensor, eps: float) -> torch.Tensor:
    return -(1 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z)


def ref_sigmoid(d: dict, b: float, eps: float) -> torch.Tensor:
    """DPO (Rafailov et al. 2023, eq. 7): -log s(b h). TRL 1.16 ignores eps here (see docstring)."""
    return -log_sigmoid(b * d["h"])


def ref_robust(d: dict, b: float, eps: float) -> torch.Tensor:
    """rDPO (Chowdhury et al. 2024): [-(1-eps) log s(b h) + eps log s(-b h)] / (1 - 2 eps)."""
    h = d["h"]
    return (-(1 - eps) * log_sigmoid(b * h) + eps * log_sigmoid(-b * h)) / (1 - 2 * eps)


def ref_hinge(d: dict, b: float, eps: float) -> torch.Tensor:
    """SLiC (Zhao et al. 2023): max(0, 1 - b h)."""
    return torch.clamp(1 - b * d["h"], min=0)


def ref_ipo(d: dict, b: float, eps: float) -> torch.Tensor:
    """IPO (Azar et al. 2023, eq. 17) on length-averaged log-ratios: (r_w/|y_w| - r_l/|y_l| - 1/(2b))^2."""
    return (d["r_w"] / d["len_w"] - d["r_l"] / d["len_l"] - 1 / (2 * b)) ** 2


def ref_exo_pair(d: dict, b: float, eps: float) -> torch.Tensor:
    """EXO-pref (Ji et al. 2024, eq. 16): KL([s(b h), s(-b h)] || [1-eps, eps])."""
    h = d["h"]
    q_w, q_l = sigmoid(b * h), sigmoid(-b * h)
    return q_w * (torch.log(q_w) - torch.log(torch.tensor(1 - eps, dtype=torch.float64))) + q_l * (
        torch.log(q_l) - torch.log(torch.tensor(eps, dtype=torch.float64))
    )


def ref_bco_pair(d: dict, b: float, eps: float) -> torch.Tensor:
    """BCO (Jung et al. 2024) without the running-mean shift (TRL 1.16): -log s(b r_w) - log s(-b r_l)."""
    return -log_sigmoid(b * d["r_w"]) - log_sigmoid(-b * d["r_l"])


def ref_sppo_hard(d: dict, b: float, eps: float) -> torch.Tensor:
    """SPPO, hard labels (Wu et al. 2024, eq. 4.7 with P=1/0): (r_w - 1/(2b))^2 + (r_l + 1/(2b))^2."""
    return (d["r_w"] - 1 / (2 * b)) ** 2 + (d["r_l"] + 1 / (2 * b)) ** 2


def ref_nca_pair(d: dict, b: float, eps: float) -> torch.Tensor:
    """NCA (Chen et al. 2024): -log s(b r_w) - 1/2 log s(-b r_w) - 1/2 log s(-b r_l)."""
    return -log_sigmoid(b * d["r_w"]) - 0.5 * log_sigmoid(-b * d["r_w"]) - 0.5 * log_sigmoid(-b * d["r_l"])


def ref_aot(d: dict, b: float, eps: float) -> torch.Tensor:
    """AOT paired (Melnyk et al. 2024): sort the policy and reference log-ratios over the batch."""
    policy_sorted = torch.sort(d["pi_w"] - d["pi_l"]).values
    ref_sorted = torch.sort(d["ref_w"] - d["ref_l"]).values
    return _smoothed_sigmoid(b * (policy_sorted - ref_sorted), eps)


def ref_aot_unpaired(d: dict, b: float, eps: float) -> torch.Tensor:
    """AOT unpaired (Melnyk et al. 2024): sort r_w and r_l over the batch separately."""
    return _smoothed_sigmoid(b * (torch.sort(d["r_w"]).values - torch.sort(d["r_l"]).values), eps)


def ref_apo_zero(d: dict, b: float, eps: float) -> torch.Tensor:
    """APO-zero (D'Oosterlinck et al. 2024, eq. 7): 1 - s(b r_w) + s(b r_l)."""
    return 1 - sigmoid(b * d["r_w"]) + sigmoid(b * d["r_l"])


REFERENCE: dict[str, Callable[[dict, float, float], torch.Tensor]] = {
    "sigmoid": ref_sigmoid,
    "robust": ref_robust,
    "hinge": ref_hinge,
    "ipo": ref_ipo,
    "exo_pair": ref_exo_pair,
    "bco_pair": ref_bco_pair,
    "sppo_hard": ref_sppo_hard,
    "nca_pair": ref_nca_pair,
    "aot": ref_aot,
    "aot_unpaired": ref_aot_unpaired,
    "apo_zero": ref_apo_zero,
}


def pair_quantities(pairs, policy: torch.Tensor, ref: torch.Tensor) -> dict[str, torch.Tensor]:
    """Sequence-level log-probs and log-ratios of each pair, from the raw word ids."""
    t = lambda xs: torch.stack(list(xs))  # noqa: E731
    pi_w = t(seq_logp(policy, p, c) for p, c, _ in pairs)
    pi_l = t(seq_logp(policy, p, r) for p, _, r in pairs)
    ref_w = t(seq_logp(ref, p, c) for p, c, _ in pairs)
    ref_l = t(seq_logp(ref, p, r) for p, _, r in pairs)
    r_w, r_l = pi_w - ref_w, pi_l - ref_l
    return {
        "pi_w": pi_w,
        "pi_l": pi_l,
        "ref_w": ref_w,
        "ref_l": ref_l,
        "r_w": r_w,
        "r_l": r_l,
        "h": r_w - r_l,
        "len_w": torch.tensor([len(completion_ids(c)) for _, c, _ in pairs], dtype=torch.float64),
        "len_l": torch.tensor([len(completion_ids(r)) for _, _, r in pairs], dtype=torch.float64),
    }


# ---------------------------------------------------------------------------------------------
# Fixtures: a tiny model, a word-level tokenizer, trainers built from TRL configs
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel(VOCAB, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK)


def tiny_llama(dtype: torch.dtype = torch.float32, seed: int = 0) -> LlamaForCausalLM:
    cfg = LlamaConfig(
        vocab_size=V,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=VOCAB[PAD],
        eos_token_id=EOS_ID,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg).to(dtype)


def pair_dataset(pairs) -> Dataset:
    return Dataset.from_dict(
        {
            "prompt": [" ".join(p) for p, _, _ in pairs],
            "chosen": [" " + " ".join(c) for _, c, _ in pairs],
            "rejected": [" " + " ".join(r) for _, _, r in pairs],
        }
    )


@pytest.fixture(scope="module")
def make_dpo_trainer(tokenizer, tmp_path_factory):
    model = tiny_llama()

    def make(
        loss_type: str, beta: float, label_smoothing: float = 0.0, pairs=PAIRS, model=model, ref_model=None
    ):
        args = DPOConfig(
            output_dir=str(tmp_path_factory.mktemp("dpo")),
            use_cpu=True,
            bf16=False,
            report_to=[],
            loss_type=[loss_type],
            beta=beta,
            label_smoothing=label_smoothing,
            precompute_ref_log_probs=False,
            per_device_train_batch_size=len(pairs),
        )
        trainer = DPOTrainer(
            model=model,
            ref_model=ref_model if ref_model is not None else copy.deepcopy(model),
            args=args,
            train_dataset=pair_dataset(pairs),
            processing_class=tokenizer,
        )
        assert trainer.loss_types == [loss_type] and trainer.beta == beta
        assert len(trainer.train_dataset) == len(pairs)
        return trainer

    return make


def trl_dpo_loss(
    trainer: DPOTrainer, rows: Sequence[int], policy: torch.Tensor, ref: torch.Tensor
) -> torch.Tensor:
    """TRL's DPO loss on the given rows, the policy and the reference being known bigram tables."""
    batch = trainer.data_collator([trainer.train_dataset[i] for i in rows])
    trainer.ref_model = BigramLM(ref)
    policy_model = BigramLM(policy)
    with torch.no_grad():
        loss = trainer.compute_loss(policy_model, batch)
    assert policy_model.calls == 1 and trainer.ref_model.calls == 1
    assert loss.dtype == torch.float64
    return loss


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float = ATOL) -> None:
    torch.testing.assert_close(
        actual.to(torch.float64), expected.to(torch.float64), rtol=0, atol=atol, msg=lambda m: f"{what}: {m}"
    )


# ---------------------------------------------------------------------------------------------
# The test data must be able to expose a wrong equation
# ---------------------------------------------------------------------------------------------
def test_fixed_tensors_cover_both_signs():
    q = pair_quantities(PAIRS, POLICY, REF)
    for key in ("h", "r_w", "r_l"):
        assert (q[key] > 0).any() and (q[key] < 0).any(), f"{key} should take both signs: {q[key]}"
    # hinge: some pairs inside the margin (loss > 0) and some beyond it (loss = 0) at beta = 0.7
    assert ((1 - 0.7 * q["h"]) > 0).any() and ((1 - 0.7 * q["h"]) < 0).any()
    # ipo: chosen and rejected lengths differ, so the length averaging matters
    assert (q["len_w"] != q["len_l"]).any()
    # aot: sorting really permutes the batch
    for x in (q["pi_w"] - q["pi_l"], q["ref_w"] - q["ref_l"], q["r_w"], q["r_l"]):
        assert not torch.equal(torch.sort(x).values, x)


# ---------------------------------------------------------------------------------------------
# DPOTrainer loss types: the paper's ten + apo_zero
# ---------------------------------------------------------------------------------------------
DPO_CASES = [
    # (loss_type, label_smoothing)
    ("sigmoid", 0.0),
    ("robust", 0.2),
    ("hinge", 0.0),
    ("ipo", 0.0),
    ("exo_pair", 0.1),
    ("exo_pair", 1e-3),
    ("bco_pair", 0.0),
    ("sppo_hard", 0.0),
    ("nca_pair", 0.0),
    ("aot", 0.0),
    ("aot", 0.1),
    ("aot_unpaired", 0.0),
    ("aot_unpaired", 0.1),
    ("apo_zero", 0.0),
]


@pytest.mark.parametrize("beta", [0.1, 0.7])
@pytest.mark.parametrize(("loss_type", "label_smoothing"), DPO_CASES)
def test_dpo_loss_matches_equation(make_dpo_trainer, loss_type, label_smoothing, beta):
    trainer = make_dpo_trainer(loss_type, beta, label_smoothing)
    equation = REFERENCE[loss_type]

    # Whole batch: TRL's scalar loss is the mean of the per-pair (or, for AOT, per-rank) terms.
    q = pair_quantities(PAIRS, POLICY, REF)
    expected = equation(q, beta, label_smoothing).mean()
    actual = trl_dpo_loss(trainer, range(len(PAIRS)), POLICY, REF)
    assert_close(actual, expected, f"{loss_type} batch")

    # One pair at a time, so that a mean cannot hide a wrong term.
    for i in range(len(PAIRS)):
        qi = pair_quantities(PAIRS[i : i + 1], POLICY, REF)
        assert_close(
            trl_dpo_loss(trainer, [i], POLICY, REF),
            equation(qi, beta, label_smoothing).mean(),
            f"{loss_type} pair {i}",
        )


def test_sigmoid_ignores_label_smoothing(make_dpo_trainer):
    """Deviation from PAPER.md: TRL 1.16's 'sigmoid' has no (cDPO) label-smoothing term."""
    beta, eps = 0.7, 0.2
    q = pair_quantities(PAIRS, POLICY, REF)
    actual = trl_dpo_loss(make_dpo_trainer("sigmoid", beta, eps), range(len(PAIRS)), POLICY, REF)
    assert_close(actual, (-log_sigmoid(beta * q["h"])).mean(), "sigmoid with eps")
    cdpo = _smoothed_sigmoid(beta * q["h"], eps).mean()  # PAPER.md's row for Safe-DPO
    assert abs(actual.item() - cdpo.item()) > 1e-3


def test_unknown_loss_type_fails_loudly(make_dpo_trainer):
    trainer = make_dpo_trainer("sigmoid", 0.1)
    trainer.loss_types = ["not_a_loss"]
    with pytest.raises(ValueError, match="Unknown loss type"):
        trl_dpo_loss(trainer, range(len(PAIRS)), POLICY, REF)


def test_trl_accepts_every_loss_type():
    """A TRL upgrade that drops or renames one of the losses must fail here, not mid-run."""
    doc = DPOConfig.__doc__
    help_text = DPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    source = inspect.getsource(DPOTrainer._compute_loss)
    for loss_type in DPO_LOSS_TYPES:
        assert f"`'{loss_type}'`" in doc, f"DPOConfig docstring lacks {loss_type!r}"
        assert f"`'{loss_type}'`" in help_text, f"DPOConfig.loss_type help lacks {loss_type!r}"
        assert f'loss_type == "{loss_type}"' in source, f"DPOTrainer._compute_loss lacks {loss_type!r}"
    assert '`"kto"`' in KTOConfig.__doc__
    assert KTOConfig.__dataclass_fields__["loss_type"].default == "kto"
    assert 'self.loss_type == "kto"' in inspect.getsource(KTOTrainer._compute_loss)
    assert "simpo" in CPOConfig.__dataclass_fields__["loss_type"].metadata["choices"]
    assert 'self.loss_type == "simpo"' in inspect.getsource(CPOTrainer.cpo_loss)
    assert callable(ORPOTrainer.odds_ratio_loss) and callable(CPOTrainer.cpo_loss)


# ---------------------------------------------------------------------------------------------
# The fused LM head convention BigramLM imitates, and one loss through the real model
# ---------------------------------------------------------------------------------------------
def _independent_seq_logp(model: LlamaForCausalLM, prompt, completion) -> torch.Tensor:
    """Unpadded forward of one sequence, log_softmax of the logits, summed over the completion."""
    full = ids(prompt) + completion_ids(completion)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([full])).logits[0]
    logp = torch.log_softmax(logits.to(torch.float64), dim=-1)
    return sum(logp[j - 1, full[j]] for j in range(len(prompt), len(full)))


def test_fused_lm_head_log_probs_match_log_softmax(make_dpo_trainer):
    model = tiny_llama(torch.float64, seed=1)
    trainer = make_dpo_trainer("sigmoid", 0.1, model=model)  # patches model with the fused head
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    with torch.no_grad():
        out = trainer.model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            labels=labels,
            fused_lm_head=True,
        )
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    mask = labels[:, 1:] != -100
    assert out.log_probs.shape == mask.shape
    assert torch.all(out.log_probs[~mask] == 0)
    assert_close(out.log_probs[mask], expected[mask], "fused log_probs", ATOL_REAL_MODEL)
    # and the sums equal the independent unpadded computation, chosen rows then rejected rows
    sums = out.log_probs.sum(-1)
    for i, (p, c, r) in enumerate(PAIRS):
        assert_close(sums[i], _independent_seq_logp(model, p, c), f"chosen {i}", ATOL_REAL_MODEL)
        assert_close(
            sums[len(PAIRS) + i], _independent_seq_logp(model, p, r), f"rejected {i}", ATOL_REAL_MODEL
        )


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_end_to_end_real_model(make_dpo_trainer, loss_type):
    """Real tiny Llama policy (perturbed) and reference, float64, through TRL's full forward path."""
    beta = 0.7
    ref_model = tiny_llama(torch.float64, seed=2)
    model = copy.deepcopy(ref_model)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    trainer = make_dpo_trainer(loss_type, beta, model=model, ref_model=ref_model)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    with torch.no_grad():
        actual = trainer.compute_loss(trainer.model, batch)

    t = lambda xs: torch.stack(list(xs))  # noqa: E731
    q = {
        "pi_w": t(_independent_seq_logp(model, p, c) for p, c, _ in PAIRS),
        "pi_l": t(_independent_seq_logp(model, p, r) for p, _, r in PAIRS),
        "ref_w": t(_independent_seq_logp(ref_model, p, c) for p, c, _ in PAIRS),
        "ref_l": t(_independent_seq_logp(ref_model, p, r) for p, _, r in PAIRS),
        "len_w": torch.tensor([len(completion_ids(c)) for _, c, _ in PAIRS], dtype=torch.float64),
        "len_l": torch.tensor([len(completion_ids(r)) for _, _, r in PAIRS], dtype=torch.float64),
    }
    q["r_w"], q["r_l"] = q["pi_w"] - q["ref_w"], q["pi_l"] - q["ref_l"]
    q["h"] = q["r_w"] - q["r_l"]
    assert (q["h"] > 0).any() and (q["h"] < 0).any()
    assert_close(
        actual, REFERENCE[loss_type](q, beta, 0.0).mean(), f"{loss_type} end to end", ATOL_REAL_MODEL
    )


# ---------------------------------------------------------------------------------------------
# KTO
# ---------------------------------------------------------------------------------------------
KTO_ROWS = [  # (prompt, completion, desirable)
    (p, c, label)
    for (p, c, _), label in zip(_pairs(6, seed=41), [True, False, True, True, False, False], strict=True)
]


def ref_kto(rows, policy, ref, beta, w_d, w_u) -> tuple[torch.Tensor, torch.Tensor]:
    """KTO (Ethayarajh et al. 2024, eq. 7-8), returns (loss, raw KL estimate).

    z_ref = max(0, mean_i [log pi(y_{i-1}|x_i) - log pi_ref(y_{i-1}|x_i)]) (mismatched pairs);
    desirable: w_D (1 - s(b (r - z_ref))), undesirable: w_U (1 - s(b (z_ref - r))); mean over rows.
    """
    n = len(rows)
    kl_raw = torch.stack(
        [
            seq_logp(policy, rows[i][0], rows[i - 1][1]) - seq_logp(ref, rows[i][0], rows[i - 1][1])
            for i in range(n)
        ]
    ).mean()
    z_ref = torch.clamp(kl_raw, min=0)
    terms = []
    for prompt, completion, desirable in rows:
        r = seq_logp(policy, prompt, completion) - seq_logp(ref, prompt, completion)
        if desirable:
            terms.append(w_d * (1 - sigmoid(beta * (r - z_ref))))
        else:
            terms.append(w_u * (1 - sigmoid(beta * (z_ref - r))))
    return torch.stack(terms).mean(), kl_raw


@pytest.mark.parametrize(("offset", "kl_positive"), [(0.2, True), (-0.2, False)])
@pytest.mark.parametrize("beta", [0.1, 0.7])
def test_kto_loss_matches_equation(tokenizer, tmp_path, beta, offset, kl_positive):
    w_d, w_u = 1.0, 1.33
    policy, ref = _tables(seed=15, noise=0.8, offset=offset)
    args = KTOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        report_to=[],
        loss_type="kto",
        beta=beta,
        desirable_weight=w_d,
        undesirable_weight=w_u,
        per_device_train_batch_size=len(KTO_ROWS),
    )
    model = tiny_llama()
    dataset = Dataset.from_dict(
        {
            "prompt": [" ".join(p) for p, _, _ in KTO_ROWS],
            "completion": [" " + " ".join(c) for _, c, _ in KTO_ROWS],
            "label": [label for _, _, label in KTO_ROWS],
        }
    )
    trainer = KTOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    assert trainer.calculate_KL and trainer.beta == beta

    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(KTO_ROWS))])
    trainer.ref_model = BigramLM(ref)
    with torch.no_grad():
        actual = trainer.compute_loss(BigramLM(policy), batch)

    expected, kl_raw = ref_kto(KTO_ROWS, policy, ref, beta, w_d, w_u)
    assert (kl_raw > 0) == kl_positive  # both branches of the clamp are exercised
    rewards = torch.stack([seq_logp(policy, p, c) - seq_logp(ref, p, c) for p, c, _ in KTO_ROWS])
    assert (rewards > torch.clamp(kl_raw, min=0)).any() and (rewards < torch.clamp(kl_raw, min=0)).any()
    assert_close(actual, expected, "kto")
    assert trainer._metrics["train"]["kl"][-1] == pytest.approx(max(kl_raw.item(), 0.0), abs=ATOL)


# ---------------------------------------------------------------------------------------------
# ORPO and SimPO (trl.experimental)
# ---------------------------------------------------------------------------------------------
def _avg_logps(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Length-averaged log-probs in (-3, -0.02), float32-representable (ORPO computes in float32)."""
    g = torch.Generator().manual_seed(seed)
    w = -(0.02 + 3 * torch.rand(n, generator=g)).to(torch.float32)
    l_ = -(0.02 + 3 * torch.rand(n, generator=g)).to(torch.float32)
    assert ((w - l_) > 0).any() and ((w - l_) < 0).any()
    return w.to(torch.float64), l_.to(torch.float64)


def ref_orpo_or_loss(avg_w: torch.Tensor, avg_l: torch.Tensor) -> torch.Tensor:
    """ORPO (Hong et al. 2024, eq. 6-7): L_OR = -log s(log(odds(y_w) / odds(y_l))), odds(y) = p/(1-p),
    p = exp(length-averaged log-prob)."""
    p_w, p_l = torch.exp(avg_w), torch.exp(avg_l)
    log_odds_ratio = torch.log(p_w / (1 - p_w)) - torch.log(p_l / (1 - p_l))
    return -log_sigmoid(log_odds_ratio)


def ref_simpo(avg_w: torch.Tensor, avg_l: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimPO (Meng et al. 2024, eq. 6): -log s(b (avg_w - avg_l) - gamma)."""
    return -log_sigmoid(beta * (avg_w - avg_l) - gamma)


@pytest.fixture(scope="module")
def make_orpo_trainer(tokenizer, tmp_path_factory):
    def make(beta: float) -> ORPOTrainer:
        args = ORPOConfig(
            output_dir=str(tmp_path_factory.mktemp("orpo")),
            use_cpu=True,
            bf16=False,
            report_to=[],
            beta=beta,
            max_length=64,
        )
        trainer = ORPOTrainer(
            model=tiny_llama(), args=args, train_dataset=pair_dataset(PAIRS), processing_class=tokenizer
        )
        assert trainer.beta == beta
        return trainer

    return make


@pytest.fixture(scope="module")
def make_simpo_trainer(tokenizer, tmp_path_factory):
    def make(beta: float, gamma: float) -> CPOTrainer:
        args = CPOConfig(
            output_dir=str(tmp_path_factory.mktemp("simpo")),
            use_cpu=True,
            bf16=False,
            report_to=[],
            loss_type="simpo",
            cpo_alpha=0.0,
            simpo_gamma=gamma,
            beta=beta,
            max_length=64,
        )
        trainer = CPOTrainer(
            model=tiny_llama(), args=args, train_dataset=pair_dataset(PAIRS), processing_class=tokenizer
        )
        assert (trainer.loss_type, trainer.beta, trainer.simpo_gamma, trainer.cpo_alpha) == (
            "simpo",
            beta,
            gamma,
            0.0,
        )
        return trainer

    return make


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_orpo_odds_ratio_loss_matches_equation(make_orpo_trainer, beta):
    trainer = make_orpo_trainer(beta)
    avg_w, avg_l = _avg_logps(6, seed=5)
    losses, chosen_rewards, rejected_rewards, mean_ratio, mean_log_odds = trainer.odds_ratio_loss(
        avg_w, avg_l
    )
    # TRL returns +beta log s(log odds ratio); the trainer subtracts its mean from the NLL.
    assert_close(-losses, beta * ref_orpo_or_loss(avg_w, avg_l), "orpo odds-ratio term")
    assert_close(chosen_rewards, beta * avg_w, "orpo chosen rewards")
    assert_close(rejected_rewards, beta * avg_l, "orpo rejected rewards")


# Logits of a bigram "LM" for the ORPO/SimPO end-to-end tests; log p(t|prev) = log_softmax(row prev).
BIGRAM_LOGITS = 2.0 * torch.randn(V, V, generator=torch.Generator().manual_seed(17), dtype=torch.float64)
BIGRAM_LOGP = BIGRAM_LOGITS - torch.logsumexp(BIGRAM_LOGITS, dim=-1, keepdim=True)


def _avg_completion_logp(prompt, completion) -> torch.Tensor:
    return seq_logp(BIGRAM_LOGP, prompt, completion) / len(completion_ids(completion))


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_orpo_total_loss_matches_equation(make_orpo_trainer, beta):
    """L = NLL(chosen, prompt + response tokens, token mean) + beta * mean L_OR."""
    trainer = make_orpo_trainer(beta)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    with torch.no_grad():
        actual = trainer.compute_loss(BigramLogitsLM(BIGRAM_LOGITS), batch)

    nll_terms = []
    for p, c, _ in PAIRS:
        full = ids(p) + completion_ids(c)
        nll_terms += [-BIGRAM_LOGP[full[j - 1], full[j]] for j in range(1, len(full))]
    nll = torch.stack(nll_terms).mean()
    avg_w = torch.stack([_avg_completion_logp(p, c) for p, c, _ in PAIRS])
    avg_l = torch.stack([_avg_completion_logp(p, r) for p, _, r in PAIRS])
    assert_close(actual, nll + beta * ref_orpo_or_loss(avg_w, avg_l).mean(), "orpo total")


@pytest.mark.parametrize(("beta", "gamma"), [(2.0, 0.5), (10.0, 1.4)])
def test_simpo_cpo_loss_matches_equation(make_simpo_trainer, beta, gamma):
    trainer = make_simpo_trainer(beta, gamma)
    avg_w, avg_l = _avg_logps(6, seed=6)
    losses, chosen_rewards, rejected_rewards = trainer.cpo_loss(avg_w, avg_l)
    assert losses.dtype == torch.float64
    assert_close(losses, ref_simpo(avg_w, avg_l, beta, gamma), "simpo")
    assert_close(chosen_rewards, beta * avg_w, "simpo chosen rewards")


@pytest.mark.parametrize(("beta", "gamma"), [(2.0, 0.5), (10.0, 1.4)])
def test_simpo_total_loss_matches_equation(make_simpo_trainer, beta, gamma):
    """With cpo_alpha=0 the CPO trainer's loss is SimPO's mean over pairs, on length-averaged log-probs."""
    trainer = make_simpo_trainer(beta, gamma)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
    with torch.no_grad():
        actual = trainer.compute_loss(BigramLogitsLM(BIGRAM_LOGITS), batch)
    avg_w = torch.stack([_avg_completion_logp(p, c) for p, c, _ in PAIRS])
    avg_l = torch.stack([_avg_completion_logp(p, r) for p, _, r in PAIRS])
    margin = beta * (avg_w - avg_l) - gamma
    assert (margin > 0).any() and (margin < 0).any()
    assert_close(actual, ref_simpo(avg_w, avg_l, beta, gamma).mean(), "simpo total")


@pytest.mark.parametrize("n_pairs, batch_size", [(24, 16), (23, 8), (9, 2), (13, 4)])
def test_kto_kl_pairs_never_match_a_prompt_with_its_own_completions(tokenizer, tmp_path, n_pairs, batch_size):
    """The mismatched (prompt, completion) pairs KTOTrainer builds for its KL term, read from its
    own train dataset (``KL_completion_ids``), from safealign's unpaired rows (methods.to_unpaired):
    none pairs a prompt with one of its own completions. Written chosen, rejected of each pair in
    turn, half of them would."""
    from safealign.train.methods import to_unpaired

    w = [f"w{i}" for i in range(8)]  # the tokenizer's words
    pairs = [{"prompt": f"{w[i % 8]} {w[i // 8]}", "chosen": f" {w[i % 8]} {w[0]} {w[i // 8]} {w[0]}",
              "rejected": f" {w[i % 8]} {w[1]} {w[i // 8]} {w[1]}"} for i in range(n_pairs)]

    def kl_own_prompt(rows) -> int:
        args = KTOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to=[], loss_type="kto",
                         per_device_train_batch_size=batch_size)
        trainer = KTOTrainer(model=tiny_llama(), ref_model=tiny_llama(), args=args, processing_class=tokenizer,
                             train_dataset=Dataset.from_list(rows))
        ds = trainer.train_dataset
        assert trainer.calculate_KL and len(ds) == 2 * n_pairs
        owner = {tuple(c): tuple(p) for p, c in zip(ds["prompt_ids"], ds["completion_ids"], strict=True)}
        assert len(owner) == 2 * n_pairs  # every completion is told apart
        kl_pairs = zip(ds["prompt_ids"], ds["KL_completion_ids"], strict=True)
        return sum(owner[tuple(kl)] == tuple(p) for p, kl in kl_pairs)

    assert kl_own_prompt(to_unpaired(pairs, batch_size)) == 0
    naive = [{"prompt": r["prompt"], "completion": r[k], "label": k == "chosen"}
             for r in pairs for k in ("chosen", "rejected")]
    assert kl_own_prompt(naive) >= n_pairs // 2  # the ordering this guards against
