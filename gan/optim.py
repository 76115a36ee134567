"""TRAlgo, the Trajectory Regularized Algorithm, as torch optimizers.

Paper: Yikai Zhang, Hui Qu, Chao Chen, Dimitris Metaxas, "Taming the Noisy Gradient: Train Deep Neural
Networks with Small Batch Sizes", IJCAI 2019, pp. 4348–4354 (Algorithm 1: TRAlgo(T, λ, w0, S);
Section 4: TRSGD and TRAdam). Official code (CIFAR only): https://github.com/huiqu18/TRAlgorithm

Every ``S = inner_steps`` calls of ``step()`` the current weights become the anchor ``w_t``. The n-th
call (k = n mod S) then takes one step of a base optimizer on the regularized objective
``G_t(w) = f(w) + λ/2·‖w − w_t‖²``, i.e. on the direction

    d = grad + weight_decay·w + c·(w − w_t),   c = λ                 (prox_mode="paper")
                                               c = 2·λ·lr0/lr        (prox_mode="reference")

with step size ``lr/(k+1)`` (``inner_decay=True``) or ``lr``. λ is ``prox``, lr0 is the group's lr when
the optimizer was built, lr is its lr now. ``p.grad`` is never modified and the groups' ``lr``
keeps the value the user or a scheduler set. Beyond the base optimizer's state the only
parameter-sized buffer is the anchor.

- :class:`TRAdam`: Adam exactly as ``torch.optim.Adam`` computes it (moments and bias correction never
  reset).
- :class:`TRSGD`: SGD exactly as ``torch.optim.SGD`` (momentum, dampening, nesterov).
- :class:`TrajectoryRegularizer`: wraps any other ``torch.optim.Optimizer`` (AdamW, RMSprop, ...).

Where this differs from the official code:

- ``prox_mode="paper"`` (default) uses the paper's λ·(w − w_t); the official code's coefficient is
  2·λ_w/lr with λ_w = λ·lr0, which grows as a schedule lowers lr: ``prox_mode="reference"``.
- Adam is the current ``torch.optim.Adam`` formula; the official code uses the pre-1.0 one (ε added
  before the bias-correction rescale).
- ``step()`` counts k itself (the official code's caller passes it), and d is formed in scratch
  memory instead of being added into ``p.grad`` in place.

TRAdam and TRSGD update the tensors of each (device, dtype) bucket of a group on one of three paths,
named as in torch's optimizers:

- ``foreach=True`` (the default on CUDA), the multi-tensor path: d is formed for a chunk of up to
  64 MB of tensors by one ``torch._foreach_*`` call and consumed by one call of torch's fused kernel
  (with ``fused=False``: by torch's multi-tensor formula), so a step issues a constant number of
  launches however many tensors there are;
- ``foreach=False, fused=True`` (the default elsewhere), per tensor: torch's fused kernel fed chunk
  by chunk of each tensor, d formed in a cache-sized piece right before the kernel reads it;
- ``foreach=False, fused=False``: the plain per-tensor formula (also taken, tensor by tensor, where a
  gradient's memory layout differs from its parameter's).

Both fused paths call torch's private kernels through :func:`_fused_step` alone; see the section
"torch's private kernels" below for the torch versions they rely on. Parameter groups may carry their
own ``prox``, ``inner_steps``, ``inner_decay`` and ``prox_mode``; ``load_state_dict`` accepts states
saved by older versions, whose groups lack keys added since (see ``legacy_group_defaults``).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor
from torch.optim import Optimizer

PROX_MODES = ("paper", "reference")
_FUSED_DEVICES = ("cpu", "cuda")
_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_HALF_DTYPES = (torch.float16, torch.bfloat16)
MULTI_TENSOR_SCRATCH_BYTES = 64 * 10**6  # d of one chunk of the multi-tensor path
PER_TENSOR_CHUNK = 1 << 20  # elements per kernel call of the per-tensor fused path (cache-sized on the CPU)


def _check(condition: bool, name: str, value, rule: str) -> None:
    if not condition:
        raise ValueError(f"Invalid {name}: {value!r} ({rule})")


def _check_tr_options(lr, prox, inner_steps, prox_mode) -> None:
    _check(isinstance(lr, Tensor) or lr >= 0.0, "lr", lr, "must be >= 0")
    _check(prox >= 0.0, "prox", prox, "must be >= 0")
    _check(isinstance(inner_steps, int) and inner_steps >= 1, "inner_steps", inner_steps, "must be an integer >= 1")
    _check(prox_mode in PROX_MODES, "prox_mode", prox_mode, f"must be one of {', '.join(PROX_MODES)}")


# ----------------------------------------------------------------------------- tensor bookkeeping
def _buckets(params: list[Tensor]) -> dict[tuple[torch.device, torch.dtype], list[int]]:
    """Indices of ``params`` grouped by (device, dtype): a fused or multi-tensor kernel takes one of each."""
    buckets = defaultdict(list)
    for i, p in enumerate(params):
        buckets[(p.device, p.dtype)].append(i)
    return buckets


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


def _per_tensor_chunks(lists: list[list[Tensor]], size: int) -> Iterator[tuple[list[int], list[list[Tensor]]]]:
    """As :func:`_chunks`, but every chunk is a 1-D piece of one tensor (of each list)."""
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


def _can_fuse(params: list[Tensor]) -> bool:
    return all(p.device.type in _FUSED_DEVICES and p.dtype in _FUSED_DTYPES for p in params)


def _chunk_elements(chunk_size: int | None, dtype: torch.dtype, multi_tensor: bool) -> int:
    if chunk_size is not None:
        return chunk_size
    if multi_tensor:
        return max(1, MULTI_TENSOR_SCRATCH_BYTES // dtype.itemsize)
    return PER_TENSOR_CHUNK


# ----------------------------------------------------------------------------- torch's private kernels
# torch._fused_adam_ and torch._fused_sgd_ are the private ops behind torch.optim.Adam(fused=True) and
# torch.optim.SGD(fused=True). We call them, only in _fused_step, with their schemas
#   _fused_adam_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, *, lr: float, beta1,
#                beta2, weight_decay, eps, amsgrad, maximize, grad_scale=None, found_inf=None)
#   _fused_sgd_(params, grads, momentum_buffer_list, *, weight_decay, momentum, lr: float, dampening,
#               nesterov, maximize, is_first_step, grad_scale=None, found_inf=None)
# as printed by torch 2.14.1 (torch.ops.aten.<name>.default._schema). Their CUDA kernels predate torch 2.4;
# their CPU kernels arrived in torch 2.4 (pytorch/pytorch#123074 for Adam, #123629 for SGD), which is
# why pyproject.toml asks for torch>=2.4. Where a kernel is missing, fused=None falls back to the
# plain formulas and fused=True is refused when the optimizer is built. The torch._foreach_* ops used
# here are those torch.optim's own multi-tensor paths call; their absence is reported at import.
_FOREACH_OPS = ("_foreach_add", "_foreach_add_", "_foreach_addcdiv_", "_foreach_addcmul_", "_foreach_copy_",
                "_foreach_div_", "_foreach_lerp_", "_foreach_maximum_", "_foreach_mul_", "_foreach_norm",
                "_foreach_sqrt", "_foreach_sub")
_MISSING_FOREACH_OPS = [name for name in _FOREACH_OPS if not hasattr(torch, name)]
if _MISSING_FOREACH_OPS:
    raise ImportError(f"gan.optim needs torch>=2.4: torch {torch.__version__} has no "
                      f"{', '.join('torch.' + name for name in _MISSING_FOREACH_OPS)}")


def _has_fused_kernel(name: str) -> bool:
    """Whether this torch has the private fused kernel ``torch.<name>`` (e.g. ``"_fused_adam_"``)."""
    return hasattr(torch, name)


def _fused_step(kernel_name: str, tensors: list[list[Tensor]], c: float, weight_decay: float, chunk_elements: int,
                multi_tensor: bool, steps: list[Tensor] | None = None, **options) -> None:
    """One call of torch's fused optimizer kernel ``torch.<kernel_name>`` per chunk, along
    d = grad + weight_decay·w + c·(w − w_t).

    ``tensors`` holds the lists [params, grads, anchors, *state lists in the kernel's argument order]
    (an empty list where the kernel gets none, e.g. no momentum buffers); ``steps`` the step counters
    the kernel reads (Adam), one per parameter; ``options`` the kernel's other keywords. Chunks hold up
    to ``chunk_elements`` elements, spanning tensors (``multi_tensor``: d of a chunk formed by one
    multi-tensor call) or cut from one tensor at a time (d formed in one reused scratch buffer).
    The kernel adds its L2 term to the gradient it is given, so for 32/64-bit floats it gets g − c·w_t
    and the coefficient weight_decay + c: the same d up to float rounding. For 16-bit floats, where that
    rounding would be coarse, d is formed exactly and passed with weight_decay. With c = 0 the kernel
    reads the gradients themselves (it does not write them), one call for all tensors.
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
    exact = params[0].dtype in _HALF_DTYPES
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


class _TROptimizerBase(Optimizer):
    """Bookkeeping shared by the TR optimizers: step counter, anchors, c and the inner step size.

    Each group holds ``tr_step`` (how many times ``step()`` ran, n) and ``tr_lr0`` (its lr at
    construction). Each parameter's state holds ``anchor`` (w_t) and ``anchor_round`` (n // S when it
    was taken), so a parameter that had no gradient at k = 0 gets its anchor when it first moves.
    Subclasses define ``_update(group, params, anchors, c, lr)``: the base optimizer's step of
    ``params`` along d = grad + c·(w − w_t) (plus its own weight decay) with step size ``lr``, and
    ``fused_kernel``, the name of the torch kernel their ``fused`` option selects.
    """

    fused_kernel: str | None = None
    # Group keys a state saved by an older version may lack, with the value that version behaved as;
    # __setstate__ (run by load_state_dict and unpickling) fills them, as torch's own optimizers do.
    # So far "foreach" is the one added after the first release (with the multi-tensor path); the
    # others are the options whose defaults reproduce the original behaviour.
    legacy_group_defaults = {"inner_decay": True, "prox_mode": "paper"}

    def __init__(self, params, defaults: dict, chunk_size: int | None = None):
        _check(chunk_size is None or chunk_size >= 1, "chunk_size", chunk_size, "must be >= 1")
        self.chunk_size = chunk_size
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_tr_options(group["lr"], group["prox"], group["inner_steps"], group["prox_mode"])
        if group.get("fused"):
            _check(_can_fuse(group["params"]), "fused", True, "needs float parameters on cpu or cuda")
            _check(_has_fused_kernel(self.fused_kernel), "fused", True,
                   f"torch {torch.__version__} has no torch.{self.fused_kernel}; torch>=2.4 has it")
        group.setdefault("tr_step", 0)
        group.setdefault("tr_lr0", float(group["lr"]))

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._fill_legacy_group_keys()

    def _fill_legacy_group_keys(self) -> None:
        for group in self.param_groups:
            for key, value in self.legacy_group_defaults.items():
                group.setdefault(key, value)

    @staticmethod
    def inner_schedule(group: dict) -> tuple[int, int, float, float]:
        """(k, round, c, inner lr) of the group's next step; see the module docstring."""
        n, inner_steps = group["tr_step"], group["inner_steps"]
        k, round_index = n % inner_steps, n // inner_steps
        lr = float(group["lr"])
        if group["prox_mode"] == "paper":
            c = float(group["prox"])
        else:  # the official code: 2·λ·lr0/lr; at lr = 0 the step is zero anyway
            c = 2.0 * group["prox"] * group["tr_lr0"] / lr if lr > 0 else 0.0
        inner_lr = lr / (k + 1) if group["inner_decay"] else lr
        return k, round_index, c, inner_lr

    def _update_anchors(self, params: list[Tensor], round_index: int) -> list[Tensor]:
        """Make each parameter's anchor the current weights if it was not taken in this round."""
        anchors, stale_params, stale_anchors = [], [], []
        for p in params:
            state = self.state[p]
            if "anchor" not in state:
                state["anchor"] = torch.empty_like(p, memory_format=torch.preserve_format)
                state["anchor_round"] = -1
            else:
                _match_layout(state, ("anchor",), p)
            if state["anchor_round"] != round_index:
                stale_params.append(p)
                stale_anchors.append(state["anchor"])
                state["anchor_round"] = round_index
            anchors.append(state["anchor"])
        for index in _buckets(stale_params).values():
            torch._foreach_copy_([stale_anchors[i] for i in index], [stale_params[i] for i in index])
        return anchors

    def _params_with_grad(self, group: dict) -> list[Tensor]:
        params = [p for p in group["params"] if p.grad is not None]
        if any(p.grad.is_sparse for p in params):
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        return params

    @staticmethod
    def _run_closure(closure: Callable | None):
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        """One step of every group (see the module docstring); returns the closure's loss if given."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            params = self._params_with_grad(group)
            k, round_index, c, inner_lr = self.inner_schedule(group)
            group["tr_step"] += 1
            if params:
                self._update(group, params, self._update_anchors(params, round_index), c, inner_lr)
        return loss

    @staticmethod
    def _multi_tensor_default(device: torch.device) -> bool:
        """The multi-tensor path is the default on CUDA, where launches, not memory traffic, bound a step."""
        return device.type == "cuda"

    def _paths(self, group: dict, device: torch.device, dtype: torch.dtype) -> tuple[bool, bool]:
        """(foreach, fused) for one (device, dtype) bucket of ``group``."""
        foreach, fused = group["foreach"], group["fused"]
        if foreach is None:
            foreach = self._multi_tensor_default(device)
        if fused is None:  # where torch has the kernel for this device and dtype
            fused = device.type in _FUSED_DEVICES and dtype in _FUSED_DTYPES and _has_fused_kernel(self.fused_kernel)
        return foreach, fused

    @torch.no_grad()
    def distance_to_anchor(self) -> float:
        """‖w − w_t‖ over all parameters that have an anchor (for logging): a few multi-tensor calls
        per (device, dtype) and one read of the result."""
        params, anchors = [], []
        for group in self.param_groups:
            for p in group["params"]:
                anchor = self.state.get(p, {}).get("anchor")
                if anchor is not None:
                    params.append(p.detach())
                    anchors.append(anchor)
        per_device = defaultdict(list)  # ‖w − w_t‖ of each (device, dtype) bucket, in float64
        for (device, dtype), index in _buckets(params).items():
            pairs = [(params[i], anchors[i]) for i in index]
            limit = _chunk_elements(None, dtype, multi_tensor=True)
            norm_dtype = torch.float32 if dtype in _HALF_DTYPES else None
            norms, chunk, size = [], [], 0
            for pair in pairs + [None]:  # whole tensors, up to ``limit`` elements of differences at a time
                if chunk and (pair is None or size + pair[0].numel() > limit):
                    diffs = torch._foreach_sub([w for w, _ in chunk], [a for _, a in chunk])
                    norms.extend(torch._foreach_norm(diffs, 2, dtype=norm_dtype))
                    chunk, size = [], 0
                if pair is not None:
                    chunk.append(pair)
                    size += pair[0].numel()
            per_device[device].append(torch.linalg.vector_norm(torch.stack(norms)).double())
        if not per_device:
            return 0.0
        totals = [torch.linalg.vector_norm(torch.stack(norms)).cpu() for norms in per_device.values()]
        return float(torch.linalg.vector_norm(torch.stack(totals)))


class TRAdam(_TROptimizerBase):
    """Adam on the trajectory-regularized objective (TRAdam).

    Args:
        params: parameters or parameter groups (groups may set any keyword below).
        lr, betas, eps, weight_decay, amsgrad: as ``torch.optim.Adam`` (L2 weight decay).
        prox: λ, the proximal coefficient (paper: 0.1).
        inner_steps: S, steps between anchor updates (paper: 10).
        inner_decay: inner step size lr/(k+1) (the paper's decreasing step size) instead of lr.
        prox_mode: "paper" (c = λ) or "reference" (c = 2·λ·lr0/lr, the official code).
        fused: None = torch's fused Adam kernel where the device and dtype allow it; True = require
            it; False = torch's Adam formula in separate operations.
        foreach: None = the multi-tensor path on CUDA, the per-tensor path elsewhere; True / False =
            that path on any device (see the module docstring).
        chunk_size: elements per kernel call; None = 64 MB of d per call on the multi-tensor path,
            2^20 elements (a cache-sized piece of d) on the per-tensor path.
    """

    fused_kernel = "_fused_adam_"
    legacy_group_defaults = {**_TROptimizerBase.legacy_group_defaults, "amsgrad": False, "fused": None,
                             "foreach": None}

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

    def _state_keys(self, group: dict) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if group["amsgrad"] else ("exp_avg", "exp_avg_sq")

    def _init_state(self, p: Tensor, keys: tuple[str, ...]) -> dict:
        state = self.state[p]
        if "step" not in state:
            state["step"] = torch.zeros((), dtype=torch.float32)
        for key in keys:
            if key not in state:
                state[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
        _match_layout(state, keys, p)
        return state

    def _update(self, group, params, anchors, c, lr):
        """Adam along d, bucket by bucket on the path the group's ``foreach``/``fused`` select."""
        keys = self._state_keys(group)
        for (device, dtype), index in _buckets(params).items():
            ps, ws = [params[i] for i in index], [anchors[i] for i in index]
            states = [self._init_state(p, keys) for p in ps]
            foreach, fused = self._paths(group, device, dtype)
            if fused:  # the kernel reads memory linearly: a gradient laid out unlike its parameter goes plain
                kernel_ok = [_shares_layout(p, [p.grad]) for p in ps]
                plain = [i for i, ok in enumerate(kernel_ok) if not ok]
                self._plain_update(group, [ps[i] for i in plain], [ws[i] for i in plain], [states[i] for i in plain],
                                   c, lr)
                if plain:
                    ps, ws, states = ([x[i] for i, ok in enumerate(kernel_ok) if ok] for x in (ps, ws, states))
                self._fused_update(group, ps, ws, states, c, lr, multi_tensor=foreach)
            else:
                update = self._foreach_update if foreach else self._plain_update
                update(group, ps, ws, states, c, lr)

    # ---------------------------------------------------------------- paths
    def _plain_update(self, group, params, anchors, states, c, lr):
        """Straightforward per-tensor Adam on d, mirroring torch.optim.Adam's single-tensor formula."""
        if not params:
            return
        torch._foreach_add_(_steps_on(states, torch.device("cpu")), 1)
        self._adam_each(group, params, anchors, states, c, lr)

    @staticmethod
    def _adam_single(group, p, d, state, lr):
        """One Adam update of ``p`` along ``d`` (``state["step"]``, on the CPU, already counts this step)."""
        beta1, beta2 = group["betas"]
        if group["weight_decay"] != 0:
            d.add_(p, alpha=group["weight_decay"])
        step = state["step"].item()
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(d, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(d, d, value=1 - beta2)
        bias_correction1 = 1 - beta1 ** step
        bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
        second_moment = exp_avg_sq
        if group["amsgrad"]:
            torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            second_moment = state["max_exp_avg_sq"]
        denom = (second_moment.sqrt() / bias_correction2_sqrt).add_(group["eps"])
        p.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)

    def _foreach_update(self, group, params, anchors, states, c, lr):
        """The plain formula in multi-tensor operations, chunk by chunk (bit-identical to it)."""
        beta1, beta2 = group["betas"]
        torch._foreach_add_(_steps_on(states, torch.device("cpu")), 1)
        keys = self._state_keys(group)
        lists = [params, [p.grad for p in params], anchors] + [[s[k] for s in states] for k in keys]
        if not all(_shares_layout(p, [t[i] for t in lists[1:]]) for i, p in enumerate(params)):
            return self._adam_each(group, params, anchors, states, c, lr)
        limit = _chunk_elements(self.chunk_size, params[0].dtype, multi_tensor=True)
        for index, (w, g, w_t, m, v, *v_max) in _chunks(lists, limit):
            steps = [states[i]["step"].item() for i in index]  # CPU counters: no device sync
            d = _directions(w, g, w_t, c)
            if group["weight_decay"] != 0:
                torch._foreach_add_(d, w, alpha=group["weight_decay"])
            torch._foreach_lerp_(m, d, 1 - beta1)
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, d, d, value=1 - beta2)
            second_moment = v
            if v_max:
                torch._foreach_maximum_(v_max[0], v)
                second_moment = v_max[0]
            denom = torch._foreach_sqrt(second_moment)
            torch._foreach_div_(denom, [(1 - beta2 ** s) ** 0.5 for s in steps])
            torch._foreach_add_(denom, group["eps"])
            torch._foreach_addcdiv_(w, m, denom, [-lr / (1 - beta1 ** s) for s in steps])
            del d, denom  # before the next chunk's exist

    def _adam_each(self, group, params, anchors, states, c, lr):
        """The plain formula, tensor by tensor, for tensors whose step counters already count this step."""
        for p, anchor, state in zip(params, anchors, states):
            self._adam_single(group, p, _direction(p, p.grad, anchor, c), state, lr)

    def _fused_update(self, group, params, anchors, states, c, lr, multi_tensor):
        """torch's fused Adam kernel along d, on the multi-tensor or the per-tensor path (:func:`_fused_step`)."""
        if not params:
            return
        steps = _steps_on(states, params[0].device)
        torch._foreach_add_(steps, 1)
        moments = [[s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
                   [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else []]
        beta1, beta2 = group["betas"]
        _fused_step(self.fused_kernel, [params, [p.grad for p in params], anchors, *moments], c, group["weight_decay"],
                    _chunk_elements(self.chunk_size, params[0].dtype, multi_tensor), multi_tensor, steps=steps,
                    lr=lr, beta1=beta1, beta2=beta2, eps=group["eps"], amsgrad=group["amsgrad"], maximize=False)


class TRSGD(_TROptimizerBase):
    """SGD (with momentum, dampening, nesterov) on the trajectory-regularized objective (TRSGD).

    Args as ``torch.optim.SGD`` plus ``prox`` (λ), ``inner_steps`` (S), ``inner_decay``, ``prox_mode``,
    ``fused`` (None = torch's fused SGD kernel where the device and dtype allow it), ``foreach`` (None =
    the multi-tensor path on CUDA) and ``chunk_size``, as for :class:`TRAdam`.
    """

    fused_kernel = "_fused_sgd_"
    legacy_group_defaults = {**_TROptimizerBase.legacy_group_defaults, "nesterov": False, "fused": None,
                             "foreach": None}

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

    def _update(self, group, params, anchors, c, lr):
        """SGD along d, bucket by bucket on the path the group's ``foreach``/``fused`` select."""
        for (device, dtype), index in _buckets(params).items():
            ps, ws = [params[i] for i in index], [anchors[i] for i in index]
            for p in ps:
                _match_layout(self.state[p], ("momentum_buffer",), p)
            foreach, fused = self._paths(group, device, dtype)
            # kernels and multi-tensor calls read memory linearly: a gradient laid out unlike its
            # parameter goes the plain way
            linear = [(fused or foreach) and _shares_layout(p, [p.grad, w]) for p, w in zip(ps, ws)]
            for p, anchor, ok in zip(ps, ws, linear):
                if not ok:  # per tensor: d lives only while its tensor is updated
                    self._plain_update(group, p, _direction(p, p.grad, anchor, c), lr)
            ps, ws = [p for p, ok in zip(ps, linear) if ok], [w for w, ok in zip(ws, linear) if ok]
            for is_first, sub_ps, sub_ws in self._by_first_step(group, ps, ws):
                if fused:
                    self._fused_update(group, sub_ps, sub_ws, c, lr, is_first, multi_tensor=foreach)
                else:
                    self._foreach_update(group, sub_ps, sub_ws, c, lr, is_first)

    def _by_first_step(self, group, params, anchors):
        """(is_first, params, anchors) for the parameters whose momentum buffer starts now and for the
        others: kernels take one ``is_first_step`` per call (two calls on first steps only)."""
        first = [group["momentum"] != 0 and "momentum_buffer" not in self.state[p] for p in params]
        for is_first in (True, False):
            sub = [i for i, f in enumerate(first) if f == is_first]
            if sub:
                yield is_first, [params[i] for i in sub], [anchors[i] for i in sub]

    def _plain_update(self, group, p, d, lr):
        """torch.optim.SGD's single-tensor formula on d."""
        if group["weight_decay"] != 0:
            d.add_(p, alpha=group["weight_decay"])
        momentum = group["momentum"]
        if momentum != 0:
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.clone()
            else:
                buf.mul_(momentum).add_(d, alpha=1 - group["dampening"])
            d = d.add(buf, alpha=momentum) if group["nesterov"] else buf
        p.add_(d, alpha=-lr)

    def _buffers(self, group, params, is_first):
        """The momentum buffers of ``params`` (created empty on their first step), [] without momentum."""
        if group["momentum"] == 0:
            return []
        if is_first:
            for p in params:
                self.state[p]["momentum_buffer"] = torch.empty_like(p, memory_format=torch.preserve_format)
        return [self.state[p]["momentum_buffer"] for p in params]

    def _fused_update(self, group, params, anchors, c, lr, is_first, multi_tensor):
        """torch's fused SGD kernel along d, on the multi-tensor or the per-tensor path (:func:`_fused_step`)."""
        buffers = self._buffers(group, params, is_first)
        _fused_step(self.fused_kernel, [params, [p.grad for p in params], anchors, buffers], c, group["weight_decay"],
                    _chunk_elements(self.chunk_size, params[0].dtype, multi_tensor), multi_tensor,
                    momentum=group["momentum"], lr=lr, dampening=group["dampening"], nesterov=group["nesterov"],
                    maximize=False, is_first_step=is_first)

    def _foreach_update(self, group, params, anchors, c, lr, is_first):
        """The plain formula in multi-tensor operations, chunk by chunk (bit-identical to it)."""
        momentum = group["momentum"]
        buffers = self._buffers(group, params, is_first) if momentum != 0 else []
        lists = [params, [p.grad for p in params], anchors] + ([buffers] if buffers else [])
        limit = _chunk_elements(self.chunk_size, params[0].dtype, multi_tensor=True)
        for _, (w, g, w_t, *bufs) in _chunks(lists, limit):
            d = _directions(w, g, w_t, c)
            if group["weight_decay"] != 0:
                torch._foreach_add_(d, w, alpha=group["weight_decay"])
            if momentum != 0:
                if is_first:
                    torch._foreach_copy_(bufs[0], d)
                else:
                    torch._foreach_mul_(bufs[0], momentum)
                    torch._foreach_add_(bufs[0], d, alpha=1 - group["dampening"])
                if group["nesterov"]:
                    torch._foreach_add_(d, bufs[0], alpha=momentum)
                else:
                    d = bufs[0]
            torch._foreach_add_(w, d, alpha=-lr)
            del d  # before the next chunk's d exists


class TrajectoryRegularizer(_TROptimizerBase):
    """Trajectory-regularize any ``torch.optim.Optimizer`` (AdamW, RMSprop, ...).

    ``TrajectoryRegularizer(torch.optim.AdamW(model.parameters(), lr=1e-3), prox=0.1, inner_steps=10)``.
    Each ``step()`` hands the base optimizer d = grad + c·(w − w_t) in place of the gradient (its own
    weight decay still applies) with its groups' lr set to the inner step size for the duration of the
    call. The wrapper and the base share ``param_groups``, so schedulers may be attached to either.
    Besides the anchors it holds d, one more parameter-sized buffer, for the duration of ``step()``.
    """

    def __init__(self, base: Optimizer, prox: float = 0.1, inner_steps: int = 10, inner_decay: bool = True,
                 prox_mode: str = "paper"):
        if not isinstance(base, Optimizer):
            raise ValueError(f"Invalid base: {type(base).__name__} (must be a torch.optim.Optimizer)")
        self.base = base
        defaults = dict(prox=prox, inner_steps=inner_steps, inner_decay=inner_decay, prox_mode=prox_mode)
        super().__init__([{"params": g["params"], "lr": g["lr"]} for g in base.param_groups], defaults)
        for own, shared in zip(self.param_groups, base.param_groups):
            for key in ("prox", "inner_steps", "inner_decay", "prox_mode", "tr_step", "tr_lr0"):
                shared.setdefault(key, own[key])
        self.param_groups = base.param_groups

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = self._run_closure(closure)
        saved = []  # (group, lr, [(param, grad)])
        try:
            for group in self.param_groups:
                params = self._params_with_grad(group)
                k, round_index, c, inner_lr = self.inner_schedule(group)
                group["tr_step"] += 1
                anchors = self._update_anchors(params, round_index)
                grads = [(p, p.grad) for p in params]
                saved.append((group, group["lr"], grads))
                for (p, grad), anchor in zip(grads, anchors):
                    p.grad = _direction(p, grad, anchor, c)
                group["lr"] = inner_lr
            self.base.step()
        finally:
            for group, lr, grads in saved:
                group["lr"] = lr
                for p, grad in grads:
                    p.grad = grad
        return loss

    def state_dict(self) -> dict:
        return {"base": self.base.state_dict(), "regularizer": super().state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict["regularizer"])
        self.base.load_state_dict(state_dict["base"])
        self.param_groups = self.base.param_groups
        self._fill_legacy_group_keys()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)
