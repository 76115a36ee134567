"""Statistics over seeds: paired differences with tests of the right size at small n, Holm's
correction and power.

Runs of two arms with the same seed share the data order and the initial weights, so arms are compared
seed by seed: the paired difference d_s = x_s(arm) − x_s(baseline), n seeds. For each comparison
(:func:`paired_difference`):

* the mean of d and a paired Student-t interval: mean ± t_{1−α/2, n−1} · sd / √n (the effect and its
  uncertainty, shown whatever the p-value);
* the two-sided sign-flip (paired permutation) p-value: the share of the 2^n sign patterns ε for which
  |Σ ε_s d_s| ≥ |Σ d_s|, enumerated exactly up to n = 16, beyond from 100,000 random patterns of a fixed
  seed ((hits + 1) / (patterns + 1)). It assumes only that, without an effect, each difference is as
  likely to be negative as positive; with 3 seeds it cannot go below 2/8 = 0.25;
* power: the smallest true mean difference a two-sided paired t-test at 0.05 detects with 80% power given
  the observed sd (:func:`minimum_detectable_effect`), and how many seeds it would take to detect a given
  effect (:func:`seeds_needed`).

A family of comparisons is corrected with Holm's step-down procedure (:func:`holm`), which keeps the
probability of any false rejection at most α whatever the dependence between the tests.
"""
from __future__ import annotations

import itertools
import math
import statistics
from typing import Sequence

import numpy as np
from scipy import optimize, stats

EXACT_UP_TO = 16            # sign flips enumerated exactly up to this many seeds (2^16 patterns)
RANDOM_PATTERNS = 100_000   # beyond: this many random sign patterns
PATTERN_SEED = 0            # of the random patterns (the same data always give the same p)
ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 100_000         # seeds_needed reports None beyond this


def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile of Student's t with ``df`` degrees of freedom."""
    return float(stats.t.ppf(probability, df))


def t_interval(diffs: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Paired Student-t interval of the mean of ``diffs`` (n − 1 degrees of freedom); NaNs below 2 values."""
    d = np.asarray(diffs, dtype=np.float64)
    if len(d) < 2:
        return float("nan"), float("nan")
    half = t_quantile(1 - (1 - level) / 2, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return float(d.mean() - half), float(d.mean() + half)


def sign_patterns(n: int, seed: int = PATTERN_SEED) -> np.ndarray:
    """(patterns, n) array of ±1: all 2^n when n <= EXACT_UP_TO, else RANDOM_PATTERNS random ones."""
    if n <= EXACT_UP_TO:
        return np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    return np.random.default_rng(seed).choice((1.0, -1.0), size=(RANDOM_PATTERNS, n))


def sign_flip_p(diffs, seed: int = PATTERN_SEED, alternative: str = "two-sided"):
    """Sign-flip p-value of the mean of ``diffs`` being 0 (NaN for no values): two-sided (by |sum|), or one-sided
    ``"greater"`` (the share of patterns whose sum reaches the observed one) or ``"less"``. ``diffs`` may be one
    study (n values: a float back) or many at once ((studies, n): an array of p-values back). Exact for the
    sharp null "the arm changes nothing": differences symmetric about 0."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.shape[-1] == 0:
        return float("nan") if d.ndim == 1 else np.full(d.shape[0], np.nan)
    studies = np.atleast_2d(d)
    if alternative == "less":
        studies = -studies
    patterns = sign_patterns(studies.shape[1], seed)
    side = np.abs if alternative == "two-sided" else (lambda x: x)
    observed = side(studies.sum(axis=1))
    tolerance = 1e-12 * np.maximum(1.0, np.abs(studies).sum(axis=1))  # equal sums must not differ by rounding
    hits = np.empty(len(studies), dtype=np.int64)
    block = max(1, 2 ** 22 // len(patterns))  # studies per block: bounded memory for many studies at once
    for start in range(0, len(studies), block):
        sums = side(studies[start:start + block] @ patterns.T)
        hits[start:start + block] = (sums >= (observed - tolerance)[start:start + block, None]).sum(axis=1)
    if studies.shape[1] <= EXACT_UP_TO:
        p = hits / len(patterns)
    else:
        p = (hits + 1) / (len(patterns) + 1)
    return float(p[0]) if d.ndim == 1 else p


def equivalence_p(diffs, margin: float, seed: int = PATTERN_SEED):
    """Two one-sided sign-flip tests (TOST) of equivalence within ±``margin``: the larger of the p-value of
    "mean > −margin" (null: differences symmetric about −margin) and of "mean < +margin" (about +margin).
    Small p: the difference lies within the margin. Works on one study or many, as :func:`sign_flip_p`."""
    d = np.asarray(diffs, dtype=np.float64)
    return np.maximum(sign_flip_p(d + margin, seed, "greater"), sign_flip_p(d - margin, seed, "less"))


def simulated_rejections(studies: np.ndarray, alpha: float, margin: float | None = None) -> float:
    """The share of simulated ``studies`` ((count, n) differences) the sign-flip test (or, with ``margin``,
    the equivalence test) rejects at ``alpha``: a size under a null, a power under an effect."""
    p = equivalence_p(studies, margin) if margin is not None else sign_flip_p(studies)
    return float(np.mean(np.asarray(p) < alpha))


def sign_flip_mde(sd: float, n: int, alpha: float, power: float = POWER, simulations: int = 1000,
                  seed: int = 1) -> float:
    """The smallest true mean difference the two-sided sign-flip test at ``alpha`` rejects with probability
    ``power`` from n seeds of normal differences with standard deviation ``sd``, by simulation (the same
    draws for every effect, so the power grows with the effect; bisection to 1% of ``sd``). NaN without sd;
    infinite when n seeds cannot give a p below ``alpha``."""
    if n < 2 or sd is None or not math.isfinite(sd) or sd <= 0:
        return float("nan")
    if n <= EXACT_UP_TO and 2 / 2 ** n >= alpha:
        return float("inf")  # no sign pattern is rare enough: the test cannot reject at alpha, whatever the effect
    noise = np.random.default_rng(seed).standard_normal((simulations, n)) * sd
    low, high = 0.0, sd
    while simulated_rejections(noise + high, alpha) < power:
        high *= 2
    while high - low > 0.01 * sd:
        middle = (low + high) / 2
        low, high = (middle, high) if simulated_rejections(noise + middle, alpha) < power else (low, middle)
    return high


def leave_one_out_range(diffs: Sequence[float]) -> tuple[float, float]:
    """The smallest and largest mean of the differences with one seed left out (NaN below 3 values)."""
    d = np.asarray(diffs, dtype=np.float64)
    if len(d) < 3:
        return float("nan"), float("nan")
    means = (d.sum() - d) / (len(d) - 1)
    return float(means.min()), float(means.max())


def t_test_p(diffs) -> float:
    """Two-sided paired t-test p-value of the mean of ``diffs`` being 0 (NaN below 2 values or for sd 0)."""
    d = np.asarray(diffs, dtype=np.float64)
    if len(d) < 2 or d.std(ddof=1) == 0:
        return float("nan")
    t = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
    return float(2 * stats.t.sf(abs(t), len(d) - 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (NaN entries stay NaN and do not count)."""
    p = np.asarray(p_values, dtype=np.float64)
    valid = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(len(p), np.nan)
    order = valid[np.argsort(p[valid], kind="stable")]
    m, running = len(order), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def t_test_power(effect: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test at ``alpha`` for a true mean difference ``effect``, n pairs
    with differences of standard deviation ``sd`` (noncentral t with n − 1 degrees of freedom)."""
    df = n - 1
    critical = t_quantile(1 - alpha / 2, df)
    noncentrality = effect * math.sqrt(n) / sd
    upper = stats.nct.sf(critical, df, noncentrality)
    lower = stats.nct.cdf(-critical, df, noncentrality)  # far in the tail scipy can return NaN for ~0
    return float(upper + (0.0 if math.isnan(lower) else lower))


def minimum_detectable_effect(sd: float, n: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """The true mean difference the two-sided paired t-test at ``alpha`` detects with probability ``power``
    from n seeds whose differences have standard deviation ``sd`` (NaN for n < 2 or no sd)."""
    if n < 2 or sd is None or not math.isfinite(sd):
        return float("nan")
    if sd == 0:
        return 0.0
    upper = sd
    while t_test_power(upper, sd, n, alpha) < power:
        upper *= 2
    return float(optimize.brentq(lambda e: t_test_power(e, sd, n, alpha) - power, 0.0, upper, xtol=1e-12 * sd))


def seeds_needed(effect: float, sd: float, power: float = POWER, alpha: float = ALPHA) -> int | None:
    """The fewest seeds (>= 2) with which the paired t-test detects ``effect`` with ``power``; None when
    ``sd`` is unknown or more than MAX_SEEDS would be needed."""
    if sd is None or not math.isfinite(sd):
        return None
    if sd == 0:
        return 2
    n = 2
    while t_test_power(effect, sd, n, alpha) < power:
        n = n * 2 if n < 64 else int(n * 1.25)
        if n > MAX_SEEDS:
            return None
    low = max(2, n // 2 if n <= 64 else int(n / 1.25))
    while low < n:  # bisect: power grows with n
        mid = (low + n) // 2
        if t_test_power(effect, sd, mid, alpha) >= power:
            n = mid
        else:
            low = mid + 1
    return n


def paired_difference(arm: dict, baseline: dict, level: float = 0.95, target_effect: float = 0.01) -> dict:
    """Arm − baseline over the seeds both have (``{seed: value}`` each): the differences, their mean and
    sample sd, the t interval (``low``, ``high``), the sign-flip ``p`` (the t-test's as ``p_t``, for reference), the minimum detectable effect
    ``mde`` at 80% power and the seeds needed to detect ``target_effect`` (``seeds_for_target``)."""
    seeds = sorted(set(arm) & set(baseline))
    diffs = [arm[s] - baseline[s] for s in seeds]
    n = len(diffs)
    sd = statistics.stdev(diffs) if n > 1 else None
    low, high = t_interval(diffs, level)
    return {"seeds": seeds, "diffs": diffs, "n": n, "mean": statistics.fmean(diffs) if diffs else float("nan"),
            "sd": sd, "low": low, "high": high, "level": level, "p": sign_flip_p(diffs), "p_t": t_test_p(diffs),
            "mde": minimum_detectable_effect(sd, n), "target_effect": target_effect,
            "seeds_for_target": seeds_needed(target_effect, sd)}


def decisions(primary_p: float, family_p: Sequence[float], alpha: float = ALPHA) -> dict:
    """The study's decision rule: the primary comparison, named before the runs, is tested alone at
    ``alpha``; every other comparison is Holm-adjusted over the whole family and called significant only
    where its adjusted p is below ``alpha``. ``{"primary": bool, "adjusted": [...], "significant": [...]}``."""
    adjusted = holm(family_p)
    return {"primary": bool(primary_p < alpha), "adjusted": adjusted,
            "significant": [bool(p < alpha) for p in adjusted]}
