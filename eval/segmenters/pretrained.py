"""ImageNet weights for the backbones of the scorers we train, from the local caches first.

torchvision's weights come from the torch hub cache, timm's from the Hugging Face cache; either is
downloaded only when allowed and the server answers, so an offline machine trains from scratch
without waiting on timeouts.
"""
from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

import torch

from common.checkpoint import load_checkpoint


def torch_hub_weights(url: str, allow_download: bool) -> dict | None:
    """A torchvision state_dict from the torch hub cache, downloaded only if ``allow_download``."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if cached.is_file():
        return load_checkpoint(cached)
    if not (allow_download and _reachable(urlparse(url).hostname)):
        return None
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False)
    except Exception:  # offline or the server refuses: train from scratch
        return None


def timm_weights_overlay(repo_id: str, allow_download: bool) -> dict | None:
    """The extra arguments that make timm load the weights of ``repo_id``: from the Hugging Face cache
    (a ``pretrained_cfg_overlay``), ``{}`` to download them, or None when they are out of reach."""
    local = _hf_cached_file(repo_id)
    if local is not None:
        return {"pretrained_cfg_overlay": {"file": str(local)}}
    if allow_download and _reachable("huggingface.co"):
        return {}
    return None


def _hf_cached_file(repo_id: str) -> Path | None:
    """A weights file of ``repo_id`` already in the Hugging Face cache, or None."""
    try:  # comes with timm; without it there is no cache to look in
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def _reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether ``host`` answers on port 443 (so a download is worth trying)."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False
