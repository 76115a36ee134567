"""Turn the paper's original scorers into our segmenter files.

    python -m eval.import_segmenter fcn8s_caffe fcn-8s-cityscapes.caffemodel --out checkpoints/segmenters/fcn8s_caffe.pt
    python -m eval.import_segmenter dpc_xception71 deeplab_cityscapes_xception71_trainfine_2018_09_08.tar.gz \\
        --out checkpoints/segmenters/dpc_xception71.pt

* ``fcn8s_caffe``: pix2pix's Caffe FCN-8s (Table 2 of the paper), read straight from the caffemodel.
* ``dpc_xception71``: DeepLab's DPC Xception-71 Cityscapes model-zoo file (Table 3), the tarball or its
  unpacked folder.
* ``drn_d_105``: fyu/drn's DRN-D-105 Cityscapes file ``drn-d-105_ms_cityscapes.pth`` (the mIoU scorer of
  SPADE, GAN Compression and later work).

Each importer (the registry's, :mod:`eval.segmenters.registry`) reads the original file, builds our network
with those weights and returns it with its metadata; this command writes the result with
:func:`eval.segmenters.files.save_segmenter`, which :func:`eval.segmenters.load_segmenter` reads back.
Neither Caffe nor TensorFlow is needed. Bad input (not that model, a missing layer or variable, a blob of
the wrong shape) is one line on stderr naming the file and what is wrong, exit status 2; an existing
output is replaced only with ``--overwrite``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from common.checkpoint import describe_names, nonfinite_entries
from common.command_line import option_parser, run_main
from common.outputs import check_apart
from eval import EvalError
from eval.segmenters.files import save_segmenter
from eval.segmenters.registry import IMPORTED, REGISTRY


def import_segmenter(arch: str, source: Path, out: Path, overwrite: bool) -> str:
    """Write the segmenter file ``out`` from the original file ``source`` of ``arch``; the line that says so."""
    check_apart({"--out": out}, {source: "SOURCE"})  # the output rule (common.outputs)
    if out.exists() and not overwrite:
        raise EvalError(f"{out}: exists; pass --overwrite to replace it")
    if out.is_dir():
        raise EvalError(f"{out}: is a folder; --out names the segmenter file to write")
    if not source.exists():
        raise EvalError(f"{source}: not found")
    model, metadata = REGISTRY[arch].importer(source)
    bad = nonfinite_entries(model.state_dict())
    if bad:
        raise EvalError(f"{source}: holds NaN or infinite weights ({describe_names(bad)}); it is no usable scorer, "
                        f"and nothing was written")
    save_segmenter(out, model, metadata)
    return f"wrote segmenter {out} ({metadata['display_name']})"


def main(argv=None) -> int:
    parser = option_parser(__doc__.split("\n\n")[0])
    parser.add_argument("arch", choices=IMPORTED, help="which original scorer SOURCE holds")
    parser.add_argument("source", type=Path, help="the original file (caffemodel; model-zoo tarball or folder; DRN .pth)")
    parser.add_argument("--out", type=Path, required=True, help="segmenter file to write (.pt)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args(argv)
    return run_main(lambda: import_segmenter(args.arch, args.source, args.out, args.overwrite))


if __name__ == "__main__":
    sys.exit(main())
