"""A resumed run's options, and the command lines that continue a run.

A resumed run keeps its own options: those that shape its trajectory (model, optimizer, data, seed) come
from its checkpoint, and giving a different value is refused unless it is named in ``--allow-change``.
What only says how to run it now (RUNTIME_OPTIONS) or where it lives (LOCATION_OPTIONS) is taken as given.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from common.command_line import flag
from gan.train_options import UsageError

# Options that may change when a run is resumed (they do not change its trajectory); not given again, they
# keep the run's values. --dataroot may name the run's dataset in a new place (its content is checked).
RUNTIME_OPTIONS = {"device", "num_workers", "log_freq", "image_freq", "save_latest_freq", "save_epoch_freq",
                   "max_steps", "compile", "dataroot", "preset", "noise_freq", "noise_probe", "keep_full",
                   "deterministic"}
# Where the run is and what to do with it: always as given now.
LOCATION_OPTIONS = {"name", "checkpoints_dir", "resume", "overwrite", "allow_change"}


def resume_options(args: argparse.Namespace, saved: dict, run_dir: Path, step: int) -> argparse.Namespace:
    """The options of a resumed run: the saved ones, with the runtime options given now and the run's place.

    A given option that would change the trajectory and differs from the run's is refused, unless named in
    --allow-change; a new --lr is recorded in ``lr_changes`` as [step, old lr, new lr].
    """
    given, current = args.given_options, vars(args)
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
    return argparse.Namespace(**merged)


def resume_command(options: argparse.Namespace, extra: str = "", saved: dict | None = None) -> str:
    """The command line that continues this run: its options are in the checkpoint, except runtime options
    that differ from ``saved`` (the checkpoint's options, when it was written before this process ran)."""
    folder = options.checkpoints_dir
    where = "" if folder == "checkpoints" else f" --checkpoints-dir {shlex.quote(folder)}"
    for key in sorted(RUNTIME_OPTIONS - {"preset"} if saved else ()):
        value = getattr(options, key)
        if saved.get(key) != value and value is not False:
            where += f" {flag(key)}" + ("" if value is True else f" {shlex.quote(str(value))}")
    return f"python train.py --name {shlex.quote(options.name)}{where} --resume{extra}"


def divergence_advice(options: argparse.Namespace, run_dir: Path, first_lr: float, latest_step: int | None,
                      latest_options: dict | None) -> str:
    """What to do after a divergence: a lower lr, from the last checkpoint if there is one (``first_lr``: the
    initial lr the run had before this process; ``latest_options``: latest.pt's options if it is older)."""
    lower = min(options.lr, first_lr) / 10  # below any lr this run has used
    if latest_step is None:
        return f"no checkpoint was written; start again with a lower --lr (e.g. --lr {lower:g})"
    command = resume_command(options, f" --lr {lower:g} --allow-change lr", latest_options)
    return (f"the last good checkpoint is {run_dir / 'latest.pt'} (step {latest_step}); continue from it with a "
            f"lower learning rate: {command}")
