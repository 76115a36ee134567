"""Adversarial losses on discriminator logits: vanilla (the pix2pix default), lsgan and hinge.

The reconstruction term of pix2pix is plain ``torch.nn.functional.l1_loss`` (weight 100).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GAN_MODES = ("vanilla", "lsgan", "hinge")


class GANLoss(nn.Module):
    """Loss of a discriminator's prediction map (raw logits, any shape) against "real" or "fake".

    ``loss(prediction, target_is_real, for_discriminator=True)`` returns the mean over all elements:

      vanilla  BCE-with-logits against ``real_label`` (1) or ``fake_label`` (0)
      lsgan    squared error against ``real_label`` or ``fake_label``
      hinge    discriminator: mean(relu(1 - p)) for real, mean(relu(1 + p)) for fake;
               generator (``for_discriminator=False``): -mean(p) for real (mean(p) for fake)

    Vanilla and lsgan give the generator the same loss as the discriminator ("call the fake real"), so
    only hinge looks at ``for_discriminator``; the hinge loss ignores the labels. Target tensors are made
    on the fly with the prediction's device, dtype and memory format, so one instance serves any device.
    """

    def __init__(self, mode: str = "vanilla", real_label: float = 1.0, fake_label: float = 0.0):
        super().__init__()
        if mode not in GAN_MODES:
            raise ValueError(f"unknown GAN loss {mode!r}; choose one of {', '.join(GAN_MODES)}")
        self.mode = mode
        self.real_label = real_label
        self.fake_label = fake_label

    def target_like(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        """A tensor shaped like ``prediction`` filled with the real or the fake label."""
        return torch.full_like(prediction, self.real_label if target_is_real else self.fake_label)

    def forward(self, prediction: torch.Tensor, target_is_real: bool,
                for_discriminator: bool = True) -> torch.Tensor:
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(prediction, self.target_like(prediction, target_is_real))
        if self.mode == "lsgan":
            return F.mse_loss(prediction, self.target_like(prediction, target_is_real))
        # hinge
        if not for_discriminator:
            return -prediction.mean() if target_is_real else prediction.mean()
        margin = 1.0 - prediction if target_is_real else 1.0 + prediction
        return F.relu(margin).mean()

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, real_label={self.real_label}, fake_label={self.fake_label}"
