"""Segmenter files: a segmenter's weights with its metadata, written atomically and read back checked.

A file holds ``format_version``, ``kind: "segmenter"``, ``metadata`` (:func:`segmenter_metadata`:
architecture, config, classes, input normalisation, training resolution, the data it was trained on, its
own validation FCN-scores, how it was trained or where it was imported from; ``weights_sha256`` and
``storage_dtype``) and ``state_dict``. Weights load from a local file only, with ``weights_only=True``.

Weights may be stored in float16 (``storage_dtype``, the shipped demo segmenters: half the bytes); they are
loaded into the float32 network, and the network so loaded is the instrument: its own scores in the
metadata were computed with the rounded weights. ``weights_sha256`` (:func:`common.checkpoint.weights_sha256`
of the stored tensors) is checked at every load: a file whose weights changed after it was made is refused.
"""
from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import torch

from common.checkpoint import (FORMAT_VERSION, describe_names, load_checkpoint, nonfinite_entries, save_atomic,
                               weights_sha256)
from eval import EvalError
from eval.segmenters.base import IMAGENET_MEAN, IMAGENET_STD, Segmenter
from eval.segmenters.registry import REGISTRY, build_segmenter, get_spec, make_config


def segmenter_metadata(model: Segmenter, class_names, train_resolution, trained_on: dict,
                       val_scores: dict | None, training: dict | None = None) -> dict:
    """The description saved next to a segmenter's weights."""
    return {
        "arch": model.arch,
        "display_name": model.display_name,
        "config": asdict(model.config),
        "num_classes": model.num_classes,
        "class_names": list(class_names),
        "normalization": {"input_range": [-1.0, 1.0], "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                          "note": "x in [-1,1] -> ((x+1)/2 - mean) / std, RGB"},
        "train_resolution": list(train_resolution),
        "trained_on": dict(trained_on),
        "val_scores": val_scores,
        "training": dict(training or {}),
    }


STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


def stored_weights(model: Segmenter, storage_dtype: str = "float32") -> dict:
    """The state_dict as it is stored: on the CPU, floating-point tensors in ``storage_dtype``."""
    dtype = STORAGE_DTYPES[storage_dtype]
    return {k: (v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu())
            for k, v in model.state_dict().items()}


def round_to_storage(model: Segmenter, storage_dtype: str) -> None:
    """Give ``model`` the weights it will have once stored in ``storage_dtype`` and loaded back."""
    model.load_state_dict(stored_weights(model, storage_dtype))


def save_segmenter(path: str | os.PathLike, model: Segmenter, metadata: dict, extra: dict | None = None,
                   storage_dtype: str = "float32") -> Path:
    """Write weights (in ``storage_dtype``) and metadata atomically, with the weights' SHA-256 in the metadata
    (``extra``: e.g. the training state a latest.pt carries)."""
    state = stored_weights(model, storage_dtype)
    metadata = {**metadata, "storage_dtype": storage_dtype, "weights_sha256": weights_sha256(state)}
    obj = {"format_version": FORMAT_VERSION, "kind": "segmenter", "metadata": metadata, "state_dict": state}
    obj.update(extra or {})
    return save_atomic(obj, path)


def read_segmenter_file(path: str | os.PathLike, arch: str | None = None) -> dict:
    """Load and check a segmenter file: EvalError naming it if missing, not a segmenter or of another
    architecture (CheckpointError if unreadable)."""
    path = Path(path)
    if not path.is_file():
        how = get_spec(arch).make_command(path) if arch in REGISTRY else "python -m eval.train_segmenter --arch ARCH"
        raise EvalError(f"{path}: segmenter weights not found; make them with `{how}`")
    obj = load_checkpoint(path, require_format=True)
    if obj.get("kind") != "segmenter" or "metadata" not in obj or "state_dict" not in obj:
        raise EvalError(f"{path}: not a segmenter checkpoint (no segmenter metadata)")
    found = obj["metadata"].get("arch")
    if arch is not None and found != arch:
        raise EvalError(f"{path}: holds a {found} segmenter, expected {arch}")
    if found not in REGISTRY:
        raise EvalError(f"{path}: unknown segmenter architecture {found!r} (known: {', '.join(REGISTRY)})")
    return obj


def load_segmenter(path: str | os.PathLike, arch: str | None = None,
                   device: str | torch.device = "cpu") -> tuple[Segmenter, dict]:
    """The segmenter saved at ``path`` (in eval mode, on ``device``) and its metadata."""
    obj = read_segmenter_file(path, arch)
    meta = obj["metadata"]
    recorded = meta.get("weights_sha256")
    if recorded is not None and weights_sha256(obj["state_dict"]) != recorded:
        raise EvalError(f"{path}: its weights do not match the SHA-256 recorded in its metadata ({recorded[:12]}...); "
                        f"the file changed after it was made: use an intact copy or make it again")
    bad = nonfinite_entries(obj["state_dict"])
    if bad:
        why = "the original file it was imported from holds them" if "source" in meta else "its training diverged"
        raise EvalError(f"{path}: the segmenter holds non-finite values ({describe_names(bad)}); {why}, and it "
                        f"cannot score anything")
    config = make_config(meta["arch"], meta["config"])
    normalization = meta["normalization"]  # an original scorer's own input handling has no mean/std
    model = build_segmenter(meta["arch"], config, meta["num_classes"], input_size=meta["train_resolution"],
                            mean=normalization.get("mean", IMAGENET_MEAN), std=normalization.get("std", IMAGENET_STD))
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise EvalError(f"{path}: weights do not fit a {meta['arch']} segmenter with config {meta['config']} ({first})") from exc
    return model.to(device).eval(), meta
