"""Speed of DeepLab's DPC Xception-71 scorer (Table 3) at 2048x1024 on the CPU:
``.venv/bin/python bench/dpc_xception71.py``.

The full-size network (random weights; speed does not depend on them) segments Cityscapes-sized
images through ``Segmenter.predict`` as ``evaluate.py`` calls it: each image is padded to the
1025x2049 evaluation crop, so a 256x256 image costs as much as a 2048x1024 one. Rows: output stride
16 (the zoo figure) and 8, with the convolutions in PyTorch's default (NCHW) memory layout and in
channels-last (what the segmenter uses). Baseline:
output stride 16, NCHW, measured in the same run. Medians over ``--repeats`` runs after one warm-up.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.segmenters.base import Segmenter  # noqa: E402
from eval.segmenters.dpc_xception71 import DPCXception71Config  # noqa: E402
from eval.segmenters.registry import build_segmenter  # noqa: E402


def seconds_per_image(model: Segmenter, images: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        model.predict(images)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.predict(images)
            times.append(time.perf_counter() - start)
    return statistics.median(times) / images.shape[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output-strides", type=int, nargs="+", default=[16, 8], choices=[8, 16])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.rand(1, 3, 1024, 2048) * 2 - 1
    rows = []
    for output_stride in args.output_strides:
        model = build_segmenter("dpc_xception71", DPCXception71Config(output_stride=output_stride)).eval()
        for channels_last in (False, True):
            model.net.channels_last = channels_last
            layout = "channels-last (default)" if channels_last else "NCHW"
            rows.append((f"DPC Xception-71, output stride {output_stride}, {layout}",
                         seconds_per_image(model, images, args.repeats)))
        del model
    baseline = rows[0][1]
    print(f"DPC Xception-71 on the CPU ({args.threads} threads), one 2048x1024 image per call, "
          f"median of {args.repeats}\n")
    print("| network | s/image | images/s | speed vs. first row |")
    print("|---|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.2f} | {1 / seconds:.3f} | {baseline / seconds:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
