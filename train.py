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
import math
import os
import random
import shlex
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torchvision

from common.checkpoint import FORMAT_VERSION, describe_names, load_checkpoint, nonfinite_entries, save_atomic
from common.command_line import InputError, run_main
from common.device import check_device_name, resolve_device
from common.files import write_json
from common.interrupts import StopSignals, Stopped, ignore_stop_signals, signal_name
from common.progress import progress
from common.run_folder import RunFolder
from data.aligned import AlignedDataset, dataset_fingerprint
from data.sampling import EpochSampler, SeededSamples
from gan import rng
from gan.amp import amp_dtype
from gan.amp import autocast as mixed_precision
from gan.distributed import any_rank, gather, local_copy, nonfinite_ranks, wrap_ddp
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
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper",
                   help="configuration to start from; explicit options override it (demo: unet_64, ngf/ndf 32, "
                        "64 px crops of 72, 10 + 10 epochs, no loader workers: a few minutes on 2 CPU cores)")
    g = p.add_argument_group("data")
    g.add_argument("--dataroot", default=None,
                   help="pix2pix-layout folder (<root>/train/*.jpg, <root>/val/*.jpg); none: the built-in "
                        "synthetic city, generated once into ./datasets")
    g.add_argument("--direction", choices=["AtoB", "BtoA"], default="BtoA",
                   help="BtoA: colour labels (right half) -> photo (left half), i.e. labels->photo on Cityscapes")
    g.add_argument("--load-size", type=int, default=286, help="resize both halves to this size (bicubic)")
    g.add_argument("--crop-size", type=int, default=256, help="then take the same random crop of this size")
    g.add_argument("--no-flip", action="store_true", help="no random horizontal flip")
    g.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes")
    g = p.add_argument_group("model")
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
    g = p.add_argument_group("optimization")
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
    g = p.add_argument_group("hardware")
    g.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    g.add_argument("--amp", action="store_true", help="bf16 autocast of G and D (on CUDA; on the CPU too, where it "
                                                      "pays only with AVX512-BF16/AMX)")
    g.add_argument("--channels-last", action="store_true", help="channels_last memory format for G, D and images")
    g.add_argument("--compile", action="store_true", help="torch.compile G and D (first steps are slow)")
    g = p.add_argument_group("run folder and logging")
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


def set_initial_lr(scheduler: torch.optim.lr_scheduler.LambdaLR, lr: float) -> None:
    """Continue with ``lr`` as the initial learning rate of the scheduler's optimizer (--allow-change lr):
    the schedule's factor at the current epoch is kept, TR's lr0 becomes ``lr``."""
    scheduler.base_lrs = [lr] * len(scheduler.base_lrs)
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group in scheduler.optimizer.param_groups:
        group["initial_lr"], group["lr"] = lr, lr * factor
        if "tr_lr0" in group:
            group["tr_lr0"] = lr
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def resume_command(args: argparse.Namespace, extra: str = "", saved: dict | None = None) -> str:
    """The command line that continues this run: its options are in the checkpoint, except runtime options
    that differ from ``saved`` (the checkpoint's options, when it was written before this session)."""
    where = "" if args.checkpoints_dir == "checkpoints" else f" --checkpoints-dir {shlex.quote(args.checkpoints_dir)}"
    for key in sorted(RUNTIME_OPTIONS - {"preset"} if saved else ()):
        value = getattr(args, key)
        if saved.get(key) != value and value is not False:
            where += f" {flag(key)}" + ("" if value is True else f" {shlex.quote(str(value))}")
    return f"python train.py --name {shlex.quote(args.name)}{where} --resume{extra}"


def build_configs(args, device: torch.device) -> tuple[ModelConfig, OptimConfig, OptimConfig]:
    model = ModelConfig(netG=args.netG, netD=args.netD, ngf=args.ngf, ndf=args.ndf, n_layers_D=args.n_layers_D,
                        norm=args.norm, use_dropout=not args.no_dropout, gan_mode=args.gan_mode,
                        lambda_l1=args.lambda_l1)
    common = dict(lr=args.lr, beta1=args.beta1, beta2=args.beta2, momentum=args.momentum, prox=args.prox,
                  inner_steps=args.inner_steps, prox_mode=args.prox_mode, inner_decay=not args.no_inner_decay)

    def optim_config(name: str) -> OptimConfig:
        # torch's fused Adam/SGD CPU kernels assume a parameter and its gradient share one memory layout,
        # which channels_last does not guarantee (TRAdam/TRSGD check the layout themselves; the CUDA
        # kernels check it too).
        fused = False if args.channels_last and name in ("adam", "sgd") and device.type == "cpu" else None
        return OptimConfig(name=name, fused=fused, **common)

    return model, optim_config(args.optim), optim_config(args.optim_d)


def restore_rng(saved: dict, rank: int, device: torch.device) -> None:
    """This rank's generators as saved (checkpoints before per-rank states hold one state for all)."""
    states = saved.get("ranks", [saved])
    rng.restore(states[rank] if rank < len(states) else states[0], device)


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
                model = run_training(args, run, signals, open_files)
        except BaseException:
            note = run.close(failed=True)
            if note:
                print(note, flush=True)
            raise
        run.close(failed=False)
    return model


def run_training(args: argparse.Namespace, run: RunFolder, signals: StopSignals,
                 open_files: contextlib.ExitStack) -> Pix2Pix:
    rank, world_size, local_rank = setup_distributed(args.device)
    run_dir = run.path
    if rank == 0:
        run.claim(args.resume, args.overwrite)
    checkpoint = load_checkpoint(run_dir / "latest.pt", require_format=True) if args.resume else None
    if checkpoint is not None:
        saved_options = checkpoint["options"]
        args = resume_options(args, saved_options, run_dir)
        if checkpoint.get("world_size", 1) != world_size:
            raise UsageError(f"{run_dir / 'latest.pt'}: saved with {checkpoint.get('world_size', 1)} processes, "
                             f"resumed with {world_size}; the data order would change")
        if "dataroot" not in getattr(args, "given_options", ()) and not Path(args.dataroot).is_dir():
            raise UsageError(f"{run_dir}: the run's dataset {args.dataroot} is not there; if it moved, give its "
                             f"new place with --dataroot")
    device = resolve_device(args.device, local_rank)
    if args.dataroot is None:
        from data.synthetic import default_dataset
        args.dataroot = str(default_dataset(verbose=rank == 0))
    args.dataroot = str(Path(args.dataroot).resolve())

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.amp and rank == 0 and (device.type == "cpu" or amp_dtype(device) is None):
        print("--amp: bf16 autocast on the CPU (fast only on CPUs with AVX512-BF16 or AMX)" if device.type == "cpu"
              else f"--amp: {device} has no native bf16; training in fp32", flush=True)
    autocast = (lambda: mixed_precision(device)) if args.amp else None
    if args.norm == "syncbatch" and (world_size == 1 or device.type != "cuda"):
        if rank == 0:
            print("--norm syncbatch: needs torchrun on CUDA; using batch norm (same weights layout)", flush=True)
        args.norm = "batch"

    dataset = AlignedDataset(args.dataroot, "train", direction=args.direction, load_size=args.load_size,
                             crop_size=args.crop_size, flip=not args.no_flip, train=True)
    val_dataset = AlignedDataset(args.dataroot, "val", direction=args.direction, crop_size=args.crop_size,
                                 train=False)
    fingerprint = dataset_fingerprint(args.dataroot)
    if checkpoint is not None:
        check_same_dataset(args.dataroot, fingerprint, checkpoint.get("data_fingerprint"), saved_options["dataroot"])
    sampler = EpochSampler(len(dataset), seed=args.seed, rank=rank, world_size=world_size)
    loader = torch.utils.data.DataLoader(
        SeededSamples(dataset), batch_size=args.batch_size, sampler=sampler, num_workers=args.num_workers,
        pin_memory=device.type == "cuda", persistent_workers=False, drop_last=False,
        generator=torch.Generator(),  # its own generator: creating an iterator must not consume global RNG
        worker_init_fn=ignore_stop_signals)  # Ctrl-C reaches the workers too; the main process stops them
    steps_per_epoch = math.ceil(sampler.per_rank() / args.batch_size)
    total_epochs = args.n_epochs + args.n_epochs_decay

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    model_config, optim_G, optim_D = build_configs(args, device)
    model = Pix2Pix(model_config, optim_G, optim_D, device=device)
    schedule = lambda epoch: lr_factor(epoch, args.n_epochs, args.n_epochs_decay)  # noqa: E731
    scheduler_G = torch.optim.lr_scheduler.LambdaLR(model.optimizer_G, schedule)
    scheduler_D = torch.optim.lr_scheduler.LambdaLR(model.optimizer_D, schedule)

    epoch, epoch_step, step = 0, 0, 0
    if checkpoint is not None:
        model.load_state(checkpoint)
        scheduler_G.load_state_dict(checkpoint["scheduler_G"])
        scheduler_D.load_state_dict(checkpoint["scheduler_D"])
        epoch, epoch_step, step = checkpoint["epoch"], checkpoint["epoch_step"], checkpoint["step"]
        if args.lr != saved_options["lr"]:  # --allow-change lr
            for scheduler in (scheduler_G, scheduler_D):
                set_initial_lr(scheduler, args.lr)
            args.lr_changes = list(saved_options.get("lr_changes", [])) + [[step, saved_options["lr"], args.lr]]
            if rank == 0:
                print(f"--lr: continuing from step {step} with initial lr {args.lr:g} instead of "
                      f"{saved_options['lr']:g}", flush=True)
        if checkpoint.get("finished"):
            if rank == 0:
                print(f"{run_dir}: training already finished ({step} steps); nothing to do", flush=True)
            return model
    else:
        torch.manual_seed(args.seed + 1000 * rank)  # different dropout masks per process

    G, D = model.netG, model.netD
    if args.channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    if world_size > 1:
        if args.norm == "syncbatch":
            G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(G)
            D = torch.nn.SyncBatchNorm.convert_sync_batchnorm(D)
        G = wrap_ddp(G, device)
        # D runs twice (fake, real) before its backward: broadcasting its buffers before the second
        # forward modifies batch-norm statistics the first one saved (an autograd error on torch >= 2.6
        # before the upstream fix). D trains in training mode only, where they are not used; they are
        # broadcast when training ends.
        D = wrap_ddp(D, device, sync_buffers_each_forward=False)
    if args.compile:
        G, D = torch.compile(G), torch.compile(D)
    model.wrap(G, D)

    options = {k: v for k, v in vars(args).items() if k != "given_options"}
    latest = run_dir / "latest.pt"
    latest_step = step if checkpoint is not None else None  # the step latest.pt holds, if it exists
    latest_options = saved_options if checkpoint is not None else None  # its options, if written before now
    resumed_lr = saved_options["lr"] if checkpoint is not None else args.lr
    writer = None
    if rank == 0:
        n_frames = min(args.num_image_frames, len(val_dataset))
        items = [val_dataset[i] for i in range(n_frames)]
        frames = {key: torch.stack([it[key] for it in items]).to(device) for key in ("input", "target")}
        if args.noise_freq:
            probe_set = AlignedDataset(args.dataroot, "train", direction=args.direction, crop_size=args.crop_size,
                                       train=False)
            probe = [(it["input"][None].to(device), it["target"][None].to(device))
                     for it in (probe_set[i] for i in range(min(args.noise_probe, len(probe_set))))]
        if signals.requested:
            raise Stopped(f"interrupted by {signal_name(signals.requested)} before training started; nothing was "
                          f"saved", signals.requested)
        run.start()  # options, data, model and device are fine: the run takes its folder
        (run_dir / "samples").mkdir(exist_ok=True)
        write_json(run_dir / "options.json", options, sort_keys=True)
        from torch.utils.tensorboard import SummaryWriter
        writer = open_files.enter_context(SummaryWriter(str(run_dir / "events"), purge_step=step if step else None))
        if step == 0:
            writer.add_text("options", options_markdown(options), 0)
    signals.safe_note = f"the last checkpoint is {latest} (step {step})" if checkpoint else "no checkpoint was written"
    if checkpoint is not None:
        restore_rng(checkpoint["rng"], rank, device)
        del checkpoint

    def save(path: Path, finished: bool = False) -> None:
        """Write a checkpoint, after checking that the losses and the whole state are finite."""
        nonlocal latest_step, latest_options
        check_finite(last_losses)
        state = model.state()
        bad = nonfinite_entries(state)  # weights, batch-norm buffers, optimizer moments: one sync
        if any_rank(bool(bad), device):  # every rank stops, or none
            raise diverged(f"non-finite values in {describe_names(bad) if bad else 'the state of another rank'}")
        rng_states = gather(rng.capture(device))  # every rank's own generators
        if rank != 0:  # rank 0 writes; every rank knows what is on disk, for the same divergence message
            if path == latest:
                latest_step, latest_options = step, None
            return
        state.update(format_version=FORMAT_VERSION, options=options, epoch=epoch, epoch_step=epoch_step, step=step,
                     scheduler_G=scheduler_G.state_dict(), scheduler_D=scheduler_D.state_dict(),
                     rng={"ranks": rng_states}, world_size=world_size, finished=finished, data_fingerprint=fingerprint)
        with signals.saving(path):
            save_atomic(state, path)
        if path == latest:
            latest_step, latest_options = step, None
            signals.safe_note = f"the last checkpoint is {latest} (step {step})"
        if not run.committed and run.commit() is not None:
            print(f"--overwrite: deleted the previous run at {run_dir}", flush=True)

    def check_finite(losses: dict) -> None:
        """All ranks stop together, with the same message, when any rank's loss is not finite."""
        bad = nonfinite_ranks(losses)
        if bad:
            ranks = sorted({r for ranks_of_loss in bad.values() for r in ranks_of_loss})
            where = f" on rank {', '.join(map(str, ranks))}" if world_size > 1 else ""
            raise diverged(f"non-finite loss {', '.join(bad)}{where}")

    def diverged(what: str) -> FloatingPointError:
        """The one-line report of a divergence; its advice names only a checkpoint that exists."""
        lower = min(args.lr, resumed_lr) / 10  # below any lr this run has used
        if latest_step is None:
            advice = f"no checkpoint was written; start again with a lower --lr (e.g. --lr {lower:g})"
        else:
            command = resume_command(args, f" --lr {lower:g} --allow-change lr", latest_options)
            advice = (f"the last good checkpoint is {latest} (step {latest_step}); continue from it with a lower "
                      f"learning rate: {command}")
        return FloatingPointError(f"{run_dir}: training diverged at step {step} ({what}); {advice}")

    def write_samples() -> None:
        grid = sample_grid(model.netG, frames, args.seed)
        writer.add_image("label | generated | real", grid, step)
        torchvision.utils.save_image(grid, run_dir / "samples" / f"step_{step:07d}.png")

    total_steps = total_epochs * steps_per_epoch
    if args.max_steps:
        total_steps = min(total_steps, args.max_steps)
    bar = progress(total=total_steps, initial=step, desc=args.name, unit="step") if rank == 0 else None
    last_losses = {}  # checked at log and save steps only (no device sync per step)
    stop = step >= total_steps
    if stop and epoch < total_epochs and rank == 0:
        print(f"{run_dir}: at step {step}, its --max-steps {args.max_steps}; give a larger one (0: no limit) to "
              f"continue", flush=True)
    def stop_requested() -> bool:
        """A signal reached this process or, under torchrun, any rank: every rank stops after the same step."""
        requested = signals.requested is not None
        return any_rank(requested, device) if world_size > 1 else requested

    interrupted = False
    while epoch < total_epochs and not stop and not (interrupted := stop_requested()):
        sampler.set_epoch(epoch, start=epoch_step * args.batch_size)
        tick = time.perf_counter()
        for batch in loader:
            real_a = batch["input"].to(device, non_blocking=True)
            real_b = batch["target"].to(device, non_blocking=True)
            if args.channels_last:
                real_a = real_a.contiguous(memory_format=torch.channels_last)
                real_b = real_b.contiguous(memory_format=torch.channels_last)
            losses = model.training_step(real_a, real_b, autocast=autocast)
            step += 1
            epoch_step += 1
            last_losses = losses
            if rank == 0:
                bar.update(1)
            if step % args.log_freq == 0:
                check_finite(last_losses)
            if rank == 0 and step % args.log_freq == 0:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                now = time.perf_counter()
                scalars = {k: float(v) for k, v in losses.items()}
                scalars.update(lr=model.optimizer_G.param_groups[0]["lr"], grad_norm_G=grad_norm(model.netG),
                               grad_norm_D=grad_norm(model.netD), step_time=(now - tick) / args.log_freq)
                for name, opt in (("G", model.optimizer_G), ("D", model.optimizer_D)):
                    distance = distance_to_anchor(opt)
                    if distance is not None:
                        scalars[f"anchor_distance_{name}"] = distance
                for key, value in scalars.items():
                    writer.add_scalar(key, value, step)
                bar.set_postfix({k: scalars[k] for k in ("G_GAN", "G_L1", "D_real", "D_fake")})
                tick = now
            if rank == 0 and step % args.image_freq == 0:
                write_samples()
            if rank == 0 and args.noise_freq and step % args.noise_freq == 0:
                for key, value in probe_generator_noise(model, probe, args.seed).items():
                    writer.add_scalar(f"noise/{key}", value, step)
            if step % args.save_latest_freq == 0:
                save(run_dir / "latest.pt")
            interrupted = stop_requested()
            if step >= total_steps or interrupted:  # a signal: stop after this step
                stop = True
                break
        if not stop or epoch_step >= steps_per_epoch:  # the epoch is complete
            epoch += 1
            epoch_step = 0
            scheduler_G.step()
            scheduler_D.step()
            if epoch % args.save_epoch_freq == 0 or epoch == total_epochs:
                save(run_dir / f"epoch_{epoch:03d}.pt")
        save(run_dir / "latest.pt", finished=epoch >= total_epochs)
    if interrupted and step < total_steps:
        if latest_step != step:
            save(latest)
        if rank == 0:
            bar.close()
            writer.close()
        number = signals.requested or signal.SIGTERM  # under torchrun: another rank's signal
        raise Stopped(f"interrupted by {signal_name(number)} at step {step}: {latest} holds it; "
                      f"continue with {resume_command(args)}", number)
    if rank == 0:
        bar.close()
        write_samples()
        writer.close()
        print(f"trained {args.name} for {step} steps ({epoch} epochs); checkpoints, TensorBoard events and samples "
              f"in {run_dir}", flush=True)
    if world_size > 1:  # batch-norm statistics as on rank 0 (the saved ones) on every rank
        for buffer in list(model.netG.buffers()) + list(model.netD.buffers()):
            dist.broadcast(buffer, src=0)
        dist.barrier()
        dist.destroy_process_group()
    return model


def main(argv=None) -> int:
    args = parse_args(argv)

    def work() -> None:
        validate(args)
        train(args)
    return run_main(work)


if __name__ == "__main__":
    sys.exit(main())
