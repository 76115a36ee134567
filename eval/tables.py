"""The paper's Tables 2-3 for many image sources: which scorers, generation, scoring, rows.

* :func:`load_segmenters` - the requested (or every trained) segmenter and the table it fills;
* :func:`generate_all` - the val images of every source that has a generator checkpoint;
* :func:`score_all` - one segmenter's entry of results.json: the scores of the real photos and of
  every image source, the table rows (:func:`table_rows`: mean ± sample std per optimizer over its
  runs, :func:`eval.statistics.summarize`), the title and footnotes.

One image set under one segmenter is :mod:`eval.fcn_score`'s job; the files are :mod:`eval.report`'s.
"""
from __future__ import annotations

from pathlib import Path

from common.progress import progress
from eval import EvalError
from eval.drn_score import DRN_PROTOCOLS, drn_eval_sets, score_drn_folder, score_drn_real_photos
from eval.fcn_score import EvalSet, generate_images, new_meter, score_folder, score_real_photos, scores_of
from eval.report import METRICS, scoring_footnotes
from eval.scorers.drn import ARCH as DRN_ARCH
from eval.segmenters import REGISTRY, default_path, load_segmenter, train_command
from eval.sources import SEGMENTER_DIR, ImageSource, method_order
from eval.statistics import summarize

PAPER_TABLES = {"fcn8s": "Table 2", "deeplabv3plus_xception71": "Table 3", "fcn8s_caffe": "Table 2",
                "dpc_xception71": "Table 3", DRN_ARCH: "mIoU table"}
TABLE_NOTES = {"deeplabv3plus_xception71": "our stand-in for the paper's DPC-xception71"}


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


def generate_all(sources: list[ImageSource], evalsets: dict, out: Path, args, device, amp) -> None:
    """Generate the val images of every source that has a generator checkpoint (batch size 1)."""
    from gan.networks import load_generator

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


def score_sources(arch: str, model, sources: list[ImageSource], evalsets: dict[Path, EvalSet], args, device,
                  amp) -> tuple[list[dict], list[dict]]:
    """(every image source's scores, the real photos' scores per dataset) under segmenter ``model``
    (DRN-D-105 under ``args.drn_protocol``, :mod:`eval.drn_score`; the others under ``args.protocol``)."""
    score_real, score_images_in = score_real_photos, score_folder
    if arch == DRN_ARCH:
        evalsets = drn_eval_sets(evalsets, args.drn_protocol)
        score_real, score_images_in = score_drn_real_photos, score_drn_folder
    several_roots = len(evalsets) > 1
    gt, per_source = [], []
    for root, evalset in evalsets.items():
        bar = progress(total=len(evalset), desc=f"{arch}: real photos", unit="img")
        meter = new_meter(model, device, args.fast_hist)
        score_real(model, evalset, device, args.batch_size, amp, bar, meter)
        bar.close()
        method = "Ground truth" + (f" ({root.name})" if several_roots else "")
        gt.append({"method": method, "dataroot": str(root), "scores": scores_of(meter)})
    for source in sources:
        evalset = evalsets[source.dataroot.resolve()]
        bar = progress(total=len(evalset), desc=f"{arch}: {source.label}", unit="img")
        meter = new_meter(model, device, args.fast_hist)
        score_images_in(model, evalset, source.images, device, args.batch_size, amp, bar, meter)
        bar.close()
        per_source.append({"label": source.label, "method": source.method, "seed": source.seed,
                           "checkpoint": source.checkpoint, "images": source.images,
                           "dataroot": str(source.dataroot.resolve()), "note": source.note,
                           "scores": scores_of(meter)})
    return per_source, gt


def score_all(arch, model, meta, path, sources, evalsets, args, device, amp) -> dict:
    """Scores of the real photos and of every image set under one segmenter, and its table rows."""
    per_source, gt = score_sources(arch, model, sources, evalsets, args, device, amp)
    name = meta["display_name"]
    table = PAPER_TABLES.get(arch, "Table")
    drn = arch == DRN_ARCH
    measure = "mIoU and FCN-scores" if drn else "FCN-scores"
    title = f"{table}: {measure} by {name} ({'; '.join(table_notes(arch, meta, evalsets, args))})"
    footnotes = scoring_footnotes(per_source, gt)
    footnotes += [f"Protocol {args.drn_protocol}: {DRN_PROTOCOLS[args.drn_protocol]}."] if drn else []
    return {"arch": arch, "table": table, "title": title, "footnotes": footnotes,
            "display_name": name, "checkpoint": str(path), "config": meta["config"],
            "trained_on": meta["trained_on"], "train_resolution": meta["train_resolution"],
            "own_val_scores": meta["val_scores"], "rows": table_rows(per_source, gt, miou=drn),
            "image_sets": per_source, "ground_truth": gt}


def table_notes(arch: str, meta: dict, evalsets: dict[Path, EvalSet], args) -> list[str]:
    """What a table's title says in brackets: the scorer's origin, the protocol, the frames, the histogram."""
    notes = [TABLE_NOTES[arch]] if arch in TABLE_NOTES else []
    sizes = sorted({e.size for e in evalsets.values()})
    name = args.drn_protocol if arch == DRN_ARCH else args.protocol
    protocol = f"protocol {name}" + ("" if name in ("fullres", "gan_compression") else
                                     f" ({', '.join(f'{s}x{s}' for s in sizes)})")
    origin = meta.get("provenance") or (f"imported from {meta['source']['file']}" if "source" in meta else
                                        f"trained by us on {meta['trained_on']['name']}")
    notes += [origin, protocol, ", ".join(f"{len(e)} val frames" for e in evalsets.values())]
    notes += ["pix2pix's fast_hist"] if args.fast_hist else []
    return notes
