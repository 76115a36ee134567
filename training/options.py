"""The options of train.py: the command line, its presets, :class:`TrainOptions` and the checks made before
any work.

:func:`parse_args` reads the command line once and returns every option as a :class:`TrainOptions`, each
either as given, from the ``--preset``, or its default; ``given`` names those the command line set (a given
``--preset`` sets its values), which is what a resumed run compares with its own (:mod:`training.resume`).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from common.command_line import InputError, flag, option_parser, parse_with_presets
from common.device import check_device_name
from gan.networks import DISCRIMINATORS, NORMS, check_image_size
from gan.optimizers import OPTIMIZERS, OptimConfig
from gan.pix2pix import ModelConfig

PRESETS = {
    # The paper's configuration (pix2pix's Cityscapes defaults).
    "paper": {},
    # Trains one optimizer in a few minutes on 2 CPU cores, still producing recognisable images.
    "demo": dict(netG="unet_64", ngf=32, ndf=32, load_size=72, crop_size=64, n_epochs=10, n_epochs_decay=10,
                 num_workers=0, log_freq=50, image_freq=500, save_latest_freq=1000, save_epoch_freq=5),
}
# Trajectory options a resume may change when named in --allow-change.
CHANGEABLE_OPTIONS = ("lr",)


class UsageError(InputError):
    """A bad option or run folder (one line)."""


@dataclass
class TrainOptions:
    """Every option of a training run, as :func:`build_parser` defines them (``--help`` explains each), and
    ``given``: the names the command line set. :meth:`record` is what options.json and checkpoints hold."""

    preset: str
    dataroot: str | None
    direction: str
    load_size: int
    crop_size: int
    no_flip: bool
    num_workers: int
    netG: str
    netD: str
    n_layers_D: int
    ngf: int
    ndf: int
    norm: str
    no_dropout: bool
    gan_mode: str
    lambda_l1: float
    optim: str
    optim_d: str | None
    lr: float
    beta1: float
    beta2: float
    momentum: float
    prox: float
    inner_steps: int
    prox_mode: str
    no_inner_decay: bool
    batch_size: int
    n_epochs: int
    n_epochs_decay: int
    max_steps: int
    seed: int
    device: str
    amp: bool
    channels_last: bool
    compile: bool
    deterministic: bool
    threads: int
    name: str | None
    checkpoints_dir: str
    resume: bool
    overwrite: bool
    allow_change: list
    log_freq: int
    image_freq: int
    num_image_frames: int
    save_latest_freq: int
    save_epoch_freq: int
    keep_full: int
    noise_freq: int
    noise_probe: int
    lr_changes: list = field(default_factory=list)  # [step, old lr, new lr] of each --allow-change lr
    given: frozenset = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def from_values(cls, values: dict, given=frozenset()) -> "TrainOptions":
        """From option values by name; names this code does not know (options of an older version) are left out."""
        known = {f.name for f in dataclasses.fields(cls)} - {"given"}
        return cls(**{k: v for k, v in values.items() if k in known}, given=frozenset(given))

    def record(self) -> dict:
        """The options as options.json and checkpoints hold them (``lr_changes`` only once there is one)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "given"}
        if not values["lr_changes"]:
            del values["lr_changes"]
        return values

    def check(self) -> None:
        """One-line errors (UsageError) for bad options, before any work starts."""
        validate(self)


def parse_args(argv=None, description: str | None = None) -> TrainOptions:
    """Every option of a run (defaults < --preset < command line), and what the command line gave."""
    namespace, given = parse_with_presets(build_parser(description), argv, PRESETS)
    options = TrainOptions.from_values(vars(namespace), given)
    options.optim_d = options.optim_d or options.optim
    if options.name is None:
        options.name = f"{'demo_' if options.preset == 'demo' else ''}{options.optim}_seed{options.seed}"
    return options


def build_parser(description: str | None = None) -> argparse.ArgumentParser:
    parser = option_parser(description or __doc__, prog="train.py")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                        help="configuration to start from; explicit options override it (demo: unet_64, ngf/ndf "
                             "32, 64 px crops of 72, 10 + 10 epochs, no loader workers: a few minutes on 2 CPU cores)")
    for add_options in (add_data_options, add_model_options, add_optimization_options, add_hardware_options,
                        add_run_options):
        add_options(parser)
    return parser


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
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic CUDA kernels (cudnn.benchmark off, torch.use_deterministic_algorithms, "
                        "CUBLAS_WORKSPACE_CONFIG): bit-identical repeats and resumes on one GPU, at a cost in speed; "
                        "the CPU is deterministic without it")
    g.add_argument("--threads", type=int, default=0,
                   help="CPU threads of torch, recorded in options.json (the count can change the last bits of "
                        "the results; a resumed run keeps its own); 0: torch's choice (OMP_NUM_THREADS or the cores)")


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
    g.add_argument("--save-epoch-freq", type=int, default=5,
                   help="epochs between epoch_<NNN>.pt files (weights of G and D, for evaluation and learning curves)")
    g.add_argument("--keep-full", type=int, default=0, metavar="K",
                   help="also keep the complete resumable state of the last K epoch_<NNN>.pt epochs as "
                        "full_<NNN>.pt (copy one over latest.pt to resume from it); 0: only latest.pt")
    g.add_argument("--noise-freq", type=int, default=0,
                   help="steps between rounds of measurements of G's gradient and update-direction noise at batch "
                        "size 1: after step F, F+1, ..., F+S-1 (S = --inner-steps, so every inner position k is "
                        "probed), then 2F, ... (TensorBoard noise/*; see training/noise.py); 0: off")
    g.add_argument("--noise-probe", type=int, default=32,
                   help="training pairs in the probe set of --noise-freq: drawn at random by a generator of --seed, "
                        "the same for every optimizer, without jitter")


def validate(options: TrainOptions) -> None:
    """One-line errors for bad options, before any work starts."""
    check_ranges(options)
    check_device_name(options.device)
    name = options.name
    if not name or name.startswith(".") or "/" in name or os.sep in name or name == "segmenters":
        raise UsageError(f"--name {name!r}: a run name is one folder name, not hidden, not 'segmenters'")
    if options.dataroot is not None and not Path(options.dataroot).is_dir():
        raise UsageError(f"--dataroot {options.dataroot}: folder not found")
    if options.crop_size > options.load_size:
        raise UsageError(f"--crop-size {options.crop_size} is larger than --load-size {options.load_size}")
    try:
        check_image_size(options.netG, options.crop_size)
    except ValueError as error:
        raise UsageError(f"--netG/--crop-size: {error}") from None
    if options.resume and options.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    if options.allow_change and not options.resume:
        raise UsageError("--allow-change applies to --resume only")


# Options that size a network or an image: the largest value and why (beyond it, memory runs out long before
# anything useful happens).
UPPER_BOUNDS = {
    "ngf": (1024, "16 times pix2pix's 64; weights grow with its square: unet_256's take 56 GB at 1024"),
    "ndf": (1024, "16 times pix2pix's 64; weights grow with its square: the 70x70 PatchGAN's take 2.8 GB at 1024"),
    "n_layers_D": (8, "a 256-pixel crop is down to one pixel after 8 stride-2 layers"),
    "load_size": (8192, "4 times Cityscapes' 2048-pixel photos; one RGB float image of 8192^2 takes 800 MB"),
    "crop_size": (8192, "4 times Cityscapes' 2048-pixel photos; one RGB float image of 8192^2 takes 800 MB"),
    "batch_size": (4096, "more images per step than any GPU holds at 256 px"),
}


def check_ranges(options: TrainOptions) -> None:
    """Each number within its range."""
    def refuse(name: str, rule: str):
        raise UsageError(f"{flag(name)} must be {rule}, got {getattr(options, name)}")

    for name in ("ngf", "ndf", "n_layers_D", "load_size", "crop_size", "inner_steps", "batch_size", "log_freq",
                 "image_freq", "save_latest_freq", "save_epoch_freq", "num_image_frames"):
        if getattr(options, name) < 1:
            refuse(name, ">= 1")
    for name in ("num_workers", "max_steps", "n_epochs", "n_epochs_decay", "noise_freq", "keep_full", "threads"):
        if getattr(options, name) < 0:
            refuse(name, ">= 0")
    for name, (most, reason) in UPPER_BOUNDS.items():
        if getattr(options, name) > most:
            refuse(name, f"<= {most} ({reason})")
    for name in ("lr", "prox", "lambda_l1"):
        if not (math.isfinite(getattr(options, name)) and getattr(options, name) >= 0):
            refuse(name, "a finite number >= 0")
    for name in ("beta1", "beta2", "momentum"):
        if not 0 <= getattr(options, name) < 1:
            refuse(name, "in [0, 1)")
    if options.noise_freq and options.noise_freq < options.inner_steps:
        refuse("noise_freq", f"0 or >= --inner-steps {options.inner_steps} (a round of probes takes S steps)")
    if options.noise_freq and options.noise_probe < 2:
        refuse("noise_probe", ">= 2 (a variance needs two samples)")
    if not 0 <= options.seed < 2**31:
        refuse("seed", "in [0, 2^31)")
    if options.n_epochs + options.n_epochs_decay < 1:
        raise UsageError("--n-epochs + --n-epochs-decay must be at least 1")


def build_configs(options: TrainOptions, device: torch.device) -> tuple[ModelConfig, OptimConfig, OptimConfig]:
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
