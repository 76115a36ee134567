"""TRSGD: SGD (momentum, dampening, nesterov) on the trajectory-regularized objective
G_t(w) = f(w) + λ/2·‖w − w_t‖².

The n-th ``step()`` (k = n mod S): at k = 0 the anchor w_t becomes a copy of w (``tralgo._base``); then
d = grad + weight_decay·w + c·(w − w_t) and one SGD step along d with step size lr/(k+1), exactly as
``torch.optim.SGD`` computes it (on complex tensors, as torch does: the update is linear, so it equals
that of their real views). The reference update below says it in a few lines; :func:`trsgd`
dispatches a bucket of tensors of one device and dtype to it, to the multi-tensor path or to torch's
fused kernel.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from tralgo._base import _check, _check_tr_options, _TROptimizerBase
from tralgo._fused_kernels import FUSED_SGD, fused_step
from tralgo._tensors import _chunk_elements, _chunks, _direction, _directions, _match_layout, _shares_layout, _split


def _single_tensor_trsgd(params: list[Tensor], anchors: list[Tensor], states: list[dict], *, c: float, lr: float,
                         weight_decay: float, momentum: float, dampening: float, nesterov: bool) -> None:
    """The reference update: SGD along d, tensor by tensor (torch.optim.SGD's single-tensor formula);
    each d lives only while its tensor is updated."""
    for p, anchor, state in zip(params, anchors, states):
        d = _direction(p, p.grad, anchor, c)  # grad + c·(w − w_t)
        if weight_decay != 0:
            d.add_(p, alpha=weight_decay)
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.clone()
            else:
                buf.mul_(momentum).add_(d, alpha=1 - dampening)
            d = d.add(buf, alpha=momentum) if nesterov else buf
        p.add_(d, alpha=-lr)


class TRSGD(_TROptimizerBase):
    """SGD (with momentum, dampening, nesterov) on the trajectory-regularized objective (TRSGD).

    Args as ``torch.optim.SGD`` plus ``prox`` (λ), ``inner_steps`` (S), ``inner_decay``, ``prox_mode``,
    ``fused`` (None = torch's fused SGD kernel where the device and dtype allow it, not complex; True is
    refused with ``foreach=True``, as by torch.optim.SGD), ``foreach`` (None = the multi-tensor path on
    CUDA) and ``chunk_size``, as for :class:`tralgo.TRAdam`.
    """

    fused_kernel = FUSED_SGD

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, prox: float = 0.1, inner_steps: int = 10,
                 inner_decay: bool = True, prox_mode: str = "paper", fused: bool | None = None,
                 foreach: bool | None = None, chunk_size: int | None = None):
        _check(momentum >= 0.0, "momentum", momentum, "must be >= 0")
        _check(weight_decay >= 0.0, "weight_decay", weight_decay, "must be >= 0")
        _check(not nesterov or (momentum > 0 and dampening == 0), "nesterov", nesterov,
               "requires momentum > 0 and dampening = 0")
        _check_tr_options(lr, prox, inner_steps, prox_mode)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, prox=prox, inner_steps=inner_steps, inner_decay=inner_decay,
                        prox_mode=prox_mode, fused=fused, foreach=foreach)
        super().__init__(params, defaults, chunk_size)

    def _update(self, group, params, anchors, c, lr, foreach, fused):
        states = [self.state[p] for p in params]
        for p, state in zip(params, states):
            _match_layout(state, ("momentum_buffer",), p)
        trsgd(params, anchors, states, foreach=foreach, fused=fused, chunk_size=self.chunk_size, c=c, lr=lr,
              weight_decay=group["weight_decay"], momentum=group["momentum"], dampening=group["dampening"],
              nesterov=group["nesterov"])


def trsgd(params: list[Tensor], anchors: list[Tensor], states: list[dict], *, foreach: bool, fused: bool,
          chunk_size: int | None, c: float, lr: float, weight_decay: float, momentum: float, dampening: float,
          nesterov: bool) -> None:
    """One TRSGD update of tensors of one device and dtype along d = grad + weight_decay·w + c·(w − w_t)
    with step size ``lr``: torch's fused kernel if ``fused`` (multi-tensor chunks if ``foreach``, else
    per tensor), else the multi-tensor formula if ``foreach``, else the reference update. ``states``
    hold the ``momentum_buffer`` (created on the first step), laid out as ``params``. Tensors whose
    memory layouts do not pair element by element take the reference update."""
    hyper = dict(c=c, lr=lr, weight_decay=weight_decay, momentum=momentum, dampening=dampening, nesterov=nesterov)
    # kernels and multi-tensor calls read memory linearly: a gradient laid out unlike its parameter goes plain
    linear = [(fused or foreach) and _shares_layout(p, [p.grad, w]) for p, w in zip(params, anchors)]
    fast, plain = _split(linear, params, anchors, states)
    _single_tensor_trsgd(*plain, **hyper)
    for is_first, lists in _by_first_step(*fast, momentum):
        if fused:
            _fused_trsgd(*lists, is_first=is_first, multi_tensor=foreach, chunk_size=chunk_size, **hyper)
        else:
            _multi_tensor_trsgd(*lists, is_first=is_first, chunk_size=chunk_size, **hyper)


def _by_first_step(params: list[Tensor], anchors: list[Tensor], states: list[dict],
                   momentum: float) -> Iterator[tuple[bool, list[list]]]:
    """(is_first, [params, anchors, states]) for the parameters whose momentum buffer starts now and for
    the others: kernels take one ``is_first_step`` per call (two calls on first steps only)."""
    first = [momentum != 0 and "momentum_buffer" not in s for s in states]
    for is_first in (True, False):
        lists, _ = _split([f == is_first for f in first], params, anchors, states)
        if lists[0]:
            yield is_first, lists


def _momentum_buffers(params: list[Tensor], states: list[dict], momentum: float, is_first: bool) -> list[Tensor]:
    """The momentum buffers of ``params`` (created empty on their first step), [] without momentum."""
    if momentum == 0:
        return []
    if is_first:
        for p, state in zip(params, states):
            state["momentum_buffer"] = torch.empty_like(p, memory_format=torch.preserve_format)
    return [state["momentum_buffer"] for state in states]


def _multi_tensor_trsgd(params: list[Tensor], anchors: list[Tensor], states: list[dict], *, is_first: bool,
                        chunk_size: int | None, c: float, lr: float, weight_decay: float, momentum: float,
                        dampening: float, nesterov: bool) -> None:
    """The reference update in multi-tensor operations, chunk by chunk (bit-identical to it)."""
    buffers = _momentum_buffers(params, states, momentum, is_first)
    lists = [params, [p.grad for p in params], anchors] + ([buffers] if buffers else [])
    for _, (w, g, w_t, *bufs) in _chunks(lists, _chunk_elements(chunk_size, params[0].dtype, multi_tensor=True)):
        d = _directions(w, g, w_t, c)
        if weight_decay != 0:
            torch._foreach_add_(d, w, alpha=weight_decay)
        if momentum != 0:
            if is_first:
                torch._foreach_copy_(bufs[0], d)
            else:
                torch._foreach_mul_(bufs[0], momentum)
                torch._foreach_add_(bufs[0], d, alpha=1 - dampening)
            if nesterov:
                torch._foreach_add_(d, bufs[0], alpha=momentum)
            else:
                d = bufs[0]
        torch._foreach_add_(w, d, alpha=-lr)
        del d  # before the next chunk's d exists


def _fused_trsgd(params: list[Tensor], anchors: list[Tensor], states: list[dict], *, is_first: bool,
                 multi_tensor: bool, chunk_size: int | None, c: float, lr: float, weight_decay: float,
                 momentum: float, dampening: float, nesterov: bool) -> None:
    """torch's fused SGD kernel along d, in multi-tensor or per-tensor chunks (:func:`fused_step`)."""
    buffers = _momentum_buffers(params, states, momentum, is_first)
    fused_step(FUSED_SGD, [params, [p.grad for p in params], anchors, buffers], c, weight_decay, chunk_size,
               multi_tensor, momentum=momentum, lr=lr, dampening=dampening, nesterov=nesterov, maximize=False,
               is_first_step=is_first)
