"""TRSGD (tralgo/trsgd.py) against the reference, torch's SGD, and its multi-tensor path."""
import pytest
import torch

from tests.tralgo.reference import (FOREACH_CASES, ReferenceTR, assert_close, assert_same_trajectory, make_params,
                                    mixed_precision_params, run_mixed, run_optimizer, run_reference, two_groups)
from tralgo import TRSGD


SGD_CASES = [
    (mode, decay, wd, mom, damp, nest, fused)
    for mode in ["paper", "reference"]
    for decay in [True, False]
    for wd, mom, damp, nest in [(0.0, 0.0, 0.0, False), (0.01, 0.9, 0.0, False), (0.0, 0.9, 0.1, False),
                                (0.01, 0.9, 0.0, True)]
    for fused in [True, False]
]


@pytest.mark.parametrize("prox_mode,inner_decay,weight_decay,momentum,dampening,nesterov,fused", SGD_CASES)
def test_trsgd_matches_reference(prox_mode, inner_decay, weight_decay, momentum, dampening, nesterov, fused):
    lr = 0.05
    params = make_params()
    ref = ReferenceTR(params, "sgd", lr, 0.1, 10, inner_decay, prox_mode, weight_decay=weight_decay,
                      momentum=momentum, dampening=dampening, nesterov=nesterov)
    opt = TRSGD(params, lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                nesterov=nesterov, prox=0.1, inner_steps=10, inner_decay=inner_decay, prox_mode=prox_mode,
                fused=fused)
    assert_close(run_optimizer(params, opt, lr), run_reference(ref))


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_trsgd_without_prox_is_torch_sgd(fused, momentum, nesterov):
    a, b = make_params(torch.float32), make_params(torch.float32)
    ours = TRSGD(a, lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=0.01, prox=0.0,
                 inner_decay=False, fused=fused)
    torchs = torch.optim.SGD(b, lr=0.05, momentum=momentum, nesterov=nesterov, weight_decay=0.01,
                             fused=fused, foreach=False if not fused else None)
    assert_close(run_optimizer(a, ours, 0.05), run_optimizer(b, torchs, 0.05), rtol=0, atol=0)


@pytest.mark.parametrize("prox_mode,weight_decay,dtype", [case for case in FOREACH_CASES if case[1] != 0])
@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_trsgd_multi_tensor_path_follows_the_plain_trajectory(prox_mode, weight_decay, dtype, momentum, nesterov):
    def make(foreach, fused):
        params = mixed_precision_params() if dtype == torch.bfloat16 else make_params(torch.float32)
        opt = TRSGD(two_groups(params, weight_decay) if dtype == torch.bfloat16 else params, lr=0.05,
                    momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, prox_mode=prox_mode,
                    foreach=foreach, fused=fused, chunk_size=7)
        return run_mixed(params, opt)

    plain = make(False, False)
    assert_same_trajectory(make(True, False), plain)
    assert_same_trajectory(make(True, None), plain, fp32_tol=1e-5)  # None: the fused kernel, multi-tensor
