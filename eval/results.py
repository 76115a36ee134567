"""evaluate.py's result files: ``results.md``, ``per_class_<arch>.md``, ``results.json``, ``results.csv`` and
``comparison.png`` (:func:`write_outputs`)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from common.files import write_json, write_png, write_text
from data.images import read_rgb
from eval.eval_sets import EvalSet
from eval.fidelity_table import fidelity_markdown
from eval.markdown import fcn_score_table, markdown_table, number_cell, per_class_rows
from eval.metrics import METRICS
from eval.sources import ImageSource, method_order
from eval.tables import summarize


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
        tables += "\n\n" + fidelity_markdown(report["fidelity"])
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
