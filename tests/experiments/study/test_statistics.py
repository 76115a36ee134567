"""Seed statistics against published tables, hand enumeration, an independent simulation and the
properties the study relies on (size, power, family-wise error) measured on simulated studies."""
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from eval.tables import summarize
from experiments.study.statistics import (
    decisions,
    holm,
    minimum_detectable_effect,
    paired_difference,
    seeds_needed,
    sign_flip_p,
    t_interval,
    t_quantile,
    t_test_p,
    t_test_power,
)

REPO = Path(__file__).resolve().parents[3]


def test_summarize():
    assert summarize([1.0, 2.0, 4.0]) == {"mean": pytest.approx(7 / 3), "std": pytest.approx(math.sqrt(7 / 3)), "n": 3}
    assert summarize([2.0, float("nan")]) == {"mean": 2.0, "std": None, "n": 1}
    assert summarize([])["n"] == 0


@pytest.mark.parametrize("df,value", [(1, 12.706), (2, 4.303), (3, 3.182), (7, 2.365), (15, 2.131), (30, 2.042)])
def test_t_quantiles_match_the_published_table(df, value):
    # Two-sided 95% critical values of Student's t (any statistics textbook's table, 3 decimals).
    assert t_quantile(0.975, df) == pytest.approx(value, abs=5e-4)


def test_t_interval_by_hand():
    # diffs 1, 2, 3: mean 2, sd 1, half-width t_{0.975,2} / sqrt(3) = 4.303 / 1.732 = 2.484.
    low, high = t_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2 - 4.3027 / math.sqrt(3), 2 + 4.3027 / math.sqrt(3)), abs=1e-4)
    assert all(math.isnan(v) for v in t_interval([1.0]))
    # t-test p: t = 2 / (1 / sqrt(3)) = 3.464 with 2 df -> two-sided p = 0.0742 (t table: between 0.05 and 0.1).
    assert t_test_p([1.0, 2.0, 3.0]) == pytest.approx(0.0742, abs=1e-4)


def test_sign_flip_p_by_hand():
    # n = 3, diffs 1, 2, 3: the 8 signed sums are ±6, ±4, ±2, 0, 0; |sum| >= 6 in 2 of 8.
    assert sign_flip_p([1.0, 2.0, 3.0]) == 0.25
    assert sign_flip_p([-1.0, -2.0, -3.0]) == 0.25
    # With 3 seeds it can never go below 2/8, however large the effect.
    assert sign_flip_p([10.0, 11.0, 12.0]) == 0.25
    # n = 4, diffs 1, -2, 3, 4 (sum 6): a pattern flipping the subset S gives 10 - 2·sum(S) in absolute value
    # after aligning signs, so |sum| >= 6 iff sum(S) <= 2 ({}, {1}, {2}) or sum(S) >= 8 ({1,3,4}, {2,3,4},
    # {1,2,3,4}): 6 of 16.
    assert sign_flip_p([1.0, -2.0, 3.0, 4.0]) == 6 / 16
    # n = 4, diffs 1, 2, 3, 4 (sum 10): only all-plus and all-minus reach 10.
    assert sign_flip_p([1.0, 2.0, 3.0, 4.0]) == 2 / 16
    # Ties in |sum| count as at least as extreme (0.1 + 0.2 vs 0.3 differ by rounding).
    assert sign_flip_p([0.1, 0.2, -0.3]) == 1.0


def test_sign_flip_p_matches_brute_force_and_monte_carlo_beyond_16():
    rng = np.random.default_rng(5)
    for n in (5, 9):
        d = rng.normal(0.3, 1, n)
        brute = np.mean([abs(np.dot(s, d)) >= abs(d.sum()) - 1e-12 for s in itertools.product((1, -1), repeat=n)])
        assert sign_flip_p(d) == pytest.approx(brute)
    many = rng.normal(0.4, 1, (3, 8))
    assert sign_flip_p(many) == pytest.approx([sign_flip_p(row) for row in many])  # batched = one by one
    d = rng.normal(0.5, 1, 20)
    p = sign_flip_p(d)
    assert p == sign_flip_p(d)  # random patterns from a fixed seed
    # 100,000 patterns: the estimate is within a few standard errors of the exact value over all 2^20
    # patterns, enumerated here as the bits of 0 .. 2^20 - 1.
    bits = (np.arange(2 ** 20)[:, None] >> np.arange(20)) & 1
    exact = np.mean(np.abs((1 - 2 * bits) @ d) >= abs(d.sum()) - 1e-12)
    assert abs(p - exact) < 4 * math.sqrt(exact * (1 - exact) / 100_000) + 1e-5


def test_holm_by_hand():
    # Sorted 0.005, 0.01, 0.03, 0.04 (m = 4): 4·0.005 = 0.02, 3·0.01 = 0.03, 2·0.03 = 0.06, 1·0.04 -> 0.06
    # (monotone), back in the order given.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # 2·0.5 = 1, then max(1, 0.9)
    adjusted = holm([0.01, float("nan"), 0.02])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)


def test_power_against_published_sample_sizes_and_simulation():
    # G*Power, t tests, matched pairs, two-tailed α = 0.05, power 0.8: effect size dz 0.5 -> 34 pairs,
    # 0.8 -> 15, 0.2 -> 199.
    assert (seeds_needed(0.5, 1.0), seeds_needed(0.8, 1.0), seeds_needed(0.2, 1.0)) == (34, 15, 199)
    # The figures: sd 0.020 of the paired class-IoU difference -> about 0.06 at 3 seeds, 0.023 at
    # 8, 0.015 at 16.
    mde = [minimum_detectable_effect(0.02, n) for n in (3, 8, 16)]
    assert mde == pytest.approx([0.065, 0.0231, 0.0150], abs=6e-4)
    # Independent check by simulation: at the minimum detectable effect the t-test rejects in 80% of studies.
    rng = np.random.default_rng(11)
    d = rng.normal(mde[1], 0.02, (20_000, 8))
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(8))
    assert np.mean(np.abs(t) > t_quantile(0.975, 7)) == pytest.approx(0.8, abs=0.015)
    assert t_test_power(mde[1], 0.02, 8) == pytest.approx(0.8)


def test_paired_difference_pairs_by_seed_and_reports_everything():
    result = paired_difference({0: 2.0, 1: 4.0, 2: 6.0, 7: 1.0}, {0: 1.0, 1: 2.0, 2: 3.0, 5: 0.0})
    assert result["seeds"] == [0, 1, 2] and result["diffs"] == [1.0, 2.0, 3.0]
    assert (result["mean"], result["sd"], result["p"]) == (2.0, 1.0, 0.25)
    assert (result["low"], result["high"]) == pytest.approx(t_interval([1.0, 2.0, 3.0]))
    assert result["mde"] == pytest.approx(minimum_detectable_effect(1.0, 3))
    assert result["seeds_for_target"] == seeds_needed(0.01, 1.0)
    single = paired_difference({0: 1.0}, {0: 0.25})
    assert single["mean"] == 0.75 and math.isnan(single["low"]) and math.isnan(single["mde"])


def test_the_primary_test_has_its_size_and_power_on_simulated_studies():
    """2,000 null studies of 8 seeds: the primary test rejects in 3-7%; with a true effect of 1.5 sd, in most.
    The t interval covers the true mean in about 95%."""
    rng = np.random.default_rng(2023)
    null = rng.normal(0.0, 1.0, (2000, 8))
    p = sign_flip_p(null)
    rejected = np.mean([decisions(pi, [])["primary"] for pi in p])
    assert 0.03 <= rejected <= 0.07
    shifted = rng.normal(1.5, 1.0, (2000, 8))
    assert np.mean([decisions(pi, [])["primary"] for pi in sign_flip_p(shifted)]) > 0.8
    half = t_quantile(0.975, 7) * null.std(1, ddof=1) / math.sqrt(8)
    assert 0.93 <= np.mean(np.abs(null.mean(1)) <= half) <= 0.97


def test_holm_keeps_the_family_wise_rate_on_simulated_null_families():
    """2,000 families of 20 null comparisons (5 arms against one shared baseline, 4 measures, 8 seeds): the
    chance of any significant result stays <= 5% with Holm (it is ~60% without a correction)."""
    rng = np.random.default_rng(7)

    def null_families(families: int, seeds: int) -> np.ndarray:
        baseline = rng.normal(0, 1, (families, 4, 1, seeds))
        arms = rng.normal(0, 1, (families, 4, 5, seeds))
        return (arms - baseline).reshape(families, 20, seeds)  # correlated through the shared baseline

    diffs = null_families(2000, 8)
    mean, sd = diffs.mean(-1), diffs.std(-1, ddof=1)
    p_t = 2 * stats.t.sf(np.abs(mean / (sd / math.sqrt(8))), 7)
    any_holm = np.mean([any(decisions(1.0, family)["significant"]) for family in p_t])
    any_raw = np.mean((p_t < 0.05).any(axis=1))
    assert any_holm <= 0.05 and any_raw > 0.4
    # The sign-flip p-values of 12 seeds (the smallest, 2/4096, survives Holm over 20): the same holds.
    p_flip = sign_flip_p(null_families(2000, 12).reshape(-1, 12)).reshape(2000, 20)
    assert np.mean([any(decisions(1.0, family)["significant"]) for family in p_flip]) <= 0.05


def test_the_committed_pilot_recomputed_from_its_run_records():
    """docs/study/pilot (the former study: 8 seeds, 5 arms): every paired difference and decision of its
    study.json recomputed here from its per-run records, with the sign-flip p counted by hand for the primary one."""
    report = json.loads((REPO / "docs" / "study" / "pilot" / "study.json").read_text())
    records = {path.stem: json.loads(path.read_text()) for path in (REPO / "docs" / "study" / "pilot" / "runs").glob("*.json")}
    arms = [a["name"] for a in report["arms"]]
    seeds = report["seeds"]
    assert seeds == list(range(8)) and len(records) == len(arms) * len(seeds) == 40

    def value(measure, arm, seed):
        record = records[f"{arm}_seed{seed}"]
        if measure == "val_l1":
            return record["val_l1"]
        arch, _, metric = measure.partition(":")
        return record["final"][arch][metric]

    p_of = {}
    for measure, entry in report["analysis"].items():
        for arm in arms[1:]:
            diffs = [value(measure, arm, s) - value(measure, "adam", s) for s in seeds]
            result = paired_difference({s: value(measure, arm, s) for s in seeds},
                                       {s: value(measure, "adam", s) for s in seeds})
            assert result["diffs"] == pytest.approx(diffs, abs=1e-15)
            reported = entry["vs_baseline"][arm]
            assert (result["mean"], result["low"], result["high"], result["p"]) == pytest.approx(
                (reported["mean"], reported["low"], reported["high"], reported["p"]), abs=1e-12)
            p_of[(measure, arm)] = result["p"]
    primary = report["tests"]["primary"]
    assert (primary["measure"], primary["arm"]) == ("fcn8s:class_iou", "tradam")
    # By hand: the share of the 256 sign patterns whose |mean| reaches the observed one.
    diffs = [value("fcn8s:class_iou", "tradam", s) - value("fcn8s:class_iou", "adam", s) for s in seeds]
    observed = abs(sum(diffs))
    count = sum(abs(sum(d if (mask >> i) & 1 else -d for i, d in enumerate(diffs))) >= observed - 1e-12
                for mask in range(256))
    assert p_of[("fcn8s:class_iou", "tradam")] == primary["p"] == count / 256
    family = [e for e in report["tests"]["family"]]
    assert len(family) == 27 and {(e["measure"], e["arm"]) for e in family} | {("fcn8s:class_iou", "tradam")} == set(p_of)
    decided = decisions(primary["p"], [p_of[(e["measure"], e["arm"])] for e in family])
    assert decided["primary"] == primary["significant"]
    assert decided["significant"] == [e["significant"] for e in family]
    assert decided["adjusted"] == pytest.approx([e["p_holm"] for e in family])


# ------------------------------------------------------------------ the confirmatory study, recomputed by hand
def recompute_family(records: dict, seeds: list[int], margin: float = 0.01) -> dict:
    """H1-H4 of docs/study/plan.md from run records alone, written independently of the analysis: the
    paired differences, their mean and t interval, the exact sign-flip p over all 2^n sign patterns built
    from the bits of 0..2^n-1, the equivalence p as the larger of two one-sided ones, and Holm by hand."""
    def primary(name):
        return records[name]["final"]["fcn8s"]["class_iou"]

    def log_direction_noise(name):
        ratios = [v for _, v in records[name]["noise"]["direction_ratio"] if v is not None and math.isfinite(v)]
        return math.log(sum(ratios) / len(ratios))

    plan = {"H1": ("tradam", "adam", primary, None), "H2": ("tradam_adam_step", "adam", primary, None),
            "H3": ("tradam", "adam_matched", primary, margin), "H4": ("tradam", "adam", log_direction_noise, None)}
    n = len(seeds)
    signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)

    def share_at_least(d, one_sided):
        sums, observed = signs @ d, d.sum()
        if not one_sided:
            sums, observed = np.abs(sums), abs(observed)
        return float(np.mean(sums >= observed - 1e-12 * max(1.0, np.abs(d).sum())))

    out = {}
    for name, (arm, baseline, measure, eq_margin) in plan.items():
        d = np.array([measure(f"{arm}_seed{s}") - measure(f"{baseline}_seed{s}") for s in seeds])
        half = stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n)
        if eq_margin is None:
            p = share_at_least(d, one_sided=False)
        else:  # "mean > -margin" (about -margin) and "mean < +margin" (about +margin), the larger p
            p = max(share_at_least(d + eq_margin, True), share_at_least(-(d - eq_margin), True))
        out[name] = {"mean": d.mean(), "low": d.mean() - half, "high": d.mean() + half, "p": p,
                     "median": float(np.median(d))}
    ranked = sorted(out, key=lambda h: out[h]["p"])
    running = 0.0
    for rank, name in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - rank) * out[name]["p"]))
        out[name]["p_holm"] = running
    return out


def test_the_hand_recomputation_agrees_with_the_analysis_on_a_made_up_study(monkeypatch):
    from experiments.study import analysis
    from experiments.study.analysis import confirmatory, noise_measures
    # The power simulations (MDE, power if equal) are not recomputed here and take most of the time: off.
    monkeypatch.setattr(analysis, "sign_flip_mde", lambda *args, **kwargs: math.nan)
    monkeypatch.setattr(analysis, "simulated_rejections", lambda *args, **kwargs: math.nan)
    rng = np.random.default_rng(7)
    seeds = list(range(100, 116))
    shifts = {"adam": 0.0, "tradam": -0.012, "tradam_adam_step": 0.004, "adam_matched": -0.010}
    records, values, noise = {}, {"fcn8s:class_iou": {}}, {}
    for arm, shift in shifts.items():
        for s in seeds:
            name = f"{arm}_seed{s}"
            iou = 0.3 + 0.01 * (s % 5) + shift + 0.012 * rng.standard_normal()
            ratios = [(800 + i, float(np.exp(rng.normal(4.0 - (0.1 if arm == "tradam" else 0.0), 0.3)))) for i in range(40)]
            records[name] = {"final": {"fcn8s": {"class_iou": iou}}, "noise": {"direction_ratio": ratios}}
            values["fcn8s:class_iou"][name] = iou
            noise[name] = {"direction_ratio": ratios, "grad_ratio": ratios}
    values.update(noise_measures(noise))
    by_code = {h["name"]: h for h in confirmatory(values, seeds)["hypotheses"]}
    by_hand = recompute_family(records, seeds)
    assert list(by_code) == ["H1", "H2", "H3", "H4"]
    for name, mine in by_hand.items():
        assert {k: by_code[name][k] for k in mine} == pytest.approx(mine, abs=1e-12), name


def test_the_committed_confirmatory_study_recomputed_from_its_run_records():
    """docs/study: H1-H4's effects, intervals, raw and Holm-adjusted p and verdicts in study.json, recomputed
    by hand from the 64 committed run records (the plan's arms and seeds)."""
    folder = REPO / "docs" / "study"
    if not (folder / "study.json").is_file():
        pytest.skip("the confirmatory study's report is written once all 64 runs are in (docs/study/plan.md)")
    report = json.loads((folder / "study.json").read_text())
    plan = report["plan"]["content"]
    records = {path.stem: json.loads(path.read_text()) for path in (folder / "runs").glob("*.json")}
    assert set(records) == {f"{a}_seed{s}" for a in plan["arms"] for s in plan["seeds"]}
    assert report["plan"]["deviations"] == [] and report["seeds"] == plan["seeds"]
    by_hand = recompute_family(records, plan["seeds"], plan["equivalence_margin"])
    tested = {h["name"]: h for h in report["confirmatory"]["hypotheses"]}
    assert list(tested) == plan["hypotheses"]
    for name, mine in by_hand.items():
        assert {k: tested[name][k] for k in mine} == pytest.approx(mine, abs=1e-12), name
        rejected = mine["p_holm"] < plan["alpha"]
        assert tested[name]["verdict"].startswith("equivalent") == rejected if name == "H3" else \
            (tested[name]["verdict"] != "no difference shown") == rejected
