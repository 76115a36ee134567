"""Confusion matrix and FCN-scores against a pixel-by-pixel implementation of the pix2pix formulas."""
import math

import numpy as np
import pytest
import torch

from eval.metrics import ConfusionMeter, confusion_matrix, fcn_scores

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


# ------------------------------------------------------------------ a 20th output channel
def test_20th_channel_predictions_are_errors_for_the_true_class():
    # 6 labelled pixels: class 0 twice right, once as channel 20; class 1 right, once as class 0,
    # once as channel 20; one ignored pixel predicted as channel 20 counts nowhere.
    target = torch.tensor([0, 0, 0, 1, 1, 1, IGNORE])
    pred = torch.tensor([0, 0, 19, 1, 0, 19, 19])
    conf = confusion_matrix(pred, target, predicted_classes=20)
    assert conf.shape == (19, 20)
    assert conf[0, 0] == 2 and conf[0, 19] == 1 and conf[1, 1] == 1 and conf[1, 0] == 1 and conf[1, 19] == 1
    assert int(conf.sum()) == 6 and int(conf[:, :19].sum()) == 4
    scores = fcn_scores(conf)
    assert scores["pixel_acc"] == pytest.approx(3 / 6)
    assert scores["per_class_acc"][0] == pytest.approx(2 / 3) and scores["per_class_acc"][1] == pytest.approx(1 / 3)
    assert scores["per_class_iou"][0] == pytest.approx(2 / (3 + 3 - 2))  # row 3 (with channel 20), column 3
    assert scores["per_class_iou"][1] == pytest.approx(1 / (3 + 1 - 1))
    assert scores["class_acc"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert scores["no_class_pixels"] == 2 and scores["pixels"] == 6
    assert "no_class_pixels" not in fcn_scores(conf[:, :19].clone())
    with pytest.raises(ValueError, match="outside 0..19"):
        confusion_matrix(torch.tensor([20]), torch.tensor([0]), predicted_classes=20)
    meter = ConfusionMeter(predicted_classes=20)
    meter.update(pred[:3], target[:3])
    meter.update(pred[3:], target[3:])
    assert torch.equal(meter.matrix, conf)


# ------------------------------------------------------------ the reference script's fast_hist
def test_fast_hist_shifts_a_20th_channel_prediction_to_the_next_row_first_column():
    from eval.metrics import fast_hist
    target = torch.tensor([[0, 0, 3], [3, 7, IGNORE]], dtype=torch.uint8)
    pred = torch.tensor([[0, 19, 3], [19, 2, 19]], dtype=torch.uint8)
    hist = fast_hist(target, pred)
    expected = torch.zeros(19, 19, dtype=torch.int64)
    expected[0, 0] = 1      # right
    expected[1, 0] = 1      # class 0 predicted as channel 20 -> cell [0+1, 0] (counts as "sidewalk seen as road")
    expected[3, 3] = 1      # right
    expected[4, 0] = 1      # class 3 predicted as channel 20 -> cell [3+1, 0]
    expected[7, 2] = 1
    assert torch.equal(hist, expected)  # the ignored pixel's channel-20 prediction counts nowhere


def test_fast_hist_drops_a_frame_with_a_20th_channel_prediction_on_class_18():
    from eval.metrics import FastHistMeter, fast_hist, fast_hist_scores
    target = torch.tensor([[18, 18, 0, 0]])
    assert fast_hist(target, torch.tensor([[18, 19, 0, 0]])) is None  # 19 * 18 + 19 = 361: past the 361 cells
    frames_pred = torch.tensor([[[18, 19, 0, 0]], [[18, 18, 0, 19]], [[18, 0, 0, 0]]])
    frames_target = target.expand(3, 1, 4)
    meter = FastHistMeter()
    meter.update(frames_pred, frames_target)
    assert meter.frames == 3 and meter.dropped_frames == 1 and meter.no_class_pixels == 2
    expected = torch.zeros(19, 19, dtype=torch.int64)  # frames 2 and 3 only:
    expected[18, 18] = 2 + 1
    expected[0, 0] = 1 + 2
    expected[1, 0] = 1   # frame 2: class 0 predicted as channel 20
    expected[18, 0] = 1  # frame 3: class 18 predicted as class 0
    assert torch.equal(meter.matrix, expected)
    scores = meter.scores()
    # get_scores: each denominator + 1e-12, so the 17 classes absent from the labels count as 0 accuracy
    assert scores["pixel_acc"] == 6 / (8 + 1e-12)
    per_class_acc = [3 / (3 + 1e-12)] + [0.0] * 17 + [3 / (4 + 1e-12)]
    assert scores["per_class_acc"] == per_class_acc
    assert scores["class_acc"] == float(np.nanmean(per_class_acc))
    assert scores["per_class_iou"][0] == 3 / (3 + 5 - 3 + 1e-12) and scores["per_class_iou"][1] == 0.0
    assert scores["dropped_frames"] == 1
    assert fast_hist_scores(expected)["class_iou"] == scores["class_iou"]


def test_fast_hist_equals_a_numpy_bincount_per_frame_on_random_frames():
    """The reference's recipe in numpy (bincount of n * label + pred over pixels with 0 <= label < n,
    frames whose count runs past n * n cells left out) on random 20-channel predictions."""
    from eval.metrics import FastHistMeter
    rng = np.random.default_rng(4)
    labels = rng.choice(np.r_[np.arange(19), 255], size=(12, 9, 11)).astype(np.uint8)
    preds = rng.integers(0, 20, size=(12, 9, 11)).astype(np.uint8)
    preds[::3] = np.minimum(preds[::3], 18)  # some frames keep every class-18 pixel within 0..18
    hist, dropped = np.zeros((19, 19)), 0
    for a, b in zip(labels.reshape(12, -1), preds.reshape(12, -1)):
        k = (a >= 0) & (a < 19)
        counts = np.bincount(19 * a[k].astype(int) + b[k], minlength=361)
        if len(counts) == 361:
            hist += counts.reshape(19, 19)
        else:
            dropped += 1
    meter = FastHistMeter()
    meter.update(torch.from_numpy(preds), torch.from_numpy(labels))
    assert np.array_equal(meter.matrix.numpy(), hist) and meter.dropped_frames == dropped and 0 < dropped < 12
