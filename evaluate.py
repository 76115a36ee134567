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
real photos). With DRN-D-105 imported (``python -m eval.import_segmenter drn_d_105``) also its mIoU table,
under GAN Compression's protocol by default (``--drn-protocol``); with ``--fid`` / ``--kid`` the FID/KID
table of torch-fidelity's InceptionV3 (``--inception-weights PATH`` on offline machines), its floor row
the real training photos against the real val photos (``--inception-cache DIR`` keeps the features of
every image set for the next evaluation; ``--fidelity-only`` computes nothing else). ``--generator PATH`` scores given generator checkpoints instead (ours or the reference
trainer's ``latest_net_G.pth``), ``--images DIR`` folders of generated ``<frame>.png`` images.

Written to ``--out`` (default ``results/``): ``results.md`` (the tables), ``results.json`` (every score,
per class and per run, with the confusion matrices), ``results.csv`` (one line per scored image set),
``per_class_<segmenter>.md``, ``comparison.png`` (label | each optimizer's output | real photo for a
few fixed frames) and the generated images, ``<out>/<run>/images/<frame>.png``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.command_line import add_former_spelling, flag, option_parser, run_main
from common.device import check_device_name, resolve_device
from common.outputs import check_apart, hidden_copies_note
from eval import EvalError
from eval.drn_score import DRN_PROTOCOLS, drn_eval_sets
from eval.fcn_score import PROTOCOLS
from eval.fidelity_table import fidelity_entry, prepare_fidelity
from eval.report import write_outputs
from eval.scorers.drn import ARCH as DRN_ARCH
from eval.segmenters import REGISTRY
from eval.sources import find_runs, given_sources, open_eval_sets
from eval.tables import generate_all, load_segmenters, score_all
from gan.networks import NORMS, check_image_size

MAX_SIZE = 4096  # --size


def parse_args(argv=None) -> argparse.Namespace:
    parser = option_parser(__doc__.split("\n\n")[0])
    checkpoints_dir = parser.add_argument("--checkpoints-dir", default="checkpoints",
                                          help="folder holding the training runs")
    add_former_spelling(parser, checkpoints_dir, "--checkpoints")
    parser.add_argument("--runs", nargs="+", default=None, metavar="NAME",
                        help="score only these run folders of --checkpoints-dir; None: every run")
    parser.add_argument("--generator", action="append", default=[], metavar="PATH",
                        help="score this generator checkpoint instead of the runs (repeatable): our latest.pt "
                             "or a reference latest_net_G.pth (see --netG, --norm)")
    parser.add_argument("--images", action="append", default=[], metavar="DIR",
                        help="score this folder of generated <frame>.png images instead of the runs (repeatable)")
    parser.add_argument("--netG", default="unet_256", help="architecture of a bare reference generator state_dict")
    parser.add_argument("--norm", default="batch", choices=NORMS,
                        help="normalisation of a bare reference generator state_dict")
    parser.add_argument("--ngf", type=int, default=64, help="base width of a bare reference generator state_dict")
    parser.add_argument("--dataroot", default=None,
                        help="dataset for --generator / --images (runs use their own); None: the dataroot "
                             "in options.json next to the checkpoint, else the built-in synthetic city")
    parser.add_argument("--segmenters", nargs="+", default=None, choices=list(REGISTRY), metavar="ARCH",
                        help=f"segmenters to use, of {', '.join(REGISTRY)} ; None: every one that is trained")
    parser.add_argument("--segmenter-dir", default=None,
                        help="folder with <arch>.pt segmenters; None: <checkpoints-dir>/segmenters")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="256",
                        help="256: score at the dataset's 256x256 with nearest-resized labels (TRAlgo paper); "
                             "fullres: upsample to the official label size and score against gtFine (pix2pix)")
    parser.add_argument("--drn-protocol", choices=list(DRN_PROTOCOLS), default="gan_compression",
                        help="how drn_d_105 scores: gan_compression: its log-softmax at the generated size resized "
                             "per class to 2048x1024 (PIL bilinear) against the full-resolution trainIds, as GAN "
                             "Compression's cityscapes_mIoU.py; generated_size: at the generated size against the "
                             "S x S trainIds")
    parser.add_argument("--fid", action="store_true",
                        help="add FID (torch-fidelity's InceptionV3) of each run's val images against the real val "
                             "photos, and the floor row real train vs real val")
    parser.add_argument("--kid", action="store_true", help="add KID (mean and std over subsets), as --fid")
    parser.add_argument("--inception-weights", default=None, metavar="PATH",
                        help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth for --fid/--kid; None: "
                             "its torch hub cache, else a download there (skipped with one line when offline)")
    parser.add_argument("--inception-cache", default=None, metavar="DIR",
                        help="keep each image set's Inception features in DIR and reuse them when the same set is "
                             "scored again with the same weights and settings (keyed by its pixels); None: no cache")
    parser.add_argument("--fidelity-only", action="store_true",
                        help="with --fid/--kid: compute only FID/KID (no segmenter is loaded, no FCN-score table)")
    parser.add_argument("--kid-subset-size", type=int, default=100,
                        help="images per KID subset (every image set must hold this many)")
    parser.add_argument("--kid-subsets", type=int, default=100, help="random subsets KID averages over")
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
    max_val_frames = parser.add_argument("--max-val-frames", type=int, default=None,
                                         help="score only the first N val frames")
    add_former_spelling(parser, max_val_frames, "--max-frames")
    parser.add_argument("--figure-frames", type=int, default=4, help="frames shown in comparison.png")
    parser.add_argument("--out", default="results", help="output folder")
    parser.add_argument("--batch-size", type=int, default=8, help="images per segmenter forward pass")
    parser.add_argument("--device", default="auto", help="where models run: auto (cuda if available), cpu, cuda "
                                                         "or cuda:N")
    parser.add_argument("--amp", action="store_true",
                        help="bf16 autocast for generating and segmenting, as train.py --amp (where the device has "
                             "bf16: the CPU and CUDA from Ampere on; elsewhere fp32)")
    return parser.parse_args(argv)


def validate(args) -> None:
    """One-line errors (EvalError) for bad options, before any work."""
    for name in ("max_val_frames", "batch_size", "size", "figure_frames", "ngf", "kid_subsets"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise EvalError(f"{flag(name)} must be >= 1, got {value}")
    if args.kid_subset_size < 2:
        raise EvalError(f"--kid-subset-size must be >= 2 (KID's unbiased estimate), got {args.kid_subset_size}")
    if args.fidelity_only and not (args.fid or args.kid):
        raise EvalError("--fidelity-only needs --fid or --kid")
    if args.inception_cache is not None and Path(args.inception_cache).exists() \
            and not Path(args.inception_cache).is_dir():
        raise EvalError(f"--inception-cache {args.inception_cache}: exists and is not a folder")
    if args.inception_weights is not None and not Path(args.inception_weights).is_file():
        raise EvalError(f"--inception-weights {args.inception_weights}: file not found")
    if args.size is not None and args.size > MAX_SIZE:
        raise EvalError(f"--size must be <= {MAX_SIZE} (twice Cityscapes' 2048-pixel photos; generating at 8192 "
                        f"takes tens of GB), got {args.size}")
    if not 0 <= args.seed < 2**31:
        raise EvalError(f"--seed must be in [0, 2^31), got {args.seed}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise EvalError(f"--out {args.out}: exists and is not a folder")
    check_device_name(args.device)


def evaluate(args) -> Path:
    """Find or take the image sources, generate, score with every segmenter, write the outputs."""
    device, checkpoints, out = resolve_device(args.device), Path(args.checkpoints_dir), Path(args.out)
    for note in hidden_copies_note(checkpoints):  # runs an interrupted --overwrite set aside
        print(note, flush=True)
    sources = given_sources(args) if (args.generator or args.images) else find_runs(checkpoints, args.runs)
    check_apart({"--out": out}, evaluation_inputs(sources, args))  # the output rule (common.outputs)
    segmenters = [] if args.fidelity_only else load_segmenters(args, checkpoints, device)
    evalsets = open_eval_sets(sources, args.protocol, args.size, args.max_val_frames)
    check_before_generating(sources, evalsets, args.size)
    if any(arch == DRN_ARCH for arch, *_ in segmenters):  # its labels' layout, checked before any work
        drn_eval_sets(evalsets, args.drn_protocol)
    inception = prepare_fidelity(args, sources, evalsets, device)
    if args.fidelity_only and inception is None:
        raise EvalError("--fidelity-only: nothing to compute without torch-fidelity's InceptionV3 weights")
    generate_all(sources, evalsets, out, args, device, args.amp)
    report = {"protocol": args.protocol, "histogram": "fast_hist" if args.fast_hist else "ours",
              "generation": "eval" if args.eval_mode else "test", "seed": args.seed,
              "datasets": {str(k): {"size": e.size, "frames": len(e)} for k, e in evalsets.items()},
              "segmenters": [score_all(*segmenter, sources, evalsets, args, device, args.amp)
                             for segmenter in segmenters]}
    if inception is not None:
        report["fidelity"] = fidelity_entry(*inception, sources, evalsets, args)
    write_outputs(report, sources, evalsets, out, args.figure_frames)
    return out


def evaluation_inputs(sources, args) -> dict[Path, str]:
    """What evaluate.py reads, for the output rule: datasets, generator files and run folders, image folders,
    segmenters."""
    inputs = {} if args.fidelity_only else {
        Path(args.segmenter_dir or Path(args.checkpoints_dir) / "segmenters"): "--segmenter-dir"}
    for source in sources:
        inputs[source.dataroot] = "--dataroot"
        if source.checkpoint is not None:  # a generator file, or a run's folder
            inputs[source.checkpoint if args.generator else source.checkpoint.parent] = \
                "--generator" if args.generator else "--checkpoints-dir (a run)"
        elif source.images is not None:
            inputs[source.images] = "--images"
    return inputs


def check_before_generating(sources, evalsets: dict, given_size: int | None) -> None:
    """What would fail only after generating, checked first: every label map to score against holds trainIds
    (read now, kept for scoring), and every generator suits the image size."""
    for evalset in evalsets.values():
        if evalset.protocol != "fullres":
            for i in range(len(evalset)):
                evalset.label(i)  # data.aligned checks the values of each trainId map it reads
        else:  # full-size labelIds: any id maps to a trainId or ignore; the file's header is what can be wrong
            for path in evalset.full_label_paths.values():
                check_label_ids_header(path)
    for source in sources:
        if source.checkpoint is None:
            continue
        evalset = evalsets[source.dataroot.resolve()]
        try:
            check_image_size(generator_name(source), evalset.size)
        except ValueError as error:
            where = f"--size {given_size}" if given_size else f"{evalset.dataroot}: its {evalset.size}-pixel images"
            raise EvalError(f"{where}: {error} ({source.checkpoint})") from None


def check_label_ids_header(path: Path) -> None:
    """EvalError naming ``path`` unless it is a readable single-channel image (a gtFine labelIds PNG)."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            mode = image.mode
    except (OSError, ValueError) as error:
        raise EvalError(f"{path}: not a readable labelIds image ({error})") from None
    if mode not in ("L", "P", "I", "I;16"):
        raise EvalError(f"{path}: expected a single-channel labelIds image, got mode {mode}")


def generator_name(source) -> str:
    """The architecture of a source's generator: from its checkpoint's netG_config (read without its tensors),
    else the --netG given for bare state_dicts."""
    import torch
    try:
        obj = torch.load(source.checkpoint, map_location="cpu", weights_only=True, mmap=True)
        return str(obj["netG_config"]["name"])
    except Exception:  # a bare state_dict, or a file load_generator will name
        return source.generator_kwargs.get("name", "unet_256")


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
