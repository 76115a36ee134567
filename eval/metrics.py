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
folded into a neighbouring cell and never makes a frame disappear from the totals.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch


def _out_of_range_error(name: str, values: torch.Tensor, bad: torch.Tensor, allowed: str) -> ValueError:
    example = int(values[bad].flatten()[0])
    return ValueError(f"{name} holds {int(bad.sum())} value(s) outside {allowed} (e.g. {example})")


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int = 19,
                     ignore_index: int = 255) -> torch.Tensor:
    """Confusion matrix of ``pred`` against ``target``: int64 tensor [C, C], rows GT, columns prediction.

    ``pred`` and ``target`` are integer tensors of the same shape (any number of frames and pixels),
    on any device; the matrix is computed there with one ``torch.bincount``. Pixels whose target is
    ``ignore_index`` (which must be >= C) are skipped. A prediction outside ``0..C-1``, or a target
    outside ``0..C-1`` that is not ``ignore_index``, raises ValueError.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(target.shape)}")
    if pred.is_floating_point() or target.is_floating_point():
        raise ValueError("prediction and label must be integer tensors (class indices)")
    if ignore_index < num_classes:
        raise ValueError(f"ignore_index ({ignore_index}) must be at least num_classes ({num_classes})")
    pred = pred.reshape(-1)
    target = target.reshape(-1).to(pred.device)
    if pred.numel() == 0:
        return torch.zeros(num_classes, num_classes, dtype=torch.int64, device=pred.device)
    low, high = torch.aminmax(pred)
    if int(low) < 0 or int(high) >= num_classes:
        raise _out_of_range_error("prediction", pred, (pred < 0) | (pred >= num_classes), f"0..{num_classes - 1}")
    low, high = torch.aminmax(target)
    if int(low) < 0 or int(high) > ignore_index:
        bad = (target < 0) | ((target >= num_classes) & (target != ignore_index))
        raise _out_of_range_error("label", target, bad, f"0..{num_classes - 1} or {ignore_index}")
    # One bincount over (label value, prediction) pairs, label values 0..ignore_index: the rows of
    # the C classes form the matrix, the ignore row is dropped, any other row must be empty.
    rows = ignore_index + 1
    cells = target.long() * num_classes + pred.long()
    counts = torch.bincount(cells, minlength=rows * num_classes).reshape(rows, num_classes)
    stray = counts[num_classes:ignore_index].sum(dim=1).nonzero()
    if stray.numel():
        bad = (target >= num_classes) & (target != ignore_index)
        raise _out_of_range_error("label", target, bad, f"0..{num_classes - 1} or {ignore_index}")
    return counts[:num_classes].clone()


class ConfusionMeter:
    """Running confusion matrix over a whole split, accumulated on the device of the predictions."""

    def __init__(self, num_classes: int = 19, ignore_index: int = 255, device: str | torch.device = "cpu"):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch of predictions and labels (same shape, integer class indices)."""
        conf = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
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
    ``pixels`` (number of scored pixels). Raises ValueError for an empty matrix.
    """
    conf = torch.as_tensor(conf).detach().to("cpu", torch.float64)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {tuple(conf.shape)}")
    total = conf.sum()
    if total <= 0:
        raise ValueError("confusion matrix is empty: no labelled pixel was scored")
    diag = conf.diagonal()
    gt_pixels = conf.sum(dim=1)
    pred_pixels = conf.sum(dim=0)
    per_class_acc = diag / gt_pixels                      # 0/0 -> NaN for classes absent from GT
    per_class_iou = diag / (gt_pixels + pred_pixels - diag)  # 0/x -> 0, 0/0 -> NaN
    per_class_acc = [float(v) for v in per_class_acc]
    per_class_iou = [float(v) for v in per_class_iou]
    return {
        "pixel_acc": float(diag.sum() / total),
        "class_acc": _nanmean(per_class_acc),
        "class_iou": _nanmean(per_class_iou),
        "per_class_acc": per_class_acc,
        "per_class_iou": per_class_iou,
        "pixels": int(total),
    }


def per_class_rows(scores: dict, class_names: Sequence[str] | None = None) -> list[tuple[str, float, float]]:
    """(class name, accuracy, IoU) for each class of ``scores`` (Cityscapes trainId names by default)."""
    if class_names is None:
        from data.cityscapes import CLASS_NAMES
        class_names = CLASS_NAMES
    accs, ious = scores["per_class_acc"], scores["per_class_iou"]
    if len(class_names) != len(accs):
        raise ValueError(f"{len(class_names)} class names for {len(accs)} classes")
    return [(name, acc, iou) for name, acc, iou in zip(class_names, accs, ious)]


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def per_class_table(scores: dict, class_names: Sequence[str] | None = None, digits: int = 3) -> str:
    """Markdown table with one line per class: name, accuracy, IoU ("n/a" where undefined)."""
    lines = ["| Class | Accuracy | IoU |", "|---|---:|---:|"]
    for name, acc, iou in per_class_rows(scores, class_names):
        lines.append(f"| {name} | {_fmt(acc, digits)} | {_fmt(iou, digits)} |")
    return "\n".join(lines)
