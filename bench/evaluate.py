"""Speed of the FCN-score pipeline on the CPU: ``.venv/bin/python bench/evaluate.py``.

1. generate + segment + score, per segmenter, with the full-size networks at 256x256 (pix2pix unet_256
   generator; FCN-8s VGG16; DeepLabV3+ Xception-71) on synthetic val frames, through the same functions
   evaluate.py uses (PNG writing and reading included). Baseline: the segmenter at batch size 1.
2. confusion-matrix accumulation for 500 frames of 256x256: our on-device ``ConfusionMeter`` against
   the reference script's per-frame ``numpy.bincount`` histogram, measured in the same run.
3. the pix2pix protocol (``--protocol fullres``) with pix2pix's Caffe FCN-8s (``fcn8s_caffe``, full-size
   random weights): one 256x256 image upsampled to 2048x1024, segmented and scored, in frames/s and
   peak memory (a fresh process per row), against our FCN-8s run at the same size; and importing a
   full-size caffemodel (the network's random weights written here, about 538 MB) with packed and with
   unpacked floats.

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
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from peak_memory import peak_memory_growth_mb  # noqa: E402
from eval.fcn_score import (generate_images, open_eval_set, score_batches, score_folder,  # noqa: E402
                            upsample_like_imresize)
from eval.metrics import ConfusionMeter  # noqa: E402
from eval.segmenters.caffe_fcn8s import CaffeFCN8s, import_caffemodel  # noqa: E402
from eval.segmenters.caffemodel import encode_blob, encode_layer  # noqa: E402
from eval.segmenters.protobuf_wire import fields_with_arrays, iter_fields, unpacked_floats  # noqa: E402
from eval.segmenters.registry import build_segmenter  # noqa: E402
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


def _fullres_inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random 256x256 uint8 image and a random 2048x1024 trainId label map."""
    gen = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, 256, 256), generator=gen, dtype=torch.uint8)
    label = torch.randint(0, 19, (1024, 2048), generator=gen, dtype=torch.uint8)
    return image, label


def fullres_segmenter(arch: str):
    """Full-size random weights: fcn8s_caffe as the deploy net; our fcn8s run at the full size too."""
    if arch == "fcn8s_caffe":
        return build_segmenter(arch, num_classes=20).eval()
    return build_segmenter(arch).eval()  # input_size None: segmented at 2048x1024 as well


def score_fullres_frames(model, image: torch.Tensor, label: torch.Tensor, frames: int) -> None:
    """What evaluate.py --protocol fullres does per frame: PIL upsampling, segmentation, confusion matrix."""
    def batches():
        for _ in range(frames):
            up = upsample_like_imresize(image, tuple(label.shape))
            yield (up.float() / 127.5 - 1)[None], label[None]
    score_batches(model, batches(), CPU)


def bench_fullres(frames: int, batch2_memory: bool) -> list[tuple]:
    rows = []
    image, label = _fullres_inputs()
    for arch, name in (("fcn8s", "our FCN-8s (VGG16, padded, no crops)"),
                       ("fcn8s_caffe", "pix2pix Caffe FCN-8s (pad 100, crops)")):
        model = fullres_segmenter(arch)
        model.predict(torch.zeros(1, 3, 64, 64))  # warm-up at a small size
        seconds = median_time(lambda: score_fullres_frames(model, image, label, frames), 1) / frames
        del model
        setup = f"import evaluate as b, torch\nmodel = b.fullres_segmenter({arch!r})\nimage, label = b._fullres_inputs()"
        memory = peak_memory_growth_mb(setup, "b.score_fullres_frames(model, image, label, 1)")
        rows.append((f"{name}, batch 1", seconds, memory))
        if arch == "fcn8s_caffe" and batch2_memory:
            work = "model.predict(torch.zeros(2, 3, 1024, 2048))"
            rows.append((f"{name}, batch 2 (on the CPU one frame per pass): peak memory only", None,
                         peak_memory_growth_mb(setup, work)))
    return rows


def write_fcn8s_caffemodel(path: Path, net: CaffeFCN8s, packed: bool) -> Path:
    """``net``'s weights as pix2pix's caffemodel holds them: one layer per convolution, floats packed or
    one field per float."""
    with open(path, "wb") as f:
        for name, module in net.named_children():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                kind = "Deconvolution" if isinstance(module, nn.ConvTranspose2d) else "Convolution"
                blobs = [encode_blob(p.detach().numpy(), packed=packed) for p in module.parameters()]
                f.write(encode_layer(name, kind, blobs))
    return path


def bench_caffemodel_import() -> list[tuple]:
    """Import of a full-size caffemodel (random weights, written here and deleted), packed vs unpacked floats;
    and the vectorised unpacked reader against one Python step per field on 1M floats."""
    rows = []
    torch.manual_seed(0)
    net = build_segmenter("fcn8s_caffe", num_classes=20).net
    with tempfile.TemporaryDirectory() as tmp:
        for packed in (True, False):
            path = write_fcn8s_caffemodel(Path(tmp) / "fcn-8s.caffemodel", net, packed)
            size = path.stat().st_size
            seconds = median_time(lambda: import_caffemodel(path), 1)
            rows.append((f"import full-size caffemodel, {'packed' if packed else 'unpacked'} floats "
                         f"({size / 1e6:.0f} MB)", seconds))
            path.unlink()
    del net
    blob = unpacked_floats(5, np.random.default_rng(0).random(1_000_000, dtype=np.float32))
    loop = median_time(lambda: [value for _, _, value in iter_fields(blob)], 3)
    vectorised = median_time(lambda: fields_with_arrays(blob, {5: "<f4"}), 3)
    rows.append(("1M unpacked floats, one Python step per field (iter_fields)", loop))
    rows.append(("1M unpacked floats, vectorised (fields_with_arrays)", vectorised))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--frames", type=int, default=8, help="val frames for the pipeline benchmark")
    parser.add_argument("--batch-size", type=int, default=8, help="batched segmenter inference size")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--metric-frames", type=int, default=500, help="frames for the metric benchmark")
    parser.add_argument("--metric-repeats", type=int, default=7, help="timed repeats of the metric benchmark")
    parser.add_argument("--fullres-frames", type=int, default=2,
                        help="2048x1024 frames timed per segmenter in the fullres benchmark (0: skip it)")
    parser.add_argument("--skip-batch2-memory", action="store_true",
                        help="skip the fullres batch-2 peak-memory row (one more 2-frame forward)")
    parser.add_argument("--skip-256", action="store_true", help="skip the 256x256 pipeline and metric benchmarks")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    if args.fullres_frames:
        print(f"\n## Protocol fullres: 256x256 image -> 2048x1024, segment, score; {args.fullres_frames} frames\n")
        rows = bench_fullres(args.fullres_frames, not args.skip_batch2_memory)
        base = rows[0][1]
        print("| Segmenter | s / frame | frames / s | time vs our FCN-8s | peak memory growth (MB) |")
        print("|---|---:|---:|---:|---:|")
        for name, seconds, memory in rows:
            timing = f"{seconds:.1f} | {1 / seconds:.3f} | {seconds / base:.2f}x" if seconds else "| |"
            print(f"| {name} | {timing} | {memory:.0f} |")
        print("\n## Importing pix2pix's FCN-8s caffemodel\n")
        rows = bench_caffemodel_import()
        print("| Import | s | speed vs the first row of its pair |")
        print("|---|---:|---:|")
        for i, (name, seconds) in enumerate(rows):
            print(f"| {name} | {seconds:.3f} | {rows[i - i % 2][1] / seconds:.2f}x |")
    if args.skip_256:
        return 0

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
