"""Segment -> score: the FCN-score of one set of images under one segmenter.

* :func:`score_batches` - segment batches and accumulate the confusion matrix on the device
  (:func:`new_meter`: ours, or the reference script's ``fast_hist`` with its quirks);
* :func:`score_images`, :func:`score_folder`, :func:`score_real_photos` - that for an
  :class:`eval.eval_sets.EvalSet`'s frames (under ``fullres`` each image upsampled to its label's size first);
* :func:`scores_of` - the FCN-scores with the confusion matrix, as results.json holds them.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image

from common.amp import autocast
from data.cityscapes import NUM_CLASSES
from data.images import read_rgb
from eval.eval_sets import EvalSet, check_image_folder
from eval.metrics import ConfusionMeter, FastHistMeter, fcn_scores
from eval.segmenters.base import Segmenter, from_uint8


def new_meter(segmenter: Segmenter, device: torch.device, fast_hist: bool = False):
    """The accumulator for scoring ``segmenter`` on the 19 classes.

    Ours: a 19 x P confusion matrix, P = the segmenter's output channels (at least 19), so predictions
    of an extra channel (the Caffe FCN-8s's 20th) are errors for the pixel's true class. With
    ``fast_hist``: the reference script's histogram, quirks and dropped frames included.
    """
    if fast_hist:
        return FastHistMeter(NUM_CLASSES, device=device)
    return ConfusionMeter(NUM_CLASSES, device=device, predicted_classes=max(NUM_CLASSES, segmenter.num_classes))


@torch.no_grad()
def score_batches(segmenter: Segmenter, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  device: torch.device, amp: bool = False, bar=None, meter=None) -> torch.Tensor:
    """Confusion matrix of ``segmenter`` over (images in [-1, 1] [N,3,H,W], labels [N,h,w]) batches.

    Predictions are made at the label size (class scores resized bilinearly when the sizes differ)
    and accumulated on ``device`` into ``meter`` (default: :func:`new_meter`), whose matrix is returned.
    """
    segmenter = segmenter.to(device).eval()
    meter = meter if meter is not None else new_meter(segmenter, device)
    for images, labels in batches:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with autocast(device, amp):
            pred = segmenter.predict(images, out_size=tuple(labels.shape[-2:]))
        meter.update(pred, labels)
        if bar is not None:
            bar.update(images.shape[0])
    return meter.matrix


def upsample_like_imresize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [3, h, w] -> uint8 [3, H, W] by PIL's bilinear resize, as ``scipy.misc.imresize(im, (H, W))``
    did in the reference script (it handed uint8 images to PIL unchanged)."""
    array = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    resized = Image.fromarray(array).resize((size[1], size[0]), Image.BILINEAR)
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)


def _evalset_batches(evalset: EvalSet, image_of: Callable[[int], torch.Tensor], batch_size: int):
    """Batches of (images in [-1, 1], labels). Under fullres each image is first upsampled to its
    label's size (:func:`upsample_like_imresize`); a batch then holds consecutive frames of one size."""
    if evalset.protocol != "fullres":
        for start in range(0, len(evalset), batch_size):
            indices = range(start, min(len(evalset), start + batch_size))
            images = torch.stack([image_of(i) for i in indices])
            yield from_uint8(images), torch.stack([evalset.label(i) for i in indices])
        return
    images, labels = [], []
    for i in range(len(evalset)):
        label = evalset.label(i)
        if labels and (len(labels) == batch_size or label.shape != labels[0].shape):
            yield from_uint8(torch.stack(images)), torch.stack(labels)
            images, labels = [], []
        images.append(upsample_like_imresize(image_of(i), tuple(label.shape)))
        labels.append(label)
    if labels:
        yield from_uint8(torch.stack(images)), torch.stack(labels)


def score_images(segmenter: Segmenter, evalset: EvalSet, image_of: Callable[[int], torch.Tensor],
                 device: torch.device, batch_size: int = 8, amp: bool = False, bar=None, meter=None) -> torch.Tensor:
    """Confusion matrix of ``segmenter`` on the images ``image_of(i)`` (uint8 [3, S, S]) of ``evalset``."""
    return score_batches(segmenter, _evalset_batches(evalset, image_of, batch_size), device, amp, bar, meter)


def score_folder(segmenter: Segmenter, evalset: EvalSet, folder, device: torch.device, batch_size: int = 8,
                 amp: bool = False, bar=None, meter=None) -> torch.Tensor:
    """Confusion matrix of ``segmenter`` on the ``<frame>.png`` images of ``folder``."""
    paths = check_image_folder(folder, evalset)
    return score_images(segmenter, evalset, lambda i: read_rgb(paths[i]), device, batch_size, amp, bar, meter)


def score_real_photos(segmenter: Segmenter, evalset: EvalSet, device: torch.device, batch_size: int = 8,
                      amp: bool = False, bar=None, meter=None) -> torch.Tensor:
    """Confusion matrix of ``segmenter`` on the real val photos at S x S (the ground-truth row)."""
    return score_images(segmenter, evalset, evalset.real_photo, device, batch_size, amp, bar, meter)


def scores_of(scored) -> dict:
    """FCN-scores plus the confusion matrix itself (as nested lists, for results.json) of a meter
    (its own ``scores()``: the reference's with ``fast_hist``) or of a confusion matrix."""
    if isinstance(scored, torch.Tensor):
        scores, matrix = fcn_scores(scored), scored
    else:
        scores, matrix = scored.scores(), scored.matrix
    scores["confusion"] = matrix.cpu().tolist()
    return scores
