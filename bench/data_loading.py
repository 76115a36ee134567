"""How fast the training data arrives, compared with one CPU training step of the full pix2pix model.

Measures, on synthetic frames with 256x256 halves (the size of the pix2pix Cityscapes data):
  * samples/s of AlignedDataset in training mode (JPEG decode, split, resize to 286 bicubic, random
    256 crop and flip, label map), in the main process and with 1 and 2 DataLoader workers, with
    exact label PNGs and with labels read back from the colour half;
  * the time of color_to_train_ids on one 256x256 colour label;
  * the time of one training step (forward + backward of unet_256 and the basic PatchGAN
    discriminator on a 1x3x256x256 pair), if gan/networks.py is available.
The last column says how many samples the loader delivers during one training step (the loader
should be at least 10x faster than training). Medians of several runs.

Run: .venv/bin/python bench/data_loading.py
"""
from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.aligned import AlignedDataset  # noqa: E402
from data.cityscapes import color_to_train_ids  # noqa: E402
from data.synthetic import generate  # noqa: E402

FRAMES = 16  # distinct files; each epoch reads them EPOCH_LEN / FRAMES times
EPOCH_LEN = 96
RUNS = 5


def loader_rate(dataset, workers: int) -> float:
    """Median samples/s over RUNS epochs of EPOCH_LEN samples (batch size 1, shuffled), after one warm-up epoch."""
    indices = [i % len(dataset) for i in range(EPOCH_LEN)]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=1, shuffle=True,
                                         num_workers=workers, persistent_workers=workers > 0)
    rates = []
    for run in range(RUNS + 1):
        start = time.perf_counter()
        for _ in loader:
            pass
        if run > 0:
            rates.append(EPOCH_LEN / (time.perf_counter() - start))
    return statistics.median(rates)


def color_time(root: Path) -> float:
    """Median seconds of color_to_train_ids on one 256x256 colour half."""
    pair = np.asarray(Image.open(root / "train" / "0.jpg").convert("RGB"))
    colour = np.ascontiguousarray(pair[:, pair.shape[1] // 2:])
    color_to_train_ids(colour)  # builds the lookup table once
    times = []
    for _ in range(200):
        start = time.perf_counter()
        color_to_train_ids(colour)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_step_time() -> float | None:
    """Median seconds of forward + backward of unet_256 and the basic discriminator, or None if unavailable."""
    try:
        from gan.networks import build_discriminator, build_generator
    except ImportError:
        return None
    torch.manual_seed(0)
    netG, netD = build_generator("unet_256"), build_discriminator("basic")
    a, b = torch.rand(1, 3, 256, 256) * 2 - 1, torch.rand(1, 3, 256, 256) * 2 - 1
    times = []
    for step in range(4):
        start = time.perf_counter()
        fake = netG(a)
        loss_d = netD(torch.cat([a, fake.detach()], 1)).mean() - netD(torch.cat([a, b], 1)).mean()
        loss_d.backward()
        loss_g = -netD(torch.cat([a, fake], 1)).mean() + 100 * (fake - b).abs().mean()
        loss_g.backward()
        netG.zero_grad(set_to_none=True)
        netD.zero_grad(set_to_none=True)
        if step > 0:  # the first step warms up the allocator
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _workers(count: int) -> str:
    return "main process" if count == 0 else f"{count} worker{'s' if count > 1 else ''}"


def main() -> None:
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench_data_"))
    try:
        print(f"generating {FRAMES} synthetic frames at 256 px ...", flush=True)
        root = generate(work / "city", n_train=FRAMES, n_val=1, seed=0, size=256)
        plain = work / "plain"  # a reference-style folder: JPEGs only, labels from the colour half
        shutil.copytree(root / "train", plain / "train")

        exact = AlignedDataset(root, "train", load_size=286, crop_size=256)
        from_colour = AlignedDataset(plain, "train", load_size=286, crop_size=256)
        rows = []
        for workers in (0, 1, 2):
            rows.append((f"AlignedDataset train, exact label PNG, {_workers(workers)}", loader_rate(exact, workers)))
        for workers in (1, 2):
            rows.append((f"AlignedDataset train, label from colour, {_workers(workers)}",
                         loader_rate(from_colour, workers)))
        colour_seconds = color_time(root)
        step_seconds = training_step_time()

        print()
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; 256 crop from 286 load; "
              f"median of {RUNS} epochs of {EPOCH_LEN} samples")
        header = f"{'case':<58} {'items/s':>10} {'ms/item':>10} {'items per train step':>21}"
        print(header)
        print("-" * len(header))
        for name, rate in rows:
            ratio = f"{rate * step_seconds:.1f}x" if step_seconds else "n/a"
            print(f"{name:<58} {rate:>10.1f} {1000 / rate:>10.2f} {ratio:>21}")
        ratio = f"{step_seconds / colour_seconds:.0f}x" if step_seconds else "n/a"
        print(f"{'color_to_train_ids, 256x256':<58} {1 / colour_seconds:>10.0f} {1000 * colour_seconds:>10.2f} "
              f"{ratio:>21}")
        if step_seconds:
            print(f"{'training step: unet_256 + basic D, fwd+bwd, 1x3x256x256':<58} {1 / step_seconds:>10.2f} "
                  f"{1000 * step_seconds:>10.1f} {'1.0x':>21}")
        else:
            print("pix2pix training step: not available (gan/networks.py has no build_generator/build_discriminator)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
