"""Stop long jobs cleanly on SIGINT (Ctrl-C) and SIGTERM (what schedulers send before they kill).

Inside ``with StopSignals() as signals:`` the first of these signals only records a request; the
job checks :attr:`StopSignals.requested` at its safe points (the end of a training step), saves its
state and raises :class:`Stopped`, which the command line turns into one line and the exit status
128 + the signal's number (130 for SIGINT, 143 for SIGTERM). A second signal exits at once with one
line saying what is safe on disk (:attr:`StopSignals.safe_note`): checkpoints are written
atomically, so a write it cuts short is abandoned and the previous file stays intact.

DataLoader workers get the signals too when they are sent to the whole process group (Ctrl-C in a
terminal, most schedulers): :func:`ignore_stop_signals` as ``worker_init_fn`` leaves the decision
to the main process.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
    """A job that stopped at a safe point after a signal; ``str()`` is the one line to print."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def ignore_stop_signals(worker_id: int = 0) -> None:
    """``worker_init_fn`` of DataLoaders: workers ignore SIGINT/SIGTERM (the main process stops them)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


class StopSignals:
    """Turns the first SIGINT/SIGTERM into a stop request (``requested``: its number) and the second
    into an immediate exit that prints ``safe_note``. Handlers are installed on entering (main
    thread only) and the previous ones restored on leaving."""

    def __init__(self, safe_note: str = "nothing was saved"):
        self.requested: int | None = None
        self.safe_note = safe_note
        self._pid = os.getpid()
        self._previous: dict = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if os.getpid() != self._pid:  # a forked worker inherited this handler: the main process decides
            return
        if self.requested is None:
            self.requested = signum
            return
        sys.stdout.flush()
        print(f"stopped at once by a second {signal_name(signum)}: {self.safe_note}", file=sys.stderr, flush=True)
        os._exit(128 + signum)

    @contextmanager
    def saving(self, path: str | os.PathLike):
        """Within this block a second signal reports the write of ``path`` as abandoned."""
        path = Path(path)
        kept = f", the previous {path.name} is intact" if path.is_file() else ""
        note, self.safe_note = self.safe_note, f"the write of {path} was abandoned{kept}; {self.safe_note}"
        try:
            yield
        finally:
            self.safe_note = note
