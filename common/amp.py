"""Mixed precision with one meaning everywhere: ``--amp`` is bf16 autocast where the device has bf16.

train.py, evaluate.py and eval.train_segmenter all take their autocast from here. bf16 keeps fp32's
exponent range, so no loss scaling is needed. Devices without native bf16 (GPUs before Ampere, where
torch would emulate it slowly) run in fp32.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``--amp`` on ``device``: bf16 on the CPU and on CUDA devices with native
    bf16, else None (no autocast)."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else None
    if device.type == "cpu":
        return torch.bfloat16
    return None


def autocast(device: torch.device, enabled: bool = True) -> AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled`` and the device has bf16; otherwise nothing."""
    dtype = amp_dtype(device) if enabled else None
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
