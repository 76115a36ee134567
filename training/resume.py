"""A resumed run's options, and the command lines that continue a run.

A resumed run keeps its own options: those that shape its trajectory (model, optimizer, data, seed) come
from its checkpoint, and giving a different value is refused unless it is named in ``--allow-change``.
What only says how to run it now (RUNTIME_OPTIONS) or where it lives (LOCATION_OPTIONS) is taken as given.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import torch

from common.command_line import flag
from gan import run_files
from gan.run_files import LOCATION_OPTIONS, RUNTIME_OPTIONS
from gan.networks import build_discriminator, build_generator
from gan.optimizers import optimizer_of_state
from gan.pix2pix import ModelConfig
from training.options import TrainOptions, UsageError, build_parser, check_ranges


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

def resume_options(args: TrainOptions, saved: dict, run_dir: Path, step: int) -> TrainOptions:
    """The options of a resumed run: the saved ones, with the runtime options given now and the run's place.

    A given option that would change the trajectory and differs from the run's is refused, unless named in
    --allow-change; a new --lr is recorded in ``lr_changes`` as [step, old lr, new lr].
    """
    given, current = args.given, args.record()
    differ = [k for k in sorted(given - RUNTIME_OPTIONS - LOCATION_OPTIONS) if k in saved and current[k] != saved[k]]
    refused = [k for k in differ if k not in args.allow_change]
    if refused:
        listed = ", ".join(f"{flag(k)} {current[k]} (the run has {saved[k]})" for k in refused)
        hint = "; a new --lr is taken with --allow-change lr" if "lr" in refused else ""
        raise UsageError(f"{run_dir}: --resume with options that change the run's trajectory: {listed}{hint}; "
                         f"drop them to continue the run, or start another (--name, --overwrite)")
    merged = dict(saved)
    merged.update({k: v for k, v in current.items() if k in given or k in LOCATION_OPTIONS or k not in saved})
    if merged["lr"] != saved["lr"]:
        merged["lr_changes"] = list(saved.get("lr_changes", [])) + [[step, saved["lr"], merged["lr"]]]
    if "dataroot" not in given and not Path(merged["dataroot"]).is_dir():
        raise UsageError(f"{run_dir}: the run's dataset {merged['dataroot']} is not there; if it moved, give its new "
                         f"place with --dataroot")
    return TrainOptions.from_values(merged, given)


def resume_command(options: TrainOptions, extra: str = "", saved: dict | None = None) -> str:
    """The command line that continues this run: its options are in the checkpoint, except runtime options
    that differ from ``saved`` (the checkpoint's options, when it was written before this process ran)."""
    folder = options.checkpoints_dir
    where = "" if folder == "checkpoints" else f" --checkpoints-dir {shlex.quote(folder)}"
    for key in sorted(RUNTIME_OPTIONS - {"preset"} if saved else ()):
        value = getattr(options, key)
        if saved.get(key) != value and value is not False:
            where += f" {flag(key)}" + ("" if value is True else f" {shlex.quote(str(value))}")
    return f"python train.py --name {shlex.quote(options.name)}{where} --resume{extra}"


def divergence_advice(options: TrainOptions, run_dir: Path, first_lr: float, latest_step: int | None,
                      latest_options: dict | None) -> str:
    """What to do after a divergence: a lower lr, from the last checkpoint if there is one (``first_lr``: the
    initial lr the run had before this process; ``latest_options``: latest.pt's options if it is older)."""
    lower = min(options.lr, first_lr) / 10  # below any lr this run has used
    if latest_step is None:
        return f"no checkpoint was written; start again with a lower --lr (e.g. --lr {lower:g})"
    command = resume_command(options, f" --lr {lower:g} --allow-change lr", latest_options)
    return (f"the last good checkpoint is {run_dir / 'latest.pt'} (step {latest_step}); continue from it with a "
            f"lower learning rate: {command}")


# ----------------------------------------------------------------------------------------- the checkpoint
# The options a checkpoint must have: those that build its networks, optimizers and data (later options may
# be missing from older checkpoints; the run then takes their value as given now).
REQUIRED_OPTIONS = ("dataroot", "direction", "load_size", "crop_size", "no_flip", "netG", "netD", "n_layers_D", "ngf",
                    "ndf", "norm", "no_dropout", "gan_mode", "lambda_l1", "optim", "optim_d", "lr", "beta1", "beta2",
                    "momentum", "prox", "inner_steps", "prox_mode", "no_inner_decay", "batch_size", "n_epochs",
                    "n_epochs_decay", "seed", "name", "checkpoints_dir")


def load_resume_checkpoint(path: Path) -> dict:
    """The checkpoint a run resumes from, read (:func:`gan.run_files.read_latest`: its SHA-256 and structure)
    and validated before any work.

    Refused with one line naming the file and the field (CheckpointError, exit status 2), beyond what
    read_latest refuses: options missing, of the wrong type or out of their ranges; network tensors that do
    not match the networks its options describe (e.g. ``ngf``); optimizer state of another optimizer than
    its ``--optim`` / ``--optim-d`` or of other shapes; a NaN or an infinity in a weight, buffer or optimizer
    state.
    """
    path = Path(path)
    checkpoint = run_files.read_latest(path)
    options = _checked_options(checkpoint["options"], lambda field, problem: run_files.refuse(path, field, problem))
    nets = _networks_of(options, lambda field, problem: run_files.refuse(path, field, problem))
    for key, net in nets.items():
        _check_tensors(path, key, checkpoint[key], net.state_dict(), options)
    for key, net_key in (("optimizer_G", "netG"), ("optimizer_D", "netD")):
        kind = options.optim if key == "optimizer_G" else options.optim_d or options.optim
        _check_optimizer_state(path, key, checkpoint[key], list(nets[net_key].parameters()), kind)
    run_files.check_finite(checkpoint, path)
    return checkpoint


def _checked_options(saved: dict, refuse) -> TrainOptions:
    """The checkpoint's options with every type and range checked against train.py's parser."""
    parser = build_parser()
    actions = {action.dest: action for action in parser._actions if action.dest != "help"}
    for key in REQUIRED_OPTIONS:
        if key not in saved:
            refuse(f"options.{key}", "missing")
    for key, value in saved.items():
        action = actions.get(key)
        if action is None:
            continue
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            ok = isinstance(value, bool)
        elif action.nargs in ("+", "*"):
            ok = isinstance(value, list)
        elif action.type is int:
            ok = _is_int(value)
        elif action.type is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str) or (value is None and action.default is None)
        if ok and action.choices is not None and action.nargs not in ("+", "*") and value is not None:
            ok = value in action.choices
        if not ok:
            refuse(f"options.{key}", f"{value!r} is not a value of {flag(key)}")
    options = TrainOptions.from_values({**vars(parser.parse_args([])), **saved})
    try:
        check_ranges(options)
    except UsageError as error:
        refuse("options", str(error))
    return options


def _shapes_only_mode():
    """A TorchFunctionMode under which the in-place initialisers do nothing (for networks built on the meta
    device only to read their shapes: torch's meta kernels for random fills import its compiler, seconds)."""
    from torch.overrides import TorchFunctionMode

    class ShapesOnly(TorchFunctionMode):
        SKIPPED = {"normal_", "uniform_", "fill_", "zero_", "zeros_", "ones_", "constant_", "kaiming_uniform_",
                   "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "trunc_normal_"}

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if getattr(func, "__name__", None) in self.SKIPPED:
                return args[0] if args else kwargs.get("tensor")
            return func(*args, **kwargs)
    return ShapesOnly()


def _networks_of(options, refuse) -> dict:
    """netG and netD as ``options`` describe them, built on the meta device (no memory, no initialisation)."""
    config = ModelConfig(netG=options.netG, netD=options.netD, ngf=options.ngf, ndf=options.ndf,
                         n_layers_D=options.n_layers_D, norm=options.norm, use_dropout=not options.no_dropout)
    try:
        with torch.device("meta"), _shapes_only_mode():
            return {"netG": build_generator(**config.generator_config()),
                    "netD": build_discriminator(config.netD, input_nc=config.input_nc + config.output_nc,
                                                ndf=config.ndf, n_layers=config.n_layers_D, norm=config.norm)}
    except ValueError as error:
        refuse("options", str(error))


def _check_tensors(path: Path, key: str, saved: dict, expected: dict, options) -> None:
    """The tensors ``saved`` of network ``key`` have the names and shapes of ``expected``."""
    missing = [name for name in expected if name not in saved]
    extra = [name for name in saved if name not in expected]
    if missing or extra:
        run_files.refuse(path, key, f"tensors {'missing' if missing else 'not in'} the network its options describe "
                                    f"(--netG {options.netG}, --ngf {options.ngf}, --ndf {options.ndf}): "
                                    f"{(missing or extra)[0]}")
    for name, tensor in expected.items():
        value = saved[name]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(tensor.shape):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            run_files.refuse(path, f"{key}.{name}", f"shape {shape}, but its options (--ngf {options.ngf}, --ndf "
                                                    f"{options.ndf}, --netG {options.netG}) give {tuple(tensor.shape)}")


def _check_optimizer_state(path: Path, key: str, saved: dict, params: list, kind: str) -> None:
    """``saved`` is the state of optimizer ``kind`` (:mod:`gan.optimizers`) over ``params``, of their shapes."""
    state, groups = saved.get("state"), saved.get("param_groups")
    if not (isinstance(state, dict) and isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict)):
        run_files.refuse(path, key, "expected an optimizer state_dict (state and one param group)")
    found = optimizer_of_state(groups[0])
    if found != kind:
        option = "--optim" if key == "optimizer_G" else "--optim-d"
        run_files.refuse(path, key, f"state of {found or 'an unknown optimizer'}, but the run's {option} is {kind}")
    if list(groups[0].get("params", [])) != list(range(len(params))):
        run_files.refuse(path, f"{key}.param_groups", f"expected the {len(params)} parameters of its network")
    for index, values in state.items():
        if not (_is_int(index) and 0 <= index < len(params) and isinstance(values, dict)):
            run_files.refuse(path, f"{key}.state", f"entry {index!r} is not one of the {len(params)} parameters")
        for name, value in values.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != params[index].shape:
                run_files.refuse(path, f"{key}.state.{index}.{name}", f"shape {tuple(value.shape)}, its parameter's "
                                                                      f"is {tuple(params[index].shape)}")
