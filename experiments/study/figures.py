"""The study's figures: ``learning_curves.png`` (mean over seeds, band: ± one sd), ``noise.png`` (the noise
probe by inner position k) and ``paired.png`` (each confirmatory hypothesis seed by seed: one line per seed
from the baseline to the arm)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.files import write_figure
from experiments.study.design import Arm


def _band_plot(ax, series_by_arm: dict, arms: list[Arm], title: str, ylabel: str) -> None:
    for arm in arms:
        curves = series_by_arm.get(arm.name, [])
        steps = sorted(set.intersection(*(set(dict(c)) for c in curves))) if curves else []
        if not steps:
            continue
        values = np.array([[dict(c)[s] for s in steps] for c in curves])
        mean = values.mean(0)
        ax.plot(steps, mean, label=arm.label)
        if len(curves) > 1:
            std = values.std(0, ddof=1)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def learning_curves(plt, report: dict, arms: list[Arm], out: Path) -> None:
    curves = report["curves"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _band_plot(axes[0], {a.name: [curves[n]["val_l1"] for n in report["runs_of"][a.name]] for a in arms}, arms,
               "Validation L1 to the real photos", "L1 ([-1, 1] units)")
    _band_plot(axes[1], {a.name: [curves[n]["class_iou"] for n in report["runs_of"][a.name]] for a in arms}, arms,
               f"Class IoU by {report['display_names'][report['curve_scorer']]}", "class IoU")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    write_figure(out / "learning_curves.png", fig)
    plt.close(fig)


def noise_figure(plt, report: dict, arms: list[Arm], out: Path) -> None:
    panels = [("grad_ratio", "gradient noise r_g = V / ‖ḡ‖²"), ("direction_ratio", "direction noise r_d = V / ‖ḡ + o‖²"),
              ("distance_to_anchor", "‖w − w_t‖ of G")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (key, title) in zip(axes, panels):
        for arm in arms:
            by_k = report["noise_by_k"].get(arm.name, {})
            ks = sorted(int(k) for k, entry in by_k.items() if key in entry)
            if ks:
                ax.plot(ks, [by_k[str(k)][key] for k in ks], marker="o", label=arm.label)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("inner position k of the next step")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    write_figure(out / "noise.png", fig)
    plt.close(fig)


def paired_figure(plt, report: dict, out: Path) -> None:
    hypotheses = report["confirmatory"]["hypotheses"]
    fig, axes = plt.subplots(1, len(hypotheses), figsize=(3.4 * len(hypotheses), 3.6), squeeze=False)
    for ax, h in zip(axes[0], hypotheses):
        for baseline, arm in h["per_seed"].values():
            ax.plot([0, 1], [baseline, arm], color="tab:blue" if arm > baseline else "tab:red", alpha=0.6)
        ax.set_xticks([0, 1], [h["baseline"], h["arm"]], fontsize=7)
        ax.set_title(f"{h['name']}: {h['measure']}", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    write_figure(out / "paired.png", fig)
    plt.close(fig)


def figures(report: dict, out: Path) -> None:
    """learning_curves.png, noise.png and paired.png in ``out``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [Arm(**a) for a in report["arms"]]
    learning_curves(plt, report, arms, out)
    noise_figure(plt, report, arms, out)
    paired_figure(plt, report, out)
