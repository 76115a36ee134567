"""FCN-score tables of pix2pix labels->photo generators: ``python evaluate.py``.

With no arguments it finds the training runs under ``checkpoints/`` (folders holding ``options.json``
and ``latest.pt``), groups them by optimizer (Adam, TRAdam, SGD, TRSGD), generates the validation
images with each run's final generator, segments them with every trained segmenter in
``checkpoints/segmenters/`` and prints

* Table 2: FCN-scores by FCN-8s (ours; and, as published, by pix2pix's Caffe FCN-8s ``fcn8s_caffe`` once
  imported with ``python -m eval.import_segmenter``; use ``--protocol fullres`` for the pix2pix protocol),
* Table 3: FCN-scores by DeepLab's DPC Xception-71 (the paper's scorer, once imported with
  ``python -m eval.import_segmenter dpc_xception71``) and by DeepLabV3+ Xception-71 (our stand-in),

a row per optimizer (mean +- sample standard deviation over its runs) plus the ground-truth row (the
real photos). ``--generator PATH`` scores given generator checkpoints instead (ours or the reference
trainer's ``latest_net_G.pth``), ``--images DIR`` folders of generated ``<frame>.png`` images.

Written to ``--out`` (default ``results/``): ``results.md`` (the tables), ``results.json`` (every score,
per class and per run, with the confusion matrices), ``results.csv`` (one line per scored image set),
``per_class_<segmenter>.md``, ``comparison.png`` (label | each optimizer's output | real photo for a
few fixed frames) and the generated images, ``<out>/<run>/images/<frame>.png``.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from common.command_line import run_main
from common.device import resolve_device
from common.files import write_json, write_png, write_text
from data.images import read_rgb
from eval import EvalError
from eval.fcn_score import (PROTOCOLS, EvalSet, check_image_folder, generate_images, new_meter, open_eval_set,
                            score_folder, score_real_photos, scores_of)
from eval.metrics import per_class_rows
from eval.segmenters import REGISTRY, default_path, load_segmenter, train_command
from eval.statistics import summarize

OPTIMIZER_NAMES = {"adam": "Adam", "tradam": "TRAdam", "sgd": "SGD", "trsgd": "TRSGD"}
PAPER_TABLES = {"fcn8s": "Table 2", "deeplabv3plus_xception71": "Table 3", "fcn8s_caffe": "Table 2",
                "dpc_xception71": "Table 3"}
TABLE_NOTES = {"deeplabv3plus_xception71": "our stand-in for the paper's DPC-xception71"}
METRICS = (("pixel_acc", "Per-pixel acc."), ("class_acc", "Per-class acc."), ("class_iou", "Class IOU"))
SEGMENTER_DIR = "segmenters"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoints", default="checkpoints", help="folder holding the training runs")
    parser.add_argument("--runs", nargs="+", default=None, metavar="NAME",
                        help="score only these run folders of --checkpoints; None: every run")
    parser.add_argument("--generator", action="append", default=[], metavar="PATH",
                        help="score this generator checkpoint instead of the runs (repeatable): our latest.pt "
                             "or a reference latest_net_G.pth (see --netG, --norm)")
    parser.add_argument("--images", action="append", default=[], metavar="DIR",
                        help="score this folder of generated <frame>.png images instead of the runs (repeatable)")
    parser.add_argument("--netG", default="unet_256", help="architecture of a bare reference generator state_dict")
    parser.add_argument("--norm", default="batch", choices=["batch", "instance", "syncbatch", "none"],
                        help="normalisation of a bare reference generator state_dict")
    parser.add_argument("--ngf", type=int, default=64, help="base width of a bare reference generator state_dict")
    parser.add_argument("--dataroot", default=None,
                        help="dataset for --generator / --images (runs use their own); None: the dataroot "
                             "in options.json next to the checkpoint, else the built-in synthetic city")
    parser.add_argument("--segmenters", nargs="+", default=None, choices=list(REGISTRY), metavar="ARCH",
                        help=f"segmenters to use, of {', '.join(REGISTRY)} ; None: every one that is trained")
    parser.add_argument("--segmenter-dir", default=None,
                        help="folder with <arch>.pt segmenters; None: <checkpoints>/segmenters")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="256",
                        help="256: score at the dataset's 256x256 with nearest-resized labels (TRAlgo paper); "
                             "fullres: upsample to the official label size and score against gtFine (pix2pix)")
    parser.add_argument("--fast-hist", action="store_true",
                        help="count pixels with the pix2pix script's fast_hist and get_scores, bit for bit and "
                             "quirks included: a 20th-channel prediction for true class c lands in cell [c+1, 0], "
                             "a frame with one for class 18 is dropped whole (the number of dropped frames is "
                             "reported), classes absent from the ground truth count as 0 in the means; default: "
                             "every pixel counted, a 20th-channel prediction is an error for its true class")
    parser.add_argument("--size", type=int, default=None,
                        help="image size to generate and score at; None: the dataset's (256 for Cityscapes)")
    parser.add_argument("--eval-mode", action="store_true",
                        help="generate with running batch-norm statistics and no dropout instead of the pix2pix "
                             "test protocol (dropout on, each image's own statistics)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dropout noise at generation")
    parser.add_argument("--max-frames", type=int, default=None, help="score only the first N val frames")
    parser.add_argument("--figure-frames", type=int, default=4, help="frames shown in comparison.png")
    parser.add_argument("--out", default="results", help="output folder")
    parser.add_argument("--batch-size", type=int, default=8, help="images per segmenter forward pass")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where models run")
    parser.add_argument("--amp", action="store_true",
                        help="bf16 autocast for generating and segmenting, as train.py --amp (where the device has "
                             "bf16: the CPU and CUDA from Ampere on; elsewhere fp32)")
    return parser.parse_args(argv)


def validate(args) -> None:
    """One-line errors (EvalError) for bad options, before any work."""
    for name in ("max_frames", "batch_size", "size", "figure_frames", "ngf"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise EvalError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.seed < 0:
        raise EvalError(f"--seed must be >= 0, got {args.seed}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise EvalError(f"--out {args.out}: exists and is not a folder")


# ------------------------------------------------------------------------------ what to score
@dataclass
class ImageSource:
    """One set of generated images to score: a run, a generator file or an image folder."""
    label: str                     # unique name (run folder name, file or folder name)
    method: str                    # table row it belongs to (optimizer display name)
    dataroot: Path
    seed: int | None = None
    checkpoint: Path | None = None  # generator file, if images are to be generated
    images: Path | None = None      # folder of <frame>.png (given, or where generated)
    generator_kwargs: dict = field(default_factory=dict)
    note: str = ""


def optimizer_name(optim) -> str:
    return OPTIMIZER_NAMES.get(str(optim).lower(), str(optim))


def read_options(path: Path) -> dict:
    try:
        options = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalError(f"{path}: cannot read run options ({exc})") from None
    if not isinstance(options, dict):
        raise EvalError(f"{path}: expected a JSON object of options")
    return options


def check_direction(options: dict, where: Path) -> None:
    direction = options.get("direction", "BtoA")
    if direction != "BtoA":
        raise EvalError(f"{where}: direction {direction} generates labels from photos; FCN-score scores "
                        f"labels->photo generators (BtoA)")


def find_runs(checkpoints: Path, only: list[str] | None = None) -> list[ImageSource]:
    """The training runs under ``checkpoints`` (skipping the segmenters folder), sorted by name."""
    if not checkpoints.is_dir():
        raise EvalError(f"{checkpoints}: checkpoints folder not found")
    folders = sorted(p for p in checkpoints.iterdir() if p.is_dir() and p.name != SEGMENTER_DIR
                     and not p.name.startswith("."))
    if only:
        missing = [name for name in only if not (checkpoints / name).is_dir()]
        if missing:
            raise EvalError(f"{checkpoints / missing[0]}: run folder not found")
        folders = [checkpoints / name for name in only]
    runs = []
    for folder in folders:
        options_path, latest = folder / "options.json", folder / "latest.pt"
        if not options_path.is_file() and (folder / "latest_net_G.pth").is_file():
            print(f"skipping {folder}: a reference trainer run; score it with "
                  f"--generator {folder / 'latest_net_G.pth'}")
            continue
        if not only and not latest.is_file():
            print(f"skipping {folder}: no checkpoint yet (no latest.pt: a run that is starting or never saved)")
            continue
        if not any(folder.iterdir()):
            raise EvalError(f"{folder}: empty run folder (no options.json, no latest.pt)")
        if not options_path.is_file():
            raise EvalError(f"{options_path}: missing; not a training run folder")
        if not latest.is_file():
            raise EvalError(f"{latest}: missing; the run has no checkpoint yet")
        options = read_options(options_path)
        check_direction(options, options_path)
        if "dataroot" not in options or "optim" not in options:
            raise EvalError(f"{options_path}: no 'dataroot' or 'optim' entry")
        runs.append(ImageSource(label=folder.name, method=optimizer_name(options["optim"]),
                                dataroot=Path(options["dataroot"]), seed=options.get("seed"),
                                checkpoint=latest, note=_progress_note(latest)))
    if not runs:
        raise EvalError(f"{checkpoints}: no training runs (folders with options.json and latest.pt); "
                        f"train one with `python train.py --optim adam`")
    return runs


def _progress_note(checkpoint: Path) -> str:
    """'' for a finished run, else a short note (the epoch it reached), read without loading tensors."""
    try:
        obj = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return ""  # load_generator will report an unreadable file
    if not isinstance(obj, dict) or obj.get("finished", True):
        return ""
    return f"unfinished, epoch {obj.get('epoch', '?')}"


def _unique(label: str, taken: set[str]) -> str:
    name, k = label, 2
    while name in taken:
        name, k = f"{label}_{k}", k + 1
    taken.add(name)
    return name


def given_sources(args, default_root) -> list[ImageSource]:
    """ImageSources for --generator files and --images folders."""
    sources, taken = [], set()
    for path in map(Path, args.generator):
        if not path.is_file():
            raise EvalError(f"{path}: generator checkpoint not found")
        options_path = path.parent / "options.json"
        options = read_options(options_path) if options_path.is_file() else {}
        if options:
            check_direction(options, options_path)
        label = path.parent.name if path.stem in ("latest", "latest_net_G") and path.parent.name else path.stem
        label = _unique(label, taken)
        dataroot = Path(args.dataroot) if args.dataroot else (
            Path(options["dataroot"]) if "dataroot" in options else default_root())
        method = optimizer_name(options["optim"]) if "optim" in options else label
        sources.append(ImageSource(label, method, dataroot, options.get("seed"), checkpoint=path,
                                   generator_kwargs={"name": args.netG, "norm": args.norm, "ngf": args.ngf}))
    for folder in map(Path, args.images):
        if not folder.is_dir():
            raise EvalError(f"{folder}: image folder not found")
        named = folder.parent if folder.name == "images" else folder
        label = _unique(named.resolve().name, taken)
        dataroot = Path(args.dataroot) if args.dataroot else default_root()
        sources.append(ImageSource(label, label, dataroot, images=folder))
    return sources


def load_segmenters(args, checkpoints: Path, device) -> list[tuple]:
    """(arch, Segmenter, metadata, path) of every requested / available segmenter."""
    directory = Path(args.segmenter_dir) if args.segmenter_dir else checkpoints / SEGMENTER_DIR
    wanted = args.segmenters or list(REGISTRY)
    loaded = []
    for arch in wanted:
        path = default_path(arch, directory)
        if not path.is_file() and args.segmenters is None:
            print(f"skipping {PAPER_TABLES.get(arch, arch)}: no {path} (make it with `{train_command(arch)}`)")
            continue
        model, meta = load_segmenter(path, arch, device)
        loaded.append((arch, model, meta, path))
    if not loaded:
        arch = wanted[0]
        raise EvalError(f"{default_path(arch, directory)}: segmenter weights not found; make them with "
                        f"`{train_command(arch)}`")
    return loaded


# ------------------------------------------------------------------------------ aggregation
def method_order(methods: list[str]) -> list[str]:
    known = list(OPTIMIZER_NAMES.values())
    return sorted(set(methods), key=lambda m: (known.index(m) if m in known else len(known), m))


def table_rows(per_source: list[dict], gt: list[dict]) -> list[dict]:
    """One row per method (mean / std over its image sets) then the ground-truth row(s)."""
    rows = []
    for method in method_order([s["method"] for s in per_source]):
        members = [s for s in per_source if s["method"] == method]
        row = {"method": method, "runs": [s["label"] for s in members]}
        for key, _ in METRICS:
            row[key] = summarize([s["scores"][key] for s in members])
        rows.append(row)
    for entry in gt:
        row = {"method": entry["method"], "runs": []}
        for key, _ in METRICS:
            row[key] = summarize([entry["scores"][key]])
        rows.append(row)
    return rows


def _cell(summary: dict) -> str:
    if summary["n"] == 0:
        return "n/a"
    text = f"{summary['mean']:.3f}"
    return text + (f" ± {summary['std']:.3f}" if summary["std"] is not None else "")


def markdown_table(title: str, rows: list[dict]) -> str:
    lines = [f"### {title}", "", "| Method | " + " | ".join(name for _, name in METRICS) + " |",
             "|---|" + "---:|" * len(METRICS)]
    for row in rows:
        n = len(row["runs"])
        method = row["method"] + (f" ({n} runs)" if n > 1 else "")
        lines.append(f"| {method} | " + " | ".join(_cell(row[key]) for key, _ in METRICS) + " |")
    return "\n".join(lines)


def per_class_markdown(title: str, per_source: list[dict], gt: list[dict]) -> str:
    """Per-class accuracy and IoU per method (mean over its runs) and for the real photos."""
    entries = []
    for method in method_order([s["method"] for s in per_source]):
        members = [s["scores"] for s in per_source if s["method"] == method]
        entries.append((method, members))
    entries += [(g["method"], [g["scores"]]) for g in gt]
    names = [name for name, _, _ in per_class_rows(entries[0][1][0])]
    header = "| Class | " + " | ".join(f"{m} acc | {m} IoU" for m, _ in entries) + " |"
    lines = [f"### {title}", "", header, "|---|" + "---:|---:|" * len(entries)]
    for c, name in enumerate(names):
        cells = []
        for _, members in entries:
            for key in ("per_class_acc", "per_class_iou"):
                mean = summarize([m[key][c] for m in members])["mean"]
                cells.append("n/a" if math.isnan(mean) else f"{mean:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


# -------------------------------------------------------------------------------------- main
def generate_all(sources: list[ImageSource], evalsets: dict, out: Path, args, device, amp) -> None:
    """Generate the val images of every source that has a generator checkpoint (batch size 1)."""
    from gan.networks import load_generator
    from common.progress import progress

    mode = "eval mode (running statistics, no dropout)" if args.eval_mode else \
        "pix2pix test protocol (dropout on, each image's own batch-norm statistics)"
    for source in sources:
        if source.checkpoint is None:
            continue
        evalset = evalsets[source.dataroot.resolve()]
        note = f" ({source.note})" if source.note else ""
        print(f"generating {len(evalset)} val images with {source.checkpoint}{note}, {mode}, seed {args.seed}")
        generator = load_generator(source.checkpoint, **source.generator_kwargs)
        source.images = out / source.label / "images"
        bar = progress(total=len(evalset), desc=f"generate {source.label}", unit="img")
        try:
            generate_images(generator, evalset, source.images, device, not args.eval_mode, args.seed, amp, bar)
        except RuntimeError as exc:  # e.g. a unet_256 given 64x64 images
            reason = str(exc).strip().splitlines()[0]
            raise EvalError(f"{source.checkpoint}: the generator fails on the {evalset.size}x{evalset.size} "
                            f"val images of {evalset.dataroot} ({reason})") from None
        bar.close()


def score_all(arch, model, meta, path, sources, evalsets, args, device, amp) -> dict:
    """Scores of the real photos and of every image set under one segmenter, and its table rows."""
    from common.progress import progress

    several_roots = len(evalsets) > 1
    gt, per_source = [], []
    for root, evalset in evalsets.items():
        bar = progress(total=len(evalset), desc=f"{arch}: real photos", unit="img")
        meter = new_meter(model, device, args.fast_hist)
        score_real_photos(model, evalset, device, args.batch_size, amp, bar, meter)
        bar.close()
        method = "Ground truth" + (f" ({root.name})" if several_roots else "")
        gt.append({"method": method, "dataroot": str(root), "scores": scores_of(meter)})
    for source in sources:
        evalset = evalsets[source.dataroot.resolve()]
        bar = progress(total=len(evalset), desc=f"{arch}: {source.label}", unit="img")
        meter = new_meter(model, device, args.fast_hist)
        score_folder(model, evalset, source.images, device, args.batch_size, amp, bar, meter)
        bar.close()
        per_source.append({"label": source.label, "method": source.method, "seed": source.seed,
                           "checkpoint": source.checkpoint, "images": source.images,
                           "dataroot": str(source.dataroot.resolve()), "note": source.note,
                           "scores": scores_of(meter)})
    name = meta.get("display_name", model.display_name)
    table = PAPER_TABLES.get(arch, "Table")
    notes = [TABLE_NOTES[arch]] if arch in TABLE_NOTES else []
    sizes = sorted({e.size for e in evalsets.values()})
    protocol = f"protocol {args.protocol}" + ("" if args.protocol == "fullres" else
                                              f" ({', '.join(f'{s}x{s}' for s in sizes)})")
    origin = meta.get("provenance") or (f"imported from {meta['source']['file']}" if "source" in meta else
                                        f"trained by us on {meta['trained_on'].get('name', '?')}")
    notes += [origin, protocol, ", ".join(f"{len(e)} val frames" for e in evalsets.values())]
    notes += ["pix2pix's fast_hist"] if args.fast_hist else []
    return {"arch": arch, "table": table, "title": f"{table}: FCN-scores by {name} ({'; '.join(notes)})",
            "footnotes": scoring_footnotes(per_source, gt),
            "display_name": name, "checkpoint": str(path), "config": meta.get("config"),
            "trained_on": meta.get("trained_on"), "train_resolution": meta.get("train_resolution"),
            "own_val_scores": meta.get("val_scores"), "rows": table_rows(per_source, gt),
            "image_sets": per_source, "ground_truth": gt}


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


def write_outputs(report: dict, sources: list[ImageSource], evalsets: dict, out: Path, figure_frames: int) -> None:
    """results.md, per_class_<arch>.md, results.json, results.csv and comparison.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    tables = "\n\n".join("\n\n".join([markdown_table(entry["title"], entry["rows"]), *entry["footnotes"]])
                         for entry in report["segmenters"])
    print()
    print(tables)
    print()
    write_text(out / "results.md", tables + "\n")
    for entry in report["segmenters"]:
        text = per_class_markdown(f"Per-class FCN-scores by {entry['display_name']}", entry["image_sets"],
                                  entry["ground_truth"])
        write_text(out / f"per_class_{entry['arch']}.md", text + "\n")
    write_json(out / "results.json", report)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["segmenter", "method", "image_set", "seed", "pixel_acc", "class_acc", "class_iou"])
    for entry in report["segmenters"]:
        for s in entry["image_sets"] + entry["ground_truth"]:
            writer.writerow([entry["arch"], s["method"], s.get("label", "real photos"),
                             "" if s.get("seed") is None else s["seed"]]
                            + [f"{s['scores'][key]:.6f}" for key, _ in METRICS])
    write_text(out / "results.csv", buffer.getvalue())

    first_root = next(iter(evalsets))  # the figure shows the first dataset's frames
    columns = []
    for method in method_order([s.method for s in sources]):
        members = sorted((s for s in sources if s.method == method and s.dataroot.resolve() == first_root),
                         key=lambda s: (s.seed if s.seed is not None else 0, s.label))
        if members:
            columns.append((method, members[0].images))
    comparison_figure(evalsets[first_root], columns, figure_frames, out / "comparison.png")


def evaluate(args) -> Path:
    """Find or take the image sources, generate, score with every segmenter, write the outputs."""
    device = resolve_device(args.device)
    amp = args.amp
    checkpoints, out = Path(args.checkpoints), Path(args.out)

    def default_root():
        from data.synthetic import default_dataset
        return Path(default_dataset())

    sources = given_sources(args, default_root) if (args.generator or args.images) \
        else find_runs(checkpoints, args.runs)
    segmenters = load_segmenters(args, checkpoints, device)
    evalsets: dict[Path, EvalSet] = {}
    for source in sources:
        key = source.dataroot.resolve()
        if key not in evalsets:
            evalsets[key] = open_eval_set(key, args.protocol, args.size, args.max_frames)
    for source in sources:  # check given folders before any long computation
        if source.images is not None:
            check_image_folder(source.images, evalsets[source.dataroot.resolve()])

    generate_all(sources, evalsets, out, args, device, amp)
    report = {"protocol": args.protocol, "histogram": "fast_hist" if args.fast_hist else "ours",
              "generation": "eval" if args.eval_mode else "test", "seed": args.seed,
              "datasets": {str(k): {"size": e.size, "frames": len(e)} for k, e in evalsets.items()},
              "segmenters": [score_all(*segmenter, sources, evalsets, args, device, amp)
                             for segmenter in segmenters]}
    write_outputs(report, sources, evalsets, out, args.figure_frames)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)

    def work() -> str:
        validate(args)
        out = evaluate(args)
        return (f"wrote {out}/results.md, results.json, results.csv, per_class_*.md, comparison.png and the "
                f"generated images {out}/<run>/images/<frame>.png")
    return run_main(work)


if __name__ == "__main__":
    sys.exit(main())
