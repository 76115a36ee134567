"""Bytes on disk of a run's checkpoint files at the paper's configuration (unet_256 + basic D):
``.venv/bin/python bench/checkpoint_sizes.py``.

Builds Pix2Pix with Adam and with TRAdam, takes one training step at 256x256 (so every optimizer state
exists, as in any saved run), and writes what train.py writes: latest.pt (the complete state, built by
gan.run_files.latest_state) and an epoch_<NNN>.pt snapshot (G and D, no optimizer state). Then the
total a default 200-epoch run leaves on disk: one latest.pt, 40 snapshots (--save-epoch-freq 5) and,
with --keep-full K, K more complete states. The baseline is the former format, where every epoch file
was a complete state.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import rng  # noqa: E402
from gan import run_files  # noqa: E402
from gan.pix2pix import ModelConfig, Pix2Pix  # noqa: E402
from gan.optimizers import OptimConfig  # noqa: E402
from training.options import parse_args  # noqa: E402

SNAPSHOTS = 200 // 5  # epoch files of a default run (--n-epochs 100 --n-epochs-decay 100 --save-epoch-freq 5)


def file_sizes(optim: str, folder: Path) -> tuple[int, int]:
    """(bytes of latest.pt, bytes of an epoch snapshot) for ``optim`` on G and D."""
    torch.manual_seed(0)
    model = Pix2Pix(ModelConfig(), OptimConfig(optim), OptimConfig(optim))
    model.training_step(torch.rand(1, 3, 256, 256) * 2 - 1, torch.rand(1, 3, 256, 256) * 2 - 1)
    state = model.state_dict()
    options = parse_args(["--optim", optim]).record()
    snapshot = run_files.epoch_state(state, options=options, epoch=5, step=14875, world_size=1)
    state = run_files.latest_state(state, options=options, epoch=5, epoch_step=0, step=14875, schedulers=({}, {}),
                                   rng_ranks=[rng.capture(torch.device("cpu"))], world_size=1, finished=False,
                                   data_fingerprint={})
    latest, epoch = folder / f"{optim}_latest.pt", folder / f"{optim}_epoch.pt"
    run_files.write(latest, state)
    run_files.write(epoch, snapshot)
    return latest.stat().st_size, epoch.stat().st_size


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        sizes = {optim: file_sizes(optim, Path(folder)) for optim in ("adam", "tradam")}
    print("unet_256 + basic D, fp32; a default 200-epoch run: 1 latest.pt + 40 epoch files\n")
    print("| optimizer | latest.pt (MB) | epoch_NNN.pt (MB) | run total (GB) | + --keep-full 2 (GB) | "
          "former format: 40 full epoch files (GB) | former / now |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for optim, (latest, epoch) in sizes.items():
        total = latest + SNAPSHOTS * epoch
        former = latest + SNAPSHOTS * latest
        print(f"| {optim} | {latest / 1e6:.1f} | {epoch / 1e6:.1f} | {total / 1e9:.2f} | "
              f"{(total + 2 * latest) / 1e9:.2f} | {former / 1e9:.2f} | {former / total:.1f} |")
    print("\nbytes: " + ", ".join(f"{optim} latest.pt {latest}, epoch file {epoch}"
                                   for optim, (latest, epoch) in sizes.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
