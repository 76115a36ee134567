"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every writer here goes through :func:`write_atomic`: the content is written to a hidden temporary file
in the destination's folder, flushed to disk, then renamed over the destination (one ``rename``, which
POSIX makes atomic); a failed or interrupted write removes its temporary file and leaves the old one.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(file)`` on a temporary binary file and rename it to ``path`` (folders made as needed).

    Temporary files that a killed writer left (``.<name>.*.tmp``) are removed first. Errors propagate
    (``OSError`` for a folder that cannot be written, ...) with ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    _sync_folder(path.parent)
    return path


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def write_text(path: str | os.PathLike, text: str) -> Path:
    return write_atomic(path, lambda file: file.write(text.encode("utf-8")))


def json_ready(value):
    """``value`` with NaN as None (JSON has no NaN), paths as strings and keys as strings, recursively."""
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | os.PathLike, value, sort_keys: bool = False) -> Path:
    """``value`` (through :func:`json_ready`) as indented JSON with a final newline."""
    return write_text(path, json.dumps(json_ready(value), indent=2, sort_keys=sort_keys) + "\n")


def write_png(path: str | os.PathLike, image) -> Path:
    """An RGB uint8 array [H, W, 3] or a PIL image as a PNG file."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return write_atomic(path, lambda file: image.save(file, format="PNG"))


def write_figure(path: str | os.PathLike, figure, dpi: int = 110) -> Path:
    """A matplotlib figure as a PNG file."""
    return write_atomic(path, lambda file: figure.savefig(file, format="png", dpi=dpi))


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
