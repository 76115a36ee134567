"""A training run's folder: one writer at a time, and an old run kept until the new one is under way.

A run lives in ``<checkpoints>/<name>/``. :class:`RunFolder` takes it in steps:

* :meth:`RunFolder.claim`, before any work: refuses a run that exists (without ``resume`` or
  ``overwrite``), a run that another process is writing, and a folder that cannot be written. The
  lock comes first: a run folder that exists is locked before anything else is decided; a name not
  taken yet is taken by creating its folder (one ``mkdir`` wins) and locking it, so two processes
  started at once on one name cannot both go ahead. A run that replaces another is built in a hidden
  folder beside it, ``.<name>.new-*``.
* :meth:`RunFolder.start`, once options, data, model and device are checked: the new folder takes
  the run's place; an old run, whose lock this process holds, is only moved aside, to
  ``.<name>.replaced-*``.
* :meth:`RunFolder.commit`, after the new run's first checkpoint: the old run is deleted.
* :meth:`RunFolder.close`: releases the lock; after a failure before :meth:`commit` it puts the old
  run back. ``with run.in_use():`` around the work closes it either way. A folder holding no checkpoint and nothing but a run's logs is a run that never saved:
  a new run replaces it without --overwrite.

The lock is ``<run>/.lock``, held with ``flock`` for as long as the process runs. The kernel
releases it when the process ends, however it ends, so a lock left by a killed run is stale by
construction and the next claim takes it (the file stays; it names the last holder for messages).
Leftovers of a killed process are dealt with by the next claim: ``.new-*`` folders are deleted, a
``.replaced-*`` run is put back if the run that replaced it never wrote a checkpoint (whatever else
that run left: logs, an abandoned temporary file), deleted if it did, and named in a message when the
folder in its place is not a run. A run folder that is a symbolic link is replaced where it points:
the hidden folders are made beside its target and the link stays.
"""
from __future__ import annotations

from contextlib import contextmanager
import os
import secrets
import shutil
from pathlib import Path

from common.command_line import InputError
from common.files import ExclusiveLock

LOCK_FILE = ".lock"
# Temporary files of an abandoned atomic write (common.files.write_atomic): ``.<name>.<random>.tmp``.
TEMPORARY_SUFFIX = ".tmp"
# What a run folder holds besides its checkpoints (a folder with nothing else is a run that never saved).
RUN_ENTRIES = {LOCK_FILE, "options.json", "events", "samples"}


class RunFolderError(InputError):
    """A run folder that exists, is in use or cannot be written (one line naming it)."""


def has_checkpoint(folder: Path) -> bool:
    return (folder / "latest.pt").is_file() or any(folder.glob("epoch_*.pt"))


def _only_run_entries(folder: Path) -> bool:
    return all(entry.name in RUN_ENTRIES for entry in folder.iterdir())


def _never_saved(folder: Path) -> bool:
    """A run folder without a checkpoint, holding only a run's logs and temporary files of abandoned writes."""
    return not has_checkpoint(folder) and all(
        entry.name in RUN_ENTRIES or (entry.name.startswith(".") and entry.name.endswith(TEMPORARY_SUFFIX))
        for entry in folder.iterdir())


class RunLock(ExclusiveLock):
    """An exclusive lock on a run folder (``<folder>/.lock``), taken at construction."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        try:
            super().__init__(self.folder / LOCK_FILE, lambda holder: RunFolderError(
                f"{self.folder}: in use by {holder}; one process at a time writes a run (wait for it to end or stop it)"))
        except OSError as error:
            raise RunFolderError(f"{self.folder}: cannot write in the run folder ({error.strerror})") from None

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
        # where the run's folder really is: a symbolic link is replaced where it points
        self.real = Path(os.path.realpath(self.path)) if self.path.is_symlink() else self.path
        self.lock: RunLock | None = None
        self._created = False  # claim() created the run's folder (a name not taken before)
        self._new: Path | None = None  # the new run's folder until start()
        self._aside: Path | None = None  # the old run, moved aside until commit()
        self._aside_lock: RunLock | None = None
        self.started = False
        self.committed = False

    def _hidden(self, kind: str) -> Path:
        return self.real.parent / f".{self.real.name}.{kind}-{os.getpid()}-{secrets.token_hex(3)}"

    def claim(self, resume: bool, overwrite: bool) -> None:
        """Lock the run folder, check it, and prepare the new one unless ``resume``; raises RunFolderError."""
        path = self.path
        try:
            self.real.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunFolderError(f"{path.parent}: cannot create the checkpoints folder ({error.strerror})") from None
        if resume:
            self._take_existing(path)
            self._clean_leftovers()
            if not (path / "latest.pt").is_file():
                self.close(failed=True)
                raise RunFolderError(f"{path}: nothing to resume (no latest.pt)")
            self.started = self.committed = True
            return
        if not os.path.lexists(path):
            try:
                os.mkdir(path)  # the name is this process's: another one started at once finds it taken
                self._created = True
            except FileExistsError:
                pass
            except OSError as error:
                raise RunFolderError(f"{path.parent}: cannot create the run folder ({error.strerror})") from None
        if self._created:
            self.lock = RunLock(path)  # a process that locked it first would have failed on taking it
            self._clean_leftovers()
            return
        self._take_existing(path)
        self._aside_lock, self.lock = self.lock, None  # never replace a run another process is writing
        self._clean_leftovers()
        if any(path.iterdir()) and not overwrite and not _never_saved(path):
            self.close(failed=True)
            raise RunFolderError(f"{path}: run exists; pass --resume to continue it or --overwrite to start over")
        self._new = self._hidden("new")
        try:
            self._new.mkdir()
        except OSError as error:
            self._new = None
            self.close(failed=True)
            raise RunFolderError(f"{self.real.parent}: cannot create the run folder ({error.strerror})") from None
        self.lock = RunLock(self._new)

    def _take_existing(self, path: Path) -> None:
        """Lock the existing folder ``path`` (self.lock) before anything else is decided about it."""
        if os.path.lexists(path) and not path.is_dir():
            raise RunFolderError(f"{path}: exists and is not a folder")
        if not path.is_dir():
            if not self._clean_leftovers():  # an interrupted --overwrite may have left the run aside
                raise RunFolderError(f"{path}: nothing to resume (no latest.pt)")
        self.lock = RunLock(path)

    def start(self) -> Path:
        """Put the new run's folder in place (an old one, locked by this process, is moved aside); returns the
        run's path."""
        if self._new is None:
            self.started = True
            return self.path
        if os.path.lexists(self.real):
            if self._aside_lock is None:  # never move aside a folder another process may be writing
                self._aside_lock = RunLock(self.real)
            self._aside = self._hidden("replaced")
            os.rename(self.real, self._aside)
        os.rename(self._new, self.real)
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
        if failed and self._created and not self.started and self.lock is not None:
            shutil.rmtree(self.path, ignore_errors=True)  # the folder claim() made, still empty
        if failed and self.started and not self.committed:
            if self._aside is not None:
                shutil.rmtree(self.real, ignore_errors=True)
                os.rename(self._aside, self.real)
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

    def _clean_leftovers(self) -> bool:
        """Folders of a process that was killed while it claimed or replaced this run (the run's own lock,
        if the run exists, is held by this process). Returns whether a run was put back."""
        parent, name = self.real.parent, self.real.name
        for leftover in sorted(parent.glob(f".{name}.new-*")):
            if leftover.is_dir() and not RunLock.is_held(leftover):
                shutil.rmtree(leftover, ignore_errors=True)
        put_back = False
        for aside in sorted(parent.glob(f".{name}.replaced-*")):
            if not aside.is_dir() or RunLock.is_held(aside):
                continue
            if self.real.is_dir():
                if has_checkpoint(self.real):  # the run that replaced it got under way
                    shutil.rmtree(aside, ignore_errors=True)
                    continue
                if not _never_saved(self.real):
                    print(f"{self.path}: a previous run is still set aside in {aside} (the folder in its place "
                          f"is not a run); move it back by hand if you want it", flush=True)
                    continue
                for entry in self.real.iterdir():  # the logs of a run that never saved (the lock stays)
                    if entry.name != LOCK_FILE:
                        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
                for entry in aside.iterdir():
                    if entry.name != LOCK_FILE:
                        os.rename(entry, self.real / entry.name)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                try:
                    os.rename(aside, self.real)
                except OSError:  # another process put it back first
                    continue
            put_back = True
            print(f"{self.path}: put back the run that an interrupted --overwrite had set aside", flush=True)
        return put_back
