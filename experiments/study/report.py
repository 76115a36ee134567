"""The study's report: ``study.md`` (the setting, the primary result, the tables, the corrected
comparisons, the minimum detectable effects, what the study can and cannot conclude) and ``study.json``."""
from __future__ import annotations

import math
import sys
from pathlib import Path

from common.files import write_json, write_text
from eval.markdown import markdown_table, number_cell, summary_cell
from eval.metrics import METRICS
from experiments.study.analysis import LAST_EPOCHS
from experiments.study.design import Arm
from experiments.study.figures import figures


def difference_cell(diff: dict, digits: int = 3) -> str:
    """A :func:`experiments.study.statistics.paired_difference` result as "+mean [low, high]" (its 95% t interval; the mean
    alone below 2 seeds). Whether it is significant is the study's decision (a corrected family), not the cell's."""
    if math.isnan(diff["low"]):
        return f"{diff['mean']:+.{digits}f}"
    return f"{diff['mean']:+.{digits}f} [{diff['low']:+.{digits}f}, {diff['high']:+.{digits}f}]"


def measure_title(measure: str, display: dict) -> str:
    arch, _, metric = measure.partition(":")
    if arch == "val_l1":
        return "Validation L1 (lower is better)"
    return f"{display.get(arch, arch)}: {dict(METRICS)[metric]}"


def p_cell(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def seeds_cell(n: int | None) -> str:
    return "> 100,000" if n is None else str(n)


def setting_sentence(report: dict) -> str:
    """The setting in plain words (data, size, steps, seeds, threads, CPU)."""
    setting = report["setting"]
    data = ("the built-in synthetic city (rendered street scenes, not Cityscapes)" if setting["builtin_data"]
            else f"the dataset `{report['dataroot']}`")
    text = (f"**Setting.** Data: {data}, at {setting['crop_size']} × {setting['crop_size']} pixels, generator "
            f"`{setting['netG']}`, {setting['steps']} training steps at batch size 1, {len(report['seeds'])} seeds "
            f"per arm ({', '.join(map(str, report['seeds']))}); scored by "
            f"{' and '.join(report['display_names'][a] for a in report['scorers'])} trained on the same data. Each "
            f"run used {setting['threads']} CPU thread(s) on {setting['cpu']}: a rerun on this CPU type gives the "
            "same numbers bit for bit, whatever the number of jobs at once; another CPU type can move them "
            "slightly (other kernels), which is why arms are compared seed by seed with intervals.")
    if report["preset"] != "paper":
        text += (" This is a small stand-in, not the paper's experiment (Cityscapes at 256 × 256, unet_256, "
                 "200 epochs): its results say nothing directly about that setting.")
    return text


def markdown_report(report: dict) -> str:
    """study.md: the setting, the primary result, the tables, the corrected comparisons, the minimum
    detectable effects, the learning curves and what the study can and cannot conclude."""
    arms = [Arm(**a) for a in report["arms"]]
    labels = {a.name: a.label for a in arms}
    analysis, display, tests = report["analysis"], report["display_names"], report["tests"]
    lines = ["# Seeds study: Adam vs TRAdam at batch size 1", "", setting_sentence(report), "",
             "Same seed = same data order and initial weights, so every difference is paired by seed (arm − Adam). "
             "Effects: mean difference with its paired Student-t 95% interval. p: exact two-sided sign-flip test "
             f"over all sign patterns of the seeds. The primary comparison, named before the runs, is tested alone "
             f"at {tests['alpha']}; every other comparison is Holm-corrected over the whole family, and "
             f"\"significant\" is said only where the corrected p is below {tests['alpha']}.", ""]
    lines += ["## Primary result", ""] + primary_lines(report) + [""]
    for arch in report["scorers"]:
        rows = [[arm.label] + [summary_cell(analysis[f"{arch}:{key}"]["summary"][arm.name]) for key, _ in METRICS]
                for arm in arms]
        truth = report["ground_truth"][arch]
        rows.append(["Ground truth (real photos)"] + [number_cell(truth[key]) for key, _ in METRICS])
        lines += [f"## FCN-scores by {display[arch]} (mean ± sd over seeds)", "",
                  markdown_table(["Arm", *(name for _, name in METRICS)], rows), ""]
    lines += ["## Every comparison to Adam (Holm-corrected)", "",
              f"MDE: the smallest true difference a paired t-test at {tests['alpha']} detects with "
              f"{tests['power']:.0%} power, from the observed sd of the differences; seeds for "
              f"{tests['target_effect']}: the seeds that would take.", ""]
    rows = []
    entries = ([dict(tests["primary"], p_holm=None, primary=True)] if tests["primary"] else []) + tests["family"]
    for entry in entries:
        diff = analysis[entry["measure"]]["vs_baseline"][entry["arm"]]
        digits = 4 if entry["measure"] == "val_l1" else 3
        verdict = "significant" if entry["significant"] else "not significant"
        rows.append([measure_title(entry["measure"], display) + (" (primary)" if entry.get("primary") else ""),
                     labels[entry["arm"]], difference_cell(diff, digits), p_cell(entry["p"]),
                     "tested alone" if entry.get("primary") else p_cell(entry["p_holm"]), verdict,
                     f"{diff['mde']:.{digits}f}" if not math.isnan(diff["mde"]) else "n/a",
                     seeds_cell(diff["seeds_for_target"])])
    lines += [markdown_table(["Measure", "Arm − Adam", "Effect [95% t interval]", "p", "Holm p", "Verdict",
                              "MDE (80%)", f"Seeds for {tests['target_effect']}"], rows), ""]
    lines += ["## What the study can and cannot conclude", ""] + findings(report) + [""]
    return "\n".join(lines)


def primary_lines(report: dict) -> list[str]:
    tests, analysis = report["tests"], report["analysis"]
    if tests["primary"] is None:
        return ["No primary comparison: it needs the arms `adam` and `tradam` and a scorer."]
    primary = tests["primary"]
    diff = analysis[primary["measure"]]["vs_baseline"][primary["arm"]]
    title = measure_title(primary["measure"], report["display_names"])
    verdict = (f"significant at {tests['alpha']}" if primary["significant"] else
               f"not significant at {tests['alpha']}")
    return [f"TRAdam (paper) − Adam, {title}: **{difference_cell(diff)}** (mean [95% t interval]) over {diff['n']} "
            f"seeds, sign-flip p = {p_cell(primary['p'])}: {verdict}. Minimum detectable effect at "
            f"{tests['power']:.0%} power: {diff['mde']:.3f}; detecting {tests['target_effect']} would take "
            f"{seeds_cell(diff['seeds_for_target'])} seeds (sd of the differences {diff['sd']:.4f})."]


def findings(report: dict) -> list[str]:
    """Plain sentences, whatever the sign: the primary result, the corrected family, the noise check, the
    learning curves, the scorers' margins and the study's scope."""
    tests, display, analysis = report["tests"], report["display_names"], report["analysis"]
    labels = {a["name"]: a["label"] for a in report["arms"]}
    out = []
    if tests["primary"] is not None:
        primary = tests["primary"]
        diff = analysis[primary["measure"]]["vs_baseline"][primary["arm"]]
        if primary["significant"]:
            direction = "higher" if diff["mean"] > 0 else "lower"
            out.append(f"- Primary: on this setting TRAdam (paper) gives a {direction} class IoU than Adam, by "
                       f"{diff['mean']:+.3f} (95% interval {diff['low']:+.3f} to {diff['high']:+.3f}).")
        else:
            out.append(f"- Primary: the study does not show a difference between TRAdam (paper) and Adam in class "
                       f"IoU. That is not evidence of no difference: differences inside the interval "
                       f"[{diff['low']:+.3f}, {diff['high']:+.3f}] fit the data, and only effects of about "
                       f"{diff['mde']:.3f} or more would have been detected with {tests['power']:.0%} probability.")
    significant = [e for e in tests["family"] if e["significant"]]
    if significant:
        out.append(f"- Other comparisons: {len(significant)} of {len(tests['family'])} significant after Holm: "
                   + "; ".join(f"{labels[e['arm']]} on {measure_title(e['measure'], display)} "
                               f"({analysis[e['measure']]['vs_baseline'][e['arm']]['mean']:+.4f}, Holm p "
                               f"{p_cell(e['p_holm'])})" for e in significant) + ".")
    elif tests["family"]:
        out.append(f"- Other comparisons: none of the {len(tests['family'])} is significant after Holm's correction; "
                   "their effects and intervals above are descriptive.")
    if tests["family"] and tests["smallest_p_holm"] >= tests["alpha"]:
        out.append(f"- With {len(report['seeds'])} seeds the smallest sign-flip p is {p_cell(tests['smallest_p'])}; "
                   f"Holm over {len(tests['family'])} comparisons multiplies it to {p_cell(tests['smallest_p_holm'])}, "
                   f"so no comparison but the primary one could reach significance in this design.")
    for arm, sds in report.get("noise_check", {}).items():
        if sds["final_sd"] is not None and sds["last_epochs_sd"] is not None:
            out.append(f"- Measurement noise, {labels[arm]} − Adam in class IoU by "
                       f"{display[report['curve_scorer']]}: sd over seeds {sds['final_sd']:.4f} for the final "
                       f"checkpoint, {sds['last_epochs_sd']:.4f} for the mean of the last {LAST_EPOCHS} epoch files.")
    return out + curve_and_scorer_lines(report, labels)


def curve_and_scorer_lines(report: dict, labels: dict) -> list[str]:
    """The findings' sentences on the learning curves, the scorers' margins and the study's scope."""
    display, out = report["display_names"], []
    ranking = report.get("late_ranking")
    if ranking:
        order = " > ".join(labels[name] for name in ranking["rankings"][-1])
        rising = [labels[name] for name, rise in ranking["rise"].items() if rise > 0]
        out.append(f"- Learning curves (class IoU by {display[report['curve_scorer']]}, mean over seeds): at the "
                   f"last point the order is {order}; over the last {len(ranking['steps'])} points (steps "
                   f"{', '.join(map(str, ranking['steps']))}) the ranking "
                   f"{'still changes' if ranking['changed'] else 'does not change'}"
                   + (f", and class IoU still rises for {', '.join(rising)}." if rising else "."))
    for arch, margins in report["ranking_margins"].items():
        worst = min(margins.values())
        verdict = "ranks: the real photos score above every generator on every metric" if worst > 0 else \
            "CANNOT rank: a generator scores at or above the real photos on some metric"
        out.append(f"- Scorer {display[arch]} {verdict} (smallest margin {worst:+.3f}).")
    out.append("- Scope: the study can say how these arms compare on this setting, at this length and learning "
               "rate, by these scorers. It cannot say how they compare on Cityscapes at the paper's size and "
               "length, at other learning rates or batch sizes, or by other scorers.")
    return out


def write_report(report: dict, out: Path) -> None:
    """Warn about scorers that cannot rank; print study.md and write it, study.json and the figures."""
    for arch, margins in report["ranking_margins"].items():
        if min(margins.values()) <= 0:
            print(f"warning: scorer {report['display_names'][arch]} cannot rank generators: margins "
                  + ", ".join(f"{k} {v:+.3f}" for k, v in margins.items()), file=sys.stderr)
    text = markdown_report(report)
    print(text)
    write_text(out / "study.md", text)
    write_json(out / "study.json", report)
    figures(report, out)
