"""Turn the paper's original scorers into our segmenter files.

    python -m eval.import_segmenter fcn8s_caffe fcn-8s-cityscapes.caffemodel --out checkpoints/segmenters/fcn8s_caffe.pt
    python -m eval.import_segmenter dpc_xception71 deeplab_cityscapes_xception71_trainfine_2018_09_08.tar.gz \\
        --out checkpoints/segmenters/dpc_xception71.pt

* ``fcn8s_caffe``: pix2pix's Caffe FCN-8s (Table 2 of the paper), read straight from the caffemodel.
* ``dpc_xception71``: DeepLab's DPC Xception-71 Cityscapes model-zoo file (Table 3), the tarball or its
  unpacked folder.
* ``drn_d_105``: fyu/drn's DRN-D-105 Cityscapes file ``drn-d-105_ms_cityscapes.pth`` (the mIoU scorer of
  SPADE, GAN Compression and later work).

Each importer reads the original file, builds our network with those weights and returns it with its
metadata; this command writes the result with :func:`eval.segmenters.save_segmenter`, which
:func:`eval.segmenters.load_segmenter` reads back. Neither Caffe nor TensorFlow is needed. Bad input
(not that model, a missing layer or variable, a blob of the wrong shape) is one line on stderr naming the
file and what is wrong, exit status 2; an existing output is replaced only with ``--overwrite``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.command_line import option_parser, run_main
from common.outputs import check_apart
from eval import EvalError
from eval.scorers.caffe_fcn8s import import_caffemodel
from eval.scorers.dpc_xception71 import import_model_zoo
from eval.scorers.drn import import_drn
from eval.segmenters import save_segmenter

# arch -> the function that reads the original file (its path) and returns (Segmenter, metadata).
IMPORTERS = {
    "fcn8s_caffe": import_caffemodel,
    "dpc_xception71": import_model_zoo,
    "drn_d_105": import_drn,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = option_parser(__doc__.split("\n\n")[0])
    parser.add_argument("arch", choices=list(IMPORTERS), help="which original scorer SOURCE holds")
    parser.add_argument("source", type=Path, help="the original file (caffemodel; model-zoo tarball or folder; DRN .pth)")
    parser.add_argument("--out", type=Path, required=True, help="segmenter file to write (.pt)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_main(lambda: import_segmenter(args))


def import_segmenter(args: argparse.Namespace) -> str:
    """Write the segmenter file; the line that says so."""
    check_apart({"--out": args.out}, {args.source: "SOURCE"})  # the output rule (common.outputs)
    if args.out.exists() and not args.overwrite:
        raise EvalError(f"{args.out}: exists; pass --overwrite to replace it")
    if args.out.is_dir():
        raise EvalError(f"{args.out}: is a folder; --out names the segmenter file to write")
    if not args.source.exists():
        raise EvalError(f"{args.source}: not found")
    model, metadata = IMPORTERS[args.arch](args.source)
    save_segmenter(args.out, model, metadata)
    return f"wrote segmenter {args.out} ({metadata['display_name']})"


if __name__ == "__main__":
    sys.exit(main())
