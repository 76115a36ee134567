"""DRN-D-105 for Cityscapes (``drn-d-105_ms_cityscapes.pth``) as a PyTorch network, and its importer.

The scorer of SPADE, OASIS, CLADE, GAN Compression and others: a dilated residual network, type D, 105
layers, with a 1x1 classifier over 19 Cityscapes classes and a fixed bilinear x8 upsampling. Our module
names give the same state_dict keys as the published file (a state_dict of the original ``DRNSeg``):

* ``base.0``: 7x7 convolution 3 -> 16, batch norm, ReLU;
* ``base.1``, ``base.2``: one 3x3 convolution each (16, then 32 channels, stride 2), batch norm, ReLU;
* ``base.3`` - ``base.6``: bottleneck stages (1x1, 3x3, 1x1 convolutions, expansion 4) of 3, 4, 23 and
  3 blocks, widths 64, 128, 256, 512; stride 2 in the first two, dilation 2 and 4 in the last two (the
  first block of each stage has a 1x1 projection ``downsample``);
* ``base.7``, ``base.8``: one 3x3 convolution each, 2048 -> 512 at dilation 2, then 512 -> 512;
* ``seg``: 1x1 convolution 512 -> 19 with bias; ``up``: a depthwise transposed convolution (kernel 16,
  stride 8, padding 4, no bias) holding bilinear weights, so the scores come out at the input size.

:class:`DRNSeg` takes images in [-1, 1] (``own_input_handling``), normalises them with DRN's Cityscapes
mean and standard deviation on [0, 1] RGB and returns the log-softmax class scores at the input size.

``import_drn(path)`` reads the users' file (``torch.load(weights_only=True)``), checks every key and
shape and returns our :class:`eval.segmenters.base.Segmenter` with its metadata; ``python -m
eval.import_segmenter drn_d_105 drn-d-105_ms_cityscapes.pth --out OUT.pt`` saves it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from data.cityscapes import CLASS_NAMES
from common.checkpoint import CheckpointError, load_checkpoint
from eval import EvalError
from eval.segmenters.base import Segmenter, imported_entries

ARCH = "drn_d_105"
FILE_NAME = "drn-d-105_ms_cityscapes.pth"
IMPORT_COMMAND = f"python -m eval.import_segmenter {ARCH} {FILE_NAME} --out checkpoints/segmenters/{ARCH}.pt"
DISPLAY_NAME = "DRN-D-105 (fyu/drn, Cityscapes)"
NUM_CLASSES = 19
# DRN's Cityscapes statistics (datasets/cityscapes/info.json of fyu/drn), on [0, 1] RGB
MEAN = (0.29010095242892997, 0.32808144844279574, 0.28696394422942517)
STD = (0.1829540508368939, 0.18656561047509476, 0.18447508988480435)
EXPECTED_ENTRIES = 651
EXPECTED_VALUES = 54_410_415

# (blocks, width, stride, dilation) of the four bottleneck stages base.3 - base.6
BOTTLENECK_STAGES = ((3, 64, 2, 1), (4, 128, 2, 1), (23, 256, 1, 2), (3, 512, 1, 4))
EXPANSION = 4


@dataclass
class DRND105Config:
    """DRN-D-105 has no free parameters: the published file fixes every width (kept for the registry)."""

    def check(self) -> None:
        return None


def display_name(config: DRND105Config) -> str:
    return DISPLAY_NAME


def conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1,
                 dilation: int = 1) -> nn.Sequential:
    """Convolution without bias (padding keeps the size at stride 1), batch norm, ReLU: keys 0.*, 1.*."""
    padding = dilation * (kernel - 1) // 2
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, stride, padding, dilation, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride and dilation), 1x1 expand (x4), plus the shortcut."""

    def __init__(self, in_channels: int, width: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        out_channels = width * EXPANSION
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = F.relu(self.bn2(self.conv2(y)), inplace=True)
        y = self.bn3(self.conv3(y))
        return F.relu(y + shortcut, inplace=True)


def bottleneck_stage(in_channels: int, blocks: int, width: int, stride: int, dilation: int) -> nn.Sequential:
    """``blocks`` bottlenecks; the first takes the stride. A dilated stage starts at half its dilation
    only when it opens a new level, which never happens in DRN-D (dilation and stride 1 go together)."""
    layers = [Bottleneck(in_channels, width, stride, dilation)]
    layers += [Bottleneck(width * EXPANSION, width, 1, dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def bilinear_kernel(size: int) -> torch.Tensor:
    """The size x size bilinear interpolation kernel of an upsampling by size // 2 (a separable tent)."""
    factor = math.ceil(size / 2)
    centre = (2 * factor - 1 - factor % 2) / (2 * factor)
    tent = 1 - (torch.arange(size, dtype=torch.float64) / factor - centre).abs()
    return torch.outer(tent, tent).float()


def backbone() -> nn.Sequential:
    """``base``: the DRN-D-105 feature extractor at stride 8 (2048 -> 512 channels at the end)."""
    stages = [conv_bn_relu(3, 16, 7), conv_bn_relu(16, 16, 3), conv_bn_relu(16, 32, 3, stride=2)]
    channels = 32
    for blocks, width, stride, dilation in BOTTLENECK_STAGES:
        stages.append(bottleneck_stage(channels, blocks, width, stride, dilation))
        channels = width * EXPANSION
    stages += [conv_bn_relu(channels, 512, 3, dilation=2), conv_bn_relu(512, 512, 3)]
    return nn.Sequential(*stages)


class DRNSeg(nn.Module):
    """DRN-D-105 segmentation network; images in [-1, 1] -> log-softmax scores [N, 19, H, W]."""

    own_input_handling = True

    def __init__(self, num_classes: int = NUM_CLASSES, config: DRND105Config | None = None):
        super().__init__()
        if num_classes != NUM_CLASSES:
            raise EvalError(f"{ARCH} is fyu/drn's Cityscapes network with {NUM_CLASSES} classes, not "
                            f"{num_classes}; import it with `{IMPORT_COMMAND}`")
        self.base = backbone()
        self.seg = nn.Conv2d(512, num_classes, 1)
        self.up = nn.ConvTranspose2d(num_classes, num_classes, 16, stride=8, padding=4, groups=num_classes,
                                     bias=False)
        with torch.no_grad():
            self.up.weight.copy_(bilinear_kernel(16).expand_as(self.up.weight))
        self.up.weight.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def normalized_scores(self, x: torch.Tensor) -> torch.Tensor:
        """Log-softmax scores for input already normalised with DRN's mean and std (the original's
        forward, first output). Sizes that are no multiple of 8 come out cropped to the input."""
        scores = self.up(self.seg(self.base(x)))
        return F.log_softmax(scores[..., :x.shape[-2], :x.shape[-1]], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.normalized_scores(((images + 1) / 2 - self.mean) / self.std)


# ------------------------------------------------------------------------------------- import
def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of every state_dict entry of the published file (built on the meta device)."""
    with torch.device("meta"):
        net = DRNSeg()
    return {key: tuple(value.shape) for key, value in net.state_dict().items()}


def read_state_dict(source: Path) -> dict[str, torch.Tensor]:
    """The tensors of the users' file (a plain state_dict; a ``{"state_dict": ...}`` wrapper and a
    DataParallel ``module.`` prefix are accepted). EvalError naming the file otherwise."""
    try:
        obj = load_checkpoint(source)
    except CheckpointError as error:  # pickle, zip and weights_only errors all mean: not a state_dict file
        raise EvalError(f"{source}: not a PyTorch state_dict file ({str(error).partition(': ')[2]})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise EvalError(f"{source}: not a state_dict of tensors")
    if obj and all(key.startswith("module.") for key in obj):
        obj = {key[len("module."):]: value for key, value in obj.items()}
    return dict(obj)


def check_state_dict(state: dict[str, torch.Tensor], source: Path) -> None:
    """Every key of DRN-D-105 present with its shape and nothing else, or one-line EvalError."""
    expected = expected_shapes()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        what = (f"{len(missing)} DRN-D-105 key(s) missing (first: {missing[0]})" if missing else
                f"{len(unexpected)} key(s) DRN-D-105 does not have (first: {unexpected[0]})")
        raise EvalError(f"{source}: not a DRNSeg('drn_d_105', 19) state_dict: {what}; expected fyu/drn's "
                        f"{FILE_NAME}")
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise EvalError(f"{source}: {key} has shape {tuple(state[key].shape)}, DRN-D-105 has {shape}")


def import_drn(source: Path):
    """(Segmenter, metadata) of DRN-D-105 read from the users' ``drn-d-105_ms_cityscapes.pth``."""
    source = Path(source)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise EvalError(f"{source}: cannot read ({exc.strerror or exc})") from None
    state = read_state_dict(source)
    check_state_dict(state, source)
    config = DRND105Config()
    net = DRNSeg(NUM_CLASSES, config)
    net.load_state_dict(state)
    model = Segmenter(ARCH, config, net, DISPLAY_NAME, NUM_CLASSES, mean=MEAN, std=STD)
    return model.eval(), drn_metadata(model, source, data)


def drn_metadata(model: Segmenter, source: Path, data: bytes) -> dict:
    """The description saved with the imported network."""
    return {
        "arch": ARCH,
        "display_name": DISPLAY_NAME,
        "config": asdict(model.config),
        "num_classes": NUM_CLASSES,
        "class_names": list(CLASS_NAMES),
        "normalization": {"input_range": [-1.0, 1.0], "mean": list(MEAN), "std": list(STD),
                          "note": "x in [-1,1] -> ((x+1)/2 - mean) / std, RGB (DRN's Cityscapes statistics)"},
        **imported_entries("Cityscapes (fyu/drn's DRN-D-105)", source.name, data,
                           "PyTorch state_dict of fyu/drn DRNSeg('drn_d_105', 19)"),
    }
