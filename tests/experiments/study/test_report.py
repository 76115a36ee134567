"""The study report's cells: a paired difference with its t interval."""
from experiments.study.report import difference_cell
from experiments.study.statistics import paired_difference


def test_a_paired_difference_cell_is_its_mean_and_t_interval():
    # seeds 0..2, differences +0.02, +0.03, +0.01: mean 0.02, sd 0.01, t interval 0.02 ± 4.303·0.01/√3
    diff = paired_difference({0: 0.52, 1: 0.63, 2: 0.56}, {0: 0.50, 1: 0.60, 2: 0.55})
    assert difference_cell(diff) == "+0.020 [-0.005, +0.045]"  # no significance mark: that is the study's call
    assert difference_cell(paired_difference({0: 0.4}, {0: 0.5}), digits=2) == "-0.10"  # one seed: no interval
