"""Train a segmenter on the real training photos: ``python -m eval.train_segmenter --arch fcn8s``.

The segmenter learns the 19 trainIds from the photos of a prepared pix2pix-layout dataset, scores the
real validation photos (the tables' ground-truth row) and is saved with its metadata to ``--out``
(default ``checkpoints/segmenters/<arch>.pt``). While it trains, its run lives in ``<out>`` without the
extension (locked; Ctrl-C or SIGTERM saves it; ``--resume`` continues exactly). The work is
:mod:`eval.segmenters.training`'s; ``--preset demo`` takes the architecture's demo settings from the
registry (:mod:`eval.segmenters.registry`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.command_line import add_former_spelling, option_parser, parse_with_presets, run_main
from eval import EvalError
from eval.segmenters.files import STORAGE_DTYPES
from eval.segmenters.registry import REGISTRY, TRAINED, default_path
from eval.segmenters.training import TrainingOptions, train

PRESET_NAMES = sorted({name for spec in REGISTRY.values() for name in spec.presets})


def build_parser() -> argparse.ArgumentParser:
    parser = option_parser(__doc__.split("\n\n")[0], prog="python -m eval.train_segmenter")
    parser.add_argument("--arch", required=True, choices=TRAINED,
                        help="segmenter architecture (imported originals such as dpc_xception71 are not trained here)")
    parser.add_argument("--dataroot", default=None,
                        help="prepared pix2pix-layout dataset; None: the built-in synthetic city")
    parser.add_argument("--out", default=None, help="output file; None: checkpoints/segmenters/<arch>.pt")
    parser.add_argument("--preset", choices=PRESET_NAMES, default=None,
                        help="a set of defaults: 'demo' trains a small model in minutes on a CPU")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="architecture config field (repeatable), e.g. width_mult=0.25 or "
                             "encoder=xception71; see eval/segmenters/")
    n_epochs = parser.add_argument("--n-epochs", type=int, default=60, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step")
    parser.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (polynomial decay to 0)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    parser.add_argument("--crop-size", type=int, default=256, help="training crop = training resolution")
    parser.add_argument("--load-size", type=int, default=286, help="images are resized to this before cropping")
    parser.add_argument("--pretrained-backbone", action="store_true",
                        help="initialise the backbone with ImageNet weights (local cache, else download; "
                             "trains from scratch when neither works)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the folder named as <out> without its extension from its "
                             "latest.pt; a finished <out> is kept as is")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over although <out> or its run folder exists (<out> is replaced once the new "
                             "segmenter is trained, the run once the new one has saved its latest.pt)")
    parser.add_argument("--val-every", type=int, default=0,
                        help="also score the val photos every N epochs (0: only at the end)")
    parser.add_argument("--max-val-frames", type=int, default=None, help="score only the first N val frames")
    num_workers = parser.add_argument("--num-workers", type=int, default=2, help="data loading processes")
    parser.add_argument("--seed", type=int, default=0, help="random seed (weights, data order, jitter)")
    parser.add_argument("--device", default="auto", help="where to train: auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads of torch, recorded in options.json and the segmenter's metadata; 0: "
                             "torch's choice (OMP_NUM_THREADS or the cores)")
    parser.add_argument("--amp", action="store_true",
                        help="bf16 autocast, as train.py --amp (where the device has bf16: the CPU and CUDA from "
                             "Ampere on; elsewhere ignored)")
    parser.add_argument("--weights-dtype", choices=sorted(STORAGE_DTYPES), default="float32",
                        help="how the weights are stored: float16 halves the file (the shipped demo segmenters); they "
                             "are rounded first, and the ground-truth row is scored with the rounded weights")
    add_former_spelling(parser, n_epochs, "--epochs")  # former spellings, hidden: a one-line note
    add_former_spelling(parser, num_workers, "--workers")
    return parser


def parse_args(argv=None) -> TrainingOptions:
    """The options: defaults < the architecture's --preset (its registry entry) < the command line."""
    namespace, _ = parse_with_presets(build_parser(), argv, lambda given: REGISTRY[given["arch"]].presets)
    return TrainingOptions(**vars(namespace))


def main(argv=None) -> int:
    options = parse_args(argv)

    def work() -> str:
        if options.preset is not None and options.preset not in REGISTRY[options.arch].presets:
            raise EvalError(f"--preset {options.preset}: no such settings for --arch {options.arch} (it has: "
                            f"{', '.join(REGISTRY[options.arch].presets) or 'none'})")
        out = Path(options.out) if options.out else default_path(options.arch)
        return f"wrote segmenter {train(options, out, sys.argv[1:] if argv is None else list(argv))}"
    return run_main(work)


if __name__ == "__main__":
    sys.exit(main())
