"""FCN-8s (Long et al.) on VGG16: the scorer we train for Table 2.

The original skip topology: class scores from fc7 are upsampled 2x and added to scores from pool4,
upsampled 2x again and added to scores from pool3, then upsampled 8x, all three upsamplings learnable
transposed convolutions initialised to bilinear interpolation. The original pads conv1 by 100 pixels and
crops after each upsampling; here the convolutions are padded so every map stays aligned with the input
and nothing needs cropping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import vgg

from data.cityscapes import NUM_CLASSES
from eval.segmenters.pretrained import torch_hub_weights


@dataclass
class FCN8sConfig:
    """FCN-8s size. ``width_mult`` < 1 scales every VGG16 and fc6/fc7 width (small test/demo models);
    ``batch_norm`` uses VGG16-BN instead of plain VGG16 (easier to train from scratch)."""
    width_mult: float = 1.0
    batch_norm: bool = False

    def check(self) -> None:
        """ValueError naming a field whose value builds no network."""
        if not (math.isfinite(self.width_mult) and self.width_mult > 0):
            raise ValueError(f"width_mult must be a number > 0, got {self.width_mult}")


def display_name(config: FCN8sConfig) -> str:
    extras = [f"width x{config.width_mult:g}"] if config.width_mult != 1.0 else []
    extras += ["BN"] if config.batch_norm else []
    return "FCN-8s" + (f" ({', '.join(extras)})" if extras else "")


def _bilinear_kernel(channels: int, size: int) -> torch.Tensor:
    """Weights [C, C, k, k] that make a transposed convolution upsample each channel bilinearly."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float32) - center).abs() / factor
    kernel = ramp[:, None] * ramp[None, :]
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = kernel
    return weight


def _upsample(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Learnable exact ``factor``x upsampling (kernel 2f, stride f, padding f/2), bilinear at start."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(_bilinear_kernel(channels, 2 * factor))
    return up


class FCN8s(nn.Module):
    """VGG16 FCN-8s: pool3 (/8), pool4 (/16) and fc7 (/32) class scores fused by 2x, 2x, 8x upsampling."""

    size_divisor = 32

    def __init__(self, num_classes: int = NUM_CLASSES, config: FCN8sConfig = FCN8sConfig()):
        super().__init__()
        self.batch_norm = config.batch_norm

        def width(channels: int) -> int:
            return max(1, int(round(channels * config.width_mult)))

        if config.width_mult == 1.0:  # torchvision's own module layout, so ImageNet weights load as is
            features = (vgg.vgg16_bn if config.batch_norm else vgg.vgg16)(weights=None).features
        else:
            cfg = [v if v == "M" else width(v) for v in vgg.cfgs["D"]]
            features = vgg.make_layers(cfg, batch_norm=config.batch_norm)
        pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]  # 5 pools
        self.to_pool3 = features[: pools[2] + 1]
        self.to_pool4 = features[pools[2] + 1: pools[3] + 1]
        self.to_pool5 = features[pools[3] + 1:]
        fc = width(4096)
        # fc6 / fc7 of VGG16 as convolutions (fc6 is 7x7, padded to keep the /32 map's size).
        self.fc = nn.Sequential(
            nn.Conv2d(width(512), fc, 7, padding=3), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Conv2d(fc, fc, 1), nn.ReLU(inplace=True), nn.Dropout(0.5),
        )
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        self.score_pool4 = nn.Conv2d(width(512), num_classes, 1)
        self.score_pool3 = nn.Conv2d(width(256), num_classes, 1)
        for score in (self.score_fr, self.score_pool4, self.score_pool3):  # as the original: start at 0
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
        for conv in (self.fc[0], self.fc[3]):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        self.upscore2 = _upsample(num_classes, 2)
        self.upscore_pool4 = _upsample(num_classes, 2)
        self.upscore8 = _upsample(num_classes, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool3 = self.to_pool3(x)
        pool4 = self.to_pool4(pool3)
        pool5 = self.to_pool5(pool4)
        score = self.upscore2(self.score_fr(self.fc(pool5)))             # /16
        score = self.upscore_pool4(score + self.score_pool4(pool4))       # /8
        return self.upscore8(score + self.score_pool3(pool3))             # /1

    def load_imagenet(self, allow_download: bool) -> str | None:
        """Initialise VGG16 (and fc6/fc7) from torchvision's ImageNet weights; returns a note or None."""
        if self.fc[0].out_channels != 4096:  # only the full-width network has ImageNet weights
            return None
        weights = vgg.VGG16_BN_Weights.IMAGENET1K_V1 if self.batch_norm else vgg.VGG16_Weights.IMAGENET1K_V1
        state = torch_hub_weights(weights.url, allow_download)
        if state is None:
            return None
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        ours = list(self.to_pool3) + list(self.to_pool4) + list(self.to_pool5)
        nn.Sequential(*ours).load_state_dict(features)
        with torch.no_grad():  # the classifier's fully connected fc6 / fc7 as convolutions
            self.fc[0].weight.copy_(state["classifier.0.weight"].view(4096, 512, 7, 7))
            self.fc[0].bias.copy_(state["classifier.0.bias"])
            self.fc[3].weight.copy_(state["classifier.3.weight"].view(4096, 4096, 1, 1))
            self.fc[3].bias.copy_(state["classifier.3.bias"])
        return f"ImageNet weights {Path(weights.url).name}"
