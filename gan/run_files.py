"""The one home of a training run's files: what ``latest.pt``, ``epoch_<NNN>.pt`` and ``full_<NNN>.pt`` hold,
how they are written, read back, checked and summarised.

A run folder ``<checkpoints-dir>/<name>/`` holds:

* ``latest.pt`` (:func:`latest_state`): the complete training state: the networks with their configs
  (:data:`NETWORK_KEYS`), both optimizers, both schedulers, the position (epoch, step within it, step), every
  process's random streams, the options, the dataset's fingerprint and whether training finished;
* ``epoch_<NNN>.pt`` (:func:`epoch_state`): the networks with their configs, the options and the position,
  no optimizer state (what evaluation and learning curves read);
* ``full_<NNN>.pt`` (``--keep-full``): a byte copy of ``latest.pt`` at the end of epoch NNN.

Each is one dict of tensors and plain values with a ``format_version``, written atomically with its SHA-256
beside it (:func:`common.checkpoint.save_atomic`) and read with ``weights_only=True``. A bare generator
state_dict (the reference trainer's ``latest_net_G.pth``) is read by :func:`generator_entry` too.
"""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from common.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    describe_names,
    load_checkpoint,
    nonfinite_entries,
    save_atomic,
)
from common.files import write_atomic

NETWORK_KEYS = ("netG_config", "model_config", "netG", "netD")      # pix2pix.Pix2Pix.state_dict()'s networks
OPTIMIZER_KEYS = ("optimizer_G", "optimizer_D")                      # ... and its optimizers
SCHEDULER_KEYS = ("scheduler_G", "scheduler_D")
POSITION_FIELDS = ("epoch", "epoch_step", "step")
LATEST_DICTS = ("options", "netG", "netD", *OPTIMIZER_KEYS, *SCHEDULER_KEYS, "rng", "data_fingerprint")
LATEST = "latest.pt"

# A run's options (options.json, a checkpoint's ``options``) that do not shape its trajectory: how it runs now
# (a resume may change them; not given again, they keep the run's values; --dataroot may name the run's
# dataset in a new place, its content is checked) ...
RUNTIME_OPTIONS = {"device", "num_workers", "log_freq", "image_freq", "save_latest_freq", "save_epoch_freq",
                   "max_steps", "compile", "dataroot", "preset", "noise_freq", "noise_probe", "keep_full",
                   "deterministic"}
# ... and where the run is and what to do with it (always as given now).
LOCATION_OPTIONS = {"name", "checkpoints_dir", "resume", "overwrite", "allow_change"}




def latest_path(run_dir: Path) -> Path:
    return Path(run_dir) / LATEST


def epoch_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / f"epoch_{epoch:03d}.pt"


def full_path(run_dir: Path, epoch: int) -> Path:
    return Path(run_dir) / f"full_{epoch:03d}.pt"


def epoch_files(run_dir: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of a run's ``epoch_<NNN>.pt`` files, in order."""
    found = []
    for path in Path(run_dir).glob("epoch_*.pt"):
        match = re.fullmatch(r"epoch_(\d+)\.pt", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


# ----------------------------------------------------------------------------------------- writing
def latest_state(model_state: dict, *, options: dict, epoch: int, epoch_step: int, step: int, schedulers: tuple,
                 rng_ranks: list, world_size: int, finished: bool, data_fingerprint: dict) -> dict:
    """What ``latest.pt`` holds: ``model_state`` (:meth:`gan.pix2pix.Pix2Pix.state_dict`: networks and
    optimizers), the schedulers' states (G's, D's), the position, every rank's random streams, the options,
    whether training finished and the dataset's fingerprint."""
    scheduler_G, scheduler_D = schedulers
    return {**model_state, "format_version": FORMAT_VERSION, "options": options, "epoch": epoch,
            "epoch_step": epoch_step, "step": step, "scheduler_G": scheduler_G, "scheduler_D": scheduler_D,
            "rng": {"ranks": rng_ranks}, "world_size": world_size, "finished": finished,
            "data_fingerprint": data_fingerprint}


def epoch_state(model_state: dict, *, options: dict, epoch: int, step: int, world_size: int) -> dict:
    """What ``epoch_<NNN>.pt`` holds: the networks of ``model_state`` with their configs, the options and the
    position; no optimizer state."""
    snapshot = {key: model_state[key] for key in NETWORK_KEYS}
    snapshot.update(format_version=FORMAT_VERSION, options=options, epoch=epoch, step=step, world_size=world_size,
                    weights_only=True)
    return snapshot


def write(path: Path, state: dict) -> Path:
    """``state`` to ``path`` atomically, its SHA-256 recorded beside it."""
    return save_atomic(state, path)


def keep_full_copy(latest: Path, path: Path, keep: int) -> None:
    """A copy of ``latest`` as ``path`` (written atomically; a copy, not a link, so that copying another
    file over latest.pt by hand cannot change it); the full_<NNN>.pt beyond the newest ``keep`` are deleted."""
    with open(latest, "rb") as source:
        write_atomic(path, lambda file: shutil.copyfileobj(source, file, 1 << 24))
    for old in sorted(path.parent.glob("full_[0-9]*.pt"))[:-keep]:
        old.unlink()


# ----------------------------------------------------------------------------------------- reading
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_latest(path: Path) -> dict:
    """A complete checkpoint (``latest.pt``, or a ``full_<NNN>.pt`` copied over it), its structure checked.

    Refused with one line naming the file and the field (CheckpointError): a SHA-256 other than the one
    recorded at its save (unless it is a byte copy of one of the run's own epoch or full files); not a
    checkpoint of this project; an epoch file (weights only); a missing field or one of the wrong type.
    What its options and tensors must be is the resume's check (:mod:`training.resume`).
    """
    path = Path(path)
    checkpoint = load_checkpoint(path, require_format=True)  # its SHA-256 checked against the record beside it
    if "optimizer_G" not in checkpoint and "netG" in checkpoint:
        raise CheckpointError(f"{path}: holds weights only (an epoch snapshot); --resume needs a complete checkpoint: "
                              f"a latest.pt or a full_<NNN>.pt of --keep-full")
    for key in POSITION_FIELDS:
        if key not in checkpoint:
            refuse(path, key, "missing")
        if not (_is_int(checkpoint[key]) and checkpoint[key] >= 0):
            refuse(path, key, f"expected an integer >= 0, found {checkpoint[key]!r}")
    if not (_is_int(checkpoint.get("world_size")) and checkpoint["world_size"] >= 1):
        refuse(path, "world_size", f"expected an integer >= 1, found {checkpoint.get('world_size')!r}")
    if not isinstance(checkpoint.get("finished"), bool):
        refuse(path, "finished", f"expected true or false, found {checkpoint.get('finished')!r}")
    for key in LATEST_DICTS:
        if not isinstance(checkpoint.get(key), dict):
            refuse(path, key, "missing" if key not in checkpoint else
                   f"expected a dict, found {type(checkpoint[key]).__name__}")
    ranks = checkpoint["rng"].get("ranks")
    if not (isinstance(ranks, list) and len(ranks) == checkpoint["world_size"]):
        refuse(path, "rng.ranks", f"expected one random state per process ({checkpoint['world_size']})")
    fingerprint = checkpoint["data_fingerprint"]
    for key, kind in (("train_frames", int), ("val_frames", int), ("digest", str)):
        if not isinstance(fingerprint.get(key), kind):
            refuse(path, f"data_fingerprint.{key}", f"expected {kind.__name__}, found {fingerprint.get(key)!r}")
    return checkpoint


def refuse(path: Path, field: str, problem: str):
    """Raise the one-line CheckpointError of a complete checkpoint that cannot be continued from."""
    raise CheckpointError(f"{path}: {field}: {problem}; not a checkpoint this run can continue from")


def check_finite(checkpoint: dict, path: Path) -> None:
    """Refuse (CheckpointError) a checkpoint whose weights, buffers or optimizer states hold a NaN or an
    infinity: a diverged state is never resumed (nor, by train.py, saved)."""
    bad = nonfinite_entries({key: checkpoint[key] for key in ("netG", "netD", *OPTIMIZER_KEYS)})
    if bad:
        refuse(path, describe_names(bad), "holds NaN or infinite values (a diverged state is never resumed)")


@dataclass(frozen=True)
class RunFileSummary:
    """What a run file says of itself, read without loading its tensors (:func:`summarize`)."""

    ours: bool                  # one of this project's files (else a bare state_dict)
    generator: str | None       # its generator's architecture (netG_config's name), if it says
    finished: bool | None       # latest.pt: whether training finished
    epoch: int | None
    step: int | None


def summarize(path: Path) -> RunFileSummary:
    """The :class:`RunFileSummary` of a run file (memory-mapped: its tensors are not read). CheckpointError
    when it cannot be read."""
    obj = load_checkpoint(path, mmap=True)
    if "format_version" not in obj:
        return RunFileSummary(False, None, None, None, None)
    config = obj.get("netG_config")
    name = config.get("name") if isinstance(config, dict) else None
    return RunFileSummary(True, str(name) if name is not None else None, obj.get("finished"), obj.get("epoch"),
                          obj.get("step"))


def is_finished(latest: Path) -> bool:
    """Whether ``latest`` exists and is the checkpoint of a finished run."""
    return Path(latest).is_file() and bool(summarize(latest).finished)


def generator_entry(path: Path) -> tuple[dict | None, dict]:
    """(the generator's config, its state_dict) of one of our checkpoints, or (None, the state_dict) of a bare
    generator state_dict such as the reference trainer's ``latest_net_G.pth``. CheckpointError naming the file
    when it cannot be read, is of a newer format or holds no generator."""
    obj = load_checkpoint(path)
    if "format_version" not in obj:  # a bare state_dict
        return None, obj
    if obj["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {obj['format_version']} is newer than this code "
                              f"understands ({FORMAT_VERSION})")
    if "netG" not in obj or "netG_config" not in obj:
        raise CheckpointError(f"{path}: checkpoint holds no generator (netG and netG_config expected)")
    return dict(obj["netG_config"]), obj["netG"]
