"""Shared by the benchmarks: peak memory of a piece of work, measured in a fresh process."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_HWM = """
def _hwm():
    return int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])
"""


def peak_memory_growth_mb(setup: str, work: str) -> float:
    """How far ``work`` raises the peak resident set above what exists after ``setup`` (MB, Linux).

    Both are Python source run in a fresh interpreter with bench/ on the path; the peak is reset
    (``/proc/self/clear_refs``) between them. NaN if the subprocess fails.
    """
    code = "\n".join([f"import sys; sys.argv = ['x']; sys.path.insert(0, {str(Path(__file__).parent)!r})", _HWM,
                      setup, "open('/proc/self/clear_refs', 'w').write('5')", "_base = _hwm()", work,
                      "print(_hwm() - _base)"])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        return float("nan")
    return int(out.stdout.strip().splitlines()[-1]) / 1024
