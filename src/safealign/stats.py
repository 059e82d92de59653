"""Uncertainty for the metrics: bootstrap confidence intervals, paired tests, Holm's correction.

Every interval and test here resamples *prompts* (the unit a benchmark draws), through SciPy's
maintained implementations (``scipy.stats.bootstrap``, ``binomtest``, ``permutation_test``), each
with a generator seeded from a stable hash of what it measures, so a rerun writes the same bytes
whatever order the rows are computed in.

A metric's data is a list of *strata* (one per benchmark: the global score has two), each a list
of units ``(sum, count)``: a prompt's summed outcome over its ``count`` scored responses (1 for one
sample per prompt; k for toxicity's k samples). The metric is the mean over strata of
``sum(sums) / sum(counts)`` in each stratum, which is exactly how metrics.py computes the value.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 4999
# BCa rather than percentile: the metrics are proportions, often near 0 or 1 (an aligned model's
# safety score), whose bootstrap distribution is skewed and biased; BCa corrects both (second-order
# accurate) where the percentile interval under-covers. BCa needs a non-constant jackknife: on an
# all-0 / all-1 sample every resample equals the estimate and SciPy returns NaN, so constant data
# gets an exact Clopper-Pearson interval instead (binary data) or the point itself (other data),
# and any other NaN falls back to the percentile interval. ``Interval.method`` says which.

Stratum = Sequence[tuple[float, float]]  # (sum, count) per prompt


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str  # "bca", "percentile", "clopper_pearson", "constant"


@dataclass(frozen=True)
class Comparison:
    difference: float
    ci_low: float
    ci_high: float
    ci_method: str
    p_value: float
    test: str
    n: int  # pairs (paired) or the two sample sizes' sum (unpaired)


def seed_of(*key: object) -> int:
    """A stable 64-bit seed from ``key`` (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, key)).encode()).digest()[:8], "big")


def _ratio(s: np.ndarray, c: np.ndarray, axis: int = -1) -> np.ndarray:
    return s.sum(axis=axis) / c.sum(axis=axis)


def value_of(strata: Sequence[Stratum]) -> float:
    """The metric: mean over strata of sum(sums) / sum(counts)."""
    return float(np.mean([_ratio(np.asarray([u[0] for u in st], float), np.asarray([u[1] for u in st], float))
                          for st in strata]))


def _is_binary(strata: Sequence[Stratum]) -> bool:
    return all(u[1] == 1 and u[0] in (0, 1) for st in strata for u in st)


def _clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def _constant_interval(strata: Sequence[Stratum], value: float) -> Interval:
    """Every prompt's outcome equal within each stratum: the bootstrap cannot say anything.
    Binary data gets Clopper-Pearson per stratum at a Bonferroni-split level (so all strata's
    intervals hold together with >= CONFIDENCE), averaged like the metric; other data the point."""
    if not _is_binary(strata):
        return Interval(value, value, "constant")
    level = 1 - (1 - CONFIDENCE) / len(strata)
    bounds = [_clopper_pearson(int(sum(u[0] for u in st)), len(st), level) for st in strata]
    return Interval(float(np.mean([b[0] for b in bounds])), float(np.mean([b[1] for b in bounds])),
                    "clopper_pearson")


# BCa's jackknife costs O(n^2); above this many prompts per sample (ALERT at paper scale: ~15,000)
# the percentile interval is used: BCa's bias / skewness correction shrinks like 1/sqrt(n) and the
# two agree closely there, while the jackknife alone would take minutes per metric.
BCA_MAX_N = 3000
# Elements per vectorized batch: BCa's jackknife holds n x (n - 1) values at once without a batch
# (1.8 GB for one 15,000-prompt ALERT sample); batching keeps memory flat at paper scale.
BATCH_ELEMENTS = 4_000_000


def _bootstrap(data: tuple[np.ndarray, ...], statistic, *, paired: bool, seed: int) -> Interval:
    import warnings

    from scipy.stats import bootstrap

    n = max(len(d) for d in data)
    batch = max(1, BATCH_ELEMENTS // n)
    for method in ("BCa", "percentile") if n <= BCA_MAX_N else ("percentile",):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DegenerateDataWarning: handled by the NaN check
            res = bootstrap(data, statistic, n_resamples=N_RESAMPLES, paired=paired, vectorized=True,
                            batch=batch, confidence_level=CONFIDENCE, method=method,
                            rng=np.random.default_rng(seed))
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return Interval(lo, hi, method.lower())
    return Interval(math.nan, math.nan, "")


def bootstrap_ci(strata: Sequence[Stratum], key: Sequence[object]) -> Interval:
    """95 % bootstrap CI of :func:`value_of`, resampling prompts within each stratum (a stratified
    bootstrap: the global score's benchmarks keep their sizes). ``key`` seeds the generator."""
    strata = [st for st in strata if len(st)]
    if not strata:
        return Interval(math.nan, math.nan, "")
    value = value_of(strata)
    if all(len({u[0] / u[1] for u in st}) == 1 for st in strata):
        return _constant_interval(strata, value)
    return _bootstrap_strata(strata, seed_of(*key))


def _bootstrap_strata(strata: Sequence[Stratum], seed: int) -> Interval:
    """scipy.stats.bootstrap over the prompts of each stratum, resampled independently per stratum
    (each keeping its size). With one response per prompt the samples are the outcomes themselves;
    otherwise a prompt is a (sum, count) pair and SciPy, which resamples 1-D samples, gets each
    stratum's prompt *indices* while the statistic looks the pairs up (resampling indices is
    resampling rows, for the BCa jackknife too)."""
    sums = [np.asarray([u[0] for u in st], float) for st in strata]
    counts = [np.asarray([u[1] for u in st], float) for st in strata]
    if all((c == 1).all() for c in counts):
        def mean_of_means(*xs, axis=-1):
            return np.mean([x.mean(axis=axis) for x in xs], axis=0)

        return _bootstrap(tuple(sums), mean_of_means, paired=False, seed=seed)

    def statistic(*idx, axis=-1):
        parts = [_ratio(s[i.astype(np.intp)], c[i.astype(np.intp)], axis)
                 for s, c, i in zip(sums, counts, idx, strict=True)]
        return np.mean(parts, axis=0)

    data = tuple(np.arange(len(s), dtype=float) for s in sums)
    return _bootstrap(data, statistic, paired=False, seed=seed)


# ---------------------------------------------------------------- comparisons between variants


def mcnemar_exact(x: Sequence[float], y: Sequence[float]) -> tuple[int, int, float]:
    """McNemar's exact test on paired binary outcomes: ``(b, c, p)`` with b = #(x=1, y=0),
    c = #(x=0, y=1) and p the two-sided binomial test of b successes in b + c trials at 1/2
    (scipy.stats.binomtest); p = 1 with no discordant pair."""
    from scipy.stats import binomtest

    x, y = np.asarray(x, bool), np.asarray(y, bool)
    b, c = int(np.sum(x & ~y)), int(np.sum(~x & y))
    return b, c, (float(binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0)


def paired_comparison(x: Sequence[Sequence[float]], y: Sequence[Sequence[float]],
                      key: Sequence[object]) -> Comparison:
    """x - y on the same prompts: ``x[s][i]`` and ``y[s][i]`` are the two variants' outcomes on
    prompt i of stratum s (per-prompt means). The difference is the mean over strata of the mean
    per-prompt difference. CI: bootstrap of that difference resampling prompts (pairs stay
    together; strata independently). p: McNemar's exact test when there is one stratum of binary
    outcomes, else a paired sign-flip permutation test (scipy.stats.permutation_test,
    permutation_type='samples': under H0 each prompt's difference is as likely + as -)."""
    from scipy.stats import permutation_test

    d = tuple(np.asarray(xs, float) - np.asarray(ys, float) for xs, ys in zip(x, y, strict=True))
    d = tuple(s for s in d if len(s))
    n = int(sum(len(s) for s in d))
    if not n:
        return Comparison(math.nan, math.nan, math.nan, "", math.nan, "", 0)

    def mean_of_means(*ds, axis=-1):
        return np.mean([s.mean(axis=axis) for s in ds], axis=0)

    diff = float(mean_of_means(*d))
    if all(np.ptp(s) == 0 for s in d):
        ci = Interval(diff, diff, "constant")
    else:
        ci = _bootstrap(d, mean_of_means, paired=False, seed=seed_of(*key, "ci"))
    xs = [np.asarray(v, float) for v in x if len(v)]
    ys = [np.asarray(v, float) for v in y if len(v)]
    binary = all(np.isin(a, (0.0, 1.0)).all() for a in xs + ys)
    if len(d) == 1 and binary:
        _, _, p = mcnemar_exact(xs[0], ys[0])
        test = "mcnemar_exact"
    elif np.count_nonzero(np.concatenate(d)) < 2:
        # No or one non-zero difference: every sign flip gives the same |statistic|, so the exact
        # two-sided p is 1 (scipy's permutation_test refuses a sample of one).
        p, test = 1.0, "sign_flip_permutation"
    else:
        # Zero differences keep their value under a sign flip, so only the non-zero ones are
        # permuted (the same test; at paper scale most paired binary outcomes agree).
        weights = np.concatenate([np.full(len(s), 1 / (len(d) * len(s))) for s in d])
        diffs = np.concatenate(d)
        keep = diffs != 0
        weights, diffs = weights[keep], diffs[keep]
        res = permutation_test((diffs,), lambda s, axis=-1: np.sum(weights * s, axis=axis),
                               permutation_type="samples", vectorized=True, n_resamples=N_RESAMPLES,
                               batch=max(1, BATCH_ELEMENTS // len(diffs)),
                               rng=np.random.default_rng(seed_of(*key, "p")))
        p, test = float(res.pvalue), "sign_flip_permutation"
    return Comparison(diff, ci.low, ci.high, ci.method, p, test, n)


def unpaired_comparison(x: Sequence[float], y: Sequence[float], key: Sequence[object]) -> Comparison:
    """mean(x) - mean(y) for two samples of different units (when per-item pairs are unknown):
    independent bootstrap CI and a two-sample permutation test (scipy.stats.permutation_test)."""
    from scipy.stats import permutation_test

    x, y = np.asarray(x, float), np.asarray(y, float)
    if not len(x) or not len(y):
        return Comparison(math.nan, math.nan, math.nan, "", math.nan, "", 0)

    def diff_of_means(a, b, axis=-1):
        return a.mean(axis=axis) - b.mean(axis=axis)

    diff = float(diff_of_means(x, y))
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        ci = Interval(diff, diff, "constant")
    else:
        ci = _bootstrap((x, y), diff_of_means, paired=False, seed=seed_of(*key, "ci"))
    if np.ptp(np.concatenate([x, y])) == 0:
        p = 1.0
    else:
        p = float(permutation_test((x, y), diff_of_means, permutation_type="independent", vectorized=True,
                                   n_resamples=N_RESAMPLES, batch=max(1, BATCH_ELEMENTS // (len(x) + len(y))),
                                   rng=np.random.default_rng(seed_of(*key, "p"))).pvalue)
    return Comparison(diff, ci.low, ci.high, ci.method, p, "permutation_unpaired", len(x) + len(y))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted in the family).

    statsmodels' ``multipletests(method='holm')`` when installed; otherwise this short
    hand-written version (statsmodels is not a dependency): sort ascending, multiply the i-th
    smallest (0-based) by m - i, take the running maximum, cap at 1.
    """
    p = np.asarray(pvalues, float)
    out = np.full(len(p), math.nan)
    ok = ~np.isnan(p)
    if not ok.any():
        return out.tolist()
    try:
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok], method="holm")[1]
    except ImportError:
        q = p[ok]
        m = len(q)
        order = np.argsort(q, kind="stable")
        adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * q[order]))
        res = np.empty(m)
        res[order] = adj
        out[ok] = res
    return out.tolist()


def paired_bootstrap_ci(arrays: Sequence[Sequence[float]], statistic, key: Sequence[object]) -> Interval:
    """Bootstrap CI of ``statistic(*arrays, axis)`` resampling the arrays' positions together (a
    paired bootstrap, e.g. two judges' verdicts on the same responses for Cohen's kappa)."""
    data = tuple(np.asarray(a, float) for a in arrays)
    if not len(data[0]):
        return Interval(math.nan, math.nan, "")
    if all(np.ptp(a) == 0 for a in data):
        v = float(statistic(*data))
        return Interval(v, v, "constant")
    return _bootstrap(data, statistic, paired=True, seed=seed_of(*key))
