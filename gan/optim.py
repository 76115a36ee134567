"""TRAlgo: the Trajectory Regularized Algorithm (Zhang et al., IJCAI 2019) as torch optimizers.

Every ``S = inner_steps`` calls of ``step()`` the current weights become the anchor ``w_t``. The n-th
call (k = n mod S) then takes one step of a base optimizer on the regularized objective
``G_t(w) = f(w) + λ/2·‖w − w_t‖²``, i.e. on the direction

    d = grad + weight_decay·w + c·(w − w_t),   c = λ                 (prox_mode="paper")
                                               c = 2·λ·lr0/lr        (prox_mode="reference")

with step size ``lr/(k+1)`` (``inner_decay=True``) or ``lr``. λ is ``prox``, lr0 is the group's lr when
the optimizer was built, lr is its lr now. The "reference" form reproduces the official TRAlgorithm code,
whose coefficient grows as a schedule lowers lr. ``p.grad`` is never modified and the groups' ``lr``
keeps the value the user or a scheduler set. Beyond the base optimizer's state the only
parameter-sized buffer is the anchor.

- :class:`TRAdam`: Adam exactly as ``torch.optim.Adam`` computes it (moments and bias correction never
  reset), in one fused kernel per chunk of each tensor by default.
- :class:`TRSGD`: SGD exactly as ``torch.optim.SGD`` (momentum, dampening, nesterov).
- :class:`TrajectoryRegularizer`: wraps any other ``torch.optim.Optimizer`` (AdamW, RMSprop, ...).

Parameter groups may carry their own ``prox``, ``inner_steps``, ``inner_decay`` and ``prox_mode``.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

PROX_MODES = ("paper", "reference")
_FUSED_DEVICES = ("cpu", "cuda")
_FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check(condition: bool, name: str, value, rule: str) -> None:
    if not condition:
        raise ValueError(f"Invalid {name}: {value!r} ({rule})")


def _check_tr_options(lr, prox, inner_steps, prox_mode) -> None:
    _check(isinstance(lr, Tensor) or lr >= 0.0, "lr", lr, "must be >= 0")
    _check(prox >= 0.0, "prox", prox, "must be >= 0")
    _check(isinstance(inner_steps, int) and inner_steps >= 1, "inner_steps", inner_steps, "must be an integer >= 1")
    _check(prox_mode in PROX_MODES, "prox_mode", prox_mode, f"must be one of {', '.join(PROX_MODES)}")


class _TrajectoryRegularized(Optimizer):
    """Bookkeeping shared by the TR optimizers: step counter, anchors, c and the inner step size.

    Each group holds ``tr_step`` (how many times ``step()`` ran, n) and ``tr_lr0`` (its lr at
    construction). Each parameter's state holds ``anchor`` (w_t) and ``anchor_round`` (n // S when it
    was taken), so a parameter that had no gradient at k = 0 gets its anchor when it first moves.
    Subclasses define ``_update(group, params, anchors, c, lr)``: the base optimizer's step of
    ``params`` along d = grad + c·(w − w_t) (plus its own weight decay) with step size ``lr``.
    """

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_tr_options(group["lr"], group["prox"], group["inner_steps"], group["prox_mode"])
        group.setdefault("tr_step", 0)
        group.setdefault("tr_lr0", float(group["lr"]))

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
            if state["anchor_round"] != round_index:
                stale_params.append(p)
                stale_anchors.append(state["anchor"])
                state["anchor_round"] = round_index
            anchors.append(state["anchor"])
        if stale_params:
            torch._foreach_copy_(stale_anchors, stale_params)
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

    def distance_to_anchor(self) -> float:
        """‖w − w_t‖ over all parameters that have an anchor (for logging)."""
        total = 0.0
        for group in self.param_groups:
            for p in group["params"]:
                anchor = self.state.get(p, {}).get("anchor")
                if anchor is not None:
                    total += float(torch.sub(p.detach(), anchor).float().pow(2).sum())
        return math.sqrt(total)


def _direction_into(out: Tensor, grad: Tensor, param: Tensor, anchor: Tensor, c: float) -> Tensor:
    """out = grad + c·(param − anchor) (the proximal gradient of G_t without weight decay)."""
    torch.sub(param, anchor, out=out)
    return out.mul_(c).add_(grad)


def _chunks(numel: int, size: int) -> Iterable[tuple[int, int]]:
    for start in range(0, numel, size):
        yield start, min(start + size, numel)


def _can_fuse(params: list[Tensor]) -> bool:
    return all(p.device.type in _FUSED_DEVICES and p.dtype in _FUSED_DTYPES for p in params)


class TRAdam(_TrajectoryRegularized):
    """Adam on the trajectory-regularized objective (TRAdam).

    Args:
        params: parameters or parameter groups (groups may set any keyword below).
        lr, betas, eps, weight_decay, amsgrad: as ``torch.optim.Adam`` (L2 weight decay).
        prox: λ, the proximal coefficient (paper: 0.1).
        inner_steps: S, steps between anchor updates (paper: 10).
        inner_decay: inner step size lr/(k+1) (the paper's decreasing step size) instead of lr.
        prox_mode: "paper" (c = λ) or "reference" (c = 2·λ·lr0/lr, the official code).
        fused: None = fused kernel when every parameter allows it; True = require it; False = plain path.
        chunk_size: elements per fused kernel call on the CPU; the chunk's gradient term is formed
            in a cache-sized scratch buffer right before the kernel consumes it.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, prox: float = 0.1, inner_steps: int = 10,
                 inner_decay: bool = True, prox_mode: str = "paper", fused: bool | None = None,
                 chunk_size: int = 1 << 20):
        _check(0.0 <= betas[0] < 1.0, "beta1", betas[0], "must be in [0, 1)")
        _check(0.0 <= betas[1] < 1.0, "beta2", betas[1], "must be in [0, 1)")
        _check(eps >= 0.0, "eps", eps, "must be >= 0")
        _check(weight_decay >= 0.0, "weight_decay", weight_decay, "must be >= 0")
        _check(chunk_size >= 1, "chunk_size", chunk_size, "must be >= 1")
        _check_tr_options(lr, prox, inner_steps, prox_mode)
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, prox=prox,
                        inner_steps=inner_steps, inner_decay=inner_decay, prox_mode=prox_mode, fused=fused)
        self.chunk_size = chunk_size
        super().__init__(params, defaults)
        if fused:
            for group in self.param_groups:
                if not _can_fuse(group["params"]):
                    raise ValueError("Invalid fused: True (needs float parameters on cpu or cuda)")

    def _init_state(self, p: Tensor, amsgrad: bool) -> dict:
        state = self.state[p]
        if "step" not in state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        elif state["step"].device != p.device:  # e.g. a state_dict loaded with map_location="cpu"
            state["step"] = state["step"].to(p.device)
        if amsgrad and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _update(self, group, params, anchors, c, lr):
        """Adam along d on the fused or the plain path."""
        states = [self._init_state(p, group["amsgrad"]) for p in params]
        fused = group["fused"]
        if fused is None:
            fused = _can_fuse(params)
        update = self._fused_update if fused else self._plain_update
        update(group, params, anchors, states, c, lr)

    def _plain_update(self, group, params, anchors, states, c, lr):
        """Straightforward per-tensor Adam on d, mirroring torch.optim.Adam's single-tensor formula."""
        for p, anchor, state in zip(params, anchors, states):
            state["step"] += 1
            self._adam_single(group, p, _direction_into(torch.empty_like(p), p.grad, p, anchor, c), state, lr)

    @staticmethod
    def _adam_single(group, p, d, state, lr):
        """One Adam update of ``p`` along ``d`` (``state["step"]`` already counts this step)."""
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

    def _fused_update(self, group, params, anchors, states, c, lr):
        """torch's fused Adam kernel, fed chunk by chunk of each tensor.

        The kernel adds its weight-decay term to the gradient it is given, so for 32/64-bit floats the
        chunk's gradient is g − c·w_t (one pass over the anchor, into a cache-sized scratch buffer)
        and the kernel's L2 coefficient is weight_decay + c: the same d = g + wd·w + c·(w − w_t) up to
        float rounding. For 16-bit floats, where that rounding would be coarse, d is formed exactly
        and passed with weight_decay. A tensor whose gradient or state is laid out differently from
        it (possible after a change of memory format) takes the plain formula.
        """
        beta1, beta2 = group["betas"]
        kernel_args = dict(lr=lr, beta1=beta1, beta2=beta2, eps=group["eps"], amsgrad=group["amsgrad"],
                           maximize=False)
        weight_decay = group["weight_decay"]
        state_keys = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if group["amsgrad"] else ("exp_avg", "exp_avg_sq")
        torch._foreach_add_([state["step"] for state in states], 1)
        fusable = []
        for p, anchor, state in zip(params, anchors, states):
            flat = _flat_views([p, p.grad, anchor] + [state[key] for key in state_keys])
            if flat is None:
                self._adam_single(group, p, _direction_into(torch.empty_like(p), p.grad, p, anchor, c), state, lr)
            else:
                fusable.append((flat, state["step"]))
        if not fusable:
            return
        if c == 0.0:  # d = grad: the kernel reads the gradients directly (it does not write them)
            w, g, _, m, v, *v_max = (list(x) for x in zip(*(flat for flat, _ in fusable)))
            torch._fused_adam_(w, g, m, v, v_max[0] if v_max else [], [step for _, step in fusable],
                               weight_decay=weight_decay, **kernel_args)
            return
        device_is_cpu = fusable[0][0][0].device.type == "cpu"
        chunk = min(self.chunk_size if device_is_cpu else 1 << 24, max(flat[0].numel() for flat, _ in fusable))
        scratch = {}
        for flat, step in fusable:
            key = (flat[0].device, flat[0].dtype)
            if key not in scratch:
                scratch[key] = torch.empty(chunk, dtype=flat[0].dtype, device=flat[0].device)
            exact = flat[0].dtype in (torch.float16, torch.bfloat16)
            for start, end in _chunks(flat[0].numel(), chunk):
                w, g, w_t, m, v, *v_max = (x[start:end] for x in flat)
                d = scratch[key][: end - start]
                if exact:
                    _direction_into(d, g, w, w_t, c)
                else:
                    torch.add(g, w_t, alpha=-c, out=d)
                torch._fused_adam_([w], [d], [m], [v], v_max, [step],
                                   weight_decay=weight_decay if exact else weight_decay + c, **kernel_args)


def _flat_views(tensors: list[Tensor]) -> list[Tensor] | None:
    """1-D views over the memory of tensors that share one dense layout (contiguous, channels_last,
    ...), so that position i of every view is the same element; None if their layouts differ."""
    first = tensors[0]
    if any(t.stride() != first.stride() or t.shape != first.shape for t in tensors):
        return None
    if not (first.is_contiguous() or (first.dim() == 4 and first.is_contiguous(memory_format=torch.channels_last))):
        return None
    return [t.as_strided((t.numel(),), (1,)) for t in tensors]


class TRSGD(_TrajectoryRegularized):
    """SGD (with momentum, dampening, nesterov) on the trajectory-regularized objective (TRSGD).

    Args as ``torch.optim.SGD`` plus ``prox`` (λ), ``inner_steps`` (S), ``inner_decay``, ``prox_mode``
    and ``fused`` (None = torch's fused SGD kernel when every parameter allows it).
    """

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, prox: float = 0.1, inner_steps: int = 10,
                 inner_decay: bool = True, prox_mode: str = "paper", fused: bool | None = None):
        _check(momentum >= 0.0, "momentum", momentum, "must be >= 0")
        _check(weight_decay >= 0.0, "weight_decay", weight_decay, "must be >= 0")
        _check(not nesterov or (momentum > 0 and dampening == 0), "nesterov", nesterov,
               "requires momentum > 0 and dampening = 0")
        _check_tr_options(lr, prox, inner_steps, prox_mode)
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, prox=prox, inner_steps=inner_steps, inner_decay=inner_decay,
                        prox_mode=prox_mode, fused=fused)
        super().__init__(params, defaults)

    def _update(self, group, params, anchors, c, lr):
        """SGD along d, one tensor at a time (d lives only while its tensor is updated)."""
        fused = group["fused"]
        if fused is None:
            fused = _can_fuse(params)
        for p, anchor in zip(params, anchors):
            d = _direction_into(torch.empty_like(p), p.grad, p, anchor, c)
            (self._fused_update if fused else self._plain_update)(group, p, d, lr)

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

    def _fused_update(self, group, p, d, lr):
        """torch's fused SGD kernel on d."""
        state = self.state[p]
        first = group["momentum"] != 0 and state.get("momentum_buffer") is None
        if first:
            state["momentum_buffer"] = torch.empty_like(p)
        buffers = [state["momentum_buffer"]] if group["momentum"] != 0 else []
        torch._fused_sgd_([p], [d], buffers, weight_decay=group["weight_decay"], momentum=group["momentum"], lr=lr,
                          dampening=group["dampening"], nesterov=group["nesterov"], maximize=False,
                          is_first_step=first)


class TrajectoryRegularizer(_TrajectoryRegularized):
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
                    p.grad = _direction_into(torch.empty_like(p), grad, p, anchor, c)
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

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)
