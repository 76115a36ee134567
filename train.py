"""Train pix2pix (labels -> photo) at batch size 1 with Adam, TRAdam, SGD or TRSGD.

    python train.py --optim tradam                       # the paper's run on the built-in data
    python train.py --optim adam --dataroot datasets/cityscapes
    python train.py --preset demo --optim tradam         # a few minutes on a laptop CPU
    torchrun --nproc_per_node 4 train.py --optim tradam  # one process per GPU (gloo on CPU)

A run lives in <checkpoints-dir>/<name>/: options.json, latest.pt (complete state, every
--save-latest-freq steps and each epoch), epoch_<NNN>.pt (weights of G and D only, every --save-epoch-freq
epochs), full_<NNN>.pt (with --keep-full K: the complete state of the last K of those epochs),
events/ (TensorBoard) and samples/. Ctrl-C or SIGTERM stops after the current step (under torchrun: at
the next --log-freq step, where the ranks agree) with a saved latest.pt (exit 130 / 143); --resume
continues from it.
"""
from __future__ import annotations

import argparse
import math
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from common import rng
from common.amp import amp_dtype, autocast
from common.checkpoint import (FORMAT_VERSION, CheckpointError, describe_names, load_checkpoint, nonfinite_entries,
                               save_atomic)
from common.command_line import run_main
from common.device import decide_device, make_deterministic
from common.distributed import gather, init_from_environment, is_main_process, launch_environment, leave, ranks_where
from common.files import write_atomic, write_json
from common.interrupts import StopSignals, Stopped, ignore_stop_signals, signal_name
from common.outputs import check_apart
from common.run_folder import RunFolder
from common.threads import pin_threads
from data.aligned import AlignedDataset, check_same_dataset, dataset_fingerprint
from data.sampling import EpochSampler, SeededSamples
from data.synthetic import default_dataset
from gan.monitor import TrainingMonitor
from gan.pix2pix import Pix2Pix, wrap_for_training
from gan.resume import divergence_advice, load_resume_checkpoint, resume_command, resume_options
from gan.schedule import lr_schedulers, set_initial_lr
from gan.train_options import UsageError, build_configs, parse_args, validate


def main(argv=None) -> int:
    args = parse_args(argv, __doc__)

    def work() -> None:
        validate(args)
        train(args)
    return run_main(work)


def train(args: argparse.Namespace) -> Pix2Pix:
    """Run (or resume) the training ``args`` describe (:func:`gan.train_options.parse_args`); returns the model.

    The run folder is locked while it runs; an old run replaced by --overwrite is deleted only once the new
    run has saved a checkpoint (common.run_folder). SIGINT/SIGTERM stop it after the current step with a
    saved latest.pt by raising common.interrupts.Stopped.
    """
    folder = RunFolder(Path(args.checkpoints_dir) / args.name)
    if args.dataroot is not None:  # the output rule (common.outputs); RunFolder replaces and restores runs
        check_apart({"--checkpoints-dir/--name": folder.path}, {Path(args.dataroot): "--dataroot"})
    if args.deterministic:  # before anything starts CUDA
        make_deterministic()
    with StopSignals() as signals, folder.in_use():
        return train_in(folder, args, signals)


def train_in(folder: RunFolder, args: argparse.Namespace, signals: StopSignals) -> Pix2Pix:
    """The training itself (see :func:`train`): every rank runs it, the main process alone writes."""
    # setup: this process's rank and device, the run's options (a resumed run's own)
    run, checkpoint = open_run(args, folder)
    options, device = run.options, run.device
    options.threads = pin_threads(options.threads)  # the count in use goes into options.json

    # data: the training pairs in an order that depends only on (seed, epoch), shared out between ranks
    dataset = AlignedDataset(options.dataroot, "train", direction=options.direction, load_size=options.load_size,
                             crop_size=options.crop_size, flip=not options.no_flip, train=True)
    sampler = EpochSampler(len(dataset), seed=options.seed, rank=run.rank, world_size=run.world_size)
    loader = make_loader(dataset, sampler, options.batch_size, options.num_workers, device)
    run.steps_per_epoch = math.ceil(sampler.per_rank() / options.batch_size)
    run.total_steps = min(run.total_epochs * run.steps_per_epoch, options.max_steps or math.inf)

    # model: G, D and their optimizers initialised from --seed; linear lr decay over the last epochs
    rng.seed_all(options.seed)
    pix2pix = Pix2Pix(*build_configs(options, device), device=device)
    schedulers = lr_schedulers((pix2pix.optimizer_G, pix2pix.optimizer_D), options.n_epochs, options.n_epochs_decay)

    # resume: weights, optimizer states, schedules, position and random streams from latest.pt
    if checkpoint is None:
        torch.manual_seed(options.seed + 1000 * run.rank)  # different dropout masks per process
    else:
        resume_from(checkpoint, pix2pix, schedulers, run)
        if checkpoint["finished"]:
            say(f"{folder.path}: training already finished ({run.step} steps); nothing to do")
            return pix2pix
    wrap_for_training(pix2pix, device, channels_last=options.channels_last, distributed=run.world_size > 1,
                      sync_batchnorm=options.norm == "syncbatch", compile=options.compile)
    signals.safe_note = (f"the last checkpoint is {run.latest} (step {run.step})" if checkpoint is not None
                         else "no checkpoint was written")
    monitor = start_writing(run, signals) if is_main_process() else None
    if checkpoint is not None:
        rng.restore(checkpoint["rng"]["ranks"][run.rank], device)
        del checkpoint
    try:
        train_loop(run, pix2pix, schedulers, loader, sampler, monitor, signals)
    finally:
        if monitor is not None:
            monitor.close()
    say(f"trained {options.name} for {run.step} steps ({run.epoch} epochs); checkpoints, TensorBoard events "
        f"and samples in {folder.path}")
    if run.world_size > 1:
        leave([pix2pix.netG, pix2pix.netD])
    return pix2pix


def make_loader(dataset: AlignedDataset, sampler: EpochSampler, batch_size: int, num_workers: int,
                device: torch.device) -> torch.utils.data.DataLoader:
    """The training batches in ``sampler``'s order. Workers (``num_workers`` > 0) are started once and kept
    across epochs; each sample draws its randomness from its own seed (data.sampling), so the batches are
    the same with any number of workers."""
    return torch.utils.data.DataLoader(
        SeededSamples(dataset), batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        pin_memory=device.type == "cuda", persistent_workers=num_workers > 0, drop_last=False,
        generator=torch.Generator(),  # its own generator: creating an iterator must not consume global RNG
        worker_init_fn=ignore_stop_signals)  # Ctrl-C reaches the workers too; the main process stops them


def train_loop(run: Run, pix2pix: Pix2Pix, schedulers, loader, sampler: EpochSampler,
               monitor: TrainingMonitor | None, signals: StopSignals) -> None:
    """Epochs of a D and a G step per batch until the last epoch, --max-steps or a stop signal; latest.pt
    every --save-latest-freq steps and at each epoch's end, the last step's losses checked at log steps.

    Under torchrun the ranks agree on stopping (a signal on any rank) and on finite losses in one
    all-reduce at each --log-freq step and at each save, never in between: no step waits for the device."""
    options = run.options
    amp = (lambda: autocast(run.device)) if options.amp else None
    losses = {}
    if run.step >= run.total_steps and run.epoch < run.total_epochs:
        say(f"{run.folder.path}: at step {run.step}, its --max-steps {options.max_steps}; give a larger one "
            f"(0: no limit) to continue")
    while run.epoch < run.total_epochs and run.step < run.total_steps and not stopping(signals, run):
        sampler.set_epoch(run.epoch, start=run.epoch_step * options.batch_size)
        if monitor is not None:
            monitor.epoch_started()
        for batch in loader:
            losses = pix2pix.training_step(*batch_on_device(batch, run), autocast=amp)
            run.step, run.epoch_step = run.step + 1, run.epoch_step + 1
            if run.step % options.log_freq == 0:
                agree(run, signals, losses)
            if monitor is not None:
                monitor.after_step(run.step, losses, pix2pix)
            if run.step % options.save_latest_freq == 0:
                save_checkpoint(run.latest, losses, run, pix2pix, schedulers, signals)
            if run.step >= run.total_steps or stopping(signals, run):  # a signal: stop after this step
                break
        snapshot = run.epoch_step >= run.steps_per_epoch and end_epoch(run, schedulers)  # the epoch is complete
        save_checkpoint(run.latest, losses, run, pix2pix, schedulers, signals)
        if snapshot:
            save_snapshot(run, pix2pix, signals)
    if run.epoch < run.total_epochs and run.step < run.total_steps:  # stopped by a signal
        if run.latest_step != run.step:
            save_checkpoint(run.latest, losses, run, pix2pix, schedulers, signals)
        number = signals.requested or signal.SIGTERM  # under torchrun: another rank's signal
        raise Stopped(f"interrupted by {signal_name(number)} at step {run.step}: {run.latest} holds it; "
                      f"continue with {resume_command(options)}", number)
    if monitor is not None:
        monitor.write_samples(run.step, pix2pix)


def end_epoch(run: Run, schedulers) -> bool:
    """The next epoch and its lr; whether the finished epoch gets a snapshot (every --save-epoch-freq
    epochs and after the last)."""
    run.epoch, run.epoch_step = run.epoch + 1, 0
    for scheduler in schedulers:
        scheduler.step()
    return run.epoch % run.options.save_epoch_freq == 0 or run.epoch == run.total_epochs


# ----------------------------------------------------------------------------------------- setup
@dataclass
class Run:
    """What a training process runs with, decided before any work (the run's options: for a resumed run
    its own, with what may change now; its folder; the device; this process's rank), and where it stands."""

    options: argparse.Namespace
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
        return self.folder.path / "latest.pt"

    @property
    def total_epochs(self) -> int:
        return self.options.n_epochs + self.options.n_epochs_decay

    def options_record(self) -> dict:
        """The options as checkpoints and options.json hold them."""
        return {k: v for k, v in vars(self.options).items() if k != "given_options"}


def open_run(args: argparse.Namespace, folder: RunFolder) -> tuple[Run, dict | None]:
    """The Run of this process (the folder claimed on the main process) and, with --resume, the checkpoint
    it continues from."""
    world_size, local_rank = launch_environment()
    device = decide_device(args.device, world_size, local_rank)  # the command line's, never a saved run's
    rank, world_size = init_from_environment(device)
    if rank == 0:
        folder.claim(args.resume, args.overwrite)
    checkpoint = load_resume_checkpoint(folder.path / "latest.pt") if args.resume else None  # validated
    options, first_lr = argparse.Namespace(**vars(args)), args.lr
    if checkpoint is not None:
        if "optimizer_G" not in checkpoint:
            raise CheckpointError(f"{folder.path / 'latest.pt'}: holds weights only (an epoch snapshot); --resume "
                                  f"needs a complete checkpoint: a latest.pt or a full_<NNN>.pt of --keep-full")
        if checkpoint["world_size"] != world_size:
            raise UsageError(f"{folder.path / 'latest.pt'}: saved with {checkpoint['world_size']} processes, "
                             f"resumed with {world_size}; the data order would change")
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
    for scheduler, key in zip(schedulers, ("scheduler_G", "scheduler_D")):
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
    write_json(run_dir / "options.json", run.options_record(), sort_keys=True)
    monitor = TrainingMonitor(run_dir, options, frames, probe, run.step, run.total_steps)
    if run.step == 0:
        monitor.write_options(run.options_record())
    return monitor


def noise_probe(options: argparse.Namespace, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The fixed probe pairs of --noise-freq: the first --noise-probe training pairs, without jitter."""
    probe_set = AlignedDataset(options.dataroot, "train", direction=options.direction, crop_size=options.crop_size,
                               train=False)
    items = (probe_set[i] for i in range(min(options.noise_probe, len(probe_set))))
    return [(item["input"][None].to(device), item["target"][None].to(device)) for item in items]


def batch_on_device(batch: dict, run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    """(real_a, real_b) of a batch on the training device, in the networks' memory format."""
    real_a = batch["input"].to(run.device, non_blocking=True)
    real_b = batch["target"].to(run.device, non_blocking=True)
    if run.options.channels_last:
        real_a = real_a.contiguous(memory_format=torch.channels_last)
        real_b = real_b.contiguous(memory_format=torch.channels_last)
    return real_a, real_b


# ----------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, losses: dict, run: Run, pix2pix: Pix2Pix, schedulers, signals: StopSignals) -> None:
    """Write the complete training state to ``path`` (the main process; a collective), after checking
    that the last ``losses`` and the whole state are finite on every rank."""
    state = pix2pix.state_dict()
    bad = nonfinite_entries(state)  # weights, batch-norm buffers, optimizer moments: one sync
    agree(run, signals, losses, bad)  # every rank stops, or none
    rng_states = gather(rng.capture(run.device))  # every rank's own generators
    if is_main_process():  # every rank knows what is on disk, for the same divergence message
        scheduler_G, scheduler_D = schedulers
        state.update(format_version=FORMAT_VERSION, options=run.options_record(), epoch=run.epoch,
                     epoch_step=run.epoch_step, step=run.step, scheduler_G=scheduler_G.state_dict(),
                     scheduler_D=scheduler_D.state_dict(), rng={"ranks": rng_states}, world_size=run.world_size,
                     finished=path == run.latest and run.epoch >= run.total_epochs,
                     data_fingerprint=run.data_fingerprint)
        with signals.saving(path):
            save_atomic(state, path)
        if path == run.latest:
            signals.safe_note = f"the last checkpoint is {run.latest} (step {run.step})"
        if not run.folder.committed and run.folder.commit() is not None:
            print(f"--overwrite: deleted the previous run at {run.folder.path}", flush=True)
    if path == run.latest:
        run.latest_step, run.latest_options = run.step, None


def save_snapshot(run: Run, pix2pix: Pix2Pix, signals: StopSignals) -> None:
    """epoch_<NNN>.pt of the epoch just ended: what evaluation and learning curves read (G and D with their
    configs, the options and the position), no optimizer state. Written by the main process right after
    latest.pt, whose save checked the same weights. With --keep-full K, latest.pt is also copied to
    full_<NNN>.pt, of which the newest K are kept."""
    if not is_main_process():
        return
    state = pix2pix.state_dict()
    snapshot = {key: state[key] for key in ("netG_config", "model_config", "netG", "netD")}
    snapshot.update(format_version=FORMAT_VERSION, options=run.options_record(), epoch=run.epoch, step=run.step,
                    world_size=run.world_size, weights_only=True)
    path = run.folder.path / f"epoch_{run.epoch:03d}.pt"
    with signals.saving(path):
        save_atomic(snapshot, path)
    if run.options.keep_full:
        keep_full_copy(run.latest, run.folder.path / f"full_{run.epoch:03d}.pt", run.options.keep_full)


def keep_full_copy(latest: Path, path: Path, keep: int) -> None:
    """A copy of ``latest`` as ``path`` (written atomically; a copy, not a link, so that copying another
    file over latest.pt by hand cannot change it); the full_<NNN>.pt beyond the newest ``keep`` are deleted."""
    with open(latest, "rb") as source:
        write_atomic(path, lambda file: shutil.copyfileobj(source, file, 1 << 24))
    for old in sorted(path.parent.glob("full_[0-9]*.pt"))[:-keep]:
        old.unlink()


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


if __name__ == "__main__":
    sys.exit(main())
