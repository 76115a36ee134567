"""TRAdam (tralgo/tradam.py) against the reference, torch's Adam, and its multi-tensor path."""
import itertools

import pytest
import torch

from tests.tralgo.reference import (FOREACH_CASES, STEPS, ReferenceTR, assert_close, assert_same_trajectory, loss_fn,
                                    lr_at, make_params, mixed_precision_params, run_mixed, run_optimizer, run_reference,
                                    two_groups)
from tralgo import TRAdam


ADAM_CASES = list(itertools.product(["paper", "reference"], [True, False], [0.0, 0.01], [True, False]))


@pytest.mark.parametrize("prox_mode,inner_decay,weight_decay,fused", ADAM_CASES)
def test_tradam_matches_reference(prox_mode, inner_decay, weight_decay, fused):
    lr = 0.01
    params = make_params()
    ref = ReferenceTR(params, "adam", lr, 0.1, 10, inner_decay, prox_mode, weight_decay=weight_decay)
    opt = TRAdam(params, lr=lr, weight_decay=weight_decay, prox=0.1, inner_steps=10, inner_decay=inner_decay,
                 prox_mode=prox_mode, fused=fused, chunk_size=7)  # small chunks: exercise the chunking
    assert_close(run_optimizer(params, opt, lr), run_reference(ref))


def test_groups_carry_their_own_prox_and_inner_steps():
    lr = 0.01
    params = make_params()
    opt = TRAdam([{"params": params[:2], "prox": 0.3, "inner_steps": 4},
                  {"params": params[2:], "inner_steps": 7}], lr=lr, prox=0.1)
    first = ReferenceTR(params[:2], "adam", lr, 0.3, 4, True, "paper")
    second = ReferenceTR(params[2:], "adam", lr, 0.1, 7, True, "paper")
    got = run_optimizer(params, opt, lr)
    for n in range(STEPS):  # both references see gradients of the joint loss
        joint = [w.clone().requires_grad_() for w in first.w + second.w]
        grads = torch.autograd.grad(loss_fn(joint, n), joint)
        first.step(grads[:2], lr_at(n, lr))
        second.step(grads[2:], lr_at(n, lr))
    assert_close(got, first.w + second.w)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("weight_decay,amsgrad", [(0.0, False), (0.01, True)])
def test_tradam_without_prox_is_torch_adam(fused, weight_decay, amsgrad):
    a, b = make_params(torch.float32), make_params(torch.float32)
    ours = TRAdam(a, lr=0.01, weight_decay=weight_decay, amsgrad=amsgrad, prox=0.0, inner_decay=False,
                  fused=fused)
    torchs = torch.optim.Adam(b, lr=0.01, weight_decay=weight_decay, amsgrad=amsgrad,
                              fused=fused, foreach=False if not fused else None)
    assert_close(run_optimizer(a, ours, 0.01), run_optimizer(b, torchs, 0.01), rtol=0, atol=0)


def test_works_with_lr_schedulers_and_closures():
    params = make_params()
    opt = TRAdam(params, lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=5, gamma=0.5)
    ref = ReferenceTR(params, "adam", 0.01, 0.1, 10, True, "paper")
    for n in range(STEPS):
        def closure():
            opt.zero_grad()
            loss = loss_fn(params, n)
            loss.backward()
            return loss
        with torch.no_grad():
            expected = loss_fn(params, n)
        assert torch.equal(opt.step(closure).detach(), expected)  # the closure's loss is returned
        scheduler.step()
    for n in range(STEPS):
        w = [x.clone().requires_grad_() for x in ref.w]
        ref.step(torch.autograd.grad(loss_fn(w, n), w), 0.01 * 0.5 ** (n // 5))
    assert_close(params, ref.w)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.5 ** (STEPS // 5))


def test_grad_scaler_step_gives_the_unscaled_trajectory():
    a, b = make_params(torch.float32), make_params(torch.float32)
    plain = run_optimizer(b, TRAdam(b, lr=0.01), 0.01, steps=15)
    opt = TRAdam(a, lr=0.01)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    for n in range(15):
        opt.param_groups[0]["lr"] = lr_at(n, 0.01)
        opt.zero_grad()
        scaler.scale(loss_fn(a, n)).backward()
        scaler.step(opt)
        scaler.update()
    assert_close(a, plain, rtol=0, atol=0)


def test_params_without_grad_are_skipped_and_get_no_state():
    params = make_params()
    unused = torch.zeros(3, requires_grad=True)
    opt = TRAdam(params + [unused], lr=0.01)
    run_optimizer(params, opt, 0.01, steps=12)
    assert torch.equal(unused, torch.zeros(3)) and unused not in opt.state


def test_memory_is_one_anchor_beyond_adams_state():
    a, b = make_params(torch.float32), make_params(torch.float32)
    ours, torchs = TRAdam(a, lr=0.01), torch.optim.Adam(b, lr=0.01)
    run_optimizer(a, ours, 0.01, steps=3)
    run_optimizer(b, torchs, 0.01, steps=3)

    def state_elements(opt):
        return sum(t.numel() for s in opt.state.values() for t in s.values() if torch.is_tensor(t) and t.dim() > 0)

    assert state_elements(ours) - state_elements(torchs) == sum(p.numel() for p in a)


@pytest.mark.parametrize("prox_mode,weight_decay,dtype", FOREACH_CASES)
def test_multi_tensor_path_follows_the_plain_trajectory(prox_mode, weight_decay, dtype):
    """foreach=True with the fused kernel (fused=None: torch refuses fused=True with foreach=True) equals
    the per-tensor fused path bit for bit (same kernel, same d); foreach=True without it equals the plain
    path bit for bit in fp32 (torch's CPU multi-tensor ops round scalar factors of bf16 tensors
    differently); both follow the plain trajectory. Chunks of 7 elements cut every tensor across kernel
    calls."""
    def make(foreach, fused):
        params = mixed_precision_params() if dtype == torch.bfloat16 else make_params(torch.float32)
        opt = TRAdam(two_groups(params, weight_decay) if dtype == torch.bfloat16 else params, lr=0.01,
                     weight_decay=weight_decay, prox_mode=prox_mode, foreach=foreach, fused=fused, chunk_size=7)
        return run_mixed(params, opt)

    multi_fused, per_tensor_fused = make(True, None), make(False, True)
    multi_plain, plain = make(True, False), make(False, False)
    assert_close(multi_fused, per_tensor_fused, rtol=0, atol=0)
    assert_same_trajectory(multi_plain, plain)
    assert_same_trajectory(multi_fused, plain, fp32_tol=1e-5)


def test_multi_tensor_path_matches_the_reference_in_float64():
    for prox_mode in ("paper", "reference"):
        params = make_params()
        ref = ReferenceTR(params, "adam", 0.01, 0.1, 10, True, prox_mode, weight_decay=0.01)
        opt = TRAdam(params, lr=0.01, weight_decay=0.01, prox_mode=prox_mode, foreach=True, chunk_size=11)
        assert_close(run_optimizer(params, opt, 0.01), run_reference(ref))
