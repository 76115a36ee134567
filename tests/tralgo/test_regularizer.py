"""TrajectoryRegularizer (tralgo/regularizer.py) around torch's optimizers."""
import pytest
import torch

from tests.tralgo.reference import ReferenceTR, assert_close, make_params, run_optimizer, run_reference
from tralgo import TRSGD, TrajectoryRegularizer


@pytest.mark.parametrize("prox_mode", ["paper", "reference"])
def test_wrapper_matches_reference_adamw(prox_mode):
    lr = 0.01
    params = make_params()
    ref = ReferenceTR(params, "adamw", lr, 0.1, 10, True, prox_mode, weight_decay=0.05)
    opt = TrajectoryRegularizer(torch.optim.AdamW(params, lr=lr, weight_decay=0.05), prox=0.1, inner_steps=10,
                                prox_mode=prox_mode)
    assert_close(run_optimizer(params, opt, lr), run_reference(ref))


def test_wrapper_matches_trsgd():
    lr = 0.05
    a, b = make_params(), make_params()
    tr = TRSGD(a, lr=lr, momentum=0.9, weight_decay=0.01, fused=False)
    wrapped = TrajectoryRegularizer(torch.optim.SGD(b, lr=lr, momentum=0.9, weight_decay=0.01))
    assert_close(run_optimizer(b, wrapped, lr), run_optimizer(a, tr, lr), rtol=0, atol=0)
