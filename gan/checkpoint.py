"""Checkpoint files: atomic writes and safe loads.

A checkpoint is one dict of tensors and plain Python values carrying a ``format_version``. It is
written to a temporary file in the destination folder, flushed to disk and renamed over the old
file, so a crash mid-write leaves the previous checkpoint intact. It is read back with
``torch.load(..., weights_only=True)``: a checkpoint is data, never code.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable or of the wrong kind (message names the file)."""


def save_atomic(obj: dict, path: str | os.PathLike) -> Path:
    """Write ``obj`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer that was killed
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu", require_format: bool = False) -> dict:
    """Load a checkpoint written by :func:`save_atomic` (or any plain state_dict) with weights_only=True.

    Raises :class:`CheckpointError` naming the file when it is missing, truncated, not a torch file,
    or (with ``require_format``) not one of this project's checkpoints or of a newer format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, pickle with code, not a torch file, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: cannot be read as a checkpoint ({reason})") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict, found {type(obj).__name__}")
    if require_format:
        version = obj.get("format_version")
        if version is None:
            raise CheckpointError(f"{path}: not a checkpoint of this project (no format_version)")
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"{path}: checkpoint format {version} is newer than this code understands ({FORMAT_VERSION})"
            )
    return obj
