"""A training run's folder: one writer at a time, and an old run kept until the new one is under way.

A run lives in ``<checkpoints>/<name>/``. :class:`RunFolder` takes it in steps:

* :meth:`RunFolder.claim`, before any work: refuses a run that exists (without ``resume`` or
  ``overwrite``), a run that another process is writing, and a folder that cannot be written.
  A new run is built in a hidden folder beside it, ``.<name>.new-*``.
* :meth:`RunFolder.start`, once options, data, model and device are checked: the new folder takes
  the run's place; an old run is only moved aside, to ``.<name>.replaced-*``.
* :meth:`RunFolder.commit`, after the new run's first checkpoint: the old run is deleted.
* :meth:`RunFolder.close`: releases the lock; after a failure before :meth:`commit` it puts the old
  run back. ``with run.in_use():`` around the work closes it either way. A folder holding no checkpoint and nothing but a run's logs is a run that never saved:
  a new run replaces it without --overwrite.

The lock is ``<run>/.lock``, held with ``flock`` for as long as the process runs. The kernel
releases it when the process ends, however it ends, so a lock left by a killed run is stale by
construction and the next claim takes it (the file stays; it names the last holder for messages).
Leftovers of a killed process are dealt with by the next claim: ``.new-*`` folders are deleted, a
``.replaced-*`` run is put back if the run that replaced it never wrote a checkpoint.
"""
from __future__ import annotations

import fcntl
from contextlib import contextmanager
import os
import secrets
import shutil
import socket
from pathlib import Path

from common.command_line import InputError

LOCK_FILE = ".lock"
# What a run folder holds besides its checkpoints (a folder with nothing else is a run that never saved).
RUN_ENTRIES = {LOCK_FILE, "options.json", "events", "samples"}


class RunFolderError(InputError):
    """A run folder that exists, is in use or cannot be written (one line naming it)."""


def has_checkpoint(folder: Path) -> bool:
    return (folder / "latest.pt").is_file() or any(folder.glob("epoch_*.pt"))


def _only_run_entries(folder: Path) -> bool:
    return all(entry.name in RUN_ENTRIES for entry in folder.iterdir())


class RunLock:
    """An exclusive lock on a run folder (``<folder>/.lock``), taken at construction."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        path = self.folder / LOCK_FILE
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise RunFolderError(f"{self.folder}: cannot write in the run folder ({error.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunFolderError(f"{self.folder}: in use by {holder}; one process at a time writes a run "
                                 f"(wait for it to end or stop it)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file releases the lock
            self._fd = None

    @staticmethod
    def is_held(folder: Path) -> bool:
        """Whether a live process holds the lock of ``folder``."""
        try:
            RunLock(folder).release()
            return False
        except RunFolderError:
            return True


class RunFolder:
    """The folder of one run, taken by one process (see the module docstring)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.lock: RunLock | None = None
        self._new: Path | None = None  # the new run's folder until start()
        self._aside: Path | None = None  # the old run, moved aside until commit()
        self._aside_lock: RunLock | None = None
        self.started = False
        self.committed = False

    def _hidden(self, kind: str) -> Path:
        return self.path.parent / f".{self.path.name}.{kind}-{os.getpid()}-{secrets.token_hex(3)}"

    def claim(self, resume: bool, overwrite: bool) -> None:
        """Check the run folder and lock it (``resume``) or prepare the new one; raises RunFolderError."""
        path = self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"{path.parent}: cannot create the checkpoints folder ({error.strerror})") from None
        self._clean_leftovers()
        if path.exists() and not path.is_dir():
            raise RunFolderError(f"{path}: exists and is not a folder")
        if resume:
            if not (path / "latest.pt").is_file():
                raise RunFolderError(f"{path}: nothing to resume (no latest.pt)")
            self.lock = RunLock(path)
            self.started = self.committed = True
            return
        if path.is_dir() and any(path.iterdir()):
            if not overwrite and (has_checkpoint(path) or not _only_run_entries(path)):
                raise RunFolderError(f"{path}: run exists; pass --resume to continue it or --overwrite to start over")
            self._aside_lock = RunLock(path)  # never replace a run another process is writing
        self._new = self._hidden("new")
        try:
            self._new.mkdir()
        except OSError as error:
            self._new = None
            self.close(failed=True)
            raise RunFolderError(f"{path.parent}: cannot create the run folder ({error.strerror})") from None
        self.lock = RunLock(self._new)

    def start(self) -> Path:
        """Put the new run's folder in place (an old one is moved aside); returns the run's path."""
        if self._new is None:
            return self.path
        if self.path.exists():
            self._aside = self._hidden("replaced")
            os.rename(self.path, self._aside)
        os.rename(self._new, self.path)
        self._new = None
        self.started = True
        return self.path

    def commit(self) -> Path | None:
        """The new run is under way: delete the old run; returns where it was, if there was one."""
        self.committed = True
        if self._aside is None:
            return None
        self._release_aside()
        shutil.rmtree(self._aside, ignore_errors=True)
        self._aside = None
        return self.path

    def close(self, failed: bool) -> str | None:
        """Release the lock. After a failure before :meth:`commit`, put an old run back in place of the new
        one (a new run without an old one keeps its folder: its logs tell what went wrong, and with no
        checkpoint it does not stand in the way of a rerun); returns a note on what was done."""
        note = None
        if self._new is not None:
            shutil.rmtree(self._new, ignore_errors=True)
            self._new = None
        if failed and self.started and not self.committed:
            if self._aside is not None:
                shutil.rmtree(self.path, ignore_errors=True)
                os.rename(self._aside, self.path)
                self._aside = None
                note = f"{self.path}: the new run failed before its first checkpoint; the previous run is back in place"
        self._release_aside()
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        return note

    @contextmanager
    def in_use(self):
        """The work in the run: on leaving, :meth:`close`, as failed (its note printed) when an exception
        ends the block."""
        try:
            yield self
        except BaseException:
            note = self.close(failed=True)
            if note:
                print(note, flush=True)
            raise
        self.close(failed=False)

    def _release_aside(self) -> None:
        if self._aside_lock is not None:
            self._aside_lock.release()
            self._aside_lock = None

    def _clean_leftovers(self) -> None:
        """Folders of a process that was killed while it claimed or replaced this run."""
        parent, name = self.path.parent, self.path.name
        for leftover in sorted(parent.glob(f".{name}.new-*")):
            if leftover.is_dir() and not RunLock.is_held(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
        for aside in sorted(parent.glob(f".{name}.replaced-*")):
            if not aside.is_dir() or RunLock.is_held(aside):
                continue
            if self.path.is_dir():
                if RunLock.is_held(self.path) or not (has_checkpoint(self.path) or _only_run_entries(self.path)):
                    continue
                if has_checkpoint(self.path):  # the run that replaced it got under way
                    shutil.rmtree(aside, ignore_errors=True)
                    continue
                shutil.rmtree(self.path)
            os.rename(aside, self.path)
            print(f"{self.path}: put back the run that an interrupted --overwrite had set aside", flush=True)
