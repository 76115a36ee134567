"""What a training process runs with and where it stands (:class:`Run`), decided before any work; its resume;
the ranks' one agreement per log step; and the lines only the main process prints.

:func:`open_run` claims the run folder (main process), reads and checks the checkpoint a ``--resume``
continues from (:mod:`training.resume`), decides the device and the options (a resumed run's own, with what
may change now) and the dataset. :func:`start_writing` then takes the folder and opens the monitor.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from common.amp import amp_dtype
from common.checkpoint import describe_names
from common.device import decide_device
from common.distributed import init_from_environment, is_main_process, launch_environment, ranks_where
from common.files import json_ready, write_json
from common.interrupts import Stopped, StopSignals, signal_name
from common.run_folder import RunFolder
from data.aligned import AlignedDataset, check_same_dataset, dataset_fingerprint
from data.synthetic import default_dataset
from gan import run_files
from gan.run_files import LOCATION_OPTIONS, RUNTIME_OPTIONS
from gan.pix2pix import Pix2Pix
from training.monitor import TrainingMonitor
from training.options import TrainOptions, UsageError
from training.resume import divergence_advice, load_resume_checkpoint, resume_options
from training.schedule import set_initial_lr


@dataclass
class Run:
    """What a training process runs with, decided before any work (the run's options: for a resumed run
    its own, with what may change now; its folder; the device; this process's rank), and where it stands."""

    options: TrainOptions
    folder: RunFolder
    device: torch.device
    rank: int
    world_size: int
    first_lr: float  # the initial lr the run had before this process (its --lr when new)
    data_fingerprint: dict  # what identifies its dataset (data.aligned.dataset_fingerprint)
    epoch: int = 0  # the epoch under way (0-based)
    epoch_step: int = 0  # steps done in it
    step: int = 0  # steps done in all
    steps_per_epoch: int = 0
    total_steps: float = math.inf  # the last step of all epochs, or --max-steps
    latest_step: int | None = None  # the step latest.pt holds, if it exists
    latest_options: dict | None = None  # latest.pt's options if it was saved before this process ran
    stop_agreed: bool = False  # under torchrun: the ranks agreed to stop after this step (a signal on one)

    @property
    def latest(self) -> Path:
        return run_files.latest_path(self.folder.path)

    @property
    def total_epochs(self) -> int:
        return self.options.n_epochs + self.options.n_epochs_decay


def open_run(args: TrainOptions, folder: RunFolder) -> tuple[Run, dict | None]:
    """The Run of this process (the folder claimed on the main process) and, with --resume, the checkpoint
    it continues from."""
    world_size, local_rank = launch_environment()
    device = decide_device(args.device, world_size, local_rank)  # the command line's, never a saved run's
    rank, world_size = init_from_environment(device)
    if rank == 0:
        folder.claim(args.resume, args.overwrite)
    latest = run_files.latest_path(folder.path)
    checkpoint = load_resume_checkpoint(latest) if args.resume else None  # validated
    options, first_lr = dataclasses.replace(args), args.lr
    if checkpoint is not None:
        if checkpoint["world_size"] != world_size:
            raise UsageError(f"{latest}: saved with {checkpoint['world_size']} processes, "
                             f"resumed with {world_size}; the data order would change")
        note_edited_options(folder.path / "options.json", checkpoint["options"])
        options = resume_options(args, checkpoint["options"], folder.path, checkpoint["step"])
        options.device, options.deterministic = args.device, args.deterministic  # as given now (or auto)
        first_lr = checkpoint["options"]["lr"]
    if options.dataroot is None:
        options.dataroot = str(default_dataset(verbose=is_main_process()))
    options.dataroot = str(Path(options.dataroot).resolve())
    fingerprint = dataset_fingerprint(options.dataroot)
    if checkpoint is not None:
        check_same_dataset(options.dataroot, fingerprint, checkpoint["data_fingerprint"],
                           checkpoint["options"]["dataroot"])
    run = Run(options, folder, device, rank, world_size, first_lr, fingerprint)
    adapt_to_device(run)
    return run, checkpoint


def note_edited_options(path: Path, saved: dict) -> None:
    """Say so when the run's options.json was edited since the checkpoint was saved: a resumed run continues
    with the checkpoint's options (and options.json is written again from them). Only the options that shape
    the trajectory count: the others are given anew at each resume."""
    try:
        written = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    expected = json.loads(json.dumps(json_ready(saved)))
    changed = sorted(k for k in (set(written) | set(expected)) - RUNTIME_OPTIONS - LOCATION_OPTIONS
                     if written.get(k) != expected.get(k))
    if changed:
        say(f"{path}: edited since the run saved it ({', '.join(changed)}); the run continues with the options of "
            f"its checkpoint, and options.json is written again from them")


def adapt_to_device(run: Run) -> None:
    """cuDNN autotuning on CUDA (not with --deterministic); what --amp and --norm syncbatch do where they
    cannot work as asked."""
    options, device = run.options, run.device
    if device.type == "cuda" and not options.deterministic:
        torch.backends.cudnn.benchmark = True
    if options.amp and (device.type == "cpu" or amp_dtype(device) is None):
        say("--amp: bf16 autocast on the CPU (fast only on CPUs with AVX512-BF16 or AMX)" if device.type == "cpu"
            else f"--amp: {device} has no native bf16; training in fp32")
    if options.norm == "syncbatch" and (run.world_size == 1 or device.type != "cuda"):
        say("--norm syncbatch: needs torchrun on CUDA; using batch norm (same weights layout)")
        options.norm = "batch"


def resume_from(checkpoint: dict, pix2pix: Pix2Pix, schedulers, run: Run) -> None:
    """Weights, optimizer states, schedules and position from ``checkpoint``. A new --lr
    (--allow-change lr) becomes the initial lr from here on."""
    pix2pix.load_state_dict(checkpoint)
    for scheduler, key in zip(schedulers, run_files.SCHEDULER_KEYS):
        scheduler.load_state_dict(checkpoint[key])
    run.epoch, run.epoch_step, run.step = checkpoint["epoch"], checkpoint["epoch_step"], checkpoint["step"]
    run.latest_step, run.latest_options = run.step, checkpoint["options"]
    if run.options.lr != run.first_lr:
        for scheduler in schedulers:
            set_initial_lr(scheduler, run.options.lr)
        say(f"--lr: continuing from step {run.step} with initial lr {run.options.lr:g} instead of {run.first_lr:g}")


def start_writing(run: Run, signals: StopSignals) -> TrainingMonitor:
    """The main process takes the run's folder (options, data, model and device are fine), writes
    options.json and opens the monitor on the fixed sample frames and noise probes."""
    options, device = run.options, run.device
    val_dataset = AlignedDataset(options.dataroot, "val", direction=options.direction, crop_size=options.crop_size,
                                 train=False)
    items = [val_dataset[i] for i in range(min(options.num_image_frames, len(val_dataset)))]
    frames = {key: torch.stack([item[key] for item in items]).to(device) for key in ("input", "target")}
    probe = noise_probe(options, device) if options.noise_freq else []
    if signals.requested:
        raise Stopped(f"interrupted by {signal_name(signals.requested)} before training started; nothing was "
                      f"saved", signals.requested)
    run_dir = run.folder.start()
    (run_dir / "samples").mkdir(exist_ok=True)
    write_json(run_dir / "options.json", options.record(), sort_keys=True)
    monitor = TrainingMonitor(run_dir, options, frames, probe, run.step, run.total_steps)
    if run.step == 0:
        monitor.write_options(options.record())
    return monitor


PROBE_STREAM = 0x5EED  # the probe pairs' own random stream beside the seed


def noise_probe(options: TrainOptions, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed probe pairs of --noise-freq: --noise-probe training pairs drawn at random (without
    replacement) by a generator seeded from --seed alone, so every arm of a seed probes the same pairs; each
    without jitter."""
    probe_set = AlignedDataset(options.dataroot, "train", direction=options.direction, crop_size=options.crop_size,
                               train=False)
    draw = torch.Generator().manual_seed(options.seed * 1_000_003 + PROBE_STREAM)
    order = torch.randperm(len(probe_set), generator=draw)[:options.noise_probe].tolist()
    items = (probe_set[i] for i in order)
    return [(item["input"][None].to(device), item["target"][None].to(device)) for item in items]


# ----------------------------------------------------------------------------------------- the ranks
def agree(run: Run, signals: StopSignals, losses: dict, bad_state: list[str] | None = None) -> None:
    """The ranks' one agreement (one all-reduce under torchrun, none on one process): whether to stop
    after this step (a signal reached any rank: ``run.stop_agreed``), and whether the last ``losses`` and
    the state (``bad_state``: this rank's non-finite entries) are finite everywhere; if not, every rank
    raises the same one-line error."""
    flags = {"stop": signals.requested is not None, "state": bool(bad_state)}
    flags.update({name: ~torch.isfinite(value.detach()).all() for name, value in losses.items()})
    ranks_of = ranks_where(flags, run.device)
    stop_ranks, state_ranks = ranks_of.pop("stop"), ranks_of.pop("state")
    run.stop_agreed = run.stop_agreed or bool(stop_ranks)
    bad = {name: ranks for name, ranks in ranks_of.items() if ranks}
    if bad:
        ranks = sorted({r for ranks_of_loss in bad.values() for r in ranks_of_loss})
        where = f" on rank {', '.join(map(str, ranks))}" if run.world_size > 1 else ""
        raise diverged(f"non-finite loss {', '.join(bad)}{where}", run)
    if state_ranks:
        what = describe_names(bad_state) if bad_state else "the state of another rank"
        raise diverged(f"non-finite values in {what}", run)


def diverged(what: str, run: Run) -> FloatingPointError:
    """The one-line report of a divergence; its advice names only a checkpoint that exists."""
    advice = divergence_advice(run.options, run.folder.path, run.first_lr, run.latest_step, run.latest_options)
    return FloatingPointError(f"{run.folder.path}: training diverged at step {run.step} ({what}); {advice}")


def stopping(signals: StopSignals, run: Run) -> bool:
    """Whether to stop after this step: a signal reached this process or, under torchrun, any rank by the
    last agreement (:func:`agree`), so that every rank stops after the same step without a collective here."""
    return run.stop_agreed if run.world_size > 1 else signals.requested is not None


def say(message: str) -> None:
    """A line from the main process (the one that writes the run)."""
    if is_main_process():
        print(message, flush=True)
