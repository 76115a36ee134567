"""Train a segmenter on the real training photos: ``python -m eval.train_segmenter --arch fcn8s``.

The segmenter learns trainIds (19 classes, 255 ignored) from the photos of a prepared pix2pix-layout
dataset (the ``A`` halves; labels from the exact trainId maps, or from the colour halves), with the
pix2pix jitter (resize to ``--load-size``, random ``--crop-size`` crop, flip) plus a small brightness /
contrast jitter. Loss: cross-entropy. Optimiser: AdamW with a polynomial learning-rate decay.

Afterwards it scores the real validation photos at the dataset's size, as ``evaluate.py`` scores its
ground-truth row (the segmenter resizes its input to its training resolution ``--crop-size``), and
saves weights and metadata to ``checkpoints/segmenters/<arch>.pt``. While training, a resume file
``<arch>.resume.pt`` next to it is rewritten after every epoch and when Ctrl-C or SIGTERM stops the
training (after the current step; exit 130 / 143); ``--resume`` continues from it, and it is deleted
once the segmenter is saved. An existing segmenter or resume file is only
replaced with ``--overwrite`` (the segmenter once the new one is trained).
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from common.command_line import option_parser, run_main
from common.device import resolve_device
from eval import EvalError
from eval.fcn_score import EvalSet, open_eval_set, score_real_photos
from eval.metrics import fcn_scores
from eval.report import per_class_table
from eval.sources import default_dataroot
from eval.segmenters import (REGISTRY, Segmenter, build_segmenter, default_path, get_spec, make_config,
                             read_segmenter_file, save_segmenter, segmenter_metadata)
from common import rng
from common.amp import amp_dtype, autocast
from common.interrupts import StopSignals, Stopped, ignore_stop_signals, signal_name
from common.progress import progress

LOSS_READ_EVERY = 50  # steps between reads of the loss for the progress bar

# Presets: option values that replace the parser defaults (explicit options still win).
PRESETS = {
    # Trains in a few minutes on 2 CPU cores on the built-in synthetic city (64 px photos). Both scorers
    # must score the real photos above every generator (the seeds study checks it). DeepLabV3+ gets a
    # ResNet-18 encoder and sees the photos upsampled to 128 px: at 64 px its output stride of 16 leaves
    # a 4x4 map, and Xception-71 from scratch does not train in minutes; with Xception-71 at 64 px
    # (24 epochs) the generators' smoother images outscored the real photos on pixel accuracy.
    "demo": {
        "fcn8s": {"config": ["width_mult=0.25", "batch_norm=true"], "epochs": 30, "batch_size": 8,
                  "crop_size": 64, "load_size": 72, "lr": 2e-3, "workers": 0},
        "deeplabv3plus_xception71": {"config": ["encoder=resnet18"], "epochs": 20, "batch_size": 8,
                                     "crop_size": 128, "load_size": 144, "lr": 2e-3, "workers": 0},
    },
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = option_parser(__doc__.split("\n\n")[0], prog="python -m eval.train_segmenter")
    parser.add_argument("--arch", required=True, choices=[a for a, spec in REGISTRY.items() if not spec.obtain],
                        help="segmenter architecture (imported originals such as dpc_xception71 are not trained here)")
    parser.add_argument("--dataroot", default=None,
                        help="prepared pix2pix-layout dataset; None: the built-in synthetic city")
    parser.add_argument("--out", default=None, help="output file; None: checkpoints/segmenters/<arch>.pt")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="a set of defaults: 'demo' trains a small model in minutes on a CPU")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                        help="architecture config field (repeatable), e.g. width_mult=0.25 or "
                             "encoder=xception71; see eval/segmenters.py")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step")
    parser.add_argument("--lr", type=float, default=5e-4, help="AdamW learning rate (polynomial decay to 0)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay")
    parser.add_argument("--crop-size", type=int, default=256, help="training crop = training resolution")
    parser.add_argument("--load-size", type=int, default=286, help="images are resized to this before cropping")
    parser.add_argument("--pretrained-backbone", action="store_true",
                        help="initialise the backbone with ImageNet weights (local cache, else download; "
                             "trains from scratch when neither works)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out stem>.resume.pt; a finished <out> is kept as is")
    parser.add_argument("--overwrite", action="store_true",
                        help="start over although <out> or its resume file exists (<out> is replaced once the new "
                             "segmenter is trained)")
    parser.add_argument("--val-every", type=int, default=0,
                        help="also score the val photos every N epochs (0: only at the end)")
    parser.add_argument("--max-val-frames", type=int, default=None, help="score only the first N val frames")
    parser.add_argument("--workers", type=int, default=2, help="data loading processes")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to train")
    parser.add_argument("--amp", action="store_true",
                        help="bf16 autocast, as train.py --amp (where the device has bf16: the CPU and CUDA from "
                             "Ampere on; elsewhere ignored)")
    args = parser.parse_args(argv)
    if args.preset:  # preset values replace defaults, not options given on the command line
        preset = PRESETS[args.preset][args.arch]
        parser.set_defaults(**preset)
        args = parser.parse_args(argv)  # --config items come after the preset's: they win
    return args


def parse_config(arch: str, items: list[str]):
    """``KEY=VALUE`` strings -> the architecture's config dataclass (values typed by its fields)."""
    types = {f.name: f.type for f in fields(get_spec(arch).config_type)}
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in types:
            raise EvalError(f"--config {item}: expected KEY=VALUE with KEY one of {', '.join(types)}")
        kind = types[key] if isinstance(types[key], str) else types[key].__name__
        if kind == "bool":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise EvalError(f"--config {item}: expected true or false")
            values[key] = text.lower() in ("true", "1", "yes")
        else:
            try:
                values[key] = {"int": int, "float": float}.get(kind, str)(text)
            except ValueError:
                raise EvalError(f"--config {item}: {text!r} is not a {kind}") from None
    return make_config(arch, values)


def validate(args: argparse.Namespace, out: Path) -> None:
    """One-line errors (EvalError) for bad options and an --out that would be overwritten, before any work."""
    def refuse(name: str, rule: str):
        raise EvalError(f"--{name.replace('_', '-')} must be {rule}, got {getattr(args, name)}")

    for name in ("epochs", "batch_size", "crop_size", "load_size"):
        if getattr(args, name) < 1:
            refuse(name, ">= 1")
    for name in ("val_every", "workers", "seed"):
        if getattr(args, name) < 0:
            refuse(name, ">= 0")
    if args.max_val_frames is not None and args.max_val_frames < 1:
        refuse("max_val_frames", ">= 1")
    if not (math.isfinite(args.lr) and args.lr > 0):
        refuse("lr", "a number > 0")
    if not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        refuse("weight_decay", "a number >= 0")
    if args.load_size < args.crop_size:
        raise EvalError(f"--load-size {args.load_size} is smaller than --crop-size {args.crop_size}")
    parse_config(args.arch, args.config)
    if args.resume and args.overwrite:
        raise EvalError("--resume and --overwrite exclude each other")
    if out.is_dir():
        raise EvalError(f"--out {out}: is a folder; give the path of the segmenter file")
    partial = resume_path(out)
    if not (args.resume or args.overwrite):
        if out.exists():
            raise EvalError(f"{out}: a trained segmenter is there; pass --overwrite to replace it or choose another "
                            f"--out")
        if partial.exists():
            raise EvalError(f"{partial}: an unfinished training of {out.name} is there; pass --resume to continue it "
                            f"or --overwrite to start over")
    try:  # the folder must take the resume file and the segmenter
        out.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out.parent).close()
    except OSError as error:
        raise EvalError(f"--out {out}: cannot write in {out.parent} ({error.strerror})") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resume_path(out: Path) -> Path:
    return out.with_name(out.stem + ".resume.pt")


def jitter_colors(photos: torch.Tensor, generator: torch.Generator, strength: float = 0.2) -> torch.Tensor:
    """Random brightness and contrast per image (photos in [-1, 1])."""
    n = photos.shape[0]
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * strength
    brightness = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * strength
    mean = photos.mean(dim=(1, 2, 3), keepdim=True)
    return ((photos - mean) * contrast.to(photos) + mean + brightness.to(photos)).clamp(-1, 1)


def val_scores(model: Segmenter, val_set: EvalSet, device, batch_size: int, amp: bool) -> dict:
    """FCN-scores of the segmenter on the real val photos (the ground-truth row)."""
    bar = progress(total=len(val_set), desc="val (real photos)", unit="img")
    scores = fcn_scores(score_real_photos(model, val_set, device, batch_size, amp, bar))
    bar.close()
    return scores


def format_scores(scores: dict) -> str:
    return (f"per-pixel acc {scores['pixel_acc']:.3f}, per-class acc {scores['class_acc']:.3f}, "
            f"class IoU {scores['class_iou']:.3f}")


def rng_state(color_rng: torch.Generator, device: torch.device) -> dict:
    """The random state a step draws from: this process's generators (dropout, jitter without workers;
    the training device's own) and the colour jitter's."""
    return {"process": rng.capture(device), "color": color_rng.get_state()}


def train_one_epoch(model, train_set, args, epoch, optimizer, schedule, scaler, device, amp, bar, step,
                    start_batch: int = 0, resume_rng: dict | None = None, signals=None) -> tuple[int, int, dict]:
    """One pass over the training photos (order and jitter seeded by seed and epoch) from batch ``start_batch``
    (the batches before are loaded again and skipped, then ``resume_rng`` restored, so a resumed epoch
    continues exactly). Stops after the current batch when ``signals`` holds a stop request. Returns the
    step, the number of batches of this epoch done and the random state to resume after them.

    The progress bar shows the mean loss of the last ``LOSS_READ_EVERY`` steps (and of the epoch's last
    few), so the host waits for the device that rarely."""
    order = torch.Generator().manual_seed(args.seed * 100_003 + epoch)
    color_rng = torch.Generator().manual_seed(args.seed * 100_003 + epoch + 1)
    batch_size = min(args.batch_size, len(train_set))  # fewer photos than a batch: one batch of all
    loader = torch.utils.data.DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.workers, generator=order,
                                         pin_memory=device.type == "cuda", worker_init_fn=ignore_stop_signals)
    criterion = torch.nn.CrossEntropyLoss(ignore_index=255)
    model.train()
    batches = iter(loader)
    for _ in range(start_batch):
        next(batches)
    if resume_rng is not None:
        rng.restore(resume_rng["process"], device)
        color_rng.set_state(resume_rng["color"])
    done = start_batch
    loss_sum, losses = torch.zeros((), device=device), 0  # read back every LOSS_READ_EVERY steps only
    for batch in batches:
        photos = jitter_colors(batch["target"], color_rng).to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        with autocast(device, amp):
            loss = criterion(model(photos).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        step += 1
        done += 1
        bar.update(1)
        loss_sum += loss.detach()
        losses += 1
        stopping = signals is not None and signals.requested
        if losses == LOSS_READ_EVERY or done == len(loader) or stopping:  # a read waits for the device
            bar.set_postfix({"epoch": epoch + 1, "loss": float(loss_sum) / losses})
            loss_sum, losses = torch.zeros((), device=device), 0
        if stopping:
            break
    return step, done, rng_state(color_rng, device)


@dataclass
class Training:
    """What one segmenter training works with (:func:`build_training`)."""
    model: Segmenter
    train_set: object                       # data.aligned.AlignedDataset(train, with jitter)
    val_set: EvalSet
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    settings: dict                          # the options a resume must match
    trained_on: dict                        # the dataset, for the segmenter's metadata
    training: dict                          # settings, backbone, time: the metadata's training record
    class_names: tuple[str, ...]            # trainId 0..18 names
    steps_per_epoch: int
    device: torch.device
    amp: bool

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.settings["epochs"]

    def metadata(self, scores: dict | None) -> dict:
        size = self.settings["crop_size"]
        return segmenter_metadata(self.model, self.class_names, (size, size), self.trained_on, scores, self.training)


@dataclass
class Start:
    """Where a training starts: from scratch, or where its resume file stopped."""
    epoch: int = 0
    batch: int = 0               # batches of ``epoch`` already done
    rng: dict | None = None      # the random state after them (:func:`rng_state`)
    step: int = 0
    backbone: str | None = None  # where the backbone's initial weights came from


def build_training(args: argparse.Namespace, dataroot: Path, device: torch.device, amp: bool) -> Training:
    """Datasets, the segmenter (seeded by ``--seed``, on ``device``), AdamW and its polynomial decay."""
    from data.aligned import AlignedDataset
    from data.cityscapes import CLASS_NAMES

    config = parse_config(args.arch, args.config)
    train_set = AlignedDataset(dataroot, "train", direction="BtoA", load_size=args.load_size,
                               crop_size=args.crop_size, flip=True, train=True)
    val_set = open_eval_set(dataroot, max_frames=args.max_val_frames)  # as evaluate.py scores the real photos
    if len(train_set) == 0:
        raise EvalError(f"{dataroot}: no training images")

    seed_everything(args.seed)
    model = build_segmenter(args.arch, config, input_size=(args.crop_size, args.crop_size))
    model.to(device)  # before the optimizer exists: a resumed optimizer state follows the parameters' device
    steps_per_epoch = max(1, len(train_set) // min(args.batch_size, len(train_set)))
    total_steps = steps_per_epoch * args.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total_steps) ** 0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=False)  # bf16 needs no loss scaling
    settings = {"arch": args.arch, "config": asdict(config), "dataroot": str(dataroot.resolve()),
                "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
                "weight_decay": args.weight_decay, "crop_size": args.crop_size, "load_size": args.load_size,
                "seed": args.seed, "pretrained_backbone": args.pretrained_backbone}
    dataset_name = dataroot.resolve().parent.name if dataroot.name == "pix2pix" else dataroot.resolve().name
    trained_on = {"dataroot": str(dataroot.resolve()), "name": dataset_name,
                  "train_frames": len(train_set), "val_frames": len(val_set)}
    return Training(model, train_set, val_set, optimizer, schedule, scaler, settings, trained_on, dict(settings),
                    CLASS_NAMES, steps_per_epoch, device, amp)


def resume_or_start(args: argparse.Namespace, job: Training, partial: Path) -> Start:
    """With ``--resume`` and a resume file: its weights and optimizer state loaded into ``job`` (EvalError
    if it was trained with other settings); else a fresh start (ImageNet backbone if asked)."""
    if args.resume and partial.is_file():
        state = read_segmenter_file(partial, args.arch)
        saved = state["train_state"]["settings"]
        changed = [k for k in job.settings if saved.get(k) != job.settings[k]]
        if changed:
            raise EvalError(f"{partial}: was trained with different settings ({', '.join(changed)}); "
                            f"remove it or drop --resume to start over")
        train_state = state["train_state"]
        job.model.load_state_dict(state["state_dict"])
        job.optimizer.load_state_dict(train_state["optimizer"])
        job.schedule.load_state_dict(train_state["schedule"])
        job.scaler.load_state_dict(train_state["scaler"])
        start = Start(train_state["epoch"], train_state.get("batch", 0), train_state.get("rng"), train_state["step"],
                      state["metadata"]["training"].get("backbone"))
        within = f" (after batch {start.batch}/{job.steps_per_epoch})" if start.batch else ""
        print(f"resuming {partial} at epoch {start.epoch}/{args.epochs}{within}")
        return start
    if args.resume:
        print(f"no resume file {partial}; training from the start")
    elif partial.is_file():
        print(f"--overwrite: starting over ({partial}, an unfinished training, is replaced after an epoch)")
    backbone = None
    if args.pretrained_backbone:
        backbone = job.model.load_imagenet(allow_download=True)
        if backbone is None:
            print(f"no ImageNet weights for the {job.model.display_name} backbone here or online; "
                  f"training from scratch")
        else:
            print(f"backbone initialised from {backbone}")
    return Start(backbone=backbone)


def train_epochs(args: argparse.Namespace, job: Training, start: Start, partial: Path, signals, bar) -> None:
    """The epochs from ``start`` on; the resume file ``partial`` rewritten after each one, and after the
    step where ``signals`` got a stop request (the loop then ends)."""
    step = start.step
    for epoch in range(start.epoch, args.epochs):
        if signals.requested:
            break
        seed_everything(args.seed * 100_003 + epoch)  # a resumed epoch replays the same data and noise
        first = epoch == start.epoch
        step, done, epoch_rng = train_one_epoch(job.model, job.train_set, args, epoch, job.optimizer, job.schedule,
                                                job.scaler, job.device, job.amp, bar, step,
                                                start.batch if first else 0, start.rng if first else None, signals)
        complete = done >= job.steps_per_epoch
        if complete and args.val_every and (epoch + 1) % args.val_every == 0 and epoch + 1 < args.epochs:
            job.model.eval()
            scores = val_scores(job.model, job.val_set, job.device, args.batch_size, job.amp)
            print(f"epoch {epoch + 1}: val {format_scores(scores)}")
        train_state = {"settings": job.settings, "optimizer": job.optimizer.state_dict(),
                       "schedule": job.schedule.state_dict(), "scaler": job.scaler.state_dict(),
                       "epoch": epoch + 1 if complete else epoch, "batch": 0 if complete else done, "step": step}
        if not complete:
            train_state["rng"] = epoch_rng
        with signals.saving(partial):
            save_segmenter(partial, job.model, job.metadata(None), {"train_state": train_state})
        where = f"epoch {epoch + 1}/{args.epochs} " + (f"up to batch {done}/{job.steps_per_epoch}" if not complete
                                                        else "complete")
        signals.safe_note = f"{partial} holds {where}"


def score_and_save(args: argparse.Namespace, job: Training, out: Path, signals, seconds: float) -> None:
    """Score the real val photos (the ground-truth row), print them, save the segmenter to ``out``."""
    job.model.eval()  # a signal from here on: the scores are computed and the segmenter saved all the same
    scores = val_scores(job.model, job.val_set, job.device, args.batch_size, job.amp)
    print(f"val FCN-scores of the real photos (GT row), {job.model.display_name}: {format_scores(scores)}")
    print(per_class_table(scores, job.class_names))
    job.training["wall_seconds_this_session"] = round(seconds, 1)
    with signals.saving(out):
        save_segmenter(out, job.model, job.metadata(scores))


def train(args: argparse.Namespace) -> Path:
    """Train (or resume) the segmenter of ``args``, score it, save it; returns its path."""
    out = Path(args.out) if args.out else default_path(args.arch)
    validate(args, out)
    device = resolve_device(args.device)
    amp = args.amp and amp_dtype(device) is not None
    if args.amp and not amp:
        print(f"--amp ignored: {device} has no native bf16")
    dataroot = default_dataroot() if args.dataroot is None else Path(args.dataroot)
    partial = resume_path(out)
    if args.resume and not partial.is_file() and out.is_file():
        read_segmenter_file(out, args.arch)  # a finished segmenter of this architecture
        print(f"{out}: already trained (no resume file {partial.name}); nothing to do")
        return out

    job = build_training(args, dataroot, device, amp)
    start = resume_or_start(args, job, partial)
    job.training["backbone"] = start.backbone or "random initialisation"
    print(f"training {job.model.display_name} ({sum(p.numel() for p in job.model.parameters()) / 1e6:.2f} M "
          f"parameters) on {len(job.train_set)} photos of {dataroot} at {args.crop_size}x{args.crop_size}, {device}")

    started = time.monotonic()
    bar = progress(total=job.total_steps, initial=start.step, desc=f"train {args.arch}", unit="step")
    saved_note = f"{partial} holds the state it was resumed from" if start.step else f"{partial} was not written"
    with StopSignals(saved_note) as signals:
        train_epochs(args, job, start, partial, signals, bar)
        bar.close()
        if signals.requested:
            raise Stopped(f"interrupted by {signal_name(signals.requested)}: {signals.safe_note}; continue with "
                          f"the same command and --resume", signals.requested)
        score_and_save(args, job, out, signals, time.monotonic() - started)
    if partial.is_file():
        partial.unlink()
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_main(lambda: f"wrote segmenter {train(args)}")


if __name__ == "__main__":
    sys.exit(main())
