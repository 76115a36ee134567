"""The one registry of the optimizers a pix2pix run can use: name -> how to build it, its table label and
what a checkpoint of it holds.

``train.py --optim NAME`` offers every name of :data:`OPTIMIZERS`; TRAdam replaces Adam with the same lr
and betas, which is the paper's only change. A checkpoint's optimizer state is told apart by the keys of
its param group (:attr:`OptimizerSpec.group_keys`); each parameter's state holds
:attr:`OptimizerSpec.state_keys`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from tralgo import TRSGD, TRAdam


@dataclass
class OptimConfig:
    """Which optimizer and its settings (the paper: lr 2e-4, β (0.5, 0.999), λ = 0.1, S = 10)."""

    name: str = "adam"
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    momentum: float = 0.9  # sgd / trsgd only
    prox: float = 0.1  # λ
    inner_steps: int = 10  # S
    prox_mode: str = "paper"
    inner_decay: bool = True
    fused: bool | None = None  # None: torch's fused kernels where the parameters allow them


@dataclass(frozen=True)
class OptimizerSpec:
    """One optimizer: its label in tables, its builder (parameters, config, fused) and the keys of its state."""

    label: str
    build: Callable[[list, OptimConfig, bool], torch.optim.Optimizer]
    group_keys: frozenset[str]   # param-group keys that tell its state_dict apart from the others'
    state_keys: tuple[str, ...]  # what each parameter's state holds once it has taken a step


def _tr_options(config: OptimConfig) -> dict:
    return dict(prox=config.prox, inner_steps=config.inner_steps, prox_mode=config.prox_mode,
                inner_decay=config.inner_decay)


def _adam(params, config: OptimConfig, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=config.lr, betas=(config.beta1, config.beta2), fused=fused or None)


def _tradam(params, config: OptimConfig, fused: bool) -> torch.optim.Optimizer:
    return TRAdam(params, lr=config.lr, betas=(config.beta1, config.beta2), fused=fused, **_tr_options(config))


def _sgd(params, config: OptimConfig, fused: bool) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, fused=fused or None)


def _trsgd(params, config: OptimConfig, fused: bool) -> torch.optim.Optimizer:
    return TRSGD(params, lr=config.lr, momentum=config.momentum, fused=fused, **_tr_options(config))


ANCHOR_KEYS = ("anchor", "anchor_round")
OPTIMIZERS: dict[str, OptimizerSpec] = {
    "adam": OptimizerSpec("Adam", _adam, frozenset({"betas"}), ("step", "exp_avg", "exp_avg_sq")),
    "tradam": OptimizerSpec("TRAdam", _tradam, frozenset({"betas", "prox"}),
                            (*ANCHOR_KEYS, "step", "exp_avg", "exp_avg_sq")),
    "sgd": OptimizerSpec("SGD", _sgd, frozenset({"momentum"}), ("momentum_buffer",)),
    "trsgd": OptimizerSpec("TRSGD", _trsgd, frozenset({"momentum", "prox"}), (*ANCHOR_KEYS, "momentum_buffer")),
}


def build_optimizer(params, config: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer called ``config.name`` over ``params``."""
    if config.name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {config.name!r}; choose one of {', '.join(OPTIMIZERS)}")
    params = list(params)
    fused = config.fused
    if fused is None:  # torch's fused kernels exist for float tensors on cpu and cuda
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    return OPTIMIZERS[config.name].build(params, config, fused)


def optimizer_label(name) -> str:
    """The table label of optimizer ``name`` (Adam, TRAdam, ...); an unknown name as it is."""
    spec = OPTIMIZERS.get(str(name).lower())
    return spec.label if spec is not None else str(name)


def optimizer_of_state(group: dict) -> str | None:
    """The registered optimizer whose state_dict has a param group like ``group`` (the one with the most
    of its keys matching), or None."""
    by_size = sorted(OPTIMIZERS.items(), key=lambda item: -len(item[1].group_keys))
    return next((name for name, spec in by_size if spec.group_keys <= group.keys()), None)
