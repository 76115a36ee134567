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

import math
import signal
import sys
from pathlib import Path

import torch

from common import rng
from common.amp import autocast
from common.command_line import run_main
from common.device import make_deterministic
from common.distributed import is_main_process, leave
from common.interrupts import Stopped, StopSignals, ignore_stop_signals, signal_name
from common.outputs import check_apart
from common.run_folder import RunFolder
from common.threads import pin_threads
from data.aligned import AlignedDataset
from data.sampling import EpochSampler, SeededSamples
from gan.pix2pix import Pix2Pix, wrap_for_training
from training.checkpointing import save_checkpoint, save_snapshot
from training.monitor import TrainingMonitor
from training.options import TrainOptions, UsageError, build_configs, parse_args
from training.resume import resume_command
from training.run import Run, agree, open_run, resume_from, say, start_writing, stopping
from training.schedule import lr_schedulers


def main(argv=None) -> int:
    args = parse_args(argv, __doc__)

    def work() -> None:
        args.check()
        train(args)
    return run_main(work)


def train(args: TrainOptions) -> Pix2Pix:
    """Run (or resume) the training ``args`` describe (:func:`training.options.parse_args`); returns the model.

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


def train_in(folder: RunFolder, args: TrainOptions, signals: StopSignals) -> Pix2Pix:
    """The training itself (see :func:`train`): every rank runs it, the main process alone writes."""
    # setup: this process's rank and device, the run's options (a resumed run's own)
    run, checkpoint = open_run(args, folder)
    options, device = run.options, run.device
    options.threads = pin_threads(options.threads)  # the count in use goes into options.json

    # data: the training pairs in an order that depends only on (seed, epoch), shared out between ranks
    dataset = AlignedDataset(options.dataroot, "train", direction=options.direction, load_size=options.load_size,
                             crop_size=options.crop_size, flip=not options.no_flip, train=True)
    sampler = EpochSampler(len(dataset), seed=options.seed, rank=run.rank, world_size=run.world_size)
    if options.batch_size > sampler.per_rank():  # a batch would be smaller than options.json says
        raise UsageError(f"--batch-size {options.batch_size}: the training set has {sampler.per_rank()} images"
                         f"{' per process' if run.world_size > 1 else ''} ({dataset.folder}); choose at most that")
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


def batch_on_device(batch: dict, run: Run) -> tuple[torch.Tensor, torch.Tensor]:
    """(real_a, real_b) of a batch on the training device, in the networks' memory format."""
    real_a = batch["input"].to(run.device, non_blocking=True)
    real_b = batch["target"].to(run.device, non_blocking=True)
    if run.options.channels_last:
        real_a = real_a.contiguous(memory_format=torch.channels_last)
        real_b = real_b.contiguous(memory_format=torch.channels_last)
    return real_a, real_b


if __name__ == "__main__":
    sys.exit(main())
