"""Checkpoint files: atomic writes, safe loads, and the check that only finite state is saved.

A checkpoint is one dict of tensors and plain Python values carrying a ``format_version``. It is
written to a temporary file in the destination folder, flushed to disk and renamed over the old
file, so a crash mid-write leaves the previous checkpoint intact. It is read back with
``torch.load(..., weights_only=True)``: a checkpoint is data, never code.

Its SHA-256 is recorded beside it, in ``<file>.sha256``, before it takes the old file's place; the
record lists the new and the previous file's digests, so the pair stays consistent whenever a write is
cut short. :func:`check_recorded_sha256` refuses a file that changed on disk since it was written (a
flipped byte that torch's zip reader does not notice).
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import warnings
from pathlib import Path

import torch

from common.command_line import InputError
from common.files import file_sha256, write_atomic, write_text

FORMAT_VERSION = 1
SHA256_SUFFIX = ".sha256"


class CheckpointError(InputError):
    """A checkpoint file that is missing, unreadable, unwritable or of the wrong kind (message names the file)."""


def sha256_record(path: Path) -> Path:
    return path.with_name(path.name + SHA256_SUFFIX)


def _record_sha256(path: Path, written: Path) -> None:
    """Before ``written`` (a finished temporary file) replaces ``path``: its digest, and the digest ``path``
    has now, in ``path``'s record."""
    record = sha256_record(path)
    previous = []
    try:
        previous = record.read_text().split()[:1]
    except OSError:
        pass
    write_text(record, "\n".join([file_sha256(written)] + previous) + "\n")


def check_recorded_sha256(path: str | os.PathLike, known_copies=()) -> None:
    """Raise CheckpointError when ``path`` has a SHA-256 record (``<file>.sha256``) that does not list its digest,
    unless it is a byte-for-byte copy of one of ``known_copies`` (files a user may copy over it on purpose)."""
    path = Path(path)
    record = sha256_record(path)
    if not record.is_file():
        return
    try:
        listed = record.read_text().split()
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{record}: unreadable SHA-256 record ({error})") from None
    digest = file_sha256(path)
    if digest in listed:
        return
    if any(copy.is_file() and copy.stat().st_size == path.stat().st_size and file_sha256(copy) == digest
           for copy in known_copies):
        return
    raise CheckpointError(f"{path}: its SHA-256 differs from the one recorded when it was written ({record}); "
                          f"the file changed on disk since: use an intact copy (if you replaced it on purpose, "
                          f"delete {record.name})")


def save_atomic(obj: dict, path: str | os.PathLike, record_sha256: bool = True) -> Path:
    """Write ``obj`` to ``path`` with ``torch.save`` atomically (:func:`common.files.write_atomic`), its
    SHA-256 recorded in ``<path>.sha256`` (unless ``record_sha256`` is False).

    A write that fails (read-only folder, full disk, ...) raises :class:`CheckpointError` naming
    ``path`` and the cause; the previous file at ``path`` is then untouched and no temporary file
    is left. An interrupt (KeyboardInterrupt) is re-raised as itself, whatever torch made of it.
    """
    path = Path(path)
    existed = path.is_file()
    try:
        return write_atomic(path, lambda file: torch.save(obj, file),
                            before_rename=(lambda written: _record_sha256(path, written)) if record_sha256 else None)
    except BaseException as error:
        # torch.save reports a failed write of its zip container as RuntimeError("... unexpected pos ...");
        # the real cause is the exception it was handling.
        cause = _root_cause(error)
        if isinstance(cause, OSError):
            kept = "the previous one is intact" if existed else "nothing was written"
            reason = cause.strerror or str(cause)
            raise CheckpointError(f"{path}: cannot write the checkpoint ({reason}); {kept}") from error
        if cause is not error and not isinstance(cause, Exception):  # KeyboardInterrupt, SystemExit
            raise cause from None
        raise


def _root_cause(error: BaseException) -> BaseException:
    """The first exception of the chain ``error`` was raised while handling (``error`` itself if none)."""
    seen = {id(error)}
    while error.__context__ is not None and id(error.__context__) not in seen:
        error = error.__context__
        seen.add(id(error))
    return error


def load_checkpoint(path: str | os.PathLike, map_location="cpu", require_format: bool = False,
                    mmap: bool = False) -> dict:
    """Load a checkpoint written by :func:`save_atomic` (or any plain state_dict) with weights_only=True.

    A full read checks the file's SHA-256 against the record beside it, if there is one
    (:func:`check_recorded_sha256`; a byte copy of another checkpoint of the same folder passes, as a
    ``full_<NNN>.pt`` copied over ``latest.pt`` must); ``mmap`` reads it memory-mapped, tensors only when
    used, without that check (for summaries that read no tensor).

    Raises :class:`CheckpointError` naming the file when it is missing, changed since its save, truncated,
    not a torch file, holds Python objects that are not data, or (with ``require_format``) is not one of this
    project's checkpoints or of a newer format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if not mmap:
        check_recorded_sha256(path, known_copies=sorted(p for p in path.parent.glob("*.pt") if p != path))
    obj = _torch_load(path, map_location, mmap)
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


def _torch_load(path: Path, map_location, mmap: bool):
    """``torch.load(weights_only=True)`` with its failures as one line each. torch's own text advises loading
    with weights_only=False, which is never the thing to do with a file of unknown origin: it is not quoted."""
    with open(path, "rb") as file:
        head = file.read(4)
    if head[:2] != b"PK" and head[:1] != b"\x80":  # neither a zip container nor a pickle
        raise CheckpointError(f"{path}: not a PyTorch file (it starts with neither a zip header nor a pickle)")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the refusal below says it all
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = re.search(r"WeightsUnpickler error:\s*(.*?)(?: was not an allowed global|\. Please use|\s*Check the "
                          r"documentation|$)", str(exc), re.S)
        detail = " ".join(found.group(1).split()) if found else ""
        raise CheckpointError(f"{path}: refused: it holds Python objects other than tensors and plain values"
                              f"{f' ({detail})' if detail else ''}; a checkpoint never needs them, and loading them "
                              f"could run code") from None
    except Exception as exc:  # truncated file, not a torch file, ...
        reason = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: cannot be read as a checkpoint ({reason})") from exc


def nonfinite_entries(state, prefix: str = "") -> list[str]:
    """Names (dotted paths) of the floating-point tensors in ``state`` holding a NaN or an infinity.

    ``state`` is a tensor or nested dicts / lists / tuples of them (a checkpoint dict, a state_dict:
    weights, batch-norm buffers, optimizer moments); other values are ignored. The tensors are
    checked where they are, with one fused max-|x| reduction per (device, dtype) and one transfer
    of the results per device: calling it before a save costs one synchronisation, not one per tensor.
    """
    named = []
    _collect_floating(state, prefix, named)
    groups: dict[tuple, list[tuple[str, torch.Tensor]]] = {}
    for name, tensor in named:
        groups.setdefault((tensor.device, tensor.dtype), []).append((name, tensor))
    flags, names = [], []
    for items in groups.values():
        tensors = [t.detach() for _, t in items]
        # max |x| is inf or NaN exactly when some element is
        flags.append(torch.isfinite(torch.stack(torch._foreach_norm(tensors, float("inf")))).cpu())
        names += [name for name, _ in items]
    if not flags:
        return []
    finite = torch.cat(flags).tolist()
    return [name for name, ok in zip(names, finite) if not ok]


def _collect_floating(value, name: str, out: list) -> None:
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and value.numel() > 0:
            out.append((name, value))
    elif isinstance(value, dict):
        for key, item in value.items():
            _collect_floating(item, f"{name}.{key}" if name else str(key), out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _collect_floating(item, f"{name}.{index}" if name else str(index), out)


def describe_names(names: list[str], limit: int = 2) -> str:
    """``a, b and 5 more`` for a list of tensor names (for one-line messages)."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def weights_sha256(state_dict: dict) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a state_dict's tensors, in name order (a model's
    identity; the file around it also holds metadata such as the training time)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()
