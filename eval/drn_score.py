"""The mIoU of later labels->photo work: DRN-D-105 (:mod:`eval.segmenters.drn`) under an explicit protocol.

Protocols (``evaluate.py --drn-protocol``):

* ``gan_compression`` (default): GAN Compression's ``metric/cityscapes_mIoU.py``. The generated image
  goes to DRN at its generated size (normalised with DRN's Cityscapes mean and std); DRN's log-softmax
  scores, already at that size, are resized channel by channel to the size of the official label map
  (2048x1024) with PIL's bilinear resize on float32; the argmax is scored against the full-resolution
  trainIds (255 ignored). It needs the official ``gtFine`` layout (``cityscapes_root`` in index.json).
* ``generated_size``: the same network, scored at the generated size against the dataset's S x S
  (nearest-resized) trainIds, without upsampling.

mIoU = nan-mean of the per-class IoU x 100 (:func:`eval.metrics.fcn_scores`' ``class_iou`` x 100).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from common.amp import autocast
from data.images import read_rgb
from eval.eval_sets import EvalSet, check_image_folder, open_eval_set
from eval.segmenters.base import Segmenter, from_uint8

DRN_PROTOCOLS = {
    "gan_compression": "GAN Compression's cityscapes_mIoU.py: DRN at the generated size, its log-softmax "
                       "resized per class to 2048x1024 (PIL bilinear, float32), argmax against the "
                       "full-resolution trainIds",
    "generated_size": "DRN at the generated size, argmax against the S x S trainIds (no upsampling)",
}


def drn_eval_sets(evalsets: dict[Path, EvalSet], protocol: str) -> dict[Path, EvalSet]:
    """The frames of each dataset with the labels ``protocol`` scores against (same keys and frames)."""
    label_protocol = "fullres" if protocol == "gan_compression" else "256"
    return {root: e if e.protocol == label_protocol else
            open_eval_set(root, label_protocol, e.size, len(e)) for root, e in evalsets.items()}


def resize_scores_like_pil(scores: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[C, h, w] float scores -> [C, H, W]: every channel by PIL's bilinear resize in mode F (float32)."""
    array = scores.float().cpu().numpy()
    height, width = size
    return torch.from_numpy(np.stack([np.asarray(Image.fromarray(channel).resize((width, height), Image.BILINEAR))
                                      for channel in array]))


@torch.no_grad()
def score_drn(segmenter: Segmenter, evalset: EvalSet, image_of: Callable[[int], torch.Tensor], device,
              batch_size: int, amp: bool, bar, meter) -> torch.Tensor:
    """Confusion matrix of DRN on the uint8 S x S images ``image_of(i)``, against ``evalset``'s labels."""
    segmenter = segmenter.to(device).eval()
    for start in range(0, len(evalset), batch_size):
        indices = range(start, min(len(evalset), start + batch_size))
        images = from_uint8(torch.stack([image_of(i) for i in indices])).to(device)
        labels = [evalset.label(i) for i in indices]
        with autocast(device, amp):
            scores = segmenter(images).float()
        for frame_scores, label in zip(scores, labels):  # labels of several sizes under gan_compression
            size = tuple(label.shape)
            pred = frame_scores.argmax(0) if tuple(frame_scores.shape[-2:]) == size else \
                resize_scores_like_pil(frame_scores, size).argmax(0)
            meter.update(pred.to(device)[None], label.to(device)[None])
        if bar is not None:
            bar.update(len(indices))
    return meter.matrix


def score_drn_folder(segmenter, evalset, folder, device, batch_size=8, amp=False, bar=None, meter=None):
    """DRN's confusion matrix on the ``<frame>.png`` images of ``folder``."""
    paths = check_image_folder(folder, evalset)
    return score_drn(segmenter, evalset, lambda i: read_rgb(paths[i]), device, batch_size, amp, bar, meter)


def score_drn_real_photos(segmenter, evalset, device, batch_size=8, amp=False, bar=None, meter=None):
    """DRN's confusion matrix on the real val photos at S x S."""
    return score_drn(segmenter, evalset, evalset.real_photo, device, batch_size, amp, bar, meter)
