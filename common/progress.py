"""Progress reporting for long loops: a tqdm bar on a terminal, plain periodic lines otherwise."""
from __future__ import annotations

import sys
import time

from tqdm import tqdm


class _LineProgress:
    """tqdm-like progress that prints one plain line every ``interval`` seconds (for logs and CI)."""

    def __init__(self, iterable=None, total=None, desc="", unit="it", initial=0, interval=30.0, file=None):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit, self.n = desc, unit, initial
        self.interval = interval
        self.file = file or sys.stdout
        self.postfix = ""
        self._start_n = initial
        self._start = self._last = time.monotonic()

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def set_postfix(self, values=None, **kwargs):
        values = dict(values or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())

    def _line(self) -> str:
        elapsed = time.monotonic() - self._start
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        where = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        eta = ""
        if self.total and rate > 0:
            eta = f", eta {time.strftime('%H:%M:%S', time.gmtime((self.total - self.n) / rate))}"
        post = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {where} {self.unit} ({rate:.2f} {self.unit}/s{eta}{post})"

    def update(self, n: int = 1):
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            print(self._line(), file=self.file, flush=True)

    def close(self):
        if self.n != self._start_n:
            print(self._line(), file=self.file, flush=True)
            self._start_n = self.n  # print the final line once


def progress(iterable=None, total=None, desc="", unit="it", initial=0, interval=30.0):
    """Wrap a loop with progress reporting: rate, position and ETA.

    On a terminal this is a tqdm bar (on stderr); when stdout or stderr is not a terminal (logs, CI) it
    prints a plain line to stdout every ``interval`` seconds and a last one at ``close()``. Both support
    ``update``, ``set_postfix`` and ``close``.
    """
    if sys.stdout.isatty() and sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True)
    return _LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial, interval=interval)
