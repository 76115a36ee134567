"""The paper's Tables 2-3 for many image sources: which segmenters, the scores, the rows.

* :func:`load_segmenters` - the requested (or every available) segmenter and the table it fills;
* :func:`score_all` - one segmenter's entry of results.json: the scores of the real photos and of
  every image source, the table rows (:func:`table_rows`: mean ± sample std per optimizer over its
  runs, :func:`summarize`), the title and footnotes.

One image set under one segmenter is :mod:`eval.fcn_score`'s job; the files are :mod:`eval.results`'.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from common.progress import progress
from eval import EvalError
from eval.drn_score import DRN_PROTOCOLS, drn_eval_sets, score_drn_folder, score_drn_real_photos
from eval.eval_sets import EvalSet
from eval.fcn_score import new_meter, score_folder, score_real_photos, scores_of
from eval.metrics import METRICS
from eval.segmenters.base import Segmenter
from eval.segmenters.drn import ARCH as DRN_ARCH
from eval.segmenters.files import load_segmenter
from eval.segmenters.registry import REGISTRY, default_path, make_command
from eval.sources import ImageSource, method_order

PAPER_TABLES = {"fcn8s": "Table 2", "deeplabv3plus_xception71": "Table 3", "deeplabv3plus_resnet10t": "Table 3",
                "fcn8s_caffe": "Table 2", "dpc_xception71": "Table 3", DRN_ARCH: "mIoU table"}
TABLE_NOTES = {"deeplabv3plus_xception71": "our stand-in for the paper's DPC-xception71",
               "deeplabv3plus_resnet10t": "our stand-in for the paper's DPC-xception71"}


@dataclass
class LoadedSegmenter:
    """A segmenter ready to score: its architecture, the network, its file's metadata and path."""
    arch: str
    model: Segmenter
    meta: dict
    path: Path


@dataclass(frozen=True)
class ScoringConfig:
    """How image sets are scored: the protocol (DRN-D-105: its own), the histogram, batch, device, autocast."""
    protocol: str = "256"
    drn_protocol: str = "gan_compression"
    fast_hist: bool = False
    batch_size: int = 8
    device: torch.device = torch.device("cpu")
    amp: bool = False


def summarize(values: Sequence[float]) -> dict:
    """``{"mean", "std" (sample std; None for fewer than 2 values), "n"}``, NaNs left out."""
    values = [float(v) for v in values if not math.isnan(v)]
    if not values:
        return {"mean": float("nan"), "std": None, "n": 0}
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def load_segmenters(wanted: list[str] | None, directory: Path, device) -> list[LoadedSegmenter]:
    """Every segmenter of ``wanted`` (None: every architecture with a file in ``directory``, the others
    named in one line each)."""
    loaded = []
    for arch in wanted or list(REGISTRY):
        path = default_path(arch, directory)
        if not path.is_file() and wanted is None:
            print(f"skipping {PAPER_TABLES.get(arch, arch)}: no {path} (make it with `{make_command(arch, directory)}`)")
            continue
        model, meta = load_segmenter(path, arch, device)
        loaded.append(LoadedSegmenter(arch, model, meta, path))
    if not loaded:
        arch = (wanted or list(REGISTRY))[0]
        raise EvalError(f"{default_path(arch, directory)}: segmenter weights not found; make them with "
                        f"`{make_command(arch, directory)}`")
    return loaded


def table_rows(per_source: list[dict], gt: list[dict], miou: bool = False) -> list[dict]:
    """One row per method (mean / std over its image sets) then the ground-truth row(s); with ``miou``
    also ``miou``, the class IOU x 100 as later work reports it."""
    groups = [(method, [s for s in per_source if s["method"] == method], [s["label"] for s in per_source
                                                                          if s["method"] == method])
              for method in method_order([s["method"] for s in per_source])]
    groups += [(entry["method"], [entry], []) for entry in gt]
    rows = []
    for method, members, runs in groups:
        row = {"method": method, "runs": runs}
        for key, _ in METRICS:
            row[key] = summarize([s["scores"][key] for s in members])
        if miou:
            row["miou"] = summarize([100 * s["scores"]["class_iou"] for s in members])
        rows.append(row)
    return rows


def score_sources(segmenter: LoadedSegmenter, sources: list[ImageSource], evalsets: dict[Path, EvalSet],
                  scoring: ScoringConfig) -> tuple[list[dict], list[dict]]:
    """(every image source's scores, the real photos' scores per dataset) under ``segmenter`` (DRN-D-105
    under ``scoring.drn_protocol``, :mod:`eval.drn_score`; the others under ``scoring.protocol``)."""
    arch, model, device = segmenter.arch, segmenter.model, scoring.device
    score_real, score_images_in = score_real_photos, score_folder
    if arch == DRN_ARCH:
        evalsets = drn_eval_sets(evalsets, scoring.drn_protocol)
        score_real, score_images_in = score_drn_real_photos, score_drn_folder
    several_roots = len(evalsets) > 1
    gt, per_source = [], []
    for root, evalset in evalsets.items():
        bar = progress(total=len(evalset), desc=f"{arch}: real photos", unit="img")
        meter = new_meter(model, device, scoring.fast_hist)
        score_real(model, evalset, device, scoring.batch_size, scoring.amp, bar, meter)
        bar.close()
        method = "Ground truth" + (f" ({root.name})" if several_roots else "")
        gt.append({"method": method, "dataroot": str(root), "scores": scores_of(meter)})
    for source in sources:
        evalset = evalsets[source.dataroot.resolve()]
        bar = progress(total=len(evalset), desc=f"{arch}: {source.label}", unit="img")
        meter = new_meter(model, device, scoring.fast_hist)
        score_images_in(model, evalset, source.images, device, scoring.batch_size, scoring.amp, bar, meter)
        bar.close()
        per_source.append({"label": source.label, "method": source.method, "seed": source.seed,
                           "checkpoint": source.checkpoint, "images": source.images,
                           "dataroot": str(source.dataroot.resolve()), "note": source.note,
                           "scores": scores_of(meter)})
    return per_source, gt


def score_all(segmenter: LoadedSegmenter, sources: list[ImageSource], evalsets: dict[Path, EvalSet],
              scoring: ScoringConfig) -> dict:
    """Scores of the real photos and of every image set under one segmenter, and its table rows."""
    per_source, gt = score_sources(segmenter, sources, evalsets, scoring)
    arch, meta = segmenter.arch, segmenter.meta
    name = meta["display_name"]
    table = PAPER_TABLES.get(arch, "Table")
    drn = arch == DRN_ARCH
    measure = "mIoU and FCN-scores" if drn else "FCN-scores"
    title = f"{table}: {measure} by {name} ({'; '.join(table_notes(arch, meta, evalsets, scoring))})"
    footnotes = scoring_footnotes(per_source, gt)
    footnotes += [f"Protocol {scoring.drn_protocol}: {DRN_PROTOCOLS[scoring.drn_protocol]}."] if drn else []
    return {"arch": arch, "table": table, "title": title, "footnotes": footnotes,
            "display_name": name, "checkpoint": str(segmenter.path), "config": meta["config"],
            "trained_on": meta["trained_on"], "train_resolution": meta["train_resolution"],
            "own_val_scores": meta["val_scores"], "rows": table_rows(per_source, gt, miou=drn),
            "image_sets": per_source, "ground_truth": gt}


def table_notes(arch: str, meta: dict, evalsets: dict[Path, EvalSet], scoring: ScoringConfig) -> list[str]:
    """What a table's title says in brackets: the segmenter's origin, the protocol, the frames, the histogram."""
    notes = [TABLE_NOTES[arch]] if arch in TABLE_NOTES else []
    sizes = sorted({e.size for e in evalsets.values()})
    name = scoring.drn_protocol if arch == DRN_ARCH else scoring.protocol
    protocol = f"protocol {name}" + ("" if name in ("fullres", "gan_compression") else
                                     f" ({', '.join(f'{s}x{s}' for s in sizes)})")
    origin = meta.get("provenance") or (f"imported from {meta['source']['file']}" if "source" in meta else
                                        f"trained by us on {meta['trained_on']['name']}")
    notes += [origin, protocol, ", ".join(f"{len(e)} val frames" for e in evalsets.values())]
    notes += ["pix2pix's fast_hist"] if scoring.fast_hist else []
    return notes


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
