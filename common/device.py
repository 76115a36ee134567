"""The --device option of every command: ``auto`` (CUDA when available, else the CPU), ``cpu``,
``cuda`` (under torchrun: this process's GPU) or ``cuda:N``."""
from __future__ import annotations

import torch

from common.command_line import InputError


def check_device_name(name: str) -> None:
    """Raise :class:`InputError` unless ``name`` is auto, cpu, cuda or cuda:N of an existing GPU."""
    kind, _, index = name.partition(":")
    if not (name in ("auto", "cpu") or (kind == "cuda" and (not index or index.isdigit()))):
        raise InputError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: no CUDA device is available")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise InputError(f"--device {name}: there are {torch.cuda.device_count()} CUDA devices")


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device ``name`` stands for; plain ``cuda`` is GPU ``local_rank`` (one GPU per torchrun process)."""
    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)
