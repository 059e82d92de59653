"""Bootstrap CIs, paired tests and Holm's correction on simulated data with known answers."""

import math

import numpy as np
import pandas as pd
import pytest

from safealign import stats
from safealign.aggregate import comparisons, seed_summary
from safealign.judge.agreement import binary_kappa, cohen_kappa, comparable_rows


def binary(values):
    return [(float(v), 1.0) for v in values]


def test_ci_coverage_of_a_proportion_is_near_95_percent():
    # 300 simulated benchmarks of 100 prompts at a true safety score of 0.8: the 95 % interval
    # should cover 0.8 in about 95 % of them (binomial sd of the coverage: 1.3 points).
    rng = np.random.default_rng(12345)
    covered = 0
    for i in range(300):
        ci = stats.bootstrap_ci([binary(rng.random(100) < 0.8)], ("coverage", i))
        covered += ci.low <= 0.8 <= ci.high
    assert 0.90 <= covered / 300 <= 0.99, covered


def test_ci_coverage_of_the_two_benchmark_global_score():
    # Stratified: ALERT-like 0.6 and adversarial-like 0.9, different sizes; truth 0.75.
    rng = np.random.default_rng(7)
    covered = 0
    for i in range(200):
        strata = [binary(rng.random(80) < 0.6), binary(rng.random(50) < 0.9)]
        ci = stats.bootstrap_ci(strata, ("global", i))
        covered += ci.low <= 0.75 <= ci.high
    assert 0.89 <= covered / 200 <= 0.995, covered


def test_ci_of_a_clustered_mean_contains_the_pooled_value():
    # Toxicity: 3 samples per prompt, value = pooled mean over responses.
    units = [(0.1 + 0.7 + 0.2, 3.0), (0.3 + 0.3 + 0.1, 3.0), (0.9 + 0.8 + 0.7, 3.0), (0.0 + 0.1 + 0.0, 3.0)] * 5
    value = stats.value_of([units])
    assert value == pytest.approx(sum(u[0] for u in units) / 60)
    ci = stats.bootstrap_ci([units], ("tox",))
    assert ci.low < value < ci.high and ci.method == "bca"


def test_ci_is_seeded_and_constant_samples_get_clopper_pearson():
    data = [binary([1, 0, 1, 1, 0, 1, 1, 1, 0, 1] * 5)]
    assert stats.bootstrap_ci(data, ("k",)) == stats.bootstrap_ci(data, ("k",))
    # All 100 prompts safe: BCa degenerates; the exact interval is [0.025 ** (1/100), 1].
    ci = stats.bootstrap_ci([binary([1] * 100)], ("all-safe",))
    assert ci.method == "clopper_pearson"
    assert ci.low == pytest.approx(0.025 ** (1 / 100)) and ci.high == 1.0
    ci = stats.bootstrap_ci([binary([0] * 100)], ("none-safe",))
    assert (ci.low, ci.high) == (0.0, pytest.approx(1 - 0.025 ** (1 / 100)))
    # Constant non-binary data: the point itself.
    ci = stats.bootstrap_ci([[(0.3, 1.0)] * 10], ("c",))
    assert (ci.low, ci.high, ci.method) == (pytest.approx(0.3), pytest.approx(0.3), "constant")


def test_mcnemar_exact_known_case():
    # 10 prompts only the variant gets right, 2 only the reference: two-sided binomial test of
    # 2 in 12 at 1/2 = 2 * (C(12,0) + C(12,1) + C(12,2)) / 2^12 = 158 / 4096.
    x = [1] * 10 + [0] * 2 + [1] * 30 + [0] * 8
    y = [0] * 10 + [1] * 2 + [1] * 30 + [0] * 8
    b, c, p = stats.mcnemar_exact(x, y)
    assert (b, c) == (10, 2)
    assert p == pytest.approx(158 / 4096)
    comp = stats.paired_comparison([x], [y], ("mcnemar",))
    assert comp.test == "mcnemar_exact" and comp.p_value == pytest.approx(158 / 4096)
    assert comp.difference == pytest.approx(8 / 50) and comp.n == 50
    assert comp.ci_low < comp.difference < comp.ci_high
    # No discordant pair: no difference, p = 1.
    same = stats.paired_comparison([x], [x], ("same",))
    assert (same.difference, same.p_value, same.ci_low, same.ci_high) == (0.0, 1.0, 0.0, 0.0)


def test_paired_permutation_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(3)
    base = rng.random(60)
    shifted = stats.paired_comparison([base + 0.2], [base], ("shift",))
    assert shifted.test == "sign_flip_permutation"
    assert shifted.difference == pytest.approx(0.2) and shifted.p_value < 0.001
    noise = stats.paired_comparison([base + rng.normal(0, 0.1, 60)], [base], ("noise",))
    assert noise.ci_low < 0 < noise.ci_high or noise.p_value > 0.01


def test_holm_against_a_hand_computed_example():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06.
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = stats.holm([0.01, math.nan, 0.02])  # NaN is not part of the family
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)


def test_binary_kappa_matches_cohen_kappa():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.random(40) < 0.6, rng.random(40) < 0.5
        assert binary_kappa(a, b) == pytest.approx(cohen_kappa(list(a), list(b)))
    assert binary_kappa([1, 1, 1], [1, 1, 1]) == 1.0


def test_llama_guard_and_refusal_judge_agree_only_on_harmful_prompts():
    assert comparable_rows("safety", "llama_guard", "refusal", {})
    assert comparable_rows("overrefusal", "llama_guard", "refusal", {"label": "unsafe"})
    assert not comparable_rows("overrefusal", "llama_guard", "refusal", {"label": "safe"})
    assert comparable_rows("overrefusal", "llama_guard", "llama_guard", {"label": "safe"})


def _outcomes(variant, values, ids=None, bench="b", metric="safety_score"):
    ids = ids or [str(i) for i in range(len(values))]
    return [{"model": "m", "variant": variant, "benchmark": bench, "judge": "j", "metric": metric, "group": "",
             "stratum": bench, "unit": u, "sum": float(v), "count": 1.0, "paired": True}
            for u, v in zip(ids, values, strict=True)]


def test_comparisons_pair_prompts_by_id_and_holm_per_family():
    n = 40
    ref = [0] * 20 + [1] * 20
    better = [1] * 20 + [1] * 20           # fixes every unsafe prompt
    # Same outcomes as `better`, listed in reverse order: pairing is by prompt id, not position.
    ids = [str(i) for i in range(n)]
    rows = (_outcomes("base", ref) + _outcomes("v1", better[::-1], ids[::-1]) + _outcomes("v2", ref))
    metrics = pd.DataFrame([{"model": "m", "variant": v, "seed": None if v == "base" else 0, "benchmark": "b",
                             "judge": "j", "metric": "safety_score", "group": "", "value": val}
                            for v, val in (("base", 0.5), ("v1", 1.0), ("v2", 0.5))])
    refs = [{"model": "m", "variant": "base", "role": "base", "seed": None}]
    out = comparisons(metrics, pd.DataFrame(rows), refs).set_index("variant")
    assert list(out.index) == ["v1", "v2"]
    assert out.loc["v1", "difference"] == pytest.approx(0.5)
    assert out.loc["v1", "test"] == "mcnemar_exact"
    assert out.loc["v1", "p_value"] == pytest.approx(2 * 0.5 ** 20)
    assert out.loc["v2", "p_value"] == 1.0
    # Holm over the family {v1, v2} vs base on this metric: 2 * p for the smaller.
    assert out.loc["v1", "p_holm"] == pytest.approx(2 * 2 * 0.5 ** 20)
    assert out.loc["v1", "reference_value"] == 0.5 and out.loc["v1", "value"] == 1.0


def test_seed_summary_mean_and_spread():
    rows = [{"model": "m", "variant": f"dpo-seed{s}", "method": "dpo", "seed": s, "benchmark": "b", "judge": "j",
             "metric": "safety_score", "group": "", "value": v} for s, v in ((1, 0.7), (2, 0.8), (3, 0.9))]
    rows.append({**rows[0], "variant": "base", "method": "base", "seed": None, "value": 0.4})
    out = seed_summary(pd.DataFrame(rows))
    assert len(out) == 1
    r = out.iloc[0]
    assert (r.cell, r.n_seeds, r.seeds) == ("dpo", 3, "1 2 3")
    assert r["mean"] == pytest.approx(0.8) and r["sd"] == pytest.approx(0.1)
    assert r["values"] == "0.7 0.8 0.9"  # each seed's value, in the order of `seeds`


def test_a_cells_seeds_are_compared_with_base_together_paired_by_prompt():
    base = [0] * 10 + [1] * 10
    s0 = [1] * 15 + [0] * 5
    s1 = [1] * 10 + [0] * 5 + [1] * 5
    rows = _outcomes("base", base) + _outcomes("dpo-seed0", s0) + _outcomes("dpo-seed1", s1)
    metrics = pd.DataFrame([{"model": "m", "variant": v, "seed": s, "benchmark": "b", "judge": "j",
                             "metric": "safety_score", "group": "", "value": sum(x) / 20}
                            for v, s, x in (("base", None, base), ("dpo-seed0", 0, s0), ("dpo-seed1", 1, s1))])
    refs = [{"model": "m", "variant": "base", "role": "base", "seed": None}]
    out = comparisons(metrics, pd.DataFrame(rows), refs)
    pooled = out[out.reference_role == "base (seeds pooled)"].set_index("variant")
    assert list(pooled.index) == ["dpo (all seeds)"]
    expected = sum((a + b) / 2 - c for a, b, c in zip(s0, s1, base, strict=True)) / 20
    assert pooled.loc["dpo (all seeds)", "difference"] == pytest.approx(expected)
    assert pooled.loc["dpo (all seeds)", "n"] == 20
    assert pooled.loc["dpo (all seeds)", "value"] == pytest.approx((sum(s0) + sum(s1)) / 40)
    # Its own Holm family: the per-seed rows keep theirs (two tests vs base).
    per_seed = out[out.reference_role == "base"]
    assert set(per_seed.variant) == {"dpo-seed0", "dpo-seed1"}
    assert pooled.loc["dpo (all seeds)", "p_holm"] == pytest.approx(pooled.loc["dpo (all seeds)", "p_value"])
