"""The --device option of every command: ``auto`` (CUDA when available, else the CPU), ``cpu``,
``cuda`` (under torchrun: this process's GPU) or ``cuda:N``; training's one device decision
(:func:`decide_device`) and its --deterministic (:func:`make_deterministic`)."""
from __future__ import annotations

import os
import platform
from pathlib import Path

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


def decide_device(name: str, world_size: int, local_rank: int) -> torch.device:
    """The one device of a training process, from --device ``name`` alone, decided before any process group.

    Under torchrun (``world_size`` > 1) each process takes GPU ``local_rank`` (``cuda`` or ``auto``); an
    explicit ``cuda:N`` would put every process on the same GPU, so it is refused (:class:`InputError`).
    """
    check_device_name(name)
    if world_size > 1 and name.startswith("cuda:"):
        raise InputError(f"--device {name}: under torchrun every process would use GPU {name[5:]}; give --device "
                         f"cuda (or auto): process k takes GPU LOCAL_RANK k, and CUDA_VISIBLE_DEVICES picks the GPUs")
    return resolve_device(name, local_rank)


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device ``name`` stands for; plain ``cuda`` is GPU ``local_rank`` (one GPU per torchrun process)."""
    check_device_name(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def make_deterministic() -> None:
    """Deterministic kernels for this process (training's --deterministic): cuDNN autotuning off,
    ``torch.use_deterministic_algorithms(True)`` (an op without a deterministic kernel raises instead of
    running a nondeterministic one) and cuBLAS's fixed workspace (CUBLAS_WORKSPACE_CONFIG, which cuBLAS
    reads when CUDA starts: call this before; a value already set is kept)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)


def cpu_name() -> str:
    """The CPU's model name (numbers can differ between CPU types; they are reported with it)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """What the numbers of a run on ``device`` depend on: the GPU's name, or the CPU's."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
