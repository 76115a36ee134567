"""How noisy is one step at batch size 1? The quantity TRAlgo claims to tame, measured.

At the current weights w, take the gradients g_1, ..., g_M of G's loss on M fixed training pairs, one
pair at a time (batch size 1, as training sees them). With ḡ = (1/M)·Σ g_i:

    V   = 1/(M − 1) · Σ ‖g_i − ḡ‖²        unbiased estimate of tr Cov[g]: the expected squared distance
                                           of one sample's gradient from the full-batch gradient
    r_g = V / ‖ḡ‖²                         gradient noise ratio (noise-to-signal)

The direction an optimizer feeds its update is d_i = g_i + o, with the same offset o for every sample:
o = weight_decay·w + c·(w − w_t) for TRAdam/TRSGD (c and the anchor w_t of the next step, see
:mod:`tralgo`; o = weight_decay·w at k = 0, where the anchor becomes w), o = weight_decay·w for
Adam/SGD. o leaves V unchanged and moves the mean, so

    r_d = V / ‖ḡ + o‖²                     direction noise ratio

The proximal term cannot lower V; TRAlgo's claim is that it keeps the *direction* stable, which r_d
measures. Adam's preconditioning (division by √v) is not part of d. ‖ḡ‖² over-estimates the squared
norm of the full gradient by V/M on average; the unbiased ``signal`` = ‖ḡ‖² − V/M is reported too.
V is accumulated with Welford's update (no catastrophic cancellation, one parameter-sized mean).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from common.distributed import local_copy


class GradientMoments:
    """Streaming mean and total variance of per-sample gradient lists (Welford's update)."""

    def __init__(self, params: Sequence[Tensor]):
        self.mean = [torch.zeros_like(p, dtype=torch.float64) for p in params]
        self.count = 0
        self.sum_sq_dev = 0.0  # Σ ‖g_i − ḡ‖², updated per sample

    def add(self, grads: Sequence[Tensor]) -> None:
        self.count += 1
        grads = [g.detach().to(torch.float64) for g in grads]
        delta = torch._foreach_sub(grads, self.mean)                 # g − mean_old
        torch._foreach_add_(self.mean, delta, alpha=1.0 / self.count)
        delta_new = torch._foreach_sub(grads, self.mean)             # g − mean_new
        self.sum_sq_dev += sum(float((a * b).sum()) for a, b in zip(delta, delta_new))

    def stats(self, offset: Sequence[Tensor] | None = None) -> dict[str, float]:
        """V, ‖ḡ‖², the unbiased signal, r_g and (with ``offset`` o) ‖ḡ + o‖² and r_d."""
        if self.count < 2:
            raise ValueError("the gradient noise needs at least 2 samples")
        variance = self.sum_sq_dev / (self.count - 1)
        mean_sq = sum(float(m.pow(2).sum()) for m in self.mean)
        out = {"samples": self.count, "variance": variance, "mean_sq": mean_sq,
               "signal": mean_sq - variance / self.count, "grad_ratio": _ratio(variance, mean_sq)}
        if offset is not None:
            direction_sq = sum(float((m + o.to(torch.float64)).pow(2).sum()) for m, o in zip(self.mean, offset))
            out.update(direction_mean_sq=direction_sq, direction_ratio=_ratio(variance, direction_sq))
        return out


def _ratio(variance: float, mean_sq: float) -> float:
    return variance / mean_sq if mean_sq > 0 else math.inf


@torch.no_grad()
def direction_offset(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> list[Tensor]:
    """o for each of ``params`` (parameters of ``optimizer``) at its next step; see the module docstring."""
    schedule = getattr(optimizer, "inner_schedule", None)
    group_of = {p: g for g in optimizer.param_groups for p in g["params"]}
    offset = []
    for p in params:
        group = group_of[p]
        o = p.detach() * float(group.get("weight_decay", 0.0))
        anchor = optimizer.state.get(p, {}).get("anchor")
        if schedule is not None and anchor is not None:
            k, round_index, c, _ = schedule(group)
            if k != 0 and optimizer.state[p].get("anchor_round") == round_index:
                o = o + c * (p.detach() - anchor)
        offset.append(o)
    return offset


def probe_generator_noise(pix2pix, probe: Iterable[tuple[Tensor, Tensor]], seed: int = 0) -> dict[str, float]:
    """V, r_g, r_d and ‖w − w_t‖ of G at its current weights on the probe pairs (a, b), each [1, C, H, W].

    ``pix2pix`` is a :class:`gan.pix2pix.Pix2Pix`. The loss is G's training loss with D frozen, computed
    on copies of G and D in training mode (batch statistics, dropout as in training; SyncBatchNorm made
    local, so one rank can probe alone), so the networks, their batch-norm buffers and the global random
    streams are untouched. Sample i uses dropout seed
    ``seed + i``, the same at every call, so successive probes differ only by the weights.
    """
    netG = local_copy(pix2pix.netG).train()
    netD = local_copy(pix2pix.netD).train().requires_grad_(False)
    params = [p for p in netG.parameters() if p.requires_grad]
    moments = GradientMoments(params)
    device = params[0].device
    for i, (real_a, real_b) in enumerate(probe):
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed + i)
            netG.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss = pix2pix.generator_loss(netG, netD, real_a.to(device), real_b.to(device))
                loss.backward()
        moments.add([p.grad if p.grad is not None else torch.zeros_like(p) for p in params])
    stats = moments.stats(direction_offset(pix2pix.optimizer_G, list(pix2pix.netG.parameters())))
    distance = getattr(pix2pix.optimizer_G, "distance_to_anchor", None)
    stats["distance_to_anchor"] = float(distance()) if distance is not None else float("nan")
    return stats


def gradient_noise(loss_fn, params: Sequence[nn.Parameter], samples: Iterable) -> dict[str, float]:
    """V, ‖ḡ‖² and r_g of ``loss_fn(sample)`` over ``samples``, one backward per sample (any model)."""
    moments = GradientMoments(params)
    for sample in samples:
        grads = torch.autograd.grad(loss_fn(sample), params)
        moments.add(grads)
    return moments.stats()
