"""Training a segmenter on the real training photos (``python -m eval.train_segmenter``, the command).

The segmenter learns trainIds (19 classes, 255 ignored) from the photos of a prepared pix2pix-layout
dataset (the ``A`` halves; labels from the exact trainId maps, or from the colour halves), with the
pix2pix jitter (resize to ``load_size``, random ``crop_size`` crop, flip) plus a small brightness /
contrast jitter. Loss: cross-entropy. Optimiser: AdamW with a polynomial learning-rate decay.

Afterwards it scores the real validation photos at the dataset's size, as ``evaluate.py`` scores its
ground-truth row (the segmenter resizes its input to its training resolution ``crop_size``), and
saves weights and metadata to ``out`` (default ``checkpoints/segmenters/<arch>.pt``).

While it trains, the run lives in the folder named as ``out`` without its extension
(``checkpoints/segmenters/<arch>/``), as a ``train.py`` run does (common.run_folder: locked while it
runs): ``options.json`` and ``latest.pt``, the segmenter with its complete training state (epoch, step
within it, AdamW, schedule, random streams), rewritten after every epoch and when Ctrl-C or SIGTERM
stops the training (after the current step; exit 130 / 143). ``resume`` continues from the exact
step, the data order and jitter depending only on (seed, epoch, position); the folder is deleted once
the segmenter is saved. An existing segmenter or run is only replaced with ``overwrite`` (the
segmenter once the new one is trained, a run once the new one has saved its latest.pt).
"""
from __future__ import annotations

import datetime
import math
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from common import rng
from common.amp import amp_dtype, autocast
from common.command_line import flag
from common.device import check_device_name, device_name, resolve_device
from common.files import shown_path, write_json
from common.interrupts import Stopped, StopSignals, ignore_stop_signals, signal_name
from common.outputs import check_apart
from common.progress import progress
from common.run_folder import RunFolder
from common.threads import pin_threads
from data.aligned import AlignedDataset, dataset_fingerprint
from data.cityscapes import CLASS_NAMES
from data.sampling import EpochSampler, SeededSamples
from data.synthetic import default_dataset
from eval import EvalError
from eval.eval_sets import EvalSet, open_eval_set
from eval.fcn_score import score_real_photos
from eval.markdown import per_class_table
from eval.metrics import fcn_scores
from eval.segmenters.base import Segmenter
from eval.segmenters.files import (STORAGE_DTYPES, read_segmenter_file, round_to_storage, save_segmenter,
                                   segmenter_metadata)
from eval.segmenters.registry import build_segmenter, get_spec, make_config

LOSS_READ_EVERY = 50  # steps between reads of the loss for the progress bar


@dataclass
class TrainingOptions:
    """Every option of ``python -m eval.train_segmenter`` (its ``--help`` explains each)."""
    arch: str
    dataroot: str | None
    out: str | None
    preset: str | None
    config: list
    n_epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    crop_size: int
    load_size: int
    pretrained_backbone: bool
    resume: bool
    overwrite: bool
    val_every: int
    max_val_frames: int | None
    num_workers: int
    seed: int
    device: str
    threads: int
    amp: bool
    weights_dtype: str = "float32"

    def check(self, out: Path) -> None:
        """One-line errors (EvalError) for bad options and an ``out`` that would be overwritten, before any work."""
        validate(self, out)


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


def validate(options: TrainingOptions, out: Path) -> None:
    """One-line errors (EvalError) for bad options and an --out that would be overwritten, before any work."""
    def refuse(name: str, rule: str):
        raise EvalError(f"{flag(name)} must be {rule}, got {getattr(options, name)}")

    for name in ("n_epochs", "batch_size", "crop_size", "load_size"):
        if getattr(options, name) < 1:
            refuse(name, ">= 1")
    for name in ("val_every", "num_workers", "seed", "threads"):
        if getattr(options, name) < 0:
            refuse(name, ">= 0")
    if options.max_val_frames is not None and options.max_val_frames < 1:
        refuse("max_val_frames", ">= 1")
    if options.weights_dtype not in STORAGE_DTYPES:
        refuse("weights_dtype", f"one of {', '.join(STORAGE_DTYPES)}")
    if not (math.isfinite(options.lr) and options.lr > 0):
        refuse("lr", "a number > 0")
    if not (math.isfinite(options.weight_decay) and options.weight_decay >= 0):
        refuse("weight_decay", "a number >= 0")
    if options.load_size < options.crop_size:
        raise EvalError(f"--load-size {options.load_size} is smaller than --crop-size {options.crop_size}")
    check_device_name(options.device)
    parse_config(options.arch, options.config)
    if options.resume and options.overwrite:
        raise EvalError("--resume and --overwrite exclude each other")
    if options.dataroot is not None:  # the output rule (common.outputs): the segmenter and its run apart from the data
        check_apart({"--out": out, "--out (its run folder)": run_path(out)}, {Path(options.dataroot): "--dataroot"})
    if out.is_dir():
        raise EvalError(f"--out {out}: is a folder; give the path of the segmenter file")
    if out.exists() and not (options.resume or options.overwrite):
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
        """The segmenter file's metadata (the dataset's folder as :func:`common.files.shown_path` shows it)."""
        size = self.settings["crop_size"]
        trained_on = {**self.trained_on, "dataroot": shown_path(self.trained_on["dataroot"])}
        training = {**self.training, "dataroot": shown_path(self.training["dataroot"])}
        return segmenter_metadata(self.model, self.class_names, (size, size), trained_on, scores, training)


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


def build_training(options: TrainingOptions, dataroot: Path, device: torch.device, amp: bool) -> Training:
    """Datasets, the segmenter (seeded by ``--seed``, on ``device``), AdamW and its polynomial decay."""
    config = parse_config(options.arch, options.config)
    train_set = AlignedDataset(dataroot, "train", direction="BtoA", load_size=options.load_size,
                               crop_size=options.crop_size, flip=True, train=True)
    val_set = open_eval_set(dataroot, max_frames=options.max_val_frames)  # as evaluate.py scores the real photos
    batch_size = min(options.batch_size, len(train_set))  # fewer photos than a batch: one batch of all
    sampler = EpochSampler(len(train_set), seed=options.seed)
    loader = torch.utils.data.DataLoader(
        SeededSamples(train_set), batch_size=batch_size, sampler=sampler, drop_last=True,
        num_workers=options.num_workers, pin_memory=device.type == "cuda", worker_init_fn=ignore_stop_signals,
        generator=torch.Generator())  # its own generator: an epoch's iterator draws nothing from the global one

    rng.seed_all(options.seed)
    model = build_segmenter(options.arch, config, input_size=(options.crop_size, options.crop_size))
    model.to(device)  # before the optimizer exists: a resumed optimizer state follows the parameters' device
    total_steps = len(train_set) // batch_size * options.n_epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total_steps) ** 0.9)
    settings = {"arch": options.arch, "config": asdict(config), "dataroot": str(dataroot.resolve()),
                "epochs": options.n_epochs, "batch_size": options.batch_size, "lr": options.lr,
                "weight_decay": options.weight_decay, "crop_size": options.crop_size, "load_size": options.load_size,
                "seed": options.seed, "pretrained_backbone": options.pretrained_backbone}
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


def initialise_backbone(options: TrainingOptions, job: Training) -> None:
    """ImageNet weights for the backbone with --pretrained-backbone (else, or without any, from scratch)."""
    backbone = None
    if options.pretrained_backbone:
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


def train_epochs(options: TrainingOptions, job: Training, position: Position, run: RunFolder,
                 signals: StopSignals, bar) -> None:
    """The epochs from ``position`` on; latest.pt rewritten after each one, and after the step where
    ``signals`` got a stop request (the loop then ends)."""
    while position.epoch < options.n_epochs:
        job.sampler.set_epoch(position.epoch, start=position.epoch_step * job.batch_size)
        train_one_epoch(job, position, signals, bar)
        if position.epoch_step >= job.steps_per_epoch:  # the epoch is complete
            position.epoch, position.epoch_step = position.epoch + 1, 0
            if options.val_every and position.epoch % options.val_every == 0 and position.epoch < options.n_epochs:
                job.model.eval()
                scores = val_scores(job.model, job.val_set, job.device, options.batch_size, job.amp)
                print(f"epoch {position.epoch}: val {format_scores(scores)}")
        save_latest(run.path / "latest.pt", job, position, signals)
        if not run.committed:
            run.commit()  # a run this one replaces (--overwrite) goes once this one has saved
        if signals.requested:
            break


def score_and_save(options: TrainingOptions, job: Training, out: Path, signals, seconds: float) -> None:
    """Round the weights to their storage dtype, score the real val photos with them (the ground-truth row),
    print the scores, save the segmenter to ``out`` with its provenance."""
    job.model.eval()  # a signal from here on: the scores are computed and the segmenter saved all the same
    round_to_storage(job.model, options.weights_dtype)  # the instrument is the network as it will be loaded
    scores = val_scores(job.model, job.val_set, job.device, options.batch_size, job.amp)
    print(f"val FCN-scores of the real photos (GT row), {job.model.display_name}: {format_scores(scores)}")
    print(per_class_table(scores, job.class_names))
    job.training["wall_seconds_this_session"] = round(seconds, 1)
    job.training["finished_at"] = utc_now()
    with signals.saving(out):
        save_segmenter(out, job.model, job.metadata(scores), storage_dtype=options.weights_dtype)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def code_revision() -> str | None:
    """The commit of the checkout this code runs from (with ``-dirty`` if its files differ from it, the shipped
    segmenters in checkpoints/ aside: they are what is being made), if git knows."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)checkpoints"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty else "")


def provenance(options: TrainingOptions, argv: list[str], dataroot: Path, device) -> dict:
    """How the segmenter was made: the command and options, the dataset's fingerprint, the code revision, the
    machine and when it started (its metadata's ``training`` entry; the end time is added when it is saved)."""
    return {"command": shlex.join(["python", "-m", "eval.train_segmenter", *argv]), "options": asdict(options),
            "dataset_fingerprint": dataset_fingerprint(dataroot), "code_revision": code_revision(),
            "machine": {"device": device_name(device), "torch": str(torch.__version__), "threads": options.threads},
            "started_at": utc_now()}


def run_training(options: TrainingOptions, out: Path, run: RunFolder, signals: StopSignals, argv: list[str]) -> None:
    """Claim the run folder, train (or resume) in it, score, save ``out``, delete the run folder."""
    run.claim(options.resume, options.overwrite)
    device = resolve_device(options.device)
    amp = options.amp and amp_dtype(device) is not None
    if options.amp and not amp:
        print(f"--amp ignored: {device} has no native bf16")
    dataroot = Path(default_dataset()) if options.dataroot is None else Path(options.dataroot)
    options.threads = pin_threads(options.threads)
    job = build_training(options, dataroot, device, amp)
    job.training.update(threads=options.threads, **provenance(options, argv, dataroot, device))
    latest, command = run.path / "latest.pt", resume_command(argv)
    if options.resume:
        position = resume_from(latest, job)
        signals.safe_note = f"{latest} holds {position.describe(job)}"
    else:
        initialise_backbone(options, job)
        position = Position()
    run_dir = run.start()  # options, data and model are fine: the run takes its folder
    write_json(run_dir / "options.json", asdict(options), sort_keys=True)
    print(f"training {job.model.display_name} ({sum(p.numel() for p in job.model.parameters()) / 1e6:.2f} M "
          f"parameters) on {len(job.train_set)} photos of {dataroot} at {options.crop_size}x{options.crop_size}, "
          f"{device}, in {run_dir}")

    started = time.monotonic()
    bar = progress(total=job.total_steps, initial=position.step, desc=f"train {options.arch}", unit="step")
    train_epochs(options, job, position, run, signals, bar)
    bar.close()
    if signals.requested:
        raise Stopped(f"interrupted by {signal_name(signals.requested)}: {latest} holds {position.describe(job)}; "
                      f"continue with {command}", signals.requested)
    score_and_save(options, job, out, signals, time.monotonic() - started)
    shutil.rmtree(run_dir)  # the segmenter file holds what is worth keeping


def train(options: TrainingOptions, out: Path, argv: list[str]) -> Path:
    """Train (or resume) the segmenter of ``options`` (parsed from the command line ``argv``), score it, save
    it to ``out``; returns ``out``.

    Its run folder is locked while it trains; an old run replaced by --overwrite is only deleted once the
    new run has saved its latest.pt (common.run_folder)."""
    options.check(out)
    run = RunFolder(run_path(out))
    if options.resume and not (run.path / "latest.pt").is_file() and out.is_file():
        read_segmenter_file(out, options.arch)  # a finished segmenter of this architecture
        print(f"{out}: already trained (no unfinished run in {run.path}); nothing to do")
        return out
    with StopSignals("no latest.pt was written") as signals, run.in_use():
        run_training(options, out, run, signals, argv)
    return out
