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

import sys

from common.command_line import run_main
from eval.config import parse_config
from eval.evaluation import evaluate


def main(argv=None) -> int:
    config = parse_config(argv, __doc__.split("\n\n")[0])

    def work() -> str:
        config.check()
        out = evaluate(config)
        return (f"wrote {out}/results.md, results.json, results.csv, per_class_*.md, comparison.png and the "
                f"generated images {out}/<run>/images/<frame>.png")
    return run_main(work)


if __name__ == "__main__":
    sys.exit(main())
