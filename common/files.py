"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every writer here goes through :func:`write_atomic`: the content is written to a hidden temporary file
in the destination's folder, flushed to disk, then renamed over the destination (one ``rename``, which
POSIX makes atomic); a failed or interrupted write removes its temporary file and leaves the old one.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None],
                 before_rename: Callable[[Path], None] | None = None) -> Path:
    """Call ``write(file)`` on a temporary binary file and rename it to ``path`` (folders made as needed).

    The temporary file is ``.<name>.<pid>.<random>.tmp``; those that a writer that is gone left (its
    process no longer runs) are removed first, never those of a live writer. ``before_rename(temporary
    path)``, if given, runs once the content is on disk. Errors propagate (``OSError``, naming ``path``
    when the system names no file: a full disk, ...) with ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        if before_rename is not None:
            before_rename(Path(tmp_name))
        os.replace(tmp_name, path)
    except BaseException as error:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        if isinstance(error, OSError) and error.filename is None and error.errno is not None:
            raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    _sync_folder(path.parent)
    return path


def remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files of :func:`write_atomic` for ``path`` whose writing process is gone."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[^.]+\.tmp$")
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        found = pattern.match(stale.name)
        if found and not process_alive(int(found.group(1))):
            stale.unlink(missing_ok=True)


class ExclusiveLock:
    """An exclusive lock on the file ``path`` (created if missing), taken at construction and held until
    :meth:`release`; the kernel releases it however the process ends, so a killed holder leaves no lock.
    When another process holds it, raises ``busy(holder)``, holder being what that process wrote in the file
    ("process PID on HOST")."""

    def __init__(self, path: Path, busy: Callable[[str], Exception]):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise busy(holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the lock
            self._fd = None


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def shown_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working directory when it lies below it, else as it is (what files that are
    kept or committed record: they name no machine's folders)."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative
