"""torch's private optimizer ops, called only here: the fused kernels and the multi-tensor ops.

``torch._fused_adam_`` and ``torch._fused_sgd_`` are the private ops behind ``torch.optim.Adam(fused=True)``
and ``torch.optim.SGD(fused=True)``. We call them, only in :func:`fused_step`, with their schemas

    _fused_adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *, lr: float, beta1,
                 beta2, weight_decay, eps, amsgrad, maximize, grad_scale=None, found_inf=None)
    _fused_sgd_(params, grads, momentum_buffer_list, *, weight_decay, momentum, lr: float, dampening,
                nesterov, maximize, is_first_step, grad_scale=None, found_inf=None)

as printed by torch 2.14.1 (``torch.ops.aten.<name>.default._schema``). Their CUDA kernels predate
torch 2.4; their CPU kernels arrived in torch 2.4 (pytorch/pytorch#123074 for Adam, #123629 for SGD),
which is why pyproject.toml asks for torch>=2.4. Where a kernel is missing, ``fused=None`` falls back
to the plain formulas and ``fused=True`` is refused when the optimizer is built. The ``torch._foreach_*``
ops used by the package are those torch.optim's own multi-tensor paths call (torch>=2.4 has them all);
their absence is reported at import.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from tralgo._tensors import HALF_DTYPES, _chunk_elements, _chunks, _directions, _flat

FUSED_ADAM = "_fused_adam_"
FUSED_SGD = "_fused_sgd_"
_FUSED_DEVICES = ("cpu", "cuda")
_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_FOREACH_OPS = ("_foreach_add", "_foreach_add_", "_foreach_addcdiv_", "_foreach_addcmul_", "_foreach_copy_",
                "_foreach_div_", "_foreach_lerp_", "_foreach_maximum_", "_foreach_mul_", "_foreach_norm",
                "_foreach_sqrt", "_foreach_sub")
_MISSING_FOREACH_OPS = [name for name in _FOREACH_OPS if not hasattr(torch, name)]
if _MISSING_FOREACH_OPS:
    raise ImportError(f"tralgo needs torch>=2.4: torch {torch.__version__} has no "
                      f"{', '.join('torch.' + name for name in _MISSING_FOREACH_OPS)}")


def has_fused_kernel(name: str) -> bool:
    """Whether this torch has the private fused kernel ``torch.<name>`` (e.g. ``FUSED_ADAM``)."""
    return hasattr(torch, name)


def kernel_takes(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether torch's fused kernels exist for tensors of this device type and dtype."""
    return device.type in _FUSED_DEVICES and dtype in _FUSED_DTYPES


def _per_tensor_chunks(lists: list[list[Tensor]], size: int) -> Iterator[tuple[list[int], list[list[Tensor]]]]:
    """As :func:`tralgo._tensors._chunks`, but every chunk is a 1-D piece of one tensor (of each list)."""
    for i in range(len(lists[0])):
        for _, pieces in _chunks([[_flat(tensors[i])] if tensors else [] for tensors in lists], size):
            yield [i], pieces


def _fold_anchor(grads: list[Tensor], anchors: list[Tensor], c: float, scratch: Tensor | None = None) -> list[Tensor]:
    """g − c·w_t for each tensor (one multi-tensor call, or for one 1-D piece into ``scratch``); with
    an L2 coefficient weight_decay + c a kernel then forms d = g + weight_decay·w + c·(w − w_t) itself."""
    if scratch is None:
        return torch._foreach_add(grads, anchors, alpha=-c)
    (grad,), (anchor,) = grads, anchors
    return [torch.add(grad, anchor, alpha=-c, out=scratch[: grad.numel()])]


def fused_step(kernel_name: str, tensors: list[list[Tensor]], c: float, weight_decay: float, chunk_size: int | None,
               multi_tensor: bool, steps: list[Tensor] | None = None, **options) -> None:
    """One call of torch's fused optimizer kernel ``torch.<kernel_name>`` per chunk, along
    d = grad + weight_decay·w + c·(w − w_t), for tensors of one device and dtype.

    ``tensors`` holds the lists [params, grads, anchors, *state lists in the kernel's argument order]
    (an empty list where the kernel gets none, e.g. no momentum buffers); ``steps`` the step counters
    the kernel reads (Adam), one per parameter; ``options`` the kernel's other keywords. Chunks hold up
    to ``chunk_size`` elements (None: see :func:`tralgo._tensors._chunk_elements`), spanning tensors
    (``multi_tensor``: d of a chunk formed by one multi-tensor call) or cut from one tensor at a time
    (d formed in one reused scratch buffer). The kernel adds its L2 term to the gradient it is given,
    so for 32/64-bit floats it gets g − c·w_t and the coefficient weight_decay + c: the same d up to
    float rounding. For 16-bit floats, where that rounding would be coarse, d is formed exactly and
    passed with weight_decay. With c = 0 the kernel reads the gradients themselves (it does not write
    them), one call for all tensors.
    """
    kernel = getattr(torch, kernel_name, None)
    if kernel is None:
        raise RuntimeError(f"torch {torch.__version__} has no torch.{kernel_name} (torch>=2.4 has it); "
                           "pass fused=False")
    params, grads, anchors, *states = tensors

    def steps_of(index) -> list[list[Tensor]]:
        return [] if steps is None else [[steps[i] for i in index]]

    if c == 0.0:
        kernel(params, grads, *states, *steps_of(range(len(params))), weight_decay=weight_decay, **options)
        return
    exact = params[0].dtype in HALF_DTYPES
    chunk_elements = _chunk_elements(chunk_size, params[0].dtype, multi_tensor)
    if multi_tensor:
        pieces, scratch = _chunks(tensors, chunk_elements), None
    else:
        chunk_elements = min(chunk_elements, max(p.numel() for p in params))
        pieces = _per_tensor_chunks(tensors, chunk_elements)
        scratch = None if exact else torch.empty(chunk_elements, dtype=params[0].dtype, device=params[0].device)
    kernel_decay = weight_decay if exact else weight_decay + c
    for index, (w, g, w_t, *state_pieces) in pieces:
        d = _directions(w, g, w_t, c) if exact else _fold_anchor(g, w_t, c, scratch)
        kernel(w, d, *state_pieces, *steps_of(index), weight_decay=kernel_decay, **options)
        del d  # before the next chunk's d exists
