"""A fixed number of CPU threads per process, so that results do not depend on the machine's core count.

The number of threads can change the order of floating-point reductions and with it the last bits of a
result; a job pinned to the same count gives the same numbers on any machine of the same CPU type,
whatever else runs beside it. A child process is pinned through its environment (:func:`thread_env`,
read by OpenMP and torch when they start); a process pins itself with :func:`pin_threads`.
"""
from __future__ import annotations

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def thread_env(threads: int) -> dict[str, str]:
    """Environment variables that start a child process with ``threads`` intra-op threads."""
    return {name: str(threads) for name in THREAD_VARIABLES}


def pin_threads(threads: int | None) -> int:
    """Use ``threads`` intra-op threads in this process (None or 0: keep torch's choice, which follows
    OMP_NUM_THREADS or the core count); returns the count in use, to record with the results."""
    import torch
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()
