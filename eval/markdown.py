"""Markdown, the one home of its formatting: cells and tables as the paper prints them (used by evaluate.py,
eval.train_segmenter and the study).

* cells: :func:`number_cell`, :func:`summary_cell` (mean ± sample std);
* tables: :func:`markdown_table` (any table), :func:`fcn_score_table` (Tables 2-3), :func:`per_class_table`
  (one segmenter's per-class scores).
"""
from __future__ import annotations

import math
from typing import Sequence

from eval.metrics import METRICS


def number_cell(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, "n/a" for NaN (an undefined score)."""
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def summary_cell(summary: dict, digits: int = 3) -> str:
    """A :func:`experiments.study.statistics.summarize` result as "mean ± std" ("mean" for one value, "n/a" for none)."""
    if summary["n"] == 0 or summary["mean"] is None or math.isnan(summary["mean"]):
        return "n/a"
    std = f" ± {summary['std']:.{digits}f}" if summary["std"] is not None else ""
    return f"{summary['mean']:.{digits}f}{std}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], title: str | None = None) -> str:
    """A Markdown table: first column left-aligned, the others right; under ``### title`` when given."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def fcn_score_table(title: str, rows: list[dict]) -> str:
    """Table 2 or 3: a line per method (mean ± std over its runs, the number of runs when several);
    first an mIoU column (x 100, two decimals, as later work prints it) when the rows have one."""
    miou = bool(rows) and "miou" in rows[0]
    lines = []
    for row in rows:
        n = len(row["runs"])
        lines.append([row["method"] + (f" ({n} runs)" if n > 1 else "")]
                     + ([summary_cell(row["miou"], 2)] if miou else [])
                     + [summary_cell(row[key]) for key, _ in METRICS])
    header = ["Method", *(["mIoU"] if miou else []), *(name for _, name in METRICS)]
    return markdown_table(header, lines, title)


def per_class_rows(scores: dict, class_names: Sequence[str] | None = None) -> list[tuple[str, float, float]]:
    """(class name, accuracy, IoU) for each class of ``scores`` (Cityscapes trainId names by default)."""
    if class_names is None:
        from data.cityscapes import CLASS_NAMES
        class_names = CLASS_NAMES
    accs, ious = scores["per_class_acc"], scores["per_class_iou"]
    if len(class_names) != len(accs):
        raise ValueError(f"{len(class_names)} class names for {len(accs)} classes")
    return [(name, acc, iou) for name, acc, iou in zip(class_names, accs, ious)]


def per_class_table(scores: dict, class_names: Sequence[str] | None = None, digits: int = 3) -> str:
    """Markdown table with one line per class: name, accuracy, IoU ("n/a" where undefined)."""
    rows = [[name, number_cell(acc, digits), number_cell(iou, digits)]
            for name, acc, iou in per_class_rows(scores, class_names)]
    return markdown_table(["Class", "Accuracy", "IoU"], rows)
