"""The study's analysis: the confirmatory hypotheses of its plan (docs/study/plan.md) tested as one family
(Holm, family-wise error 0.05), each with its effect, interval, robustness and minimum detectable effect;
every other comparison exploratory (intervals, no verdicts); the noise probe by inner position k; the
learning curves and the segmenters' margins. :mod:`experiments.study.statistics` does the statistics.
"""
from __future__ import annotations

import math
import statistics as stats_module
from dataclasses import asdict, dataclass

import numpy as np

from eval.metrics import METRICS
from eval.tables import summarize
from experiments.study.design import Arm, run_name
from experiments.study.statistics import (ALPHA, POWER, equivalence_p, holm, leave_one_out_range, paired_difference,
                                          sign_flip_mde, sign_flip_p, simulated_rejections)

CURVE_SCORER = "fcn8s"       # the primary scorer: its class IoU is the primary metric, its curve the learning curve
LAST_EPOCHS = 3              # the secondary measure: the mean of the last few epoch files' class IoU
EQUIVALENCE_MARGIN = 0.01    # H3: TRAdam (paper) and Adam at its mean step within ±0.01 class IoU


@dataclass(frozen=True)
class Hypothesis:
    """One confirmatory hypothesis: ``arm`` against ``baseline`` on ``measure``, a difference (two-sided
    sign-flip test of "the arm changes nothing") or an equivalence (two one-sided tests within ``margin``)."""
    name: str
    arm: str
    baseline: str
    measure: str
    kind: str = "difference"
    margin: float | None = None
    secondary: str | None = None   # the robustness measure beside it


HYPOTHESES = (
    Hypothesis("H1", "tradam", "adam", f"{CURVE_SCORER}:class_iou", secondary="last_epochs:class_iou"),
    Hypothesis("H2", "tradam_adam_step", "adam", f"{CURVE_SCORER}:class_iou", secondary="last_epochs:class_iou"),
    Hypothesis("H3", "tradam", "adam_matched", f"{CURVE_SCORER}:class_iou", "equivalence", EQUIVALENCE_MARGIN,
               secondary="last_epochs:class_iou"),
    Hypothesis("H4", "tradam", "adam", "noise:log_direction_ratio"),
)


def per_seed(values: dict[str, float], arm: str, seeds) -> dict[int, float]:
    return {s: values[f"{arm}_seed{s}"] for s in seeds if f"{arm}_seed{s}" in values}


def hypothesis_result(h: Hypothesis, values: dict, seeds) -> dict:
    """One hypothesis on its paired differences: effect, 95% t interval, raw p, median, leave-one-seed-out
    range, per-seed values, the minimum detectable effect (sign-flip test at α/4, Holm's first step, and at
    α; for an equivalence, the probability of showing it when the arms are equal), and its secondary measure."""
    diff = paired_difference(per_seed(values[h.measure], h.arm, seeds), per_seed(values[h.measure], h.baseline, seeds))
    d = np.asarray(diff["diffs"])
    p = float(equivalence_p(d, h.margin)) if h.kind == "equivalence" else sign_flip_p(d)
    low, high = leave_one_out_range(d)
    result = {**asdict(h), "n": diff["n"], "mean": diff["mean"], "low": diff["low"], "high": diff["high"],
              "sd": diff["sd"], "p": p, "median": float(np.median(d)), "leave_one_out": [low, high],
              "per_seed": {str(s): [values[h.measure][f"{h.baseline}_seed{s}"], values[h.measure][f"{h.arm}_seed{s}"]]
                           for s in diff["seeds"]}}
    if h.kind == "equivalence":
        noise = np.random.default_rng(1).standard_normal((2000, diff["n"])) * (diff["sd"] or 0.0)
        result["power_if_equal"] = {f"{a:g}": simulated_rejections(noise, a, h.margin) for a in (ALPHA / 4, ALPHA)}
    else:
        result["mde"] = {f"{a:g}": sign_flip_mde(diff["sd"], diff["n"], a) for a in (ALPHA / 4, ALPHA)}
    if h.secondary and h.secondary in values:
        second = paired_difference(per_seed(values[h.secondary], h.arm, seeds),
                                   per_seed(values[h.secondary], h.baseline, seeds))
        result["secondary"] = {"measure": h.secondary, **{k: second[k] for k in ("mean", "low", "high", "sd")}}
    return result


def confirmatory(values: dict, seeds) -> dict:
    """Every hypothesis tested, Holm-adjusted over the family of :data:`HYPOTHESES`; its verdict where the
    adjusted p is below α."""
    arms = {name.rpartition("_seed")[0] for name in values.get(HYPOTHESES[0].measure, {})}
    tested = [hypothesis_result(h, values, seeds) for h in HYPOTHESES
              if h.measure in values and {h.arm, h.baseline} <= arms]
    for result, adjusted in zip(tested, holm([t["p"] for t in tested])):
        result["p_holm"] = adjusted
        result["verdict"] = verdict(result)
    return {"alpha": ALPHA, "power": POWER, "procedure": "Holm over the family", "hypotheses": tested}


def verdict(result: dict) -> str:
    """What the family's test says of one hypothesis, in words."""
    rejected = result["p_holm"] < ALPHA
    if result["kind"] == "equivalence":
        return (f"equivalent within ±{result['margin']:g}" if rejected else
                f"equivalence within ±{result['margin']:g} not shown")
    if not rejected:
        return "no difference shown"
    return "the arm is higher" if result["mean"] > 0 else "the arm is lower"


def exploratory(arms: list[Arm], seeds, values: dict, baseline: str = "adam") -> dict:
    """Every measure, every arm against Adam: summaries and paired differences with their intervals. No
    verdicts: these comparisons are not in the plan's family."""
    out = {}
    for measure, by_run in values.items():
        per_arm = {arm.name: per_seed(by_run, arm.name, seeds) for arm in arms}
        out[measure] = {
            "summary": {name: summarize(list(v.values())) for name, v in per_arm.items()},
            "vs_baseline": {name: {k: paired_difference(v, per_arm[baseline])[k] for k in ("n", "mean", "low", "high",
                                                                                           "sd")}
                            for name, v in per_arm.items() if name != baseline and baseline in per_arm}}
    return out


def noise_by_k(noise: dict, arms: list[Arm], seeds) -> dict:
    """Per arm and inner position k: the mean over seeds of each run's mean (over its probe rounds) gradient
    noise ratio r_g, direction noise ratio r_d and distance to the anchor, and how many runs had probes there."""
    out = {}
    for arm in arms:
        by_k: dict[int, dict[str, list[float]]] = {}
        for seed in seeds:
            series = noise.get(run_name(arm, seed), {})
            ks = dict(series.get("k", []))
            for key in ("grad_ratio", "direction_ratio", "distance_to_anchor"):
                per_k: dict[int, list[float]] = {}
                for step, value in series.get(key, []):
                    if step in ks and math.isfinite(value):
                        per_k.setdefault(int(ks[step]), []).append(value)
                for k, vals in per_k.items():
                    by_k.setdefault(k, {}).setdefault(key, []).append(float(np.mean(vals)))
        out[arm.name] = {str(k): {key: float(np.mean(vals)) for key, vals in entry.items()} | {
            "runs": len(entry.get("grad_ratio", []))} for k, entry in sorted(by_k.items())}
    return out


def noise_measures(noise: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per run: the mean over its probes of r_d and r_g, and log r_d (H4's measure: the log of the mean)."""
    out = {"noise:direction_ratio": {}, "noise:grad_ratio": {}, "noise:log_direction_ratio": {}}
    for name, series in noise.items():
        r_d = [v for _, v in series.get("direction_ratio", []) if math.isfinite(v)]
        r_g = [v for _, v in series.get("grad_ratio", []) if math.isfinite(v)]
        if r_d and r_g:
            out["noise:direction_ratio"][name] = float(np.mean(r_d))
            out["noise:grad_ratio"][name] = float(np.mean(r_g))
            out["noise:log_direction_ratio"][name] = math.log(float(np.mean(r_d)))
    return out


def last_epochs_mean(curves: dict[str, dict], points: int = LAST_EPOCHS) -> dict[str, float]:
    """Per run: the mean class IoU of its last ``points`` epoch files (a less noisy measure than the final one)."""
    return {name: float(np.mean([v for _, v in curve["class_iou"]][-points:])) for name, curve in curves.items()
            if curve["class_iou"]}


def curve_summary(curves: dict[str, dict], arms: list[Arm], seeds, points: int = LAST_EPOCHS) -> dict:
    """Per arm: the mean over seeds of class IoU at each of the last ``points`` epoch files, and the typical
    change from one epoch file to the next (the mean |change| over the last ``points`` of every run): a rise
    or a change of ranking smaller than it is not told apart from the swings."""
    out = {}
    for arm in arms:
        series = [[v for _, v in curves[run_name(arm, s)]["class_iou"]] for s in seeds
                  if curves.get(run_name(arm, s), {}).get("class_iou")]
        if not series or min(map(len, series)) < points:
            continue
        last = np.array([s[-points:] for s in series])
        out[arm.name] = {"last_means": last.mean(0).tolist(),
                         "swing": float(np.mean(np.abs(np.diff(last, axis=1))))}
    return out


def ranking_margins(values: dict, truth: dict) -> dict:
    """Ground truth minus the best generator, per segmenter and metric (> 0: the segmenter can rank)."""
    return {arch: {key: truth[arch][key] - max(values[f"{arch}:{key}"].values()) for key, _ in METRICS}
            for arch in truth}


def null_sizes(pilot_diffs, n: int, simulations: int = 2000, seed: int = 2) -> dict[str, float]:
    """The rate at which the two-sided sign-flip test at α rejects studies of ``n`` differences drawn under
    nulls shaped like the pilot's differences (centred to mean 0): resampled as they are (skewed: a null of
    mean 0, where the test is not exact) and with random signs (symmetric: the sharp null it is exact for)."""
    centred = np.asarray(pilot_diffs, dtype=np.float64) - np.mean(pilot_diffs)
    rng = np.random.default_rng(seed)
    drawn = rng.choice(centred, size=(simulations, n))
    signs = rng.choice((-1.0, 1.0), size=(simulations, n))
    return {"skewed": simulated_rejections(drawn, ALPHA), "symmetric": simulated_rejections(drawn * signs, ALPHA),
            "pilot_sd": float(stats_module.stdev(pilot_diffs)), "n": n, "simulations": simulations}
