"""Train a segmenter on the real training photos: ``python -m eval.train_segmenter --arch fcn8s``.

The segmenter learns trainIds (19 classes, 255 ignored) from the photos of a prepared pix2pix-layout
dataset (the ``A`` halves; labels from the exact trainId maps, or from the colour halves), with the
pix2pix jitter (resize to ``--load-size``, random ``--crop-size`` crop, flip) plus a small brightness /
contrast jitter. Loss: cross-entropy. Optimiser: AdamW with a polynomial learning-rate decay.

Afterwards it scores the real validation photos at the dataset's size, as ``evaluate.py`` scores its
ground-truth row (the segmenter resizes its input to its training resolution ``--crop-size``), and
saves weights and metadata to ``--out`` (default ``checkpoints/segmenters/<arch>.pt``).

While it trains, the run lives in the folder named as ``--out`` without its extension
(``checkpoints/segmenters/<arch>/``), as a ``train.py`` run does (common.run_folder: locked while it
runs): ``options.json`` and ``latest.pt``, the segmenter with its complete training state (epoch, step
within it, AdamW, schedule, random streams), rewritten after every epoch and when Ctrl-C or SIGTERM
stops the training (after the current step; exit 130 / 143). ``--resume`` continues from the exact
step, the data order and jitter depending only on (seed, epoch, position); the folder is deleted once
the segmenter is saved. An existing segmenter or run is only replaced with ``--overwrite`` (the
segmenter once the new one is trained, a run once the new one has saved its latest.pt).
"""
from __future__ import annotations

import argparse
import math
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from common.command_line import add_former_spelling, flag, option_parser, run_main
from common.device import check_device_name, resolve_device
from common.files import write_json
from common.outputs import check_apart
from common.run_folder import RunFolder
from common.threads import pin_threads
from data.sampling import EpochSampler, SeededSamples
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
        "fcn8s": {"config": ["width_mult=0.25", "batch_norm=true"], "n_epochs": 30, "batch_size": 8,
                  "crop_size": 64, "load_size": 72, "lr": 2e-3, "num_workers": 0},
        "deeplabv3plus_xception71": {"config": ["encoder=resnet18"], "n_epochs": 20, "batch_size": 8,
                                     "crop_size": 128, "load_size": 144, "lr": 2e-3, "num_workers": 0},
    },
}


def option_definitions() -> argparse.ArgumentParser:
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
    add_former_spelling(parser, n_epochs, "--epochs")  # former spellings, hidden: a one-line note
    add_former_spelling(parser, num_workers, "--workers")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    parser = option_definitions()
    chosen = argparse.ArgumentParser(add_help=False)  # --preset and --arch first: the preset's defaults
    chosen.add_argument("--preset")
    chosen.add_argument("--arch")
    known = chosen.parse_known_args(argv)[0]
    preset = PRESETS.get(known.preset, {}).get(known.arch)
    if preset:  # preset values replace defaults, not options given on the command line
        parser.set_defaults(**preset)  # --config items come after the preset's: they win
    return parser.parse_args(argv)


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
        raise EvalError(f"{flag(name)} must be {rule}, got {getattr(args, name)}")

    for name in ("n_epochs", "batch_size", "crop_size", "load_size"):
        if getattr(args, name) < 1:
            refuse(name, ">= 1")
    for name in ("val_every", "num_workers", "seed", "threads"):
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
    check_device_name(args.device)
    parse_config(args.arch, args.config)
    if args.resume and args.overwrite:
        raise EvalError("--resume and --overwrite exclude each other")
    if args.dataroot is not None:  # the output rule (common.outputs): the segmenter and its run apart from the data
        check_apart({"--out": out, "--out (its run folder)": run_path(out)}, {Path(args.dataroot): "--dataroot"})
    if out.is_dir():
        raise EvalError(f"--out {out}: is a folder; give the path of the segmenter file")
    if out.exists() and not (args.resume or args.overwrite):
        raise EvalError(f"{out}: a trained segmenter is there; pass --overwrite to replace it or choose another --out")
    try:  # the folder must take the run folder and the segmenter
        out.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out.parent).close()
    except OSError as error:
        raise EvalError(f"--out {out}: cannot write in {out.parent} ({error.strerror})") from None


def run_path(out: Path) -> Path:
    """The run folder of the segmenter ``out`` while it trains: ``out`` without its extension."""
    return out.with_suffix("") if out.suffix else out.with_name(out.name + ".run")


def resume_command(argv: list[str]) -> str:
    """The command line that continues the training ``argv`` describes."""
    kept = [arg for arg in argv if arg not in ("--resume", "--overwrite")]
    return shlex.join(["python", "-m", "eval.train_segmenter", *kept, "--resume"])


def jitter_colors(photos: torch.Tensor, generator: torch.Generator, strength: float = 0.2) -> torch.Tensor:
    """Random brightness and contrast per image (photos in [-1, 1])."""
    n = photos.shape[0]
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * strength
    brightness = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * strength
    mean = photos.mean(dim=(1, 2, 3), keepdim=True)
    return ((photos - mean) * contrast.to(photos) + mean + brightness.to(photos)).clamp(-1, 1)


def jitter_generator(seed: int, step: int) -> torch.Generator:
    """The colour jitter's generator of training step ``step``: it depends on (seed, step) alone."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % 2**63)


def val_scores(model: Segmenter, val_set: EvalSet, device, batch_size: int, amp: bool) -> dict:
    """FCN-scores of the segmenter on the real val photos (the ground-truth row)."""
    bar = progress(total=len(val_set), desc="val (real photos)", unit="img")
    scores = fcn_scores(score_real_photos(model, val_set, device, batch_size, amp, bar))
    bar.close()
    return scores


def format_scores(scores: dict) -> str:
    return (f"per-pixel acc {scores['pixel_acc']:.3f}, per-class acc {scores['class_acc']:.3f}, "
            f"class IoU {scores['class_iou']:.3f}")


@dataclass
class Training:
    """What one segmenter training works with (:func:`build_training`)."""
    model: Segmenter
    train_set: object                       # data.aligned.AlignedDataset(train, with jitter)
    sampler: EpochSampler                   # the order of an epoch, from a position within it
    loader: torch.utils.data.DataLoader     # batches of ``batch_size`` in the sampler's order
    val_set: EvalSet
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    settings: dict                          # the options a resume must match
    trained_on: dict                        # the dataset, for the segmenter's metadata
    training: dict                          # settings, backbone, time: the metadata's training record
    class_names: tuple[str, ...]            # trainId 0..18 names
    batch_size: int
    device: torch.device
    amp: bool

    @property
    def steps_per_epoch(self) -> int:
        return len(self.train_set) // self.batch_size

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.settings["epochs"]

    def metadata(self, scores: dict | None) -> dict:
        size = self.settings["crop_size"]
        return segmenter_metadata(self.model, self.class_names, (size, size), self.trained_on, scores, self.training)


@dataclass
class Position:
    """Where a training is: the epoch under way, the steps done in it and in all."""
    epoch: int = 0
    epoch_step: int = 0
    step: int = 0

    def describe(self, job: Training) -> str:
        epochs = job.settings["epochs"]
        if self.epoch_step:
            within = f"up to batch {self.epoch_step}/{job.steps_per_epoch}"
            return f"step {self.step} (epoch {self.epoch + 1}/{epochs} {within})"
        return f"step {self.step} ({self.epoch}/{epochs} epochs complete)"


def build_training(args: argparse.Namespace, dataroot: Path, device: torch.device, amp: bool) -> Training:
    """Datasets, the segmenter (seeded by ``--seed``, on ``device``), AdamW and its polynomial decay."""
    from data.aligned import AlignedDataset
    from data.cityscapes import CLASS_NAMES

    config = parse_config(args.arch, args.config)
    train_set = AlignedDataset(dataroot, "train", direction="BtoA", load_size=args.load_size,
                               crop_size=args.crop_size, flip=True, train=True)
    val_set = open_eval_set(dataroot, max_frames=args.max_val_frames)  # as evaluate.py scores the real photos
    batch_size = min(args.batch_size, len(train_set))  # fewer photos than a batch: one batch of all
    sampler = EpochSampler(len(train_set), seed=args.seed)
    loader = torch.utils.data.DataLoader(
        SeededSamples(train_set), batch_size=batch_size, sampler=sampler, drop_last=True,
        num_workers=args.num_workers, pin_memory=device.type == "cuda", worker_init_fn=ignore_stop_signals,
        generator=torch.Generator())  # its own generator: an epoch's iterator draws nothing from the global one

    rng.seed_all(args.seed)
    model = build_segmenter(args.arch, config, input_size=(args.crop_size, args.crop_size))
    model.to(device)  # before the optimizer exists: a resumed optimizer state follows the parameters' device
    total_steps = len(train_set) // batch_size * args.n_epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total_steps) ** 0.9)
    settings = {"arch": args.arch, "config": asdict(config), "dataroot": str(dataroot.resolve()),
                "epochs": args.n_epochs, "batch_size": args.batch_size, "lr": args.lr,
                "weight_decay": args.weight_decay, "crop_size": args.crop_size, "load_size": args.load_size,
                "seed": args.seed, "pretrained_backbone": args.pretrained_backbone}
    dataset_name = dataroot.resolve().parent.name if dataroot.name == "pix2pix" else dataroot.resolve().name
    trained_on = {"dataroot": str(dataroot.resolve()), "name": dataset_name,
                  "train_frames": len(train_set), "val_frames": len(val_set)}
    return Training(model, train_set, sampler, loader, val_set, optimizer, schedule, settings, trained_on,
                    dict(settings), CLASS_NAMES, batch_size, device, amp)


def resume_from(latest: Path, job: Training) -> Position:
    """Weights, AdamW, schedule and random streams from ``latest`` (EvalError if it was trained with
    other settings); returns where it stopped."""
    state = read_segmenter_file(latest, job.settings["arch"])
    saved = state.get("train_state")
    if saved is None:
        raise EvalError(f"{latest}: holds no training state; pass --overwrite to start over")
    changed = [k for k in job.settings if saved["settings"].get(k) != job.settings[k]]
    if changed:
        raise EvalError(f"{latest}: was trained with different settings ({', '.join(changed)}); give the same "
                        f"options to --resume, or --overwrite to start over")
    job.model.load_state_dict(state["state_dict"])
    job.optimizer.load_state_dict(saved["optimizer"])
    job.schedule.load_state_dict(saved["schedule"])
    rng.restore(saved["rng"], job.device)
    job.training["backbone"] = state["metadata"]["training"].get("backbone")
    position = Position(saved["epoch"], saved["epoch_step"], saved["step"])
    print(f"resuming {latest} at {position.describe(job)}")
    return position


def initialise_backbone(args: argparse.Namespace, job: Training) -> None:
    """ImageNet weights for the backbone with --pretrained-backbone (else, or without any, from scratch)."""
    backbone = None
    if args.pretrained_backbone:
        backbone = job.model.load_imagenet(allow_download=True)
        if backbone is None:
            print(f"no ImageNet weights for the {job.model.display_name} backbone here or online; "
                  f"training from scratch")
        else:
            print(f"backbone initialised from {backbone}")
    job.training["backbone"] = backbone or "random initialisation"


def train_one_epoch(job: Training, position: Position, signals: StopSignals, bar) -> None:
    """The rest of the epoch ``position`` is in (its sampler set to start there); stops after the current
    step when ``signals`` holds a stop request.

    The progress bar shows the mean loss of the last ``LOSS_READ_EVERY`` steps (and of the epoch's last
    few), so the host waits for the device that rarely."""
    criterion = torch.nn.CrossEntropyLoss(ignore_index=255)
    job.model.train()
    loss_sum, losses = torch.zeros((), device=job.device), 0  # read back every LOSS_READ_EVERY steps only
    for batch in job.loader:
        photos = jitter_colors(batch["target"], jitter_generator(job.settings["seed"], position.step))
        photos = photos.to(job.device, non_blocking=True)
        labels = batch["label"].to(job.device, non_blocking=True)
        with autocast(job.device, job.amp):
            loss = criterion(job.model(photos).float(), labels)
        job.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        job.optimizer.step()
        job.schedule.step()
        position.step, position.epoch_step = position.step + 1, position.epoch_step + 1
        bar.update(1)
        loss_sum += loss.detach()
        losses += 1
        stopping = signals.requested is not None
        if losses == LOSS_READ_EVERY or position.epoch_step == job.steps_per_epoch or stopping:
            bar.set_postfix({"epoch": position.epoch + 1, "loss": float(loss_sum) / losses})  # waits for the device
            loss_sum, losses = torch.zeros((), device=job.device), 0
        if stopping:
            break


def save_latest(latest: Path, job: Training, position: Position, signals: StopSignals) -> None:
    """The segmenter with its complete training state at ``position`` to ``latest``."""
    train_state = {"settings": job.settings, "optimizer": job.optimizer.state_dict(),
                   "schedule": job.schedule.state_dict(), "rng": rng.capture(job.device), **asdict(position)}
    with signals.saving(latest):
        save_segmenter(latest, job.model, job.metadata(None), {"train_state": train_state})
    signals.safe_note = f"{latest} holds {position.describe(job)}"


def train_epochs(args: argparse.Namespace, job: Training, position: Position, run: RunFolder,
                 signals: StopSignals, bar) -> None:
    """The epochs from ``position`` on; latest.pt rewritten after each one, and after the step where
    ``signals`` got a stop request (the loop then ends)."""
    while position.epoch < args.n_epochs:
        job.sampler.set_epoch(position.epoch, start=position.epoch_step * job.batch_size)
        train_one_epoch(job, position, signals, bar)
        if position.epoch_step >= job.steps_per_epoch:  # the epoch is complete
            position.epoch, position.epoch_step = position.epoch + 1, 0
            if args.val_every and position.epoch % args.val_every == 0 and position.epoch < args.n_epochs:
                job.model.eval()
                scores = val_scores(job.model, job.val_set, job.device, args.batch_size, job.amp)
                print(f"epoch {position.epoch}: val {format_scores(scores)}")
        save_latest(run.path / "latest.pt", job, position, signals)
        if not run.committed:
            run.commit()  # a run this one replaces (--overwrite) goes once this one has saved
        if signals.requested:
            break


def score_and_save(args: argparse.Namespace, job: Training, out: Path, signals, seconds: float) -> None:
    """Score the real val photos (the ground-truth row), print them, save the segmenter to ``out``."""
    job.model.eval()  # a signal from here on: the scores are computed and the segmenter saved all the same
    scores = val_scores(job.model, job.val_set, job.device, args.batch_size, job.amp)
    print(f"val FCN-scores of the real photos (GT row), {job.model.display_name}: {format_scores(scores)}")
    print(per_class_table(scores, job.class_names))
    job.training["wall_seconds_this_session"] = round(seconds, 1)
    with signals.saving(out):
        save_segmenter(out, job.model, job.metadata(scores))


def run_training(args: argparse.Namespace, out: Path, run: RunFolder, signals: StopSignals, command: str) -> None:
    """Claim the run folder, train (or resume) in it, score, save ``out``, delete the run folder."""
    run.claim(args.resume, args.overwrite)
    device = resolve_device(args.device)
    amp = args.amp and amp_dtype(device) is not None
    if args.amp and not amp:
        print(f"--amp ignored: {device} has no native bf16")
    dataroot = default_dataroot() if args.dataroot is None else Path(args.dataroot)
    args.threads = pin_threads(args.threads)
    job = build_training(args, dataroot, device, amp)
    job.training["threads"] = args.threads
    latest = run.path / "latest.pt"
    if args.resume:
        position = resume_from(latest, job)
        signals.safe_note = f"{latest} holds {position.describe(job)}"
    else:
        initialise_backbone(args, job)
        position = Position()
    run_dir = run.start()  # options, data and model are fine: the run takes its folder
    write_json(run_dir / "options.json", vars(args), sort_keys=True)
    print(f"training {job.model.display_name} ({sum(p.numel() for p in job.model.parameters()) / 1e6:.2f} M "
          f"parameters) on {len(job.train_set)} photos of {dataroot} at {args.crop_size}x{args.crop_size}, "
          f"{device}, in {run_dir}")

    started = time.monotonic()
    bar = progress(total=job.total_steps, initial=position.step, desc=f"train {args.arch}", unit="step")
    train_epochs(args, job, position, run, signals, bar)
    bar.close()
    if signals.requested:
        raise Stopped(f"interrupted by {signal_name(signals.requested)}: {latest} holds {position.describe(job)}; "
                      f"continue with {command}", signals.requested)
    score_and_save(args, job, out, signals, time.monotonic() - started)
    shutil.rmtree(run_dir)  # the segmenter file holds what is worth keeping


def train(args: argparse.Namespace, argv: list[str] | None = None) -> Path:
    """Train (or resume) the segmenter of ``args`` (parsed from ``argv``), score it, save it; returns its path.

    Its run folder is locked while it trains; an old run replaced by --overwrite is only deleted once the
    new run has saved its latest.pt (common.run_folder)."""
    out = Path(args.out) if args.out else default_path(args.arch)
    validate(args, out)
    run = RunFolder(run_path(out))
    if args.resume and not (run.path / "latest.pt").is_file() and out.is_file():
        read_segmenter_file(out, args.arch)  # a finished segmenter of this architecture
        print(f"{out}: already trained (no unfinished run in {run.path}); nothing to do")
        return out
    command = resume_command(sys.argv[1:] if argv is None else list(argv))
    with StopSignals("no latest.pt was written") as signals, run.in_use():
        run_training(args, out, run, signals, command)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    return run_main(lambda: f"wrote segmenter {train(args, argv)}")


if __name__ == "__main__":
    sys.exit(main())
