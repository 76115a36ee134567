"""Statistics over seeds: summaries and paired differences with bootstrap intervals.

Runs of two arms with the same seed share the data order and the initial weights, so arms are compared
seed by seed: the paired difference d_s = x_s(arm) − x_s(baseline). Its 95% interval is the percentile
bootstrap of the mean of d over seeds: resample the seeds with replacement, take the mean, read the 2.5%
and 97.5% quantiles of those means (inverted empirical CDF). With at most 6 seeds every one of the n^n
resamples is enumerated, so the interval is exact for the bootstrap and needs no random numbers;
beyond, 20,000 resamples with a fixed seed. The difference counts as significant when the interval
excludes 0. With 3 seeds the narrowest possible interval already spans the smallest and the largest
difference: only a consistent sign across all seeds can be significant.
"""
from __future__ import annotations

import itertools
import math
import statistics
from typing import Sequence

import numpy as np

EXACT_UP_TO = 6
RESAMPLES = 20_000


def summarize(values: Sequence[float]) -> dict:
    """``{"mean", "std" (sample std; None for fewer than 2 values), "n"}``, NaNs left out."""
    values = [float(v) for v in values if not math.isnan(v)]
    if not values:
        return {"mean": float("nan"), "std": None, "n": 0}
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def bootstrap_means(values: Sequence[float], seed: int = 0) -> np.ndarray:
    """Means of the bootstrap resamples of ``values`` (all n^n of them when n <= 6), sorted."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n <= EXACT_UP_TO:
        index = np.array(list(itertools.product(range(n), repeat=n)))
    else:
        index = np.random.default_rng(seed).integers(0, n, size=(RESAMPLES, n))
    return np.sort(values[index].mean(axis=1))


def paired_difference(arm: dict, baseline: dict, level: float = 0.95) -> dict:
    """Mean paired difference arm − baseline over the seeds both have (``{seed: value}`` each), its
    bootstrap interval and whether the interval excludes 0."""
    seeds = sorted(set(arm) & set(baseline))
    diffs = [arm[s] - baseline[s] for s in seeds]
    if len(diffs) < 2:
        return {"seeds": seeds, "diffs": diffs, "mean": diffs[0] if diffs else float("nan"),
                "low": float("nan"), "high": float("nan"), "significant": False}
    means = bootstrap_means(diffs)
    tail = (1 - level) / 2
    low = float(np.quantile(means, tail, method="inverted_cdf"))
    high = float(np.quantile(means, 1 - tail, method="inverted_cdf"))
    return {"seeds": seeds, "diffs": diffs, "mean": statistics.fmean(diffs), "low": low, "high": high,
            "significant": low > 0 or high < 0}
