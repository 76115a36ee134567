"""The trajectory regularization every TR optimizer shares: the step count n, the anchors w_t, c and the
inner step size (Algorithm 1 of the paper, apart from the base optimizer's update).

Each group holds ``tr_step`` (how many times ``step()`` ran, n) and ``tr_lr0`` (its lr at construction,
lr0). Each parameter's state holds ``anchor`` (w_t) and ``anchor_round`` (n // S when it was taken), so a
parameter that had no gradient at k = n mod S = 0 gets its anchor when it first moves. ``load_state_dict``
refuses a state dict without these (or without the base optimizer's options and state), e.g. one of
``torch.optim.Adam``, before it changes anything.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable

import torch
from torch import Tensor
from torch.optim import Optimizer

from tralgo._fused_kernels import has_fused_kernel, kernel_takes
from tralgo._tensors import HALF_DTYPES, _buckets, _chunk_elements, _match_layout, _real_views

PROX_MODES = ("paper", "reference")


def _check(condition: bool, name: str, value, rule: str) -> None:
    """Raise ``ValueError("Invalid <name>: <value> (<rule>)")`` unless ``condition``."""
    if not condition:
        raise ValueError(f"Invalid {name}: {value!r} ({rule})")


def _check_tr_options(lr, prox, inner_steps, prox_mode) -> None:
    _check(isinstance(lr, Tensor) or lr >= 0.0, "lr", lr, "must be >= 0")
    _check(prox >= 0.0, "prox", prox, "must be >= 0")
    _check(isinstance(inner_steps, int) and inner_steps >= 1, "inner_steps", inner_steps, "must be an integer >= 1")
    _check(prox_mode in PROX_MODES, "prox_mode", prox_mode, f"must be one of {', '.join(PROX_MODES)}")


class _TROptimizerBase(Optimizer):
    """Bookkeeping shared by the TR optimizers: step counter, anchors, c and the inner step size.

    Subclasses define ``_update(group, params, anchors, c, lr, foreach, fused)``: the base optimizer's
    step of ``params`` (one device and dtype) along d = grad + c·(w − w_t) (plus its own weight decay)
    with step size ``lr`` on the path ``foreach``/``fused`` select, ``fused_kernel``, the name of the
    torch kernel their ``fused`` option selects, and ``param_state_keys``, what the state of every
    parameter that has moved holds.
    """

    fused_kernel: str | None = None
    param_state_keys: tuple[str, ...] = ("anchor", "anchor_round")

    def __init__(self, params, defaults: dict, chunk_size: int | None = None):
        _check(chunk_size is None or chunk_size >= 1, "chunk_size", chunk_size, "must be >= 1")
        self.chunk_size = chunk_size
        super().__init__(params, defaults)
        if defaults.get("fused") and defaults.get("foreach"):  # as torch.optim.Adam and SGD refuse it
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")

    def load_state_dict(self, state_dict: dict) -> None:
        """``torch.optim.Optimizer.load_state_dict``, after refusing (ValueError, nothing changed) a state
        dict whose groups or parameters' state lack what this optimizer's step reads."""
        self._check_state_dict(state_dict)
        super().load_state_dict(state_dict)

    def _check_state_dict(self, state_dict: dict) -> None:
        """Raise ValueError naming what the first group, or parameter's state, that falls short lacks."""
        def refuse(what: str, missing: list[str]):
            raise ValueError(f"{type(self).__name__}.load_state_dict: {what} no {', '.join(map(repr, missing))} "
                             "(a state_dict of another optimizer?)")

        group_keys = ("tr_step", "tr_lr0", *self.defaults)
        for g, group in enumerate(state_dict["param_groups"]):
            missing = [key for key in group_keys if key not in group]
            if missing:
                refuse(f"param group {g} has", missing)
            for index in group["params"]:
                state = state_dict["state"].get(index) or {}
                missing = [key for key in self.param_state_keys if key not in state]
                if state and missing:
                    refuse(f"parameter {index} (param group {g}) has {', '.join(map(repr, state))} but", missing)

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _check_tr_options(group["lr"], group["prox"], group["inner_steps"], group["prox_mode"])
        if group.get("fused"):
            _check(all(kernel_takes(p.device, p.dtype) for p in group["params"]), "fused", True,
                   "needs float parameters on cpu or cuda")
            _check(has_fused_kernel(self.fused_kernel), "fused", True,
                   f"torch {torch.__version__} has no torch.{self.fused_kernel}; torch>=2.4 has it")
        group.setdefault("tr_step", 0)
        group.setdefault("tr_lr0", float(group["lr"]))

    @staticmethod
    def inner_schedule(group: dict) -> tuple[int, int, float, float]:
        """(k, round n // S, c, inner lr) of the group's next step n."""
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

    def _begin_step(self, group: dict) -> tuple[list[Tensor], list[Tensor], float, float]:
        """Count the group's step n and return its parameters with a gradient, their anchors w_t
        (taken now if k = 0), c and the inner step size."""
        params = [p for p in group["params"] if p.grad is not None]
        if any(p.grad.is_sparse for p in params):
            raise RuntimeError(f"{type(self).__name__} does not support sparse gradients")
        k, round_index, c, inner_lr = self.inner_schedule(group)
        group["tr_step"] += 1
        return params, self._update_anchors(params, round_index), c, inner_lr

    @staticmethod
    def _run_closure(closure: Callable | None):
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        """One step of every group (see the package docstring); returns the closure's loss if given."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            params, anchors, c, inner_lr = self._begin_step(group)
            for (device, dtype), index in _buckets(params).items():
                foreach, fused = self._paths(group, device, dtype)
                self._update(group, [params[i] for i in index], [anchors[i] for i in index], c, inner_lr,
                             foreach=foreach, fused=fused)
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
            fused = kernel_takes(device, dtype) and has_fused_kernel(self.fused_kernel)
        return foreach, fused

    @torch.no_grad()
    def distance_to_anchor(self) -> float:
        """‖w − w_t‖ over all parameters that have an anchor (for logging; complex ones as their real
        views): a few multi-tensor calls per (device, dtype) and one read of the result."""
        params, anchors = [], []
        for group in self.param_groups:
            for p in group["params"]:
                anchor = self.state.get(p, {}).get("anchor")
                if anchor is not None:
                    params.append(p.detach())
                    anchors.append(anchor)
        params, anchors = _real_views(params), _real_views(anchors)
        per_device = defaultdict(list)  # ‖w − w_t‖ of each (device, dtype) bucket, in float64
        for (device, dtype), index in _buckets(params).items():
            norms = _distance_norms([params[i] for i in index], [anchors[i] for i in index], dtype)
            per_device[device].append(torch.linalg.vector_norm(torch.stack(norms)).double())
        if not per_device:
            return 0.0
        totals = [torch.linalg.vector_norm(torch.stack(norms)).cpu() for norms in per_device.values()]
        return float(torch.linalg.vector_norm(torch.stack(totals)))


def _distance_norms(params: list[Tensor], anchors: list[Tensor], dtype: torch.dtype) -> list[Tensor]:
    """‖w − w_t‖ of each tensor of one (device, dtype) bucket, whole tensors taken up to 64 MB of
    differences at a time (16-bit tensors' norms accumulated in float32)."""
    limit = _chunk_elements(None, dtype, multi_tensor=True)
    norm_dtype = torch.float32 if dtype in HALF_DTYPES else None
    norms, chunk, size = [], [], 0
    for pair in list(zip(params, anchors)) + [None]:
        if chunk and (pair is None or size + pair[0].numel() > limit):
            diffs = torch._foreach_sub([w for w, _ in chunk], [a for _, a in chunk])
            norms.extend(torch._foreach_norm(diffs, 2, dtype=norm_dtype))
            chunk, size = [], 0
        if pair is not None:
            chunk.append(pair)
            size += pair[0].numel()
    return norms
