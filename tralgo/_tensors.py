"""Tensor bookkeeping shared by the update paths: (device, dtype) buckets, memory layouts, chunks, real
views of complex tensors, d.

Nothing here knows an optimizer: these helpers group, pair and cut lists of tensors so that one
multi-tensor call or one kernel call can take them, and form the direction d = grad + c·(w − w_t).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Iterator

import torch
from torch import Tensor

HALF_DTYPES = (torch.float16, torch.bfloat16)
MULTI_TENSOR_SCRATCH_BYTES = 64 * 10**6  # d of one chunk of the multi-tensor path
PER_TENSOR_CHUNK = 1 << 20  # elements per kernel call of the per-tensor fused path (cache-sized on the CPU)


def _buckets(params: list[Tensor]) -> dict[tuple[torch.device, torch.dtype], list[int]]:
    """Indices of ``params`` grouped by (device, dtype): a fused or multi-tensor kernel takes one of each."""
    buckets = defaultdict(list)
    for i, p in enumerate(params):
        buckets[(p.device, p.dtype)].append(i)
    return buckets


def _split(keep: list[bool], *lists: list) -> tuple[list[list], list[list]]:
    """(the items of each parallel list where ``keep`` is true, those where it is false)."""
    kept = [[x for x, k in zip(items, keep) if k] for items in lists]
    dropped = [[x for x, k in zip(items, keep) if not k] for items in lists]
    return kept, dropped


def _real_views(tensors: list[Tensor]) -> list[Tensor]:
    """Each complex tensor as ``torch.view_as_real`` of it, the others as they are: torch.optim updates a
    complex parameter as the real tensor of its real and imaginary parts (its gradient and state alike)."""
    return [torch.view_as_real(t) if t.is_complex() else t for t in tensors]


def _is_dense(t: Tensor) -> bool:
    return t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last))


def _match_layout(state: dict, keys: Iterable[str], p: Tensor) -> None:
    """Give the state tensors ``keys`` of ``p`` its memory layout (a one-time copy, e.g. after the model
    moved to channels_last), so that kernels reading them element by element pair the right elements."""
    for key in keys:
        t = state.get(key)
        if t is not None and t.stride() != p.stride() and _is_dense(p):
            state[key] = torch.empty_like(p).copy_(t)


def _shares_layout(p: Tensor, tensors: Iterable[Tensor]) -> bool:
    """True if ``p`` is dense and every tensor has its strides (position i of their memory is the same element)."""
    stride = p.stride()
    return _is_dense(p) and all(t.stride() == stride for t in tensors)


def _flat(t: Tensor) -> Tensor:
    """A 1-D view over the memory of a dense tensor."""
    return t.as_strided((t.numel(),), (1,))


def _chunks(lists: list[list[Tensor]], size: int) -> Iterator[tuple[list[int], list[list[Tensor]]]]:
    """Split parallel lists of same-layout dense tensors into chunks of at most ``size`` elements each.

    Yields (indices, pieces): for every chunk, the index of the tensor each piece comes from and the
    pieces of each list (whole tensors, or 1-D views where a tensor is cut across chunks).
    """
    indices, pieces, room = [], [[] for _ in lists], size
    for i, n in enumerate(t.numel() for t in lists[0]):
        start = 0
        while start < n:
            take = min(n - start, room)
            whole = take == n
            for out, tensors in zip(pieces, lists):
                if tensors:  # an empty list (a kernel argument left empty) stays empty
                    out.append(tensors[i] if whole else _flat(tensors[i])[start:start + take])
            indices.append(i)
            start, room = start + take, room - take
            if room == 0:
                yield indices, pieces
                indices, pieces, room = [], [[] for _ in lists], size
    if indices:
        yield indices, pieces


def _chunk_elements(chunk_size: int | None, dtype: torch.dtype, multi_tensor: bool) -> int:
    """Elements per chunk: ``chunk_size`` if given, else 64 MB of d (multi-tensor) or 2^20 (per tensor)."""
    if chunk_size is not None:
        return chunk_size
    if multi_tensor:
        return max(1, MULTI_TENSOR_SCRATCH_BYTES // dtype.itemsize)
    return PER_TENSOR_CHUNK


def _directions(params: list[Tensor], grads: list[Tensor], anchors: list[Tensor], c: float) -> list[Tensor]:
    """d = grad + c·(w − w_t) for each tensor (the proximal gradient of G_t without weight decay).

    Every path forms d exactly through this function, so that they round it alike (torch's CPU
    multi-tensor ops round a scalar factor of 16-bit tensors differently from ``Tensor.mul_``)."""
    d = torch._foreach_sub(params, anchors)
    torch._foreach_mul_(d, c)
    torch._foreach_add_(d, grads)
    return d


def _direction(param: Tensor, grad: Tensor, anchor: Tensor, c: float) -> Tensor:
    """d of one tensor (see :func:`_directions`)."""
    return _directions([param], [grad], [anchor], c)[0]


def _steps_on(states: list[dict], device: torch.device) -> list[Tensor]:
    """The step counters of ``states``, moved to ``device`` where they are elsewhere (fused kernels read
    them on the parameters' device; the plain formulas read them on the CPU, without a device sync)."""
    steps = []
    for state in states:
        if state["step"].device != device:
            state["step"] = state["step"].to(device)
        steps.append(state["step"])
    return steps
