"""What every scorer shares: :class:`Segmenter` (a network plus its input handling) and the image range.

Images are in [-1, 1] (the generator's range); :func:`to_uint8` turns them into the pixels written to
PNG and :func:`from_uint8` back.
"""
from __future__ import annotations

import hashlib
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imported_entries(trained_on: str, file_name: str, data: bytes, file_format: str) -> dict:
    """The metadata entries an imported original's segmenter file shares with the others: no resizing
    inside predict (the net runs at the image's size), no training here, and the file it came from."""
    return {"train_resolution": None, "trained_on": {"name": trained_on}, "val_scores": None, "training": {},
            "source": {"file": file_name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                       "format": file_format}}


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 (same shape), as they are written to PNG."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def from_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [-1, 1]."""
    return images.float() / 127.5 - 1


class Segmenter(nn.Module):
    """A network plus its input handling: images in [-1, 1] -> class scores [N, C, H, W].

    ``net`` is built from ``config`` by the architecture ``arch`` (:func:`eval.segmenters.build_segmenter`
    or an importer); ``display_name`` names it in tables. Inputs are normalised with ``mean``/``std``
    (on [0, 1] RGB) and padded to the network's size divisor; :meth:`predict` runs the network at
    ``input_size`` (its training resolution) when given and returns class indices at the requested
    output size.

    A network whose class sets ``own_input_handling = True`` reproduces an original scorer together
    with that scorer's preprocessing: it takes the images in [-1, 1] as they are and returns scores at
    their size (colour order, value range, padding and cropping are its own business); ``mean``/``std``
    are then unused.

    A network whose class sets ``runs_in_fp32 = True`` (the imported reference scorers, which must
    predict what the original network predicts) never runs under autocast: its scores, their resizing
    and the argmax are computed in float32 whatever autocast the caller has on (evaluate.py --amp).
    """

    def __init__(self, arch: str, config, net: nn.Module, display_name: str, num_classes: int,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size: tuple[int, int] | None = None):
        super().__init__()
        self.arch = arch
        self.config = config
        self.display_name = display_name
        self.num_classes = num_classes
        self.input_size = tuple(input_size) if input_size is not None else None
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def precision(self, images: torch.Tensor) -> AbstractContextManager:
        """Autocast switched off on the images' device for a ``runs_in_fp32`` network; else nothing."""
        if getattr(self.net, "runs_in_fp32", False):
            return torch.autocast(images.device.type, enabled=False)
        return nullcontext()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class scores at the input size for images in [-1, 1] (N, 3, H, W)."""
        with self.precision(images):
            return self._scores(images.float() if getattr(self.net, "runs_in_fp32", False) else images)

    def _scores(self, images: torch.Tensor) -> torch.Tensor:
        if getattr(self.net, "own_input_handling", False):
            return self.net(images)
        x = ((images + 1) / 2 - self.mean) / self.std
        h, w = x.shape[-2:]
        div = getattr(self.net, "size_divisor", 1)
        pad_h, pad_w = (-h) % div, (-w) % div
        if pad_h or pad_w:  # zero after normalisation = the mean colour
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.net(x)[..., :h, :w]

    @torch.no_grad()
    def predict(self, images: torch.Tensor, out_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Class indices [N, H, W] at ``out_size`` (default: the image size). The network sees the
        images at its training resolution; its scores are resized bilinearly to ``out_size``."""
        with self.precision(images):
            return self._predict(images, out_size)

    def _predict(self, images: torch.Tensor, out_size: tuple[int, int] | None) -> torch.Tensor:
        out_size = tuple(out_size) if out_size is not None else tuple(images.shape[-2:])
        if self.input_size is not None and tuple(images.shape[-2:]) != self.input_size:
            images = F.interpolate(images, size=self.input_size, mode="bilinear", align_corners=False,
                                   antialias=True)
        scores = self(images)
        if tuple(scores.shape[-2:]) != out_size:
            scores = F.interpolate(scores.float(), size=out_size, mode="bilinear", align_corners=False)
        return scores.argmax(dim=1)

    def load_imagenet(self, allow_download: bool) -> str | None:
        """ImageNet initialisation of the backbone if its weights are at hand; a note, or None."""
        return self.net.load_imagenet(allow_download)
