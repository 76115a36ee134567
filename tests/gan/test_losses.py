"""Tests of gan.losses against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from gan.losses import GAN_MODES, GANLoss

# logits p = 0, 2, -1, 3 (mean 1)
LOGITS = [[0.0, 2.0], [-1.0, 3.0]]


def logits(dtype=torch.float32, **kwargs):
    return torch.tensor(LOGITS, dtype=dtype, **kwargs).reshape(1, 1, 2, 2)


def test_vanilla_is_binary_cross_entropy_on_logits():
    values = [v for row in LOGITS for v in row]
    # -log(sigmoid(p)) = log(1 + e^-p) for "real", -log(1 - sigmoid(p)) = log(1 + e^p) for "fake"
    real = sum(math.log1p(math.exp(-p)) for p in values) / 4
    fake = sum(math.log1p(math.exp(p)) for p in values) / 4
    assert real == pytest.approx(0.545481, abs=1e-6)
    assert fake == pytest.approx(1.545481, abs=1e-6)
    loss = GANLoss("vanilla")
    assert loss(logits(), True).item() == pytest.approx(real, rel=1e-6)
    assert loss(logits(), False).item() == pytest.approx(fake, rel=1e-6)
    # the generator's loss is the loss against "real"
    assert loss(logits(), True, for_discriminator=False).item() == pytest.approx(real, rel=1e-6)


def test_vanilla_is_the_default_and_labels_can_be_smoothed():
    assert GANLoss().mode == "vanilla"
    values = [v for row in LOGITS for v in row]
    # BCE(p, y) = log(1 + e^p) - y p
    expected = sum(math.log1p(math.exp(p)) - 0.9 * p for p in values) / 4
    assert GANLoss(real_label=0.9)(logits(), True).item() == pytest.approx(expected, rel=1e-6)


def test_lsgan_is_mean_squared_error():
    loss = GANLoss("lsgan")
    assert loss(logits(), True).item() == pytest.approx((1 + 1 + 4 + 4) / 4)  # (p - 1)^2
    assert loss(logits(), False).item() == pytest.approx((0 + 4 + 1 + 9) / 4)  # p^2


def test_hinge_for_discriminator_and_generator():
    loss = GANLoss("hinge")
    assert loss(logits(), True).item() == pytest.approx((1 + 0 + 2 + 0) / 4)  # relu(1 - p)
    assert loss(logits(), False).item() == pytest.approx((1 + 3 + 0 + 4) / 4)  # relu(1 + p)
    assert loss(logits(), True, for_discriminator=False).item() == pytest.approx(-1.0)  # -mean(p)


@pytest.mark.parametrize("mode", GAN_MODES)
def test_targets_follow_the_prediction_dtype_and_layout(mode):
    loss = GANLoss(mode)
    prediction = logits(torch.float64).requires_grad_()
    value = loss(prediction, False)
    assert value.dtype == torch.float64 and value.dim() == 0
    value.backward()
    assert prediction.grad.shape == prediction.shape
    # a channels_last prediction map gives the same loss
    wide = torch.randn(2, 1, 5, 7)
    cl = wide.to(memory_format=torch.channels_last)
    assert loss(cl, True).item() == pytest.approx(loss(wide, True).item(), rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mode", GAN_MODES)
def test_loss_on_cuda(mode):
    value = GANLoss(mode)(logits(device="cuda"), True)
    assert value.device.type == "cuda"
    assert value.item() == pytest.approx(GANLoss(mode)(logits(), True).item(), rel=1e-5)


def test_unknown_mode_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match="vanilla, lsgan, hinge"):
        GANLoss("wgan")
