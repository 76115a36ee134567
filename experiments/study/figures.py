"""The study's figures: ``learning_curves.png`` and ``noise.png`` (mean over seeds, band: ± one std)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.files import write_figure
from experiments.study.design import Arm


def _band_plot(ax, series_by_arm: dict, arms: list[Arm], title: str, ylabel: str, xlabel: str = "step") -> None:
    for arm in arms:
        curves = series_by_arm.get(arm.name, [])
        if not curves:
            continue
        steps = sorted(set.intersection(*(set(dict(c)) for c in curves)))
        if not steps:
            continue
        values = np.array([[dict(c)[s] for s in steps] for c in curves])
        mean = values.mean(0)
        ax.plot(steps, mean, label=arm.label)
        if len(curves) > 1:
            std = values.std(0, ddof=1)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def figures(report: dict, out: Path) -> None:
    """learning_curves.png and noise.png (mean over seeds, band: ± one std)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [Arm(**a) for a in report["arms"]]
    curves = report["curves"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _band_plot(axes[0], {a: [r["val_l1"] for r in runs.values()] for a, runs in curves.items()}, arms,
               "Validation L1 to the real photos", "L1 ([-1, 1] units)")
    _band_plot(axes[1], {a: [r["class_iou"] for r in runs.values()] for a, runs in curves.items()}, arms,
               f"Class IoU by {report['display_names'][report['curve_scorer']]}", "class IoU")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    write_figure(out / "learning_curves.png", fig)
    plt.close(fig)

    panels = [("grad_ratio", "gradient noise V / ‖ḡ‖²", True), ("direction_ratio", "direction noise V / ‖ḡ + o‖²", True),
              ("variance", "V (per-sample gradient variance)", True), ("distance_to_anchor", "‖w − w_t‖ of G", False)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for ax, (key, title, log) in zip(axes, panels):
        series = {a: [r[key] for r in runs.values() if r.get(key)] for a, runs in report["noise"].items()}
        _band_plot(ax, series, arms, title, key)
        if log and any(series.values()):
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    write_figure(out / "noise.png", fig)
    plt.close(fig)
