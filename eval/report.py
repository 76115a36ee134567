"""FCN-score reports: the one home of Markdown formatting, and evaluate.py's result files.

Markdown (used by evaluate.py, eval.train_segmenter and eval.study):

* :data:`METRICS` - the three FCN-scores and their column names, as the paper's tables print them;
* cells: :func:`number_cell`, :func:`summary_cell` (mean ± sample std), :func:`difference_cell`
  (a paired difference with its t interval);
* tables: :func:`markdown_table` (any table), :func:`fcn_score_table` (Tables 2-3),
  :func:`per_class_table` (one scorer's per-class scores), :func:`per_class_markdown` (per class and
  per method);
* :func:`scoring_footnotes` - the lines under a table about predictions of no class and dropped frames.

Files (:func:`write_outputs`): ``results.md``, ``per_class_<arch>.md``, ``results.json``,
``results.csv`` and ``comparison.png`` (:func:`comparison_figure`).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from common.files import write_json, write_png, write_text
from data.images import read_rgb
from eval.fcn_score import EvalSet
from eval.sources import ImageSource, method_order
from eval.statistics import summarize

METRICS = (("pixel_acc", "Per-pixel acc."), ("class_acc", "Per-class acc."), ("class_iou", "Class IOU"))


# ------------------------------------------------------------------------------------ cells
def number_cell(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, "n/a" for NaN (an undefined score)."""
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def summary_cell(summary: dict, digits: int = 3) -> str:
    """A :func:`eval.statistics.summarize` result as "mean ± std" ("mean" for one value, "n/a" for none)."""
    if summary["n"] == 0 or summary["mean"] is None or math.isnan(summary["mean"]):
        return "n/a"
    std = f" ± {summary['std']:.{digits}f}" if summary["std"] is not None else ""
    return f"{summary['mean']:.{digits}f}{std}"


def difference_cell(diff: dict, digits: int = 3) -> str:
    """A :func:`eval.statistics.paired_difference` result as "+mean [low, high]" (its 95% t interval; the mean
    alone below 2 seeds). Whether it is significant is the study's decision (a corrected family), not the cell's."""
    if math.isnan(diff["low"]):
        return f"{diff['mean']:+.{digits}f}"
    return f"{diff['mean']:+.{digits}f} [{diff['low']:+.{digits}f}, {diff['high']:+.{digits}f}]"


# ----------------------------------------------------------------------------------- tables
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


def fidelity_table(entry: dict) -> str:
    """The FID/KID table (:mod:`eval.fidelity_table`): a line per method (mean ± std over its runs), the
    floor row(s), and the weights used under it."""
    from eval.fidelity_table import COLUMNS
    names = dict(COLUMNS)
    digits = {"fid": 2, "kid": 4, "kid_subset_std": 4}
    lines = [[row["method"] + (f" ({len(row['runs'])} runs)" if len(row["runs"]) > 1 else "")]
             + [summary_cell(row[key], digits[key]) for key in entry["columns"]] for row in entry["rows"]]
    table = markdown_table(["Method", *(names[key] for key in entry["columns"])], lines, entry["title"])
    note = "KID std over subsets: a run's spread over its subsets (mean over runs)" if "kid" in entry["columns"] \
        else ""
    return "\n\n".join([table, f"InceptionV3 weights {entry['weights']}." + (f" {note}." if note else "")])


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


def per_class_markdown(title: str, per_source: list[dict], gt: list[dict]) -> str:
    """Per-class accuracy and IoU per method (mean over its runs) and for the real photos."""
    entries = []
    for method in method_order([s["method"] for s in per_source]):
        members = [s["scores"] for s in per_source if s["method"] == method]
        entries.append((method, members))
    entries += [(g["method"], [g["scores"]]) for g in gt]
    names = [name for name, _, _ in per_class_rows(entries[0][1][0])]
    header = ["Class"] + [f"{method} {kind}" for method, _ in entries for kind in ("acc", "IoU")]
    rows = [[name] + [number_cell(summarize([m[key][c] for m in members])["mean"])
                      for _, members in entries for key in ("per_class_acc", "per_class_iou")]
            for c, name in enumerate(names)]
    return markdown_table(header, rows, title)


def scoring_footnotes(per_source: list[dict], gt: list[dict]) -> list[str]:
    """Lines under a table: pixels predicted as a channel that is no class (the Caffe FCN-8s's 20th),
    and frames the reference histogram dropped (``--fast-hist``), per image set."""
    entries = [(s["label"], s["scores"]) for s in per_source] + [(g["method"], g["scores"]) for g in gt]
    lines = []
    fast_hist = any("dropped_frames" in scores for _, scores in entries)
    if any("no_class_pixels" in scores for _, scores in entries):
        counts = ", ".join(f"{label} {scores['no_class_pixels']}" for label, scores in entries)
        how = "fast_hist counts them in cell [c+1, 0] or drops their frame" if fast_hist else "scored as errors"
        lines.append(f"Labelled pixels predicted as the 20th channel (no Cityscapes class; {how}): {counts}")
    if fast_hist:
        counts = ", ".join(f"{label} {scores['dropped_frames']} of {scores['frames']}" for label, scores in entries)
        lines.append(f"Frames dropped by fast_hist (a 20th-channel prediction on a bicycle pixel): {counts}")
    return lines


# ------------------------------------------------------------------------------------ figure
def comparison_figure(evalset: EvalSet, columns: list[tuple[str, Path]], n_frames: int, path: Path) -> None:
    """PNG grid: label | each method's image | real photo, for ``n_frames`` evenly spaced frames."""
    from PIL import Image, ImageDraw

    from data.cityscapes import train_ids_to_color
    n = len(evalset)
    picks = sorted(set(np.linspace(0, n - 1, min(n_frames, n)).round().astype(int).tolist()))
    tile = max(evalset.size, 128)
    header = 18
    titles = ["label"] + [title for title, _ in columns] + ["real photo"]
    canvas = Image.new("RGB", (tile * len(titles), header + tile * len(picks)), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(titles):
        draw.text((c * tile + 4, 3), title[: tile // 7], fill="black")
    for r, i in enumerate(picks):
        item = evalset.dataset[i]
        tiles = [train_ids_to_color(item["label"].numpy())]
        tiles += [read_rgb(folder / f"{evalset.names[i]}.png").permute(1, 2, 0).numpy() for _, folder in columns]
        tiles.append(evalset.real_photo(i).permute(1, 2, 0).numpy())
        for c, array in enumerate(tiles):
            image = Image.fromarray(np.ascontiguousarray(array)).resize((tile, tile), Image.NEAREST)
            canvas.paste(image, (c * tile, header + r * tile))
    write_png(path, canvas)


def figure_columns(sources: list[ImageSource], root: Path) -> list[tuple[str, Path]]:
    """(method, image folder) per method with images of dataset ``root``: its lowest seed's run."""
    columns = []
    for method in method_order([s.method for s in sources]):
        members = sorted((s for s in sources if s.method == method and s.dataroot.resolve() == root),
                         key=lambda s: (s.seed if s.seed is not None else 0, s.label))
        if members:
            columns.append((method, members[0].images))
    return columns


# ------------------------------------------------------------------------------------- files
def results_csv(report: dict) -> str:
    """One line per scored image set and segmenter (the real photos included)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["segmenter", "method", "image_set", "seed", "pixel_acc", "class_acc", "class_iou"])
    for entry in report["segmenters"]:
        for s in entry["image_sets"] + entry["ground_truth"]:
            writer.writerow([entry["arch"], s["method"], s.get("label", "real photos"),
                             "" if s.get("seed") is None else s["seed"]]
                            + [f"{s['scores'][key]:.6f}" for key, _ in METRICS])
    return buffer.getvalue()


def write_outputs(report: dict, sources: list[ImageSource], evalsets: dict, out: Path, figure_frames: int) -> None:
    """Print the tables; write results.md, per_class_<arch>.md, results.json, results.csv and
    comparison.png (the first dataset's frames) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    tables = "\n\n".join("\n\n".join([fcn_score_table(entry["title"], entry["rows"]), *entry["footnotes"]])
                         for entry in report["segmenters"])
    if report.get("fidelity"):
        tables += "\n\n" + fidelity_table(report["fidelity"])
    print()
    print(tables)
    print()
    write_text(out / "results.md", tables + "\n")
    for entry in report["segmenters"]:
        text = per_class_markdown(f"Per-class FCN-scores by {entry['display_name']}", entry["image_sets"],
                                  entry["ground_truth"])
        write_text(out / f"per_class_{entry['arch']}.md", text + "\n")
    write_json(out / "results.json", report)
    write_text(out / "results.csv", results_csv(report))
    first_root = next(iter(evalsets))
    comparison_figure(evalsets[first_root], figure_columns(sources, first_root), figure_frames,
                      out / "comparison.png")
