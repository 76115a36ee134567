"""The random-number state of one training process: seed it, capture it for a checkpoint, restore it on resume.

A process draws from torch's CPU generator, Python's and NumPy's, and (on CUDA) the generator of its
own device, the one dropout uses. Only that device's generator is saved: a resumed run may see fewer
or more GPUs, and under torchrun each rank restores the stream it had, not another rank's.
"""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_all(seed: int) -> None:
    """Seed torch's generators (CPU and every GPU), Python's and NumPy's from one ``--seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture(device: torch.device) -> dict:
    """This process's generator states; ``device``: the training device (its generator if CUDA)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}
    if device.type == "cuda":
        state["device"] = torch.cuda.get_rng_state(device)
    return state


def restore(state: dict, device: torch.device) -> None:
    """Restore what :func:`capture` returned, the device generator onto ``device``."""
    torch.set_rng_state(state["torch"])
    random.setstate(_as_tuple(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["device"], device)


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
