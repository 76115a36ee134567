"""The registry of segmenters: architecture name -> config, builder, display name, how its file is made
(trained here, with presets, or imported from an original file); building one by name.

The architectures (:mod:`eval.segmenters`):

* ``fcn8s``: VGG16 FCN-8s with the original skip topology (:mod:`eval.segmenters.fcn8s`);
* ``deeplabv3plus_xception71``: segmentation-models-pytorch DeepLabV3+ on the timm ``xception71``
  encoder at output stride 16 (:mod:`eval.segmenters.deeplabv3plus`), our stand-in for DeepLab's
  DPC Xception-71 as a network we train;
* ``deeplabv3plus_resnet10t``: the same DeepLabV3+ on timm's ResNet-10-T encoder, the demo's Table 3
  segmenter (it learns the 64-pixel built-in city in minutes on a CPU, and ships in 12 MB);
* ``fcn8s_caffe``: pix2pix's own Caffe FCN-8s, imported from ``fcn-8s-cityscapes.caffemodel``
  (:mod:`eval.segmenters.caffe_fcn8s`); it does its own input handling as the reference script does;
* ``dpc_xception71``: DeepLab's model-zoo DPC Xception-71, imported from its frozen graph
  (:mod:`eval.segmenters.dpc_xception71`);
* ``drn_d_105``: fyu/drn's DRN-D-105, imported from ``drn-d-105_ms_cityscapes.pth``
  (:mod:`eval.segmenters.drn`); the mIoU scorer of later labels->photo work.

A segmenter (:class:`eval.segmenters.base.Segmenter`) takes images in [-1, 1] (the generator's range) and
normalises them itself with the ImageNet mean and standard deviation. Its file (:mod:`eval.segmenters.files`)
holds its weights and metadata.

To add a segmenter, write a config dataclass (with a ``check()`` raising ValueError for values that
build no network, if there are such) and a builder and add one :class:`SegmenterSpec` to
``REGISTRY``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

from torch import nn

import eval.segmenters.caffe_fcn8s as caffe_fcn8s
import eval.segmenters.deeplabv3plus as deeplabv3plus
import eval.segmenters.dpc_xception71 as dpc_xception71
import eval.segmenters.drn as drn
import eval.segmenters.fcn8s as fcn8s
from data.cityscapes import NUM_CLASSES
from eval import EvalError
from eval.segmenters.base import IMAGENET_MEAN, IMAGENET_STD, Segmenter

DEFAULT_DIR = Path("checkpoints") / "segmenters"


# ------------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class SegmenterSpec:
    """One registered segmenter: its config type (with the defaults this entry changes), builder, display
    name, and how its file is made: trained by ``eval.train_segmenter`` (with ``presets``: option values by
    preset name) or imported from ``source_file`` by ``importer`` (path -> (Segmenter, metadata))."""
    name: str
    config_type: type
    build: Callable[[int, object], nn.Module]
    display_name: Callable[[object], str]
    config_defaults: dict = field(default_factory=dict)
    presets: dict = field(default_factory=dict)
    importer: Callable | None = None
    source_file: str = ""

    def make_command(self, out: str | os.PathLike) -> str:
        """The command that makes this segmenter's file at ``out``."""
        if self.importer is not None:
            return f"python -m eval.import_segmenter {self.name} {self.source_file} --out {out}"
        return f"python -m eval.train_segmenter --arch {self.name} --out {out}"


# The demo's segmenters (shipped in checkpoints/segmenters/demo/, weights in float16) train in minutes on 2
# CPU cores on the built-in synthetic city (64 px photos); both must score the real photos above every
# generator (the seeds study checks it). DeepLabV3+ gets a ResNet-10-T encoder and sees the photos upsampled
# to 128 px: at 64 px its output stride of 16 leaves a 4x4 map, and Xception-71 from scratch does not train
# in minutes; with Xception-71 at 64 px (24 epochs) the generators' smoother images outscored the real photos
# on pixel accuracy.
DEMO_FCN8S = {"config": ["width_mult=0.25", "batch_norm=true"], "n_epochs": 30, "batch_size": 8, "crop_size": 64,
              "load_size": 72, "lr": 2e-3, "num_workers": 0, "weights_dtype": "float16"}
DEMO_DEEPLAB = {"n_epochs": 20, "batch_size": 8, "crop_size": 128, "load_size": 144, "lr": 2e-3, "num_workers": 0,
                "weights_dtype": "float16"}

REGISTRY: dict[str, SegmenterSpec] = {
    "fcn8s": SegmenterSpec("fcn8s", fcn8s.FCN8sConfig, fcn8s.FCN8s, fcn8s.display_name, presets={"demo": DEMO_FCN8S}),
    "deeplabv3plus_xception71": SegmenterSpec("deeplabv3plus_xception71", deeplabv3plus.DeepLabV3PlusConfig,
                                              deeplabv3plus.DeepLabV3Plus, deeplabv3plus.display_name),
    "deeplabv3plus_resnet10t": SegmenterSpec("deeplabv3plus_resnet10t", deeplabv3plus.DeepLabV3PlusConfig,
                                             deeplabv3plus.DeepLabV3Plus, deeplabv3plus.display_name,
                                             config_defaults={"encoder": "resnet10t"}, presets={"demo": DEMO_DEEPLAB}),
    # pix2pix's Caffe FCN-8s (Table 2), imported from its caffemodel (20 output channels: num_classes=20)
    caffe_fcn8s.ARCH: SegmenterSpec(caffe_fcn8s.ARCH, caffe_fcn8s.CaffeFCN8sConfig, caffe_fcn8s.CaffeFCN8s,
                                    caffe_fcn8s.display_name, importer=caffe_fcn8s.import_caffemodel,
                                    source_file=caffe_fcn8s.FILE_NAME),
    # DeepLab's model-zoo DPC Xception-71 (Table 3)
    dpc_xception71.ARCH: SegmenterSpec(dpc_xception71.ARCH, dpc_xception71.DPCXception71Config,
                                       dpc_xception71.DPCXception71, dpc_xception71.display_name,
                                       importer=dpc_xception71.import_model_zoo, source_file=dpc_xception71.ZOO_FILE),
    # fyu/drn's DRN-D-105 (the mIoU of SPADE, GAN Compression and later), imported from its .pth
    drn.ARCH: SegmenterSpec(drn.ARCH, drn.DRND105Config, drn.DRNSeg, drn.display_name, importer=drn.import_drn,
                            source_file=drn.FILE_NAME),
}
TRAINED = tuple(name for name, spec in REGISTRY.items() if spec.importer is None)
IMPORTED = tuple(name for name, spec in REGISTRY.items() if spec.importer is not None)


def make_config(arch: str, overrides: dict | None = None):
    """The config dataclass of ``arch`` with the given fields changed (unknown fields: EvalError)."""
    spec = get_spec(arch)
    overrides = dict(overrides or {})
    known = {f.name for f in fields(spec.config_type)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise EvalError(f"segmenter {arch}: unknown config field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    config = spec.config_type(**{**spec.config_defaults, **overrides})
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


def make_command(arch: str, directory: str | os.PathLike = DEFAULT_DIR) -> str:
    """The command that makes the segmenter file of ``arch`` in ``directory`` (training it, or importing an
    original)."""
    return get_spec(arch).make_command(default_path(arch, directory))
