"""Confusion matrix and FCN-scores against a pixel-by-pixel implementation of the pix2pix formulas."""
import math

import numpy as np
import pytest
import torch

from eval.metrics import ConfusionMeter, confusion_matrix, fcn_scores, per_class_rows, per_class_table

C = 19
IGNORE = 255


def reference_scores(preds, targets, num_classes=C):
    """Straight from the formulas: count pixel by pixel, then the three scores with plain loops."""
    hist = np.zeros((num_classes, num_classes), dtype=np.int64)
    for pred, target in zip(preds, targets):
        for p, t in zip(pred.ravel().tolist(), target.ravel().tolist()):
            if t != IGNORE:
                hist[t, p] += 1
    pixel_acc = sum(hist[i, i] for i in range(num_classes)) / hist.sum()
    accs, ious = [], []
    for i in range(num_classes):
        row = hist[i, :].sum()
        col = hist[:, i].sum()
        accs.append(hist[i, i] / row if row > 0 else float("nan"))
        union = row + col - hist[i, i]
        ious.append(hist[i, i] / union if union > 0 else float("nan"))
    class_acc = np.mean([a for a in accs if not math.isnan(a)])
    class_iou = np.mean([u for u in ious if not math.isnan(u)])
    return hist, pixel_acc, class_acc, class_iou, accs, ious


def random_frames(seed, n=3, shape=(17, 23)):
    """Frames whose labels miss some classes entirely and contain ignore pixels."""
    rng = np.random.default_rng(seed)
    gt_classes = np.array([0, 1, 2, 5, 8, 10, 11, 13])  # classes 3, 4, 6, ... never in the labels
    targets, preds = [], []
    for _ in range(n):
        target = rng.choice(gt_classes, size=shape).astype(np.int64)
        target[rng.random(shape) < 0.2] = IGNORE
        pred = rng.integers(0, 15, size=shape)            # 15..18 never predicted
        agree = rng.random(shape) < 0.5
        pred[agree & (target != IGNORE)] = target[agree & (target != IGNORE)]
        targets.append(target)
        preds.append(pred)
    return preds, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_match_pixel_by_pixel_reference(seed):
    preds, targets = random_frames(seed)
    hist, pixel_acc, class_acc, class_iou, accs, ious = reference_scores(preds, targets)

    conf = confusion_matrix(torch.from_numpy(np.stack(preds)), torch.from_numpy(np.stack(targets)))
    assert conf.dtype == torch.int64 and conf.shape == (C, C)
    np.testing.assert_array_equal(conf.numpy(), hist)

    scores = fcn_scores(conf)
    assert scores["pixel_acc"] == pytest.approx(pixel_acc, abs=1e-12)
    assert scores["class_acc"] == pytest.approx(class_acc, abs=1e-12)
    assert scores["class_iou"] == pytest.approx(class_iou, abs=1e-12)
    np.testing.assert_allclose(scores["per_class_acc"], accs, equal_nan=True)
    np.testing.assert_allclose(scores["per_class_iou"], ious, equal_nan=True)
    assert scores["pixels"] == int((np.stack(targets) != IGNORE).sum())


def test_absent_classes_follow_the_reference_rules():
    # GT has classes 0 and 1; the prediction also uses class 2 (absent from GT); class 3.. never appear.
    target = torch.tensor([[0, 0, 1, 1, IGNORE]])
    pred = torch.tensor([[0, 2, 1, 0, 7]])      # the ignored pixel's prediction is not counted
    scores = fcn_scores(confusion_matrix(pred, target))
    assert scores["pixel_acc"] == pytest.approx(2 / 4)
    acc = scores["per_class_acc"]
    assert acc[0] == pytest.approx(1 / 2) and acc[1] == pytest.approx(1 / 2)
    assert math.isnan(acc[2]) and all(math.isnan(a) for a in acc[3:])
    assert scores["class_acc"] == pytest.approx(0.5)
    iou = scores["per_class_iou"]
    assert iou[0] == pytest.approx(1 / 3)       # 1 / (2 + 2 - 1)
    assert iou[1] == pytest.approx(1 / 2)       # 1 / (2 + 1 - 1)
    assert iou[2] == 0.0                         # predicted, absent from GT: counts as 0
    assert all(math.isnan(u) for u in iou[3:])  # absent from both: left out of the mean
    assert scores["class_iou"] == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)


def test_out_of_range_prediction_is_an_error_not_a_dropped_frame():
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    pred = torch.zeros(2, 4, 4, dtype=torch.long)
    pred[1, 0, 0] = 19  # a 20th class, as the reference FCN-8s can output
    with pytest.raises(ValueError, match="prediction.*outside 0..18"):
        confusion_matrix(pred, target)
    with pytest.raises(ValueError, match="prediction"):
        confusion_matrix(torch.full((3,), -1), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="label"):
        confusion_matrix(torch.zeros(3, dtype=torch.long), torch.tensor([0, 19, 255]))
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long))


def test_meter_accumulates_frame_by_frame_to_the_whole_split_matrix():
    preds, targets = random_frames(5, n=4)
    meter = ConfusionMeter()
    for pred, target in zip(preds, targets):
        meter.update(torch.from_numpy(pred), torch.from_numpy(target).to(torch.uint8))
    whole = confusion_matrix(torch.from_numpy(np.stack(preds)), torch.from_numpy(np.stack(targets)))
    assert torch.equal(meter.matrix, whole)
    assert meter.scores()["pixels"] == int(whole.sum())


def test_empty_matrix_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        fcn_scores(confusion_matrix(torch.zeros(2, dtype=torch.long), torch.full((2,), IGNORE)))


def test_per_class_table_names_every_class():
    preds, targets = random_frames(3, n=1)
    scores = fcn_scores(confusion_matrix(torch.from_numpy(preds[0]), torch.from_numpy(targets[0])))
    names = [f"class{i}" for i in range(C)]
    rows = per_class_rows(scores, names)
    assert [r[0] for r in rows] == names
    table = per_class_table(scores, names)
    lines = table.splitlines()
    assert len(lines) == 2 + C
    assert lines[2 + 15] == "| class15 | n/a | n/a |"  # class 15 is in neither GT nor prediction
    assert lines[2 + 3] == "| class3 | n/a | 0.000 |"  # class 3 is predicted but absent from GT
    assert lines[2 + 0].startswith(f"| class0 | {scores['per_class_acc'][0]:.3f} |")
