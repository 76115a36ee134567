"""The output rule of every command that writes: nothing it reads is lost, nothing half-made looks finished.

* Outputs never overlap inputs: an output is not an input, not inside one and does not contain one
  (:func:`check_apart`, paths compared after following symbolic links).
* A folder is replaced only after its successor is complete: the successor is built in a hidden
  ``.<name>.partial-<pid>-<token>`` folder beside it; :func:`replace_folder` moves the old folder aside to
  ``.<name>.replaced-<pid>-<token>``, renames the successor into place, then deletes the old one.
* A hidden copy is always restored or named: :func:`recover_hidden`, called by the next command that writes
  the same output, puts back a ``.replaced-*`` folder whose successor never took its place, deletes the
  ``.partial-*`` work of a killed process, and returns a line for each (printed by the command).
* One writer at a time (:class:`OutputLock`), and an existing output is replaced only when asked
  (``--overwrite``): :func:`new_folder` applies the whole rule to a folder a command writes whole.

:func:`prepare_output` applies the first and third parts in one call, before any work.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from common.command_line import InputError
from common.files import ExclusiveLock, process_alive

HIDDEN_KINDS = ("partial", "replaced")


class OutputError(InputError):
    """An output that would overwrite or contain one of the command's inputs (one line naming both)."""


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def check_apart(outputs: dict[str, Path], inputs: dict[Path, str]) -> None:
    """Raise OutputError when an output (``{label: path}``, e.g. ``{"--out": Path("x")}``) is an input
    (``{path: label of the option that names it}``), lies inside one or contains one."""
    for out_label, out in outputs.items():
        out_real = _resolved(Path(out))
        for source, in_label in inputs.items():
            in_real = _resolved(Path(source))
            if out_real == in_real:
                how = "is"
            elif in_real in out_real.parents:
                how = "is inside"
            elif out_real in in_real.parents:
                how = "contains"
            else:
                continue
            raise OutputError(f"{out_label} {out}: {how} the input {source} (of {in_label}); writing there "
                              f"would replace what it reads: choose another {out_label}")


def hidden_path(out: Path, kind: str) -> Path:
    """A new name ``.<name>.<kind>-<pid>-<token>`` beside ``out``."""
    return out.parent / f".{out.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"


def make_partial(out: Path) -> Path:
    """A new hidden folder beside ``out`` to build its successor in."""
    out.parent.mkdir(parents=True, exist_ok=True)
    while True:
        work = hidden_path(out, "partial")
        try:
            work.mkdir()
            return work
        except FileExistsError:
            continue


def hidden_copies(out: Path, kind: str) -> list[Path]:
    """The ``.<name>.<kind>-<pid>-<token>`` entries beside ``out`` whose process is gone (oldest name first)."""
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.{kind}-(\d+)-[0-9a-f]+$")
    found = []
    for path in sorted(out.parent.glob(f".{out.name}.{kind}-*")) if out.parent.is_dir() else []:
        match = pattern.match(path.name)
        if match and not process_alive(int(match.group(1))):
            found.append(path)
    return found


def recover_hidden(out: Path) -> list[str]:
    """Deal with what a killed command left beside ``out``; returns one line per copy found.

    A ``.partial-*`` folder is unfinished work: deleted. A ``.replaced-*`` folder is the previous ``out``:
    put back when ``out`` is missing (its successor never took its place), deleted when ``out`` is there
    (the successor was complete), and named when it can be neither.
    """
    out = Path(out)
    notes = []
    for work in hidden_copies(out, "partial"):
        shutil.rmtree(work, ignore_errors=True)
        notes.append(f"{out}: deleted {work.name}, the unfinished output of an interrupted run")
    for old in hidden_copies(out, "replaced"):
        if not os.path.lexists(out):
            try:
                os.rename(old, out)
                notes.append(f"{out}: put back the previous output that an interrupted run had set aside in {old.name}")
                continue
            except OSError as error:
                notes.append(f"{out}: the previous output is in {old} (could not put it back: {error.strerror})")
                continue
        shutil.rmtree(old, ignore_errors=True)
        if old.exists():
            notes.append(f"{out}: the previous output is still in {old}; delete it once {out} is checked")
    return notes


def hidden_copies_note(folder: Path) -> list[str]:
    """A line for each ``.<name>.replaced-*`` folder in ``folder`` left by a process that is gone (for commands
    that read ``folder`` without writing it: they name such copies, the command that writes ``<name>`` puts
    them back)."""
    pattern = re.compile(r"^\.(.+)\.replaced-(\d+)-[0-9a-f]+$")
    notes = []
    for path in sorted(Path(folder).glob(".*.replaced-*")) if Path(folder).is_dir() else []:
        match = pattern.match(path.name)
        if match and path.is_dir() and not process_alive(int(match.group(2))):
            notes.append(f"{Path(folder) / match.group(1)}: a previous version set aside by an interrupted command "
                         f"is in {path}; the next command that writes {match.group(1)} puts it back")
    return notes


def prepare_output(outputs: dict[str, Path], inputs: dict[Path, str]) -> list[str]:
    """The output rule before any work: :func:`check_apart`, then :func:`recover_hidden` for each output;
    returns the lines to print."""
    check_apart(outputs, inputs)
    notes = []
    for out in outputs.values():
        notes += recover_hidden(Path(out))
    return notes


def replace_folder(work: Path, out: Path) -> None:
    """Put the complete folder ``work`` in place of ``out``: an existing ``out`` is moved aside to a
    ``.replaced-*`` folder first and deleted only once ``work`` has taken its place."""
    if os.path.lexists(out):
        old = hidden_path(out, "replaced")
        os.rename(out, old)
        try:
            os.rename(work, out)
        except BaseException:
            os.rename(old, out)
            raise
        if old.is_symlink() or not old.is_dir():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(work, out)


class OutputLock(ExclusiveLock):
    """One writer at a time of the output ``out``: an exclusive lock on ``.<name>.lock`` beside it, held until
    :meth:`release` (the kernel releases it however the process ends, so a killed writer leaves no lock)."""

    def __init__(self, out: Path, option: str):
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(out.parent / f".{out.name}.lock", lambda holder: OutputError(
            f"{option} {out}: being written by {holder}; one command at a time writes an output "
            f"(wait for it to end, or choose another {option})"))


@contextmanager
def new_folder(out: Path, option: str, overwrite: bool, inputs: dict[Path, str]) -> Iterator[Path]:
    """The output rule for a folder a command writes whole: apart from its ``inputs``, one writer at a time,
    an existing non-empty ``out`` refused unless ``overwrite``. Yields the hidden folder to build it in,
    which takes ``out``'s place once the block ends without an error (and is deleted if it ends with one), so
    nothing of an earlier output is left beside the new one."""
    out = Path(out)
    for note in prepare_output({option: out}, inputs):
        print(note, flush=True)
    lock = OutputLock(out, option)
    try:
        if out.is_dir() and any(out.iterdir()) and not overwrite:
            raise OutputError(f"{option} {out}: holds an earlier output; pass --overwrite to replace it (once the "
                              f"new one is complete) or choose another {option}")
        work = make_partial(out)
        try:
            yield work
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        replace_folder(work, out)
    finally:
        lock.release()
