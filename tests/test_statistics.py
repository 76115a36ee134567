"""Seed statistics against hand-computed values and a brute-force bootstrap."""
import itertools
import math
import statistics

import numpy as np
import pytest

from eval.statistics import bootstrap_means, paired_difference, summarize


def test_summarize():
    assert summarize([1.0, 2.0, 4.0]) == {"mean": pytest.approx(7 / 3), "std": pytest.approx(math.sqrt(7 / 3)), "n": 3}
    assert summarize([2.0, float("nan")]) == {"mean": 2.0, "std": None, "n": 1}
    assert summarize([])["n"] == 0


def test_three_seeds_by_hand():
    # diffs 1, 2, 3: the 27 resample means run from 1 (all 1s, p = 1/27 > 2.5%) to 3 (all 3s, p = 1/27),
    # so the 2.5% and 97.5% quantiles are exactly 1 and 3.
    result = paired_difference({0: 2.0, 1: 4.0, 2: 6.0}, {0: 1.0, 1: 2.0, 2: 3.0})
    assert result["diffs"] == [1.0, 2.0, 3.0]
    assert (result["mean"], result["low"], result["high"], result["significant"]) == (2.0, 1.0, 3.0, True)
    mixed = paired_difference({0: 1.0, 1: 0.0, 2: 2.0}, {0: 0.0, 1: 1.0, 2: 1.0})  # diffs 1, −1, 1
    assert (mixed["low"], mixed["high"], mixed["significant"]) == (-1.0, 1.0, False)


def test_exact_enumeration_matches_brute_force_and_monte_carlo_agrees():
    values = [0.3, -0.1, 0.7, 0.2]
    brute = sorted(statistics.fmean(c) for c in itertools.product(values, repeat=4))
    np.testing.assert_allclose(bootstrap_means(values), brute, atol=1e-12)
    many = np.random.default_rng(3).normal(0.1, 1.0, 12)
    means = bootstrap_means(many)
    assert len(means) == 20_000
    # The bootstrap distribution of the mean has the sample mean as centre and sd ≈ s·sqrt((n−1)/n)/sqrt(n).
    assert means.mean() == pytest.approx(many.mean(), abs=0.02)
    assert means.std() == pytest.approx(many.std(ddof=0) / math.sqrt(12), rel=0.05)


def test_only_common_seeds_are_paired():
    result = paired_difference({0: 1.0, 1: 2.0, 5: 9.0}, {0: 0.5, 1: 1.0, 2: 7.0})
    assert result["seeds"] == [0, 1] and result["diffs"] == [0.5, 1.0]
    single = paired_difference({0: 1.0}, {0: 0.25})
    assert single["mean"] == 0.75 and math.isnan(single["low"]) and not single["significant"]
