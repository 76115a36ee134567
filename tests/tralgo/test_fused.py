"""The paths through torch's fused kernels (tralgo/_fused_kernels.py): same trajectory, one dtype per call,
fallback where torch lacks a kernel, memory layouts.
"""
import pytest
import torch

from tests.tralgo.reference import assert_close, make_params, mixed_loss, mixed_precision_params, run_optimizer
from tralgo import TRAdam, TRSGD


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_fused_and_plain_paths_follow_the_same_trajectory(dtype):
    a, b = make_params(dtype), make_params(dtype)
    fused = run_optimizer(a, TRAdam(a, lr=0.01, weight_decay=0.01, fused=True, chunk_size=5), 0.01)
    plain = run_optimizer(b, TRAdam(b, lr=0.01, weight_decay=0.01, fused=False), 0.01)
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 2e-2}[dtype]
    assert_close(fused, plain, rtol=tol, atol=tol)
    assert all(p.dtype == dtype for p in a)


@pytest.mark.parametrize("make,kernel", [(lambda p, fused: TRAdam(p, lr=0.01, fused=fused), "_fused_adam_"),
                                         (lambda p, fused: TRSGD(p, lr=0.05, momentum=0.9, fused=fused),
                                          "_fused_sgd_")], ids=["tradam", "trsgd"])
def test_a_torch_without_the_fused_kernel_falls_back_or_refuses(monkeypatch, make, kernel):
    """fused=None takes the plain formula where torch lacks the kernel; fused=True names the problem."""
    plain_params = make_params(torch.float32)
    plain = run_optimizer(plain_params, make(plain_params, False), 0.01, steps=12)
    monkeypatch.delattr(torch, kernel)
    params = make_params(torch.float32)
    assert_close(run_optimizer(params, make(params, None), 0.01, steps=12), plain, rtol=0, atol=0)
    with pytest.raises(ValueError, match=f"Invalid fused: True .*torch.{kernel}"):
        make(make_params(torch.float32), True)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("prox", [0.0, 0.1])
def test_fused_kernel_gets_one_dtype_per_call(monkeypatch, foreach, prox):
    """torch's fused Adam kernel needs one device and dtype per call (CUDA raises otherwise)."""
    kernel, calls = torch._fused_adam_, []

    def one_dtype_per_call(params, grads, exp_avgs, exp_avg_sqs, *args, **kwargs):
        dtypes = {t.dtype for t in [*params, *grads, *exp_avgs, *exp_avg_sqs]}
        devices = {t.device for t in [*params, *grads, *exp_avgs, *exp_avg_sqs]}
        assert len(dtypes) == 1 and len(devices) == 1, f"one call mixes {dtypes} on {devices}"
        calls.append(dtypes.pop())
        return kernel(params, grads, exp_avgs, exp_avg_sqs, *args, **kwargs)

    monkeypatch.setattr(torch, "_fused_adam_", one_dtype_per_call)
    params = mixed_precision_params()
    opt = TRAdam(params, lr=0.01, prox=prox, fused=None, foreach=foreach)  # None: the kernel, for both dtypes
    for n in range(3):
        opt.zero_grad()
        mixed_loss(params, n).backward()
        opt.step()
    assert {torch.bfloat16, torch.float32} <= set(calls)
    # the same as one optimizer per dtype
    separate = mixed_precision_params()
    opts = [TRAdam([p for p in separate if p.dtype == dtype], lr=0.01, prox=prox, fused=None, foreach=foreach)
            for dtype in (torch.bfloat16, torch.float32)]
    for n in range(3):
        for o in opts:
            o.zero_grad()
        mixed_loss(separate, n).backward()
        for o in opts:
            o.step()
    assert_close(params, separate, rtol=0, atol=0)


@pytest.mark.parametrize("make", [lambda p: TRAdam(p, lr=0.01, fused=True, chunk_size=16),
                                  lambda p: TRSGD(p, lr=0.05, momentum=0.9, fused=True)])
def test_channels_last_parameters_follow_the_contiguous_trajectory(make):
    torch.manual_seed(0)
    conv_a = torch.nn.Conv2d(3, 4, 3)
    conv_b = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
    conv_b.load_state_dict(conv_a.state_dict())
    assert conv_b.weight.is_contiguous(memory_format=torch.channels_last)
    opt_a, opt_b = make(list(conv_a.parameters())), make(list(conv_b.parameters()))
    for n in range(12):
        x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(n))
        for conv, opt, inp in ((conv_a, opt_a, x), (conv_b, opt_b, x.contiguous(memory_format=torch.channels_last))):
            opt.zero_grad()
            conv(inp).pow(2).mean().backward()
            opt.step()
    assert_close(list(conv_b.parameters()), list(conv_a.parameters()), rtol=1e-5, atol=1e-6)
