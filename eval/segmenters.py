"""The registry of scorers, and segmenter files: build, save and load a segmenter by architecture name.

The architectures (:mod:`eval.scorers`):

* ``fcn8s``: VGG16 FCN-8s with the original skip topology (:mod:`eval.scorers.fcn8s`);
* ``deeplabv3plus_xception71``: segmentation-models-pytorch DeepLabV3+ on the timm ``xception71``
  encoder at output stride 16 (:mod:`eval.scorers.deeplabv3plus`), our stand-in for DeepLab's
  DPC Xception-71 as a network we train;
* ``fcn8s_caffe``: pix2pix's own Caffe FCN-8s, imported from ``fcn-8s-cityscapes.caffemodel``
  (:mod:`eval.scorers.caffe_fcn8s`); it does its own input handling as the reference script does;
* ``dpc_xception71``: DeepLab's model-zoo DPC Xception-71, imported from its frozen graph
  (:mod:`eval.scorers.dpc_xception71`);
* ``drn_d_105``: fyu/drn's DRN-D-105, imported from ``drn-d-105_ms_cityscapes.pth``
  (:mod:`eval.scorers.drn`); the mIoU scorer of later labels->photo work.

A segmenter (:class:`eval.scorers.base.Segmenter`) takes images in [-1, 1] (the generator's range) and
normalises them itself with the ImageNet mean and standard deviation. It is saved with its metadata:
architecture, its config, classes, input normalisation, training resolution, the data it was trained on
and its own validation FCN-scores. Weights load from a local file only.

To add a segmenter, write a config dataclass (with a ``check()`` raising ValueError for values that
build no network, if there are such) and a builder and add one :class:`SegmenterSpec` to
``REGISTRY``.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from common.checkpoint import FORMAT_VERSION, describe_names, load_checkpoint, nonfinite_entries, save_atomic
from data.cityscapes import NUM_CLASSES
from eval import EvalError
from eval.scorers import caffe_fcn8s, deeplabv3plus, dpc_xception71, drn, fcn8s
from eval.scorers.base import IMAGENET_MEAN, IMAGENET_STD, Segmenter

DEFAULT_DIR = Path("checkpoints") / "segmenters"


# ------------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class SegmenterSpec:
    """One registered segmenter: its config type, builder and a display name for tables."""
    name: str
    config_type: type
    build: Callable[[int, object], nn.Module]
    display_name: Callable[[object], str]
    obtain: str = ""   # the command that makes its file, for segmenters not trained by eval.train_segmenter


REGISTRY: dict[str, SegmenterSpec] = {
    "fcn8s": SegmenterSpec("fcn8s", fcn8s.FCN8sConfig, fcn8s.FCN8s, fcn8s.display_name),
    "deeplabv3plus_xception71": SegmenterSpec("deeplabv3plus_xception71", deeplabv3plus.DeepLabV3PlusConfig,
                                              deeplabv3plus.DeepLabV3Plus, deeplabv3plus.display_name),
    # pix2pix's Caffe FCN-8s (Table 2), imported from its caffemodel (20 output channels: num_classes=20)
    caffe_fcn8s.ARCH: SegmenterSpec(caffe_fcn8s.ARCH, caffe_fcn8s.CaffeFCN8sConfig, caffe_fcn8s.CaffeFCN8s,
                                    caffe_fcn8s.display_name, obtain=caffe_fcn8s.IMPORT_COMMAND),
    # DeepLab's model-zoo DPC Xception-71 (Table 3), imported with `python -m eval.import_segmenter`
    dpc_xception71.ARCH: SegmenterSpec(dpc_xception71.ARCH, dpc_xception71.DPCXception71Config,
                                       dpc_xception71.DPCXception71, dpc_xception71.display_name,
                                       obtain=dpc_xception71.IMPORT_COMMAND),
    # fyu/drn's DRN-D-105 (the mIoU of SPADE, GAN Compression and later), imported from its .pth
    drn.ARCH: SegmenterSpec(drn.ARCH, drn.DRND105Config, drn.DRNSeg, drn.display_name, obtain=drn.IMPORT_COMMAND),
}


def make_config(arch: str, overrides: dict | None = None):
    """The config dataclass of ``arch`` with the given fields changed (unknown fields: EvalError)."""
    spec = get_spec(arch)
    overrides = dict(overrides or {})
    known = {f.name for f in fields(spec.config_type)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise EvalError(f"segmenter {arch}: unknown config field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    config = spec.config_type(**overrides)
    try:
        if hasattr(config, "check"):  # a config may refuse values that build no network
            config.check()
    except ValueError as error:
        raise EvalError(f"segmenter {arch}: config {error}") from None
    return config


def get_spec(arch: str) -> SegmenterSpec:
    if arch not in REGISTRY:
        raise EvalError(f"unknown segmenter architecture {arch!r} (known: {', '.join(REGISTRY)})")
    return REGISTRY[arch]


def build_segmenter(arch: str, config=None, num_classes: int = NUM_CLASSES,
                    input_size: tuple[int, int] | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Segmenter:
    """A freshly initialised segmenter of a registered architecture (config: dataclass or dict)."""
    if config is None or isinstance(config, dict):
        config = make_config(arch, config)
    spec = get_spec(arch)
    return Segmenter(arch, config, spec.build(num_classes, config), spec.display_name(config), num_classes,
                     mean=mean, std=std, input_size=input_size)


def default_path(arch: str, directory: str | os.PathLike = DEFAULT_DIR) -> Path:
    """Where a trained segmenter of ``arch`` lives by default: ``checkpoints/segmenters/<arch>.pt``."""
    return Path(directory) / f"{arch}.pt"


def train_command(arch: str) -> str:
    """The command that makes the segmenter file of ``arch`` (training it, or importing an original)."""
    spec = REGISTRY.get(arch)
    return spec.obtain if spec is not None and spec.obtain else f"python -m eval.train_segmenter --arch {arch}"


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


def save_segmenter(path: str | os.PathLike, model: Segmenter, metadata: dict, extra: dict | None = None) -> Path:
    """Write weights and metadata atomically (``extra``: e.g. the training state a latest.pt carries)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {"format_version": FORMAT_VERSION, "kind": "segmenter", "metadata": metadata, "state_dict": state}
    obj.update(extra or {})
    return save_atomic(obj, path)


def read_segmenter_file(path: str | os.PathLike, arch: str | None = None) -> dict:
    """Load and check a segmenter file: EvalError naming it if missing, not a segmenter or of another
    architecture (CheckpointError if unreadable)."""
    path = Path(path)
    if not path.is_file():
        how = train_command(arch) if arch else "python -m eval.train_segmenter --arch ARCH"
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
    bad = nonfinite_entries(obj["state_dict"])
    if bad:
        raise EvalError(f"{path}: the segmenter holds non-finite values ({describe_names(bad)}); its training "
                        f"diverged and it cannot score anything")
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
