"""The study report's cells: a paired difference with its t interval."""
from experiments.study.report import difference_cell
from experiments.study.statistics import paired_difference


def test_a_paired_difference_cell_is_its_mean_and_t_interval():
    # seeds 0..2, differences +0.02, +0.03, +0.01: mean 0.02, sd 0.01, t interval 0.02 ± 4.303·0.01/√3
    diff = paired_difference({0: 0.52, 1: 0.63, 2: 0.56}, {0: 0.50, 1: 0.60, 2: 0.55})
    assert difference_cell(diff) == "+0.020 [-0.005, +0.045]"  # no significance mark: that is the study's call
    assert difference_cell(paired_difference({0: 0.4}, {0: 0.5}), digits=2) == "-0.10"  # one seed: no interval


def test_the_committed_plan_is_what_the_study_runs_and_analyses():
    """docs/study/plan.md's JSON block against the study's defaults, the demo preset and the analysis: a change
    to either side makes this fail (and the report list it as a deviation)."""
    from pathlib import Path

    from experiments.study.analysis import ALPHA, CURVE_SCORER, EQUIVALENCE_MARGIN, HYPOTHESES
    from experiments.study.design import PRESETS, StudyConfig
    from experiments.study.report import deviations, read_plan

    plan, _ = read_plan(Path(__file__).resolve().parents[3] / "docs" / "study" / "plan.md")
    config = StudyConfig()
    assert deviations(plan, config, {}) == []
    assert plan["hypotheses"] == [h.name for h in HYPOTHESES] == ["H1", "H2", "H3", "H4"]
    assert (plan["alpha"], plan["equivalence_margin"]) == (ALPHA, EQUIVALENCE_MARGIN) == (0.05, 0.01)
    assert plan["primary_metric"] == HYPOTHESES[0].measure == f"{CURVE_SCORER}:class_iou"
    assert (plan["noise_freq"], plan["noise_probe"]) == (PRESETS["demo"]["noise_freq"], PRESETS["demo"]["noise_probe"])
    assert plan["seeds"] == list(range(100, 116)) and len(plan["arms"]) == 4
    assert len(plan["analysis_commit"]) == 40 and int(plan["analysis_commit"], 16) >= 0
