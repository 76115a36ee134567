"""Confusion matrix and FCN-scores (per-pixel accuracy, per-class accuracy, class IoU).

The formulas are those of pix2pix's Cityscapes evaluation script:

* the confusion matrix has one row per ground-truth class and one column per predicted class; pixels
  whose ground truth is ``ignore_index`` (255) are skipped;
* per-pixel accuracy = trace / total;
* per-class accuracy = mean over classes of diag / row sum;
* class IoU = mean over classes of diag / (row sum + column sum - diag).

Classes that never occur in the ground truth have an undefined accuracy (NaN) and are left out of the
mean. A class that is predicted but absent from the ground truth has IoU 0 and counts in the mean. A
class absent from both the ground truth and the predictions has IoU 0/0 = NaN and, like in the
reference script (``numpy.nanmean``), is left out of the mean.

Unlike the reference script, a prediction outside ``0..num_classes-1`` is an error: it is never
folded into a neighbouring cell and never makes a frame disappear from the totals. A segmenter with
more output channels than classes (pix2pix's Caffe FCN-8s has a 20th channel) gets a C x P matrix
(``predicted_classes=P``): its extra columns count pixels predicted as no class. They are errors for
the pixel's true class (in its row sum, so they lower its accuracy and IoU) and belong to no class's
column.

:func:`fast_hist` / :class:`FastHistMeter` / :func:`fast_hist_scores` reproduce the reference script
(``fast_hist`` and ``get_scores``) bit for bit, quirks included, to match numbers published with it.

Numbers only (and :data:`METRICS`, their names in the paper's tables): their Markdown is :mod:`eval.markdown`'s.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

METRICS = (("pixel_acc", "Per-pixel acc."), ("class_acc", "Per-class acc."), ("class_iou", "Class IOU"))

def _out_of_range_error(name: str, values: torch.Tensor, bad: torch.Tensor, allowed: str) -> ValueError:
    example = int(values[bad].flatten()[0])
    return ValueError(f"{name} holds {int(bad.sum())} value(s) outside {allowed} (e.g. {example})")


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int = 19,
                     ignore_index: int = 255, predicted_classes: int | None = None) -> torch.Tensor:
    """Confusion matrix of ``pred`` against ``target``: int64 tensor [C, P], rows GT, columns prediction.

    ``pred`` and ``target`` are integer tensors of the same shape (any number of frames and pixels),
    on any device; the matrix is computed there with one ``torch.bincount``. Pixels whose target is
    ``ignore_index`` (which must be >= C) are skipped. P = ``predicted_classes`` (default C; at least
    C) is the number of values a prediction may take: columns C..P-1 count predictions of no class.
    A prediction outside ``0..P-1``, or a target outside ``0..C-1`` that is not ``ignore_index``,
    raises ValueError.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(target.shape)}")
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError("prediction and label must be integer tensors (class indices)")
    if ignore_index < num_classes:
        raise ValueError(f"ignore_index ({ignore_index}) must be at least num_classes ({num_classes})")
    columns = num_classes if predicted_classes is None else predicted_classes
    if columns < num_classes:
        raise ValueError(f"predicted_classes ({columns}) must be at least num_classes ({num_classes})")
    pred = pred.reshape(-1)
    target = target.reshape(-1).to(pred.device)
    if pred.numel() == 0:
        return torch.zeros(num_classes, columns, dtype=torch.int64, device=pred.device)
    low, high = torch.aminmax(pred)
    if int(low) < 0 or int(high) >= columns:
        raise _out_of_range_error("prediction", pred, (pred < 0) | (pred >= columns), f"0..{columns - 1}")
    low, high = torch.aminmax(target)
    if int(low) < 0 or int(high) > ignore_index:
        bad = (target < 0) | ((target >= num_classes) & (target != ignore_index))
        raise _out_of_range_error("label", target, bad, f"0..{num_classes - 1} or {ignore_index}")
    # One bincount over (label value, prediction) pairs, label values 0..ignore_index: the rows of
    # the C classes form the matrix, the ignore row is dropped, any other row must be empty.
    rows = ignore_index + 1
    cells = target.long() * columns + pred.long()
    counts = torch.bincount(cells, minlength=rows * columns).reshape(rows, columns)
    stray = counts[num_classes:ignore_index].sum(dim=1).nonzero()
    if stray.numel():
        bad = (target >= num_classes) & (target != ignore_index)
        raise _out_of_range_error("label", target, bad, f"0..{num_classes - 1} or {ignore_index}")
    return counts[:num_classes].clone()


class ConfusionMeter:
    """Running confusion matrix over a whole split, accumulated on the device of the predictions
    ([C, P]: see :func:`confusion_matrix` for ``predicted_classes``)."""

    def __init__(self, num_classes: int = 19, ignore_index: int = 255, device: str | torch.device = "cpu",
                 predicted_classes: int | None = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.predicted_classes = num_classes if predicted_classes is None else predicted_classes
        self.matrix = torch.zeros(num_classes, self.predicted_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of predictions and labels (same shape, integer class indices)."""
        conf = confusion_matrix(pred, target, self.num_classes, self.ignore_index, self.predicted_classes)
        self.matrix += conf.to(self.matrix.device)

    def scores(self) -> dict:
        """FCN-scores of everything added so far (see :func:`fcn_scores`)."""
        return fcn_scores(self.matrix)


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def fcn_scores(conf: torch.Tensor) -> dict:
    """FCN-scores of a confusion matrix (rows ground truth, columns prediction).

    Returns a dict with floats ``pixel_acc``, ``class_acc``, ``class_iou`` and per-class lists
    ``per_class_acc`` (NaN for classes absent from the ground truth) and ``per_class_iou`` (0 for a
    class predicted but absent from the ground truth, NaN for a class absent from both), plus
    ``pixels`` (number of scored pixels). A C x P matrix (P > C) scores C classes; its columns C..P-1
    (predictions of no class) count as errors, and ``no_class_pixels`` says how many pixels they hold.
    Raises ValueError for an empty matrix.
    """
    conf = torch.as_tensor(conf).detach().to("cpu", torch.float64)
    if conf.ndim != 2 or conf.shape[0] > conf.shape[1]:
        raise ValueError(f"confusion matrix must be C x P with P >= C, got shape {tuple(conf.shape)}")
    classes = conf.shape[0]
    total = conf.sum()
    if total <= 0:
        raise ValueError("confusion matrix is empty: no labelled pixel was scored")
    diag = conf.diagonal()
    gt_pixels = conf.sum(dim=1)
    pred_pixels = conf[:, :classes].sum(dim=0)
    per_class_acc = diag / gt_pixels                      # 0/0 -> NaN for classes absent from GT
    per_class_iou = diag / (gt_pixels + pred_pixels - diag)  # 0/x -> 0, 0/0 -> NaN
    per_class_acc = [float(v) for v in per_class_acc]
    per_class_iou = [float(v) for v in per_class_iou]
    scores = {
        "pixel_acc": float(diag.sum() / total),
        "class_acc": _nanmean(per_class_acc),
        "class_iou": _nanmean(per_class_iou),
        "per_class_acc": per_class_acc,
        "per_class_iou": per_class_iou,
        "pixels": int(total),
    }
    if conf.shape[1] > classes:
        scores["no_class_pixels"] = int(conf[:, classes:].sum())
    return scores


# ------------------------------------------------------------------ the reference script, bit for bit
def fast_hist(target: torch.Tensor, pred: torch.Tensor, num_classes: int = 19) -> torch.Tensor | None:
    """pix2pix's ``fast_hist(a=label, b=pred, n)`` for one frame: int64 [n, n], or None for a dropped frame.

    Pixels with a label outside 0..n-1 are skipped; the others are counted with one bincount of
    ``n * label + pred`` into n*n cells. A prediction of n (the Caffe FCN-8s's 20th channel) for true
    class c < n-1 therefore lands in cell [c+1, 0]; for c = n-1 the count runs past n*n cells and the
    reference drops the whole frame (returns 0), here None.
    """
    target = target.reshape(-1).long()
    pred = pred.reshape(-1).to(target.device).long()
    keep = (target >= 0) & (target < num_classes)
    counts = torch.bincount(num_classes * target[keep] + pred[keep], minlength=num_classes ** 2)
    if counts.numel() != num_classes ** 2:
        return None
    return counts.reshape(num_classes, num_classes)


class FastHistMeter:
    """The reference script's histogram over a split, frame by frame (:func:`fast_hist`), with the
    number of frames it dropped and of labelled pixels predicted as no class (which it folds into other
    cells or drops). ``update`` takes a batch [N, H, W] (or one frame [H, W])."""

    def __init__(self, num_classes: int = 19, device: str | torch.device = "cpu"):
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self.frames = 0
        self.dropped_frames = 0
        self.no_class_pixels = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(target.shape)}")
        frames = (pred[None], target[None]) if pred.ndim == 2 else (pred, target)
        for frame_pred, frame_target in zip(*frames):
            hist = fast_hist(frame_target, frame_pred, self.num_classes)
            labelled = (frame_target >= 0) & (frame_target < self.num_classes)
            self.no_class_pixels += int((labelled & (frame_pred >= self.num_classes)).sum())
            self.frames += 1
            if hist is None:
                self.dropped_frames += 1
            else:
                self.matrix += hist.to(self.matrix.device)

    def scores(self) -> dict:
        """:func:`fast_hist_scores` of the histogram plus ``frames``, ``dropped_frames`` and
        ``no_class_pixels``."""
        scores = fast_hist_scores(self.matrix)
        scores.update(frames=self.frames, dropped_frames=self.dropped_frames, no_class_pixels=self.no_class_pixels)
        return scores


def fast_hist_scores(hist: torch.Tensor) -> dict:
    """The reference script's ``get_scores``: every denominator + 1e-12, so a class absent from the
    ground truth has accuracy 0 (not NaN) and counts in the mean. Same keys as :func:`fcn_scores`."""
    hist = torch.as_tensor(hist).detach().cpu().numpy().astype(np.float64)
    diag = np.diag(hist)
    pixel_acc = diag.sum() / (hist.sum() + 1e-12)
    per_class_acc = diag / (hist.sum(1) + 1e-12)
    per_class_iou = diag / (hist.sum(1) + hist.sum(0) - diag + 1e-12)
    return {
        "pixel_acc": float(pixel_acc),
        "class_acc": float(np.nanmean(per_class_acc)),
        "class_iou": float(np.nanmean(per_class_iou)),
        "per_class_acc": [float(v) for v in per_class_acc],
        "per_class_iou": [float(v) for v in per_class_iou],
        "pixels": int(hist.sum()),
    }
