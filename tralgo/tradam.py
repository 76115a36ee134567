"""TRAdam: Adam on the trajectory-regularized objective G_t(w) = f(w) + λ/2·‖w − w_t‖².

The n-th ``step()`` (k = n mod S): at k = 0 the anchor w_t becomes a copy of w (``tralgo._base``); then
d = grad + weight_decay·w + c·(w − w_t) and one Adam step along d with step size lr/(k+1), exactly as
``torch.optim.Adam`` computes it (moments and bias-correction count never reset; a complex tensor as
``torch.view_as_real`` of it). The reference update below says it in a few lines; :func:`tradam`
dispatches a bucket of tensors of one device and dtype to it, to the multi-tensor path or to torch's
fused kernel.
"""
from __future__ import annotations

import torch
from torch import Tensor

from tralgo._base import _check, _check_tr_options, _TROptimizerBase
from tralgo._fused_kernels import FUSED_ADAM, fused_step
from tralgo._tensors import (_chunk_elements, _chunks, _direction, _directions, _match_layout, _real_views,
                             _shares_layout, _split, _steps_on)

_CPU = torch.device("cpu")


def _single_tensor_tradam(params: list[Tensor], anchors: list[Tensor], states: list[dict], *, c: float, lr: float,
                          beta1: float, beta2: float, eps: float, weight_decay: float, amsgrad: bool) -> None:
    """The reference update: Adam along d, tensor by tensor (torch.optim.Adam's single-tensor formula,
    complex tensors as their real views)."""
    if not params:
        return
    torch._foreach_add_(_steps_on(states, _CPU), 1)
    for p, anchor, state in zip(params, anchors, states):
        d = _direction(p, p.grad, anchor, c)  # grad + c·(w − w_t)
        if weight_decay != 0:  # before the real views, as torch's formula (complex rounding differs)
            d.add_(p, alpha=weight_decay)
        moments = [state[key] for key in _state_keys(amsgrad)]
        p, d, exp_avg, exp_avg_sq, *max_exp_avg_sq = _real_views([p, d, *moments])
        step = state["step"].item()  # a CPU counter: no device sync
        exp_avg.lerp_(d, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(d, d, value=1 - beta2)
        bias_correction1 = 1 - beta1 ** step
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        second_moment = exp_avg_sq
        if amsgrad:
            torch.maximum(max_exp_avg_sq[0], exp_avg_sq, out=max_exp_avg_sq[0])
            second_moment = max_exp_avg_sq[0]
        denom = (second_moment.sqrt() / bias_correction2_sqrt).add_(eps)
        p.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)


class TRAdam(_TROptimizerBase):
    """Adam on the trajectory-regularized objective (TRAdam).

    Args:
        params: parameters or parameter groups (groups may set any keyword below).
        lr, betas, eps, weight_decay, amsgrad: as ``torch.optim.Adam`` (L2 weight decay; complex
            parameters updated as their real views).
        prox: λ, the proximal coefficient (paper: 0.1).
        inner_steps: S, steps between anchor updates (paper: 10).
        inner_decay: inner step size lr/(k+1) (the paper's decreasing step size) instead of lr.
        prox_mode: "paper" (c = λ) or "reference" (c = 2·λ·lr0/lr, the official code).
        fused: None = torch's fused Adam kernel where the device and dtype allow it (not complex);
            True = require it (not with ``foreach=True``, as torch.optim.Adam); False = torch's Adam
            formula in separate operations.
        foreach: None = the multi-tensor path on CUDA, the per-tensor path elsewhere; True / False =
            that path on any device (see the package docstring).
        chunk_size: elements per kernel call; None = 64 MB of d per call on the multi-tensor path,
            2^20 elements (a cache-sized piece of d) on the per-tensor path.
    """

    fused_kernel = FUSED_ADAM
    param_state_keys = (*_TROptimizerBase.param_state_keys, "step", "exp_avg", "exp_avg_sq")

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, prox: float = 0.1, inner_steps: int = 10,
                 inner_decay: bool = True, prox_mode: str = "paper", fused: bool | None = None,
                 foreach: bool | None = None, chunk_size: int | None = None):
        _check(0.0 <= betas[0] < 1.0, "beta1", betas[0], "must be in [0, 1)")
        _check(0.0 <= betas[1] < 1.0, "beta2", betas[1], "must be in [0, 1)")
        _check(eps >= 0.0, "eps", eps, "must be >= 0")
        _check(weight_decay >= 0.0, "weight_decay", weight_decay, "must be >= 0")
        _check_tr_options(lr, prox, inner_steps, prox_mode)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, prox=prox,
                        inner_steps=inner_steps, inner_decay=inner_decay, prox_mode=prox_mode, fused=fused,
                        foreach=foreach)
        super().__init__(params, defaults, chunk_size)

    def _init_state(self, p: Tensor, keys: tuple[str, ...]) -> dict:
        """``p``'s state with its step counter and moments (zero on its first step), laid out as ``p``."""
        state = self.state[p]
        if "step" not in state:
            state["step"] = torch.zeros((), dtype=torch.float32)
        for key in keys:
            if key not in state:
                state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        _match_layout(state, keys, p)
        return state

    def _update(self, group, params, anchors, c, lr, foreach, fused):
        states = [self._init_state(p, _state_keys(group["amsgrad"])) for p in params]
        beta1, beta2 = group["betas"]
        tradam(params, anchors, states, foreach=foreach, fused=fused, chunk_size=self.chunk_size, c=c, lr=lr,
               beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
               amsgrad=group["amsgrad"])


def _state_keys(amsgrad: bool) -> tuple[str, ...]:
    return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if amsgrad else ("exp_avg", "exp_avg_sq")


def tradam(params: list[Tensor], anchors: list[Tensor], states: list[dict], *, foreach: bool, fused: bool,
           chunk_size: int | None, c: float, lr: float, beta1: float, beta2: float, eps: float,
           weight_decay: float, amsgrad: bool) -> None:
    """One TRAdam update of tensors of one device and dtype along d = grad + weight_decay·w + c·(w − w_t)
    with step size ``lr``: torch's fused kernel if ``fused`` (multi-tensor chunks if ``foreach``, else
    per tensor), else the multi-tensor formula if ``foreach``, else the reference update.
    ``states`` hold ``step``, ``exp_avg``, ``exp_avg_sq`` (and ``max_exp_avg_sq``), laid out as ``params``.
    Tensors whose memory layouts do not pair element by element take the reference update."""
    hyper = dict(c=c, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
    if fused:  # the kernel reads memory linearly: a gradient laid out unlike its parameter goes plain
        linear = [_shares_layout(p, [p.grad]) for p in params]
    else:  # the multi-tensor formula takes the whole bucket or none of it
        keys = _state_keys(amsgrad)
        linear = [foreach and all(_shares_layout(p, [p.grad, w, *(s[k] for k in keys)])
                                  for p, w, s in zip(params, anchors, states))] * len(params)
    fast, plain = _split(linear, params, anchors, states)
    _single_tensor_tradam(*plain, **hyper)
    if fast[0] and fused:
        _fused_tradam(*fast, multi_tensor=foreach, chunk_size=chunk_size, **hyper)
    elif fast[0]:
        _multi_tensor_tradam(*fast, chunk_size=chunk_size, **hyper)


def _multi_tensor_tradam(params: list[Tensor], anchors: list[Tensor], states: list[dict], *, chunk_size: int | None,
                         c: float, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float,
                         amsgrad: bool) -> None:
    """The reference update in multi-tensor operations, chunk by chunk (bit-identical to it, but for
    complex tensors with weight decay: added on their real views, as torch's multi-tensor formula does)."""
    torch._foreach_add_(_steps_on(states, _CPU), 1)
    lists = [params, [p.grad for p in params], anchors] + [[s[k] for s in states] for k in _state_keys(amsgrad)]
    lists = [_real_views(tensors) for tensors in lists]
    for index, (w, g, w_t, m, v, *v_max) in _chunks(lists, _chunk_elements(chunk_size, lists[0][0].dtype, True)):
        steps = [states[i]["step"].item() for i in index]  # CPU counters: no device sync
        d = _directions(w, g, w_t, c)
        if weight_decay != 0:
            torch._foreach_add_(d, w, alpha=weight_decay)
        torch._foreach_lerp_(m, d, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, d, d, value=1 - beta2)
        second_moment = v
        if v_max:
            torch._foreach_maximum_(v_max[0], v)
            second_moment = v_max[0]
        denom = torch._foreach_sqrt(second_moment)
        torch._foreach_div_(denom, [(1 - beta2 ** s) ** 0.5 for s in steps])
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(w, m, denom, [-lr / (1 - beta1 ** s) for s in steps])
        del d, denom  # before the next chunk's exist


def _fused_tradam(params: list[Tensor], anchors: list[Tensor], states: list[dict], *, multi_tensor: bool,
                  chunk_size: int | None, c: float, lr: float, beta1: float, beta2: float, eps: float,
                  weight_decay: float, amsgrad: bool) -> None:
    """torch's fused Adam kernel along d, in multi-tensor or per-tensor chunks (:func:`fused_step`)."""
    steps = _steps_on(states, params[0].device)
    torch._foreach_add_(steps, 1)
    moments = [[s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
               [s["max_exp_avg_sq"] for s in states] if amsgrad else []]
    fused_step(FUSED_ADAM, [params, [p.grad for p in params], anchors, *moments], c, weight_decay, chunk_size,
               multi_tensor, steps=steps, lr=lr, beta1=beta1, beta2=beta2, eps=eps, amsgrad=amsgrad,
               maximize=False)
