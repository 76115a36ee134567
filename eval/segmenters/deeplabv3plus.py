"""DeepLabV3+ on a timm encoder: the scorer we train for Table 3.

segmentation-models-pytorch DeepLabV3+ on the timm ``xception71`` encoder at output stride 16, our
stand-in for DeepLab's DPC Xception-71 as a network we can train (the original itself is
:mod:`eval.segmenters.dpc_xception71`). timm and segmentation-models-pytorch are imported where a network
is built: they take seconds to import, and most commands never build this network.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from data.cityscapes import NUM_CLASSES
from eval.segmenters.pretrained import timm_weights_overlay


@dataclass
class DeepLabV3PlusConfig:
    """DeepLabV3+ on a timm encoder. The registry entry's encoder is ``xception71``; smaller encoders
    (for tests) are recorded here and in the display name."""
    encoder: str = "xception71"
    output_stride: int = 16
    decoder_channels: int = 256

    def check(self) -> None:
        """ValueError naming a field whose value builds no network."""
        import timm
        if not timm.is_model(self.encoder):
            raise ValueError(f"encoder {self.encoder!r} is not a timm model name")
        if self.output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {self.output_stride}")
        if self.decoder_channels < 1:
            raise ValueError(f"decoder_channels must be >= 1, got {self.decoder_channels}")


def display_name(config: DeepLabV3PlusConfig) -> str:
    if config.encoder == "xception71" and config.decoder_channels == 256:
        return "DeepLabV3+ Xception-71"
    return f"DeepLabV3+ ({config.encoder} encoder, decoder {config.decoder_channels})"


class DeepLabV3Plus(nn.Module):
    """segmentation-models-pytorch DeepLabV3+ with a timm (``tu-``) encoder, no pretrained weights."""

    size_divisor = 32

    def __init__(self, num_classes: int = NUM_CLASSES, config: DeepLabV3PlusConfig = DeepLabV3PlusConfig()):
        super().__init__()
        self.config = config
        self.model = self._build(num_classes, config, encoder_weights=None)

    @staticmethod
    def _build(num_classes, config, encoder_weights, **encoder_kwargs):
        import segmentation_models_pytorch as smp
        return smp.DeepLabV3Plus(encoder_name=f"tu-{config.encoder}", encoder_weights=encoder_weights,
                                 encoder_output_stride=config.output_stride,
                                 decoder_channels=config.decoder_channels, classes=num_classes, **encoder_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def load_imagenet(self, allow_download: bool) -> str | None:
        """Initialise the encoder from timm's ImageNet weights (Hugging Face cache, or online if allowed)."""
        import timm
        cfg = timm.models.get_pretrained_cfg(self.config.encoder)
        hub_id = getattr(cfg, "hf_hub_id", None)
        if not hub_id:
            return None
        extra = timm_weights_overlay(hub_id, allow_download)
        if extra is None:
            return None
        try:
            pretrained = self._build(self.model.segmentation_head[0].out_channels, self.config, True, **extra)
        except Exception:
            return None
        self.model.encoder.load_state_dict(pretrained.encoder.state_dict())
        return f"timm ImageNet weights {hub_id}"
