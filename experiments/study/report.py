"""The study's report: ``study.md`` (the setting, the plan it follows and any deviation, the confirmatory
results with their robustness, the noise probe by k, the exploratory tables, what the study can and cannot
conclude), ``study.json`` (every number) and the figures (:mod:`experiments.study.figures`).

The plan is ``<out>/plan.md``; its ```` ```json ```` block holds what the report checks the study against
(arms, seeds, preset, hypotheses, α, the margin); the report cites the commit that holds it.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from common.files import write_json, write_text
from eval.markdown import markdown_table, number_cell, summary_cell
from eval.metrics import METRICS
from experiments.study.analysis import (CURVE_SCORER, HYPOTHESES, LAST_EPOCHS, confirmatory, curve_summary,
                                        exploratory, last_epochs_mean, noise_by_k, noise_measures, ranking_margins)
from experiments.study.design import SEGMENTER_ORDER, Arm, StudyConfig
from experiments.study.figures import figures


def difference_cell(diff: dict, digits: int = 3) -> str:
    """A paired difference as "+mean [low, high]" (its 95% t interval; the mean alone below 2 seeds)."""
    if math.isnan(diff["low"]):
        return f"{diff['mean']:+.{digits}f}"
    return f"{diff['mean']:+.{digits}f} [{diff['low']:+.{digits}f}, {diff['high']:+.{digits}f}]"


def p_cell(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


# ------------------------------------------------------------------------------------------------ the plan
def read_plan(path: Path) -> tuple[dict | None, str | None]:
    """(the plan's JSON block, the commit that last changed the plan file), or None where there is none."""
    if not path.is_file():
        return None, None
    found = re.search(r"```json\n(.*?)\n```", path.read_text(), re.S)
    plan = json.loads(found.group(1)) if found else None
    try:
        commit = subprocess.run(["git", "log", "-n", "1", "--format=%H", "--", path.name], cwd=path.parent,
                                capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return plan, commit


def deviations(plan: dict | None, config: StudyConfig, by_run: dict) -> list[str]:
    """Where the study differs from its plan, one sentence each (runs that diverged included: the plan scores
    them as their last epoch file)."""
    if plan is None:
        return ["no plan: every result below is exploratory"]
    out = []
    for key, actual in (("arms", list(config.arms)), ("seeds", list(config.seeds)), ("preset", config.preset),
                        ("hypotheses", [h.name for h in HYPOTHESES])):
        if plan.get(key) != actual:
            out.append(f"{key}: the plan has {plan.get(key)}, the study {actual}")
    out += [f"{name} did not finish training (it diverged) and is scored as {record['scored_as']}, as the plan says"
            for name, record in by_run.items() if not record.get("finished", True)]
    return out


# ------------------------------------------------------------------------------------------------ the report
def machine_counts(by_run: dict) -> dict[str, int]:
    """{CPU or GPU model: runs it recorded}, the most first."""
    counts = Counter(record["recorded_on"] for record in by_run.values())
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def report_of(config: StudyConfig, arms: list[Arm], by_run: dict, commands: dict) -> dict:
    """Every number of the report, from the runs' records."""
    first = next(iter(by_run.values()))
    scorers = [a for a in SEGMENTER_ORDER if a in first["final"]] + sorted(a for a in first["final"]
                                                                        if a not in SEGMENTER_ORDER)
    values = {f"{arch}:{key}": {name: r["final"][arch][key] for name, r in by_run.items()}
              for arch in scorers for key, _ in METRICS}
    values["val_l1"] = {name: r["val_l1"] for name, r in by_run.items()}
    curves = {name: r["curve"] for name, r in by_run.items()}
    noise = {name: r["noise"] for name, r in by_run.items()}
    values["last_epochs:class_iou"] = last_epochs_mean(curves)
    values.update(noise_measures(noise))
    truth = {arch: first["scorers"][arch]["ground_truth"] for arch in scorers}
    plan, commit = read_plan(Path(config.plan) if config.plan else Path(config.out) / "plan.md")
    return {"preset": config.preset, "seeds": list(config.seeds), "arms": [asdict(a) for a in arms],
            "train_options": commands, "scorers": scorers, "curve_scorer": CURVE_SCORER,
            "display_names": {arch: first["scorers"][arch]["display_name"] for arch in scorers},
            "setting": {"builtin_data": config.dataroot is None, "crop_size": first["crop_size"], "netG": first["netG"],
                        "steps": first["steps"], "threads": first["threads"], "jobs": config.jobs,
                        "machines": machine_counts(by_run), "dataroot": first["dataroot"]},
            "plan": {"content": plan, "commit": commit, "deviations": deviations(plan, config, by_run)},
            "ground_truth": truth, "per_run": values, "confirmatory": confirmatory(values, config.seeds),
            "exploratory": exploratory(arms, config.seeds, values), "noise_by_k": noise_by_k(noise, arms, config.seeds),
            "curve_summary": curve_summary(curves, arms, config.seeds), "ranking_margins": ranking_margins(values, truth),
            "runs_of": {a.name: [f"{a.name}_seed{s}" for s in config.seeds] for a in arms}, "curves": curves,
            "noise": noise, "config": asdict(config)}


def write_report(report: dict, out: Path) -> None:
    """Warn about segmenters that cannot rank; print study.md and write it, study.json and the figures."""
    for arch, margins in report["ranking_margins"].items():
        if min(margins.values()) <= 0:
            print(f"warning: segmenter {report['display_names'][arch]} cannot rank generators: margins "
                  + ", ".join(f"{k} {v:+.3f}" for k, v in margins.items()), file=sys.stderr)
    text = markdown_report(report)
    print(text)
    write_text(out / "study.md", text)
    write_json(out / "study.json", report)
    figures(report, out)


def markdown_report(report: dict) -> str:
    """study.md, section by section."""
    sections = [["# Seeds study (confirmatory): Adam and TRAdam at batch size 1", "", setting_sentence(report)],
                plan_lines(report), confirmatory_lines(report), noise_lines(report), score_tables(report),
                exploratory_lines(report), curve_lines(report), conclusion_lines(report)]
    return "\n".join(line for section in sections for line in [*section, ""]).rstrip() + "\n"


def setting_sentence(report: dict) -> str:
    """The setting in plain words (data, size, steps, seeds, threads, CPU)."""
    setting = report["setting"]
    data = ("the built-in synthetic city (rendered street scenes, not Cityscapes)" if setting["builtin_data"]
            else f"the dataset `{setting['dataroot']}`")
    text = (f"**Setting.** Data: {data}, at {setting['crop_size']} × {setting['crop_size']} pixels, generator "
            f"`{setting['netG']}`, {setting['steps']} training steps at batch size 1, {len(report['seeds'])} seeds "
            f"per arm ({report['seeds'][0]}–{report['seeds'][-1]}); scored by "
            f"{' and '.join(report['display_names'][a] for a in report['scorers'])}. Each run used "
            f"{setting['threads']} CPU thread(s); the runs were made on "
            f"{', '.join(f'{name} ({n} runs)' for name, n in setting['machines'].items())}: a rerun on the same "
            "CPU type gives the same numbers bit for bit; another CPU type can move them slightly (other kernels).")
    if report["preset"] != "paper":
        text += (" This is a small stand-in, not the paper's experiment (Cityscapes at 256 × 256, unet_256, "
                 "200 epochs): its results say nothing directly about that setting.")
    return text


def plan_lines(report: dict) -> list[str]:
    plan = report["plan"]
    commit = f"commit `{plan['commit']}`" if plan["commit"] else "no commit (the plan is not in git)"
    lines = ["## The plan", "", f"The study follows [plan.md](plan.md) ({commit}), written and committed before its "
             "first confirmatory run: its hypotheses, arms, seeds, test, family and margin are fixed there."]
    if plan["deviations"]:
        lines += ["", "Deviations from the plan:", *(f"- {d}" for d in plan["deviations"])]
    else:
        lines += ["", "Deviations from the plan: none."]
    return lines


def confirmatory_lines(report: dict) -> list[str]:
    tests = report["confirmatory"]
    labels = {a["name"]: a["label"] for a in report["arms"]}
    lines = ["## Confirmatory results", "",
             f"Four hypotheses, one family: Holm's step-down procedure over them keeps the probability of any false "
             f"verdict at most {tests['alpha']}. Differences are arm − baseline, paired by seed; the test is the exact "
             f"two-sided sign-flip test of the sharp null \"the arm changes nothing\" (differences symmetric about 0), "
             f"over all 2^n sign patterns; the equivalence (H3) is two one-sided sign-flip tests at ±"
             f"{HYPOTHESES[2].margin:g}. Effects: mean with its paired Student-t 95% interval. MDE: the smallest true "
             f"difference the test detects with {tests['power']:.0%} power at α/4 (Holm's first step) and at α, by "
             f"simulation of normal differences with the observed sd.", ""]
    rows = []
    for h in tests["hypotheses"]:
        digits = 4 if h["measure"].startswith("noise") else 3
        power = (f"power if equal: {h['power_if_equal']['0.0125']:.2f} / {h['power_if_equal']['0.05']:.2f}"
                 if "power_if_equal" in h else f"{h['mde']['0.0125']:.{digits}f} / {h['mde']['0.05']:.{digits}f}")
        rows.append([h["name"], f"{labels[h['arm']]} − {labels[h['baseline']]}", measure_title(h["measure"], report),
                     difference_cell(h, digits), p_cell(h["p"]), p_cell(h["p_holm"]), h["verdict"], power])
    lines += [markdown_table(["", "Comparison", "Measure", "Effect [95% t interval]", "p", "Holm p", "Verdict",
                              "MDE (α/4 / α)"], rows), "", *robustness_lines(tests["hypotheses"])]
    return lines


def robustness_lines(hypotheses: list[dict]) -> list[str]:
    lines = ["Robustness (descriptive): the median difference, the range of the mean with one seed left out, "
             f"and the secondary measure (the mean class IoU of the last {LAST_EPOCHS} epoch files); "
             "[paired.png](paired.png) shows every seed.", ""]
    rows = []
    for h in hypotheses:
        digits = 4 if h["measure"].startswith("noise") else 3
        second = h.get("secondary")
        rows.append([h["name"], f"{h['median']:+.{digits}f}",
                     f"{h['leave_one_out'][0]:+.{digits}f} to {h['leave_one_out'][1]:+.{digits}f}",
                     difference_cell(second, digits) if second else "—"])
    return [*lines, markdown_table(["", "Median difference", "Leave one seed out", "Last epoch files"], rows)]


def measure_title(measure: str, report: dict) -> str:
    arch, _, metric = measure.partition(":")
    named = {"val_l1": "Validation L1 (lower is better)", "noise:log_direction_ratio": "log direction noise ratio",
             "noise:direction_ratio": "direction noise ratio", "noise:grad_ratio": "gradient noise ratio",
             "last_epochs:class_iou": f"class IoU, mean of the last {LAST_EPOCHS} epoch files"}
    if measure in named:
        return named[measure]
    return f"{report['display_names'].get(arch, arch)}: {dict(METRICS)[metric]}"


def noise_lines(report: dict) -> list[str]:
    labels = {a["name"]: a["label"] for a in report["arms"]}
    lines = ["## The noise probe by inner position k", "",
             "Every probe measures, at the current weights, the gradients of G's loss on the same pairs drawn at "
             "random from the training set (one at a time, batch size 1): V, their total variance; r_g = V/‖ḡ‖², "
             "the gradient noise ratio; r_d = V/‖ḡ + o‖², the noise ratio of the direction the optimizer follows, "
             "o being TRAdam's proximal pull c·(w − w_t) of its next step (0 at k = 0, where the anchor is the "
             "weights, and for Adam). Mean over seeds of each run's mean over its probe rounds "
             "([noise.png](noise.png)):", ""]
    rows = []
    for arm, by_k in report["noise_by_k"].items():
        for k, entry in by_k.items():
            rows.append([labels[arm], k, f"{entry['grad_ratio']:.3g}", f"{entry['direction_ratio']:.3g}",
                         f"{entry.get('distance_to_anchor', math.nan):.3g}", str(entry["runs"])])
    return [*lines, markdown_table(["Arm", "k", "r_g", "r_d", "‖w − w_t‖", "Runs"], rows)]


def score_tables(report: dict) -> list[str]:
    lines = []
    analysis, arms = report["exploratory"], [Arm(**a) for a in report["arms"]]
    for arch in report["scorers"]:
        rows = [[arm.label] + [summary_cell(analysis[f"{arch}:{key}"]["summary"][arm.name]) for key, _ in METRICS]
                for arm in arms]
        truth = report["ground_truth"][arch]
        rows.append(["Ground truth (real photos)"] + [number_cell(truth[key]) for key, _ in METRICS])
        lines += [f"## FCN-scores by {report['display_names'][arch]} (mean ± sd over seeds)", "",
                  markdown_table(["Arm", *(name for _, name in METRICS)], rows), ""]
    return lines[:-1]


def exploratory_lines(report: dict) -> list[str]:
    labels = {a["name"]: a["label"] for a in report["arms"]}
    rows = []
    for measure, entry in report["exploratory"].items():
        digits = 4 if measure in ("val_l1",) or measure.startswith("noise") else 3
        for arm, diff in entry["vs_baseline"].items():
            rows.append([measure_title(measure, report), labels[arm], difference_cell(diff, digits)])
    return ["## Exploratory comparisons to Adam", "",
            "Not in the plan's family: effects with their 95% t intervals, no tests and no verdicts.", "",
            markdown_table(["Measure", "Arm − Adam", "Effect [95% t interval]"], rows)]


def curve_lines(report: dict) -> list[str]:
    labels = {a["name"]: a["label"] for a in report["arms"]}
    rows = [[labels[arm], ", ".join(f"{v:.3f}" for v in entry["last_means"]), f"{entry['swing']:.4f}"]
            for arm, entry in report["curve_summary"].items()]
    return ["## Learning curves", "", f"Class IoU by {report['display_names'][report['curve_scorer']]} at the last "
            f"{LAST_EPOCHS} epoch files (mean over seeds) and the typical change of one run from one epoch file to the "
            "next: a rise or a change of order smaller than that is not told apart from the swings "
            "([learning_curves.png](learning_curves.png)).", "",
            markdown_table(["Arm", f"Last {LAST_EPOCHS} epoch files", "Swing"], rows)]


def conclusion_lines(report: dict) -> list[str]:
    """What the study can and cannot conclude: only what the family's tests carry, with their magnitudes."""
    out = ["## What the study can and cannot conclude", ""]
    for h in report["confirmatory"]["hypotheses"]:
        out.append(f"- {h['name']} ({h['arm']} − {h['baseline']}, {measure_title(h['measure'], report)}): "
                   f"{h['verdict']}; effect {difference_cell(h, 4)}, Holm p {p_cell(h['p_holm'])}.")
    for arch, margins in report["ranking_margins"].items():
        worst = min(margins.values())
        out.append(f"- Segmenter {report['display_names'][arch]} "
                   + ("ranks: the real photos score above every generator on every metric" if worst > 0 else
                      "CANNOT rank: a generator scores at or above the real photos on some metric")
                   + f" (smallest margin {worst:+.3f}).")
    out.append("- Everything outside the four hypotheses is exploratory. Scope: these arms on this setting, at "
               "this length and learning rate, by these segmenters; not Cityscapes at the paper's size and length.")
    return out
