"""Train pix2pix (labels -> photo) at batch size 1 with Adam, TRAdam, SGD or TRSGD.

    python train.py --optim tradam                       # the paper's run on the built-in data
    python train.py --optim adam --dataroot datasets/cityscapes
    python train.py --preset demo --optim tradam         # a few minutes on a laptop CPU
    torchrun --nproc_per_node 4 train.py --optim tradam  # one process per GPU (gloo on CPU)

A run lives in <checkpoints-dir>/<name>/: options.json, latest.pt (complete state, every
--save-latest-freq steps and each epoch), epoch_<NNN>.pt, events/ (TensorBoard) and samples/.
Ctrl-C or SIGTERM stops after the current step with a saved latest.pt (exit 130 / 143); --resume
continues from it.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import math
import os
import random
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torchvision
from torch.optim.lr_scheduler import LambdaLR

from common.checkpoint import FORMAT_VERSION, describe_names, load_checkpoint, nonfinite_entries, save_atomic
from common.command_line import InputError, option_parser, run_main
from common.device import check_device_name, resolve_device
from common.files import write_json
from common.interrupts import StopSignals, Stopped, ignore_stop_signals, signal_name
from common.progress import progress
from common.run_folder import RunFolder
from data.aligned import AlignedDataset, dataset_fingerprint
from data.sampling import EpochSampler, SeededSamples
from common import rng
from common.amp import amp_dtype
from common.amp import autocast as mixed_precision
from common.distributed import any_rank, gather, local_copy, nonfinite_ranks, wrap_ddp
from gan.networks import DISCRIMINATORS, NORMS, check_image_size
from gan.noise import probe_generator_noise
from gan.pix2pix import OPTIMIZERS, ModelConfig, OptimConfig, Pix2Pix

PRESETS = {
    # The paper's configuration (pix2pix's Cityscapes defaults).
    "paper": {},
    # Trains one optimizer in a few minutes on 2 CPU cores, still producing recognisable images.
    "demo": dict(netG="unet_64", ngf=32, ndf=32, load_size=72, crop_size=64, n_epochs=10, n_epochs_decay=10,
                 num_workers=0, log_freq=50, image_freq=500, save_latest_freq=1000, save_epoch_freq=5),
}
# Options that may change when a run is resumed (they do not change its trajectory); not given again, they
# keep the run's values. --dataroot may name the run's dataset in a new place (its content is checked).
RUNTIME_OPTIONS = {"device", "num_workers", "log_freq", "image_freq", "save_latest_freq", "save_epoch_freq",
                   "max_steps", "compile", "dataroot", "preset", "noise_freq", "noise_probe"}
# Where the run is and what to do with it: always as given now.
LOCATION_OPTIONS = {"name", "checkpoints_dir", "resume", "overwrite", "allow_change"}
# Trajectory options a resume may change when named in --allow-change.
CHANGEABLE_OPTIONS = ("lr",)


class UsageError(InputError):
    """A bad option or run folder (one line)."""


def lr_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """Multiplier of the initial lr in (0-based) ``epoch``: 1 for the first n_epochs, then linear decay.

    factor = 1 − max(0, epoch + 1 − n_epochs) / (n_epochs_decay + 1), so the last epoch trains at
    lr0/(n_epochs_decay + 1) rather than at 0 (the reference trainer spends its last epoch at lr 0).
    """
    return 1.0 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1)


def parse_args(argv=None) -> argparse.Namespace:
    """The options as given; a --preset's values stand in for the defaults it changes."""
    p = option_parser(__doc__)
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                   help="configuration to start from; explicit options override it (demo: unet_64, ngf/ndf 32, "
                        "64 px crops of 72, 10 + 10 epochs, no loader workers: a few minutes on 2 CPU cores)")
    for add_options in (add_data_options, add_model_options, add_optimization_options, add_hardware_options,
                        add_run_options):
        add_options(p)

    args = p.parse_args(argv)
    p.set_defaults(**PRESETS[args.preset])
    args = p.parse_args(argv)
    args.optim_d = args.optim_d or args.optim
    if args.name is None:
        args.name = f"{'demo_' if args.preset == 'demo' else ''}{args.optim}_seed{args.seed}"
    # The options given on the command line (a given --preset gives its values): --resume compares them.
    unset = object()  # argparse fills in defaults only for attributes the namespace lacks
    given = p.parse_args(argv, namespace=argparse.Namespace(**{action.dest: unset for action in p._actions}))
    args.given_options = {key for key, value in vars(given).items() if value is not unset}
    if "preset" in args.given_options:
        args.given_options |= set(PRESETS[args.preset])
    return args


def add_data_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("data")
    g.add_argument("--dataroot", default=None,
                   help="pix2pix-layout folder (<root>/train/*.jpg, <root>/val/*.jpg); none: the built-in "
                        "synthetic city, generated once into ./datasets")
    g.add_argument("--direction", choices=["AtoB", "BtoA"], default="BtoA",
                   help="BtoA: colour labels (right half) -> photo (left half), i.e. labels->photo on Cityscapes")
    g.add_argument("--load-size", type=int, default=286, help="resize both halves to this size (bicubic)")
    g.add_argument("--crop-size", type=int, default=256, help="then take the same random crop of this size")
    g.add_argument("--no-flip", action="store_true", help="no random horizontal flip")
    g.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--netG", default="unet_256", help="unet_<2^k> (unet_128, unet_256, ...), resnet_6blocks, "
                                                      "resnet_9blocks")
    g.add_argument("--netD", choices=DISCRIMINATORS, default="basic", help="basic = 70x70 PatchGAN")
    g.add_argument("--n-layers-D", type=int, default=3, help="layers of the n_layers discriminator")
    g.add_argument("--ngf", type=int, default=64, help="generator filters in the first layer")
    g.add_argument("--ndf", type=int, default=64, help="discriminator filters in the first layer")
    g.add_argument("--norm", choices=NORMS, default="batch",
                   help="syncbatch: batch statistics over all processes under torchrun (CUDA)")
    g.add_argument("--no-dropout", action="store_true", help="no dropout in the generator")
    g.add_argument("--gan-mode", choices=["vanilla", "lsgan", "hinge"], default="vanilla", help="GAN loss")
    g.add_argument("--lambda-l1", type=float, default=100.0, help="weight of the L1 term")


def add_optimization_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("optimization")
    g.add_argument("--optim", choices=OPTIMIZERS, default="adam", help="optimizer of G (and of D unless --optim-d)")
    g.add_argument("--optim-d", choices=OPTIMIZERS, default=None, help="optimizer of D (default: --optim)")
    g.add_argument("--lr", type=float, default=2e-4, help="initial learning rate")
    g.add_argument("--beta1", type=float, default=0.5, help="Adam/TRAdam beta1")
    g.add_argument("--beta2", type=float, default=0.999, help="Adam/TRAdam beta2")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD/TRSGD momentum")
    g.add_argument("--prox", type=float, default=0.1, help="TR proximal coefficient lambda")
    g.add_argument("--inner-steps", type=int, default=10, help="TR inner steps S between anchor updates")
    g.add_argument("--prox-mode", choices=["paper", "reference"], default="paper",
                   help="paper: c = lambda; reference: c = 2*lambda*lr0/lr as the official TRAlgorithm code")
    g.add_argument("--no-inner-decay", action="store_true", help="inner step size lr instead of lr/(k+1)")
    g.add_argument("--batch-size", type=int, default=1, help="images per step and process")
    g.add_argument("--n-epochs", type=int, default=100, help="epochs at the initial lr")
    g.add_argument("--n-epochs-decay", type=int, default=100,
                   help="epochs of linear decay after them: lr = lr0 * (1 - max(0, e + 1 - n_epochs) / "
                        "(n_epochs_decay + 1)) in 0-based epoch e, so the last epoch uses lr0/(n_epochs_decay + 1)")
    g.add_argument("--max-steps", type=int, default=0, help="stop after this many steps in all (0: no limit)")
    g.add_argument("--seed", type=int, default=0, help="seed of all randomness (init, data order, jitter, dropout)")


def add_hardware_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("hardware")
    g.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    g.add_argument("--amp", action="store_true", help="bf16 autocast of G and D (on CUDA; on the CPU too, where it "
                                                      "pays only with AVX512-BF16/AMX)")
    g.add_argument("--channels-last", action="store_true", help="channels_last memory format for G, D and images")
    g.add_argument("--compile", action="store_true", help="torch.compile G and D (first steps are slow)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("run folder and logging")
    g.add_argument("--name", default=None, help="run name (default: [demo_]<optim>_seed<seed>)")
    g.add_argument("--checkpoints-dir", default="checkpoints", help="folder holding the runs")
    g.add_argument("--resume", action="store_true", help="continue the run from its latest.pt")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing run of the same name (deleted once the new run has saved its first "
                        "checkpoint; put back if the new run fails before)")
    g.add_argument("--allow-change", nargs="+", choices=CHANGEABLE_OPTIONS, default=[], metavar="OPTION",
                   help="with --resume: accept these options changed from the run's (lr: continue from the "
                        "checkpoint with a new initial --lr, e.g. after a divergence); other changes are refused")
    g.add_argument("--log-freq", type=int, default=100, help="steps between TensorBoard scalars")
    g.add_argument("--image-freq", type=int, default=1000, help="steps between TensorBoard image grids")
    g.add_argument("--num-image-frames", type=int, default=4, help="validation frames in the image grid")
    g.add_argument("--save-latest-freq", type=int, default=5000, help="steps between latest.pt writes")
    g.add_argument("--save-epoch-freq", type=int, default=5, help="epochs between epoch_<NNN>.pt files")
    g.add_argument("--noise-freq", type=int, default=0,
                   help="steps between measurements of G's gradient and update-direction noise at batch size 1 "
                        "(TensorBoard noise/*; see gan/noise.py); 0: off")
    g.add_argument("--noise-probe", type=int, default=8,
                   help="training pairs (first N, without jitter) in the fixed probe set of --noise-freq")


def flag(name: str) -> str:
    """The command-line spelling of option ``name`` (``n_layers_D`` -> ``--n-layers-D``)."""
    return "--" + name.replace("_", "-")


def validate(args: argparse.Namespace) -> None:
    """One-line errors for bad options, before any work starts."""
    def refuse(name: str, rule: str):
        raise UsageError(f"{flag(name)} must be {rule}, got {getattr(args, name)}")

    for name in ("ngf", "ndf", "n_layers_D", "load_size", "crop_size", "inner_steps", "batch_size", "log_freq",
                 "image_freq", "save_latest_freq", "save_epoch_freq", "num_image_frames"):
        if getattr(args, name) < 1:
            refuse(name, ">= 1")
    for name in ("num_workers", "max_steps", "n_epochs", "n_epochs_decay", "noise_freq"):
        if getattr(args, name) < 0:
            refuse(name, ">= 0")
    for name in ("lr", "prox", "lambda_l1"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) >= 0):
            refuse(name, "a finite number >= 0")
    for name in ("beta1", "beta2", "momentum"):
        if not 0 <= getattr(args, name) < 1:
            refuse(name, "in [0, 1)")
    if args.noise_freq and args.noise_probe < 2:
        refuse("noise_probe", ">= 2 (a variance needs two samples)")
    if not 0 <= args.seed < 2**31:
        refuse("seed", "in [0, 2^31)")
    if args.n_epochs + args.n_epochs_decay < 1:
        raise UsageError("--n-epochs + --n-epochs-decay must be at least 1")
    check_device_name(args.device)
    if not args.name or args.name.startswith(".") or "/" in args.name or os.sep in args.name \
            or args.name == "segmenters":
        raise UsageError(f"--name {args.name!r}: a run name is one folder name, not hidden, not 'segmenters'")
    if args.dataroot is not None and not Path(args.dataroot).is_dir():
        raise UsageError(f"--dataroot {args.dataroot}: folder not found")
    if args.crop_size > args.load_size:
        raise UsageError(f"--crop-size {args.crop_size} is larger than --load-size {args.load_size}")
    try:
        check_image_size(args.netG, args.crop_size)
    except ValueError as error:
        raise UsageError(f"--netG/--crop-size: {error}") from None
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    if args.allow_change and not args.resume:
        raise UsageError("--allow-change applies to --resume only")


# ----------------------------------------------------------------------------------------- setup
@dataclass(frozen=True)
class Setup:
    """What a training process runs with, resolved once before any work: the run's options (a new namespace;
    for a resumed run its saved options with what may change now), where the run lives and this process's
    place among the ranks."""

    options: argparse.Namespace
    run_dir: Path
    device: torch.device
    rank: int
    world_size: int
    previous_options: dict | None  # the options latest.pt was saved with (a resumed run)
    resumed_lr: float  # the initial lr the run had before this session (its --lr when new)

    def options_record(self) -> dict:
        """The options as checkpoints and options.json hold them."""
        return {k: v for k, v in vars(self.options).items() if k != "given_options"}


def setup_distributed(device_name: str) -> tuple[int, int, int]:
    """(rank, world_size, local_rank); initializes the process group under torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return dist.get_rank(), world_size, local_rank


def resolve_setup(args: argparse.Namespace, checkpoint: dict | None, run_dir: Path, rank: int, world_size: int,
                  local_rank: int, log: RunLog) -> Setup:
    """The Setup of this process; ``args`` is left as given. Resolves the device, the dataset's absolute
    path (the built-in one generated if none is given), batch norm where syncbatch cannot work, and
    records a new --lr of a resumed run (--allow-change lr) in ``lr_changes``."""
    saved = checkpoint["options"] if checkpoint is not None else None
    if checkpoint is None:
        options = argparse.Namespace(**vars(args))
    else:
        options = resume_options(args, saved, run_dir)
        if checkpoint.get("world_size", 1) != world_size:
            raise UsageError(f"{run_dir / 'latest.pt'}: saved with {checkpoint.get('world_size', 1)} processes, "
                             f"resumed with {world_size}; the data order would change")
        if "dataroot" not in getattr(options, "given_options", ()) and not Path(options.dataroot).is_dir():
            raise UsageError(f"{run_dir}: the run's dataset {options.dataroot} is not there; if it moved, give its "
                             f"new place with --dataroot")
    device = resolve_device(options.device, local_rank)
    if options.dataroot is None:
        from data.synthetic import default_dataset
        options.dataroot = str(default_dataset(verbose=log.active))
    options.dataroot = str(Path(options.dataroot).resolve())

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if options.amp and (device.type == "cpu" or amp_dtype(device) is None):
        log.print("--amp: bf16 autocast on the CPU (fast only on CPUs with AVX512-BF16 or AMX)" if device.type == "cpu"
                  else f"--amp: {device} has no native bf16; training in fp32")
    if options.norm == "syncbatch" and (world_size == 1 or device.type != "cuda"):
        log.print("--norm syncbatch: needs torchrun on CUDA; using batch norm (same weights layout)")
        options.norm = "batch"
    if saved is not None and options.lr != saved["lr"]:  # --allow-change lr
        options.lr_changes = list(saved.get("lr_changes", [])) + [[checkpoint["step"], saved["lr"], options.lr]]
    return Setup(options=options, run_dir=run_dir, device=device, rank=rank, world_size=world_size,
                 previous_options=saved, resumed_lr=saved["lr"] if saved is not None else options.lr)


def resume_options(args: argparse.Namespace, saved: dict, run_dir: Path) -> argparse.Namespace:
    """The options of a resumed run: the saved ones, with the runtime options given now (RUNTIME_OPTIONS)
    and the run's place (LOCATION_OPTIONS). A given option that would change the trajectory and differs
    from the run's is refused, unless named in --allow-change."""
    given, current = set(getattr(args, "given_options", ())), vars(args)
    differ = [k for k in sorted(given - RUNTIME_OPTIONS - LOCATION_OPTIONS) if k in saved and current[k] != saved[k]]
    refused = [k for k in differ if k not in args.allow_change]
    if refused:
        listed = ", ".join(f"{flag(k)} {current[k]} (the run has {saved[k]})" for k in refused)
        hint = "; a new --lr is taken with --allow-change lr" if "lr" in refused else ""
        raise UsageError(f"{run_dir}: --resume with options that change the run's trajectory: {listed}{hint}; "
                         f"drop them to continue the run, or start another (--name, --overwrite)")
    merged = dict(saved)
    merged.update({k: v for k, v in current.items() if k in given or k in LOCATION_OPTIONS or k not in saved})
    return argparse.Namespace(**merged)


def resume_command(options: argparse.Namespace, extra: str = "", saved: dict | None = None) -> str:
    """The command line that continues this run: its options are in the checkpoint, except runtime options
    that differ from ``saved`` (the checkpoint's options, when it was written before this session)."""
    folder = options.checkpoints_dir
    where = "" if folder == "checkpoints" else f" --checkpoints-dir {shlex.quote(folder)}"
    for key in sorted(RUNTIME_OPTIONS - {"preset"} if saved else ()):
        value = getattr(options, key)
        if saved.get(key) != value and value is not False:
            where += f" {flag(key)}" + ("" if value is True else f" {shlex.quote(str(value))}")
    return f"python train.py --name {shlex.quote(options.name)}{where} --resume{extra}"


# ----------------------------------------------------------------------------------------- data
def open_datasets(options: argparse.Namespace, checkpoint: dict | None,
                  saved: dict | None) -> tuple[AlignedDataset, AlignedDataset, dict]:
    """The jittered training pairs, the validation frames and the dataset's fingerprint; a resumed run
    must see the data it was trained on."""
    dataset = AlignedDataset(options.dataroot, "train", direction=options.direction, load_size=options.load_size,
                             crop_size=options.crop_size, flip=not options.no_flip, train=True)
    val_dataset = AlignedDataset(options.dataroot, "val", direction=options.direction, crop_size=options.crop_size,
                                 train=False)
    fingerprint = dataset_fingerprint(options.dataroot)
    if checkpoint is not None:
        check_same_dataset(options.dataroot, fingerprint, checkpoint.get("data_fingerprint"), saved["dataroot"])
    return dataset, val_dataset, fingerprint


def check_same_dataset(dataroot: str, fingerprint: dict, saved: dict | None, saved_root: str) -> None:
    """A resumed run must see the data it was trained on, wherever it lies now (frame counts, digest)."""
    if saved is None:  # a checkpoint from before fingerprints were saved: only its own folder is trusted
        if Path(dataroot) != Path(saved_root):
            raise UsageError(f"--dataroot {dataroot}: the checkpoint does not record its dataset's fingerprint, "
                             f"so only its own dataset {saved_root} can be used")
        return
    if (fingerprint["train_frames"], fingerprint["val_frames"]) != (saved["train_frames"], saved["val_frames"]):
        raise UsageError(f"--dataroot {dataroot}: {fingerprint['train_frames']} train / {fingerprint['val_frames']} "
                         f"val frames, but the run was trained on {saved['train_frames']} / {saved['val_frames']}")
    if fingerprint["digest"] != saved["digest"]:
        raise UsageError(f"--dataroot {dataroot}: not the dataset the run was trained on (file names or sizes "
                         f"differ from those of {saved_root})")


def make_loader(dataset: AlignedDataset, sampler: EpochSampler, options: argparse.Namespace,
                device: torch.device) -> torch.utils.data.DataLoader:
    """Batches in the sampler's order; each sample's jitter is seeded by its place (data.sampling)."""
    return torch.utils.data.DataLoader(
        SeededSamples(dataset), batch_size=options.batch_size, sampler=sampler, num_workers=options.num_workers,
        pin_memory=device.type == "cuda", persistent_workers=False, drop_last=False,
        generator=torch.Generator(),  # its own generator: creating an iterator must not consume global RNG
        worker_init_fn=ignore_stop_signals)  # Ctrl-C reaches the workers too; the main process stops them


def batch_on_device(batch: dict, device: torch.device, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(real_a, real_b) of a batch on the training device, in the networks' memory format."""
    real_a = batch["input"].to(device, non_blocking=True)
    real_b = batch["target"].to(device, non_blocking=True)
    if channels_last:
        real_a = real_a.contiguous(memory_format=torch.channels_last)
        real_b = real_b.contiguous(memory_format=torch.channels_last)
    return real_a, real_b


# ----------------------------------------------------------------------------------------- model
def build_configs(options, device: torch.device) -> tuple[ModelConfig, OptimConfig, OptimConfig]:
    """(model config, optimizer config of G, optimizer config of D) from the options."""
    model_config = ModelConfig(netG=options.netG, netD=options.netD, ngf=options.ngf, ndf=options.ndf,
                               n_layers_D=options.n_layers_D, norm=options.norm, use_dropout=not options.no_dropout,
                               gan_mode=options.gan_mode, lambda_l1=options.lambda_l1)
    shared = dict(lr=options.lr, beta1=options.beta1, beta2=options.beta2, momentum=options.momentum,
                  prox=options.prox, inner_steps=options.inner_steps, prox_mode=options.prox_mode,
                  inner_decay=not options.no_inner_decay)

    def optim_config(name: str) -> OptimConfig:
        # torch's fused Adam/SGD CPU kernels assume a parameter and its gradient share one memory layout,
        # which channels_last does not guarantee (TRAdam/TRSGD check the layout themselves; the CUDA
        # kernels check it too).
        fused = False if options.channels_last and name in ("adam", "sgd") and device.type == "cpu" else None
        return OptimConfig(name=name, fused=fused, **shared)

    return model_config, optim_config(options.optim), optim_config(options.optim_d)


def build_pix2pix(options: argparse.Namespace, device: torch.device) -> Pix2Pix:
    """G, D and their optimizers, initialised from --seed (every random stream seeded first)."""
    torch.manual_seed(options.seed)
    random.seed(options.seed)
    np.random.seed(options.seed)
    return Pix2Pix(*build_configs(options, device), device=device)


def lr_schedulers(pix2pix: Pix2Pix, options: argparse.Namespace) -> tuple[LambdaLR, LambdaLR]:
    """The schedules of G's and D's optimizers: lr0 · lr_factor(epoch), stepped once per epoch."""
    def schedule(epoch: int) -> float:
        return lr_factor(epoch, options.n_epochs, options.n_epochs_decay)
    return LambdaLR(pix2pix.optimizer_G, schedule), LambdaLR(pix2pix.optimizer_D, schedule)


def set_initial_lr(scheduler: LambdaLR, lr: float) -> None:
    """Continue with ``lr`` as the initial learning rate of the scheduler's optimizer (--allow-change lr):
    the schedule's factor at the current epoch is kept, TR's lr0 becomes ``lr``."""
    scheduler.base_lrs = [lr] * len(scheduler.base_lrs)
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group in scheduler.optimizer.param_groups:
        group["initial_lr"], group["lr"] = lr, lr * factor
        if "tr_lr0" in group:
            group["tr_lr0"] = lr
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def resume_from(checkpoint: dict, pix2pix: Pix2Pix, schedulers: tuple[LambdaLR, LambdaLR], setup: Setup,
                log: RunLog) -> Position:
    """Load weights, optimizer states and schedules from ``checkpoint``; returns where it stopped. A new
    --lr (--allow-change lr) becomes the initial lr from here on."""
    pix2pix.load_state_dict(checkpoint)
    for scheduler, key in zip(schedulers, ("scheduler_G", "scheduler_D")):
        scheduler.load_state_dict(checkpoint[key])
    position = Position(epoch=checkpoint["epoch"], epoch_step=checkpoint["epoch_step"], step=checkpoint["step"],
                        latest_step=checkpoint["step"], latest_options=setup.previous_options)
    lr = setup.options.lr
    if lr != setup.resumed_lr:
        for scheduler in schedulers:
            set_initial_lr(scheduler, lr)
        log.print(f"--lr: continuing from step {position.step} with initial lr {lr:g} instead of "
                  f"{setup.resumed_lr:g}")
    return position


def restore_rng(saved: dict, rank: int, device: torch.device) -> None:
    """This rank's generators as saved (checkpoints before per-rank states hold one state for all)."""
    states = saved.get("ranks", [saved])
    rng.restore(states[rank] if rank < len(states) else states[0], device)


def wrap_networks(pix2pix: Pix2Pix, setup: Setup) -> None:
    """The modules a step runs: channels_last, DistributedDataParallel under torchrun, torch.compile."""
    G, D = pix2pix.netG, pix2pix.netD
    if setup.options.channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    if setup.world_size > 1:
        if setup.options.norm == "syncbatch":
            G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(G)
            D = torch.nn.SyncBatchNorm.convert_sync_batchnorm(D)
        G = wrap_ddp(G, setup.device)
        # D runs twice (fake, real) before its backward: broadcasting its buffers before the second
        # forward modifies batch-norm statistics the first one saved (an autograd error on torch >= 2.6
        # before the upstream fix). D trains in training mode only, where they are not used; they are
        # broadcast when training ends.
        D = wrap_ddp(D, setup.device, sync_buffers_each_forward=False)
    if setup.options.compile:
        G, D = torch.compile(G), torch.compile(D)
    pix2pix.wrap(G, D)


def end_distributed(pix2pix: Pix2Pix) -> None:
    """Batch-norm statistics as on rank 0 (the saved ones) on every rank; then leave the process group."""
    for buffer in list(pix2pix.netG.buffers()) + list(pix2pix.netD.buffers()):
        dist.broadcast(buffer, src=0)
    dist.barrier()
    dist.destroy_process_group()


# ----------------------------------------------------------------------------------------- checkpoints
@dataclass
class Position:
    """Where training is, and what latest.pt holds (every rank keeps the same copy)."""

    epoch: int = 0  # the epoch under way (0-based)
    epoch_step: int = 0  # steps done in it
    step: int = 0  # steps done in all
    latest_step: int | None = None  # the step latest.pt holds, if it exists
    latest_options: dict | None = None  # its options if saved before this session (None: this session's)

    def advance(self) -> None:
        """One more step done."""
        self.step += 1
        self.epoch_step += 1


def save_checkpoint(path: Path, losses: dict, *, setup: Setup, position: Position, pix2pix: Pix2Pix,
                    schedulers: tuple[LambdaLR, LambdaLR], fingerprint: dict, signals: StopSignals, log: RunLog,
                    finished: bool = False) -> None:
    """Write the complete training state to ``path`` (rank 0; a collective), after checking that the last
    ``losses`` and the whole state are finite on every rank."""
    check_finite(losses, setup, position)
    state = pix2pix.state_dict()
    bad = nonfinite_entries(state)  # weights, batch-norm buffers, optimizer moments: one sync
    if any_rank(bool(bad), setup.device):  # every rank stops, or none
        raise diverged(f"non-finite values in {describe_names(bad) if bad else 'the state of another rank'}",
                       setup, position)
    rng_states = gather(rng.capture(setup.device))  # every rank's own generators
    latest = setup.run_dir / "latest.pt"
    if setup.rank == 0:  # rank 0 writes; every rank knows what is on disk, for the same divergence message
        scheduler_G, scheduler_D = schedulers
        state.update(format_version=FORMAT_VERSION, options=setup.options_record(), epoch=position.epoch,
                     epoch_step=position.epoch_step, step=position.step, scheduler_G=scheduler_G.state_dict(),
                     scheduler_D=scheduler_D.state_dict(), rng={"ranks": rng_states}, world_size=setup.world_size,
                     finished=finished, data_fingerprint=fingerprint)
        with signals.saving(path):
            save_atomic(state, path)
        if path == latest:
            signals.safe_note = f"the last checkpoint is {latest} (step {position.step})"
        log.checkpoint_written()
    if path == latest:
        position.latest_step, position.latest_options = position.step, None


def check_finite(losses: dict, setup: Setup, position: Position) -> None:
    """All ranks stop together, with the same message, when any rank's loss is not finite."""
    bad = nonfinite_ranks(losses)
    if bad:
        ranks = sorted({r for ranks_of_loss in bad.values() for r in ranks_of_loss})
        where = f" on rank {', '.join(map(str, ranks))}" if setup.world_size > 1 else ""
        raise diverged(f"non-finite loss {', '.join(bad)}{where}", setup, position)


def diverged(what: str, setup: Setup, position: Position) -> FloatingPointError:
    """The one-line report of a divergence at ``position``; its advice names only a checkpoint that exists."""
    lower = min(setup.options.lr, setup.resumed_lr) / 10  # below any lr this run has used
    if position.latest_step is None:
        advice = f"no checkpoint was written; start again with a lower --lr (e.g. --lr {lower:g})"
    else:
        command = resume_command(setup.options, f" --lr {lower:g} --allow-change lr", position.latest_options)
        advice = (f"the last good checkpoint is {setup.run_dir / 'latest.pt'} (step {position.latest_step}); "
                  f"continue from it with a lower learning rate: {command}")
    return FloatingPointError(f"{setup.run_dir}: training diverged at step {position.step} ({what}); {advice}")


def stopped_by_signal(signals: StopSignals, step: int, latest: Path, options: argparse.Namespace) -> Stopped:
    """The one-line report of a stop after a signal, once ``latest`` holds ``step``."""
    number = signals.requested or signal.SIGTERM  # under torchrun: another rank's signal
    return Stopped(f"interrupted by {signal_name(number)} at step {step}: {latest} holds it; "
                   f"continue with {resume_command(options)}", number)


def stop_requested(signals: StopSignals, setup: Setup) -> bool:
    """A signal reached this process or, under torchrun, any rank: every rank stops after the same step."""
    requested = signals.requested is not None
    return any_rank(requested, setup.device) if setup.world_size > 1 else requested


# ----------------------------------------------------------------------------------------- logging
def grad_norm(module: torch.nn.Module) -> float:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))


def distance_to_anchor(optimizer) -> float | None:
    return optimizer.distance_to_anchor() if hasattr(optimizer, "distance_to_anchor") else None


@torch.no_grad()
def sample_grid(netG: torch.nn.Module, frames: dict, seed: int) -> torch.Tensor:
    """label | generated | real rows for the fixed frames, generated with the pix2pix test protocol
    (dropout on, the image's own batch statistics) on a copy of G, so training state is untouched."""
    generator = local_copy(netG).train()  # under --norm syncbatch: plain batch norm, no collectives
    rows = []
    with torch.random.fork_rng(devices=[frames["input"].device] if frames["input"].is_cuda else []):
        torch.manual_seed(seed)
        for a, b in zip(frames["input"], frames["target"]):
            fake = generator(a[None])[0]
            rows += [a, fake, b]
    grid = torchvision.utils.make_grid(torch.stack(rows).float().cpu(), nrow=3, padding=2, normalize=True,
                                       value_range=(-1, 1))
    return grid


def options_markdown(options: dict) -> str:
    return "| option | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in sorted(options.items()))


class RunLog:
    """The work of rank 0 alone: the run folder, messages, options.json, TensorBoard scalars and sample
    grids, noise probes and the progress bar. On every other rank each method does nothing."""

    def __init__(self, run: RunFolder, rank: int):
        self.run, self.active = run, rank == 0
        self.writer = self.bar = self.options = self.device = None
        self.frames, self.probe, self.tick = {}, [], 0.0

    def print(self, message: str) -> None:
        if self.active:
            print(message, flush=True)

    def claim(self, resume: bool, overwrite: bool) -> None:
        """Check the run folder and take it (common.run_folder)."""
        if self.active:
            self.run.claim(resume, overwrite)

    def open(self, setup: Setup, val_dataset: AlignedDataset, step: int, total_steps: int, signals: StopSignals,
             open_files: contextlib.ExitStack) -> None:
        """Fix the sample frames and noise probes, put the run's folder in place, write options.json and
        open the TensorBoard writer and the progress bar."""
        if not self.active:
            return
        self.options, self.device = setup.options, setup.device
        options = self.options
        items = [val_dataset[i] for i in range(min(options.num_image_frames, len(val_dataset)))]
        self.frames = {key: torch.stack([it[key] for it in items]).to(self.device) for key in ("input", "target")}
        if options.noise_freq:
            probe_set = AlignedDataset(options.dataroot, "train", direction=options.direction,
                                       crop_size=options.crop_size, train=False)
            self.probe = [(it["input"][None].to(self.device), it["target"][None].to(self.device))
                          for it in (probe_set[i] for i in range(min(options.noise_probe, len(probe_set))))]
        if signals.requested:
            raise Stopped(f"interrupted by {signal_name(signals.requested)} before training started; nothing was "
                          f"saved", signals.requested)
        run_dir = self.run.start()  # options, data, model and device are fine: the run takes its folder
        (run_dir / "samples").mkdir(exist_ok=True)
        write_json(run_dir / "options.json", setup.options_record(), sort_keys=True)
        from torch.utils.tensorboard import SummaryWriter
        self.writer = open_files.enter_context(SummaryWriter(str(run_dir / "events"), purge_step=step or None))
        if step == 0:
            self.writer.add_text("options", options_markdown(setup.options_record()), 0)
        self.bar = progress(total=total_steps, initial=step, desc=options.name, unit="step")

    def epoch_started(self) -> None:
        self.tick = time.perf_counter()

    def after_step(self, step: int, losses: dict, pix2pix: Pix2Pix) -> None:
        """The progress bar; scalars, sample grids and noise probes at their frequencies."""
        if not self.active:
            return
        self.bar.update(1)
        options = self.options
        if step % options.log_freq == 0:
            self.write_scalars(step, losses, pix2pix)
        if step % options.image_freq == 0:
            self.write_samples(step, pix2pix)
        if options.noise_freq and step % options.noise_freq == 0:
            for key, value in probe_generator_noise(pix2pix, self.probe, options.seed).items():
                self.writer.add_scalar(f"noise/{key}", value, step)

    def write_scalars(self, step: int, losses: dict, pix2pix: Pix2Pix) -> None:
        """Losses, lr, gradient norms, TR's distance to the anchor and the time per step since the last call."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        scalars = {k: float(v) for k, v in losses.items()}
        scalars.update(lr=pix2pix.optimizer_G.param_groups[0]["lr"], grad_norm_G=grad_norm(pix2pix.netG),
                       grad_norm_D=grad_norm(pix2pix.netD), step_time=(now - self.tick) / self.options.log_freq)
        for name, optimizer in (("G", pix2pix.optimizer_G), ("D", pix2pix.optimizer_D)):
            distance = distance_to_anchor(optimizer)
            if distance is not None:
                scalars[f"anchor_distance_{name}"] = distance
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        self.bar.set_postfix({k: scalars[k] for k in ("G_GAN", "G_L1", "D_real", "D_fake")})
        self.tick = now

    def write_samples(self, step: int, pix2pix: Pix2Pix) -> None:
        grid = sample_grid(pix2pix.netG, self.frames, self.options.seed)
        self.writer.add_image("label | generated | real", grid, step)
        torchvision.utils.save_image(grid, self.run.path / "samples" / f"step_{step:07d}.png")

    def checkpoint_written(self) -> None:
        """The new run is under way: an old run it replaces (--overwrite) is deleted."""
        if self.active and not self.run.committed and self.run.commit() is not None:
            print(f"--overwrite: deleted the previous run at {self.run.path}", flush=True)

    def close(self) -> None:
        if self.active:
            self.bar.close()
            self.writer.close()

    def finish(self, pix2pix: Pix2Pix, position: Position) -> None:
        """The end of training: the last sample grid and a line saying where everything is."""
        if not self.active:
            return
        self.bar.close()
        self.write_samples(position.step, pix2pix)
        self.writer.close()
        print(f"trained {self.options.name} for {position.step} steps ({position.epoch} epochs); checkpoints, "
              f"TensorBoard events and samples in {self.run.path}", flush=True)


# ----------------------------------------------------------------------------------------- main
def train(args: argparse.Namespace) -> Pix2Pix:
    """Run (or resume) the training described by ``args``; returns the trained model.

    The run folder is locked while it runs and an old run replaced by --overwrite is only deleted once
    the new run has saved a checkpoint (common.run_folder). SIGINT/SIGTERM stop it after the current step
    with a saved latest.pt by raising common.interrupts.Stopped.
    """
    run = RunFolder(Path(args.checkpoints_dir) / args.name)
    with StopSignals() as signals:
        try:
            with contextlib.ExitStack() as open_files:  # closed before a failed run's folder is removed
                pix2pix = run_training(args, run, signals, open_files)
        except BaseException:
            note = run.close(failed=True)
            if note:
                print(note, flush=True)
            raise
        run.close(failed=False)
    return pix2pix


def run_training(args: argparse.Namespace, run: RunFolder, signals: StopSignals,
                 open_files: contextlib.ExitStack) -> Pix2Pix:
    """The training itself (see :func:`train`); every rank runs it, rank 0 alone writes."""
    # setup: this process's rank, the run folder, the run's options (a resumed run's own) and device
    rank, world_size, local_rank = setup_distributed(args.device)
    log = RunLog(run, rank)
    log.claim(args.resume, args.overwrite)
    checkpoint = load_checkpoint(run.path / "latest.pt", require_format=True) if args.resume else None
    setup = resolve_setup(args, checkpoint, run.path, rank, world_size, local_rank, log)
    options, device, latest = setup.options, setup.device, run.path / "latest.pt"
    autocast = (lambda: mixed_precision(device)) if options.amp else None

    # data: the training pairs in an order that depends only on (seed, epoch), shared out between ranks
    dataset, val_dataset, fingerprint = open_datasets(options, checkpoint, setup.previous_options)
    sampler = EpochSampler(len(dataset), seed=options.seed, rank=rank, world_size=world_size)
    loader = make_loader(dataset, sampler, options, device)
    steps_per_epoch = math.ceil(sampler.per_rank() / options.batch_size)
    total_epochs = options.n_epochs + options.n_epochs_decay
    total_steps = min(total_epochs * steps_per_epoch, options.max_steps or math.inf)

    # model: G, D and their optimizers initialised from --seed; linear lr decay over the last epochs
    pix2pix = build_pix2pix(options, device)
    schedulers = lr_schedulers(pix2pix, options)

    # resume: weights, optimizer states, schedules, position and random streams from latest.pt
    position = Position() if checkpoint is None else resume_from(checkpoint, pix2pix, schedulers, setup, log)
    if checkpoint is None:
        torch.manual_seed(options.seed + 1000 * rank)  # different dropout masks per process
    elif checkpoint.get("finished"):
        log.print(f"{run.path}: training already finished ({position.step} steps); nothing to do")
        return pix2pix
    wrap_networks(pix2pix, setup)
    log.open(setup, val_dataset, position.step, total_steps, signals, open_files)
    signals.safe_note = (f"the last checkpoint is {latest} (step {position.step})" if checkpoint
                         else "no checkpoint was written")
    if checkpoint is not None:
        restore_rng(checkpoint["rng"], rank, device)
        del checkpoint
    save = functools.partial(save_checkpoint, setup=setup, position=position, pix2pix=pix2pix,
                             schedulers=schedulers, fingerprint=fingerprint, signals=signals, log=log)

    # training loop: a D and a G step per batch; latest.pt every --save-latest-freq steps and each epoch
    # losses: the last step's, checked at log and save steps only (no device sync per step)
    losses, stop, interrupted = {}, position.step >= total_steps, False
    if stop and position.epoch < total_epochs:
        log.print(f"{run.path}: at step {position.step}, its --max-steps {options.max_steps}; give a larger one "
                  f"(0: no limit) to continue")
    while position.epoch < total_epochs and not stop and not (interrupted := stop_requested(signals, setup)):
        sampler.set_epoch(position.epoch, start=position.epoch_step * options.batch_size)
        log.epoch_started()
        for batch in loader:
            losses = pix2pix.training_step(*batch_on_device(batch, device, options.channels_last), autocast=autocast)
            position.advance()
            if position.step % options.log_freq == 0:
                check_finite(losses, setup, position)
            log.after_step(position.step, losses, pix2pix)
            if position.step % options.save_latest_freq == 0:
                save(latest, losses)
            interrupted = stop_requested(signals, setup)
            if position.step >= total_steps or interrupted:  # a signal: stop after this step
                stop = True
                break
        if not stop or position.epoch_step >= steps_per_epoch:  # the epoch is complete
            position.epoch, position.epoch_step = position.epoch + 1, 0
            for scheduler in schedulers:
                scheduler.step()
            if position.epoch % options.save_epoch_freq == 0 or position.epoch == total_epochs:
                save(run.path / f"epoch_{position.epoch:03d}.pt", losses)
        save(latest, losses, finished=position.epoch >= total_epochs)

    # end: a signal leaves latest.pt at the last step; otherwise last samples, then the ranks part
    if interrupted and position.step < total_steps:
        if position.latest_step != position.step:
            save(latest, losses)
        log.close()
        raise stopped_by_signal(signals, position.step, latest, options)
    log.finish(pix2pix, position)
    if world_size > 1:
        end_distributed(pix2pix)
    return pix2pix


def main(argv=None) -> int:
    args = parse_args(argv)

    def work() -> None:
        validate(args)
        train(args)
    return run_main(work)


if __name__ == "__main__":
    sys.exit(main())
