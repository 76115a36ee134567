"""Markdown of the FCN-score reports: per-class tables, cells of summaries, tables."""
import torch

from eval.markdown import markdown_table, per_class_rows, per_class_table, summary_cell
from eval.metrics import confusion_matrix, fcn_scores
from eval.tables import summarize
from tests.eval.test_metrics import C, random_frames


def test_per_class_table_names_every_class():
    preds, targets = random_frames(3, n=1)
    scores = fcn_scores(confusion_matrix(torch.from_numpy(preds[0]), torch.from_numpy(targets[0])))
    names = [f"class{i}" for i in range(C)]
    rows = per_class_rows(scores, names)
    assert [r[0] for r in rows] == names
    table = per_class_table(scores, names)
    lines = table.splitlines()
    assert len(lines) == 2 + C
    assert lines[2 + 15] == "| class15 | n/a | n/a |"  # class 15 is in neither GT nor prediction
    assert lines[2 + 3] == "| class3 | n/a | 0.000 |"  # class 3 is predicted but absent from GT
    assert lines[2 + 0].startswith(f"| class0 | {scores['per_class_acc'][0]:.3f} |")


def test_cells_of_summaries():
    assert summary_cell(summarize([0.5, 0.7])) == "0.600 ± 0.141"  # sample std: sqrt(0.02)
    assert summary_cell(summarize([0.25])) == "0.250"
    assert summary_cell(summarize([float("nan")])) == "n/a"


def test_markdown_table_aligns_numbers_right():
    assert markdown_table(["Arm", "a", "b"], [["Adam", "1", "2"]], "T").splitlines() == [
        "### T", "", "| Arm | a | b |", "|---|---:|---:|", "| Adam | 1 | 2 |"]
