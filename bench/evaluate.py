"""Speed of the FCN-score pipeline on the CPU: ``.venv/bin/python bench/evaluate.py``.

1. generate + segment + score, per segmenter, with the full-size networks at 256x256 (pix2pix unet_256
   generator; FCN-8s VGG16; DeepLabV3+ Xception-71) on synthetic val frames, through the same functions
   evaluate.py uses (PNG writing and reading included). Baseline: the segmenter at batch size 1.
2. confusion-matrix accumulation for 500 frames of 256x256: our on-device ``ConfusionMeter`` against
   the reference script's per-frame ``numpy.bincount`` histogram, measured in the same run.

Medians over ``--repeats`` (``--metric-repeats``) runs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eval.fcn_score import generate_images, open_eval_set, score_folder  # noqa: E402
from eval.metrics import ConfusionMeter  # noqa: E402
from eval.segmenters import build_segmenter  # noqa: E402
from gan.networks import build_generator  # noqa: E402

CPU = torch.device("cpu")


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_pipeline(frames: int, repeats: int, batch_size: int) -> list[tuple]:
    from data.synthetic import generate
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp) / "data", n_train=1, n_val=frames, seed=0, size=256)
        evalset = open_eval_set(root)
        torch.manual_seed(0)
        generator = build_generator("unet_256")
        images = Path(tmp) / "images"
        generate_images(generator, evalset, images, CPU)  # warm-up
        t_gen = median_time(lambda: generate_images(generator, evalset, images, CPU), repeats) / frames
        rows.append(("generate (unet_256, batch 1)", t_gen, None, None))
        for arch, label in (("fcn8s", "FCN-8s (VGG16)"), ("deeplabv3plus_xception71", "DeepLabV3+ Xception-71")):
            model = build_segmenter(arch, input_size=(256, 256)).eval()
            score_folder(model, evalset, images, CPU, batch_size=1)  # warm-up
            per_batch = {}
            for bs in (1, batch_size):
                per_batch[bs] = median_time(lambda: score_folder(model, evalset, images, CPU, batch_size=bs),
                                            repeats) / frames
            for bs in (1, batch_size):
                total = t_gen + per_batch[bs]
                rows.append((f"{label}: generate + segment + score, batch {bs}", total, per_batch[bs],
                             (t_gen + per_batch[1]) / total))
            del model
    return rows


def numpy_histogram(preds, labels, n=19):
    """The reference script's way: one numpy bincount per frame on the CPU."""
    hist = np.zeros((n, n), dtype=np.int64)
    for p, t in zip(preds, labels):
        k = (t >= 0) & (t < n)
        hist += np.bincount(n * t[k].astype(int) + p[k], minlength=n * n).reshape(n, n)
    return hist


def bench_metrics(frames: int, repeats: int) -> list[tuple]:
    gen = torch.Generator().manual_seed(0)
    preds = torch.randint(0, 19, (frames, 256, 256), generator=gen)
    labels = torch.randint(0, 19, (frames, 256, 256), generator=gen).to(torch.uint8)
    labels[:, :8] = 255
    preds_np, labels_np = preds.numpy(), labels.numpy()

    def ours_per_frame():
        meter = ConfusionMeter()
        for p, t in zip(preds, labels):
            meter.update(p, t)
        return meter.matrix

    def ours_batched(batch=8):
        meter = ConfusionMeter()
        for s in range(0, frames, batch):
            meter.update(preds[s:s + batch], labels[s:s + batch])
        return meter.matrix

    assert np.array_equal(ours_per_frame().numpy(), numpy_histogram(preds_np, labels_np))
    base = median_time(lambda: numpy_histogram(preds_np, labels_np), repeats)
    rows = [("numpy bincount per frame (reference script)", base, 1.0)]
    for name, fn in (("ConfusionMeter, per frame", ours_per_frame), ("ConfusionMeter, batches of 8", ours_batched)):
        t = median_time(fn, repeats)
        rows.append((name, t, base / t))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--frames", type=int, default=8, help="val frames for the pipeline benchmark")
    parser.add_argument("--batch-size", type=int, default=8, help="batched segmenter inference size")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--metric-frames", type=int, default=500, help="frames for the metric benchmark")
    parser.add_argument("--metric-repeats", type=int, default=7, help="timed repeats of the metric benchmark")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

    print(f"\n## Pipeline at 256x256, {args.frames} frames, median of {args.repeats}\n")
    print("| Stage | s / frame | frames / s | segment + score s / frame | speed vs batch 1 |")
    print("|---|---:|---:|---:|---:|")
    for name, per_frame, seg, ratio in bench_pipeline(args.frames, args.repeats, args.batch_size):
        seg_text = f"{seg:.3f}" if seg is not None else ""
        ratio_text = f"{ratio:.2f}x" if ratio is not None else ""
        print(f"| {name} | {per_frame:.3f} | {1 / per_frame:.2f} | {seg_text} | {ratio_text} |")

    print(f"\n## Confusion matrix over {args.metric_frames} frames of 256x256, median of {args.metric_repeats}\n")
    print("| Method | total s | ms / frame | speed vs numpy |")
    print("|---|---:|---:|---:|")
    for name, total, ratio in bench_metrics(args.metric_frames, args.metric_repeats):
        print(f"| {name} | {total:.3f} | {1000 * total / args.metric_frames:.2f} | {ratio:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
