"""TrajectoryRegularizer: the trajectory regularization around any ``torch.optim.Optimizer``."""
from __future__ import annotations

from typing import Callable

import torch
from torch.optim import Optimizer

from tralgo._base import _TROptimizerBase
from tralgo._tensors import _direction


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
        """The base optimizer's step along d with the inner step size; ``p.grad`` and lr restored after."""
        loss = self._run_closure(closure)
        saved = []  # (group, lr, [(param, grad)])
        try:
            for group in self.param_groups:
                params, anchors, c, inner_lr = self._begin_step(group)
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
        """The regularizer's state (refused as TRAdam's is where it lacks anything), then the base's."""
        missing = [key for key in ("base", "regularizer") if key not in state_dict]
        if missing:
            raise ValueError(f"TrajectoryRegularizer.load_state_dict: no {', '.join(map(repr, missing))} "
                             "(a state_dict of another optimizer?)")
        super().load_state_dict(state_dict["regularizer"])
        self.base.load_state_dict(state_dict["base"])
        self.param_groups = self.base.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)
