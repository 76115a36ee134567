"""The study's analysis: per-arm summaries, paired differences to Adam and the decisions (the primary
comparison alone, the rest Holm-corrected), the measurement-noise check, the late learning curves and the
scorers' margins (:mod:`experiments.study.statistics` does the statistics)."""
from __future__ import annotations

import numpy as np

from eval.metrics import METRICS
from eval.tables import summarize
from experiments.study.design import Arm, StudyConfig, run_name
from experiments.study.statistics import ALPHA, POWER, decisions, paired_difference

PRIMARY_ARM, PRIMARY_METRIC = "tradam", "class_iou"  # named before the runs (with the first scorer)
TARGET_EFFECT = 0.01   # the effect whose seeds-needed the report gives (class IoU / accuracy units)
LAST_EPOCHS = 3        # the noise check: the mean of the last few epoch files' scores


def analyse(arms: list[Arm], seeds: tuple[int, ...], values: dict[str, dict[str, float]],
            baseline: str = "adam") -> dict:
    """For each measure (``values[measure][run name]``): per-arm summaries and paired differences."""
    out = {}
    for measure, by_run in values.items():
        per_arm = {arm.name: {s: by_run[run_name(arm, s)] for s in seeds if run_name(arm, s) in by_run}
                   for arm in arms}
        out[measure] = {
            "summary": {name: summarize(list(v.values())) for name, v in per_arm.items()},
            "per_seed": per_arm,
            "vs_baseline": {name: paired_difference(v, per_arm[baseline], target_effect=TARGET_EFFECT)
                            for name, v in per_arm.items() if name != baseline and baseline in per_arm},
        }
    return out


def smallest_p(n: int) -> float:
    """The smallest two-sided sign-flip p-value n seeds can give (2 of the 2^n patterns; 0 when unknown)."""
    return 2 / 2 ** n if 0 < n <= 16 else 0.0


def comparisons(analysis: dict, arms: list[Arm], primary_measure: str | None) -> dict:
    """The decisions: the primary comparison (``primary_measure`` of PRIMARY_ARM − Adam) alone at ALPHA, every
    other (measure, arm − Adam) pair Holm-adjusted over the whole family."""
    pairs = [(m, a.name) for m in analysis for a in arms[1:]]
    primary = (primary_measure, PRIMARY_ARM) if (primary_measure, PRIMARY_ARM) in pairs else None
    family = [pair for pair in pairs if pair != primary]
    primary_p = analysis[primary[0]]["vs_baseline"][primary[1]]["p"] if primary else float("nan")
    decided = decisions(primary_p, [analysis[m]["vs_baseline"][a]["p"] for m, a in family])
    n = min((analysis[m]["vs_baseline"][a]["n"] for m, a in pairs), default=0)
    return {
        "alpha": ALPHA, "power": POWER, "target_effect": TARGET_EFFECT,
        "primary": None if primary is None else {"measure": primary[0], "arm": primary[1], "p": primary_p,
                                                 "significant": decided["primary"]},
        "family": [{"measure": m, "arm": a, "p": analysis[m]["vs_baseline"][a]["p"], "p_holm": adjusted,
                    "significant": significant}
                   for (m, a), adjusted, significant in zip(family, decided["adjusted"], decided["significant"])],
        "smallest_p": smallest_p(n), "smallest_p_holm": min(1.0, len(family) * smallest_p(n)),
    }


def ranking_margins(values: dict, truth: dict) -> dict:
    """Ground truth minus the best generator, per scorer and metric (> 0: the scorer can rank)."""
    return {arch: {key: truth[arch][key] - max(values[f"{arch}:{key}"].values()) for key, _ in METRICS}
            for arch in truth}


def curve_means(curves: dict, arms: list[Arm], key: str = "class_iou") -> tuple[list[int], dict[str, list[float]]]:
    """The steps every run of every arm was scored at, and each arm's mean over seeds there."""
    series = [dict(run[key]) for arm in arms for run in curves.get(arm.name, {}).values()]
    if not series:
        return [], {}
    steps = sorted(set.intersection(*(set(c) for c in series)))
    means = {arm.name: [float(np.mean([dict(run[key])[s] for run in curves[arm.name].values()])) for s in steps]
             for arm in arms if curves.get(arm.name)}
    return steps, means


def late_ranking(curves: dict, arms: list[Arm], points: int = LAST_EPOCHS) -> dict:
    """The arms ranked by mean class IoU at each of the last ``points`` curve points (best first), whether
    that ranking changed over them, and each arm's change of mean class IoU over them."""
    steps, means = curve_means(curves, arms)
    if len(steps) < 2:
        return {}
    last = list(range(max(0, len(steps) - points), len(steps)))
    rankings = [[name for name, _ in sorted(means.items(), key=lambda item: -item[1][i])] for i in last]
    return {"steps": [steps[i] for i in last], "rankings": rankings,
            "changed": any(r != rankings[-1] for r in rankings),
            "rise": {name: values[last[-1]] - values[last[0]] for name, values in means.items()}}


def last_epochs_mean(curves: dict, arms: list[Arm], seeds, points: int = LAST_EPOCHS) -> dict[str, float]:
    """Per run: the mean class IoU of its last ``points`` epoch files (a less noisy measure, compared with
    the final checkpoint's in the report)."""
    values = {}
    for arm in arms:
        for seed, run in curves.get(arm.name, {}).items():
            scores = [v for _, v in run["class_iou"]][-points:]
            if scores:
                values[run_name(arm, int(seed))] = float(np.mean(scores))
    return values


def noise_check(analysis: dict, measure: str, averaged: dict) -> dict:
    """Seed-to-seed sd of each arm's paired difference to Adam: final checkpoint (``measure``) against the
    mean of the last epoch files (``averaged``, :func:`analyse` of :func:`last_epochs_mean`)."""
    out = {}
    for arm, final in analysis.get(measure, {}).get("vs_baseline", {}).items():
        mean = averaged.get("vs_baseline", {}).get(arm)
        out[arm] = {"final_sd": final["sd"], "last_epochs_sd": mean["sd"] if mean else None}
    return out


def setting(config: StudyConfig, record: dict) -> dict:
    """What the runs were: data, size, length, threads and CPU (for the report's plain-words setting)."""
    return {"builtin_data": config.dataroot is None, "crop_size": record["crop_size"], "netG": record["netG"],
            "steps": record["steps"], "threads": record["threads"], "jobs": config.jobs,
            "cpu": record["key"]["device_name"]}
