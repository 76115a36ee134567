"""How noisy is one step at batch size 1? The quantity TRAlgo claims to tame, measured.

At the current weights w, take the gradients g_1, ..., g_M of G's loss on the run's M probe pairs (drawn
at random from the training set by a generator of the run's seed, so every arm of a seed probes the same
pairs), one pair at a time (batch size 1, as training sees them). With ḡ = (1/M)·Σ g_i:

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
V is accumulated with Welford's update (no catastrophic cancellation, one parameter-sized mean), on the
gradients' device: a probe reads the host once, for all its numbers together.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from common.distributed import local_copy


class GradientMoments:
    """Streaming mean and total variance of per-sample gradient lists (Welford's update), kept on the
    gradients' device; :meth:`device_stats` leaves the results there, :meth:`stats` reads them once."""

    def __init__(self, params: Sequence[Tensor]):
        self.mean = [torch.zeros_like(p, dtype=torch.float64) for p in params]
        self.count = 0
        device = self.mean[0].device if self.mean else None
        self.sum_sq_dev = torch.zeros((), dtype=torch.float64, device=device)  # Σ ‖g_i − ḡ‖², per sample

    def add(self, grads: Sequence[Tensor]) -> None:
        self.count += 1
        grads = [g.detach().to(torch.float64) for g in grads]
        delta = torch._foreach_sub(grads, self.mean)                 # g − mean_old
        torch._foreach_add_(self.mean, delta, alpha=1.0 / self.count)
        delta_new = torch._foreach_sub(grads, self.mean)             # g − mean_new
        self.sum_sq_dev += _sum_of_dots(delta, delta_new)

    def device_stats(self, offset: Sequence[Tensor] | None = None) -> dict[str, Tensor]:
        """V, ‖ḡ‖², the unbiased signal, r_g and (with ``offset`` o) ‖ḡ + o‖² and r_d, as 0-d float64
        tensors on the gradients' device (nothing is read back)."""
        if self.count < 2:
            raise ValueError("the gradient noise needs at least 2 samples")
        variance = self.sum_sq_dev / (self.count - 1)
        mean_sq = _sum_of_dots(self.mean, self.mean)
        out = {"variance": variance, "mean_sq": mean_sq, "signal": mean_sq - variance / self.count,
               "grad_ratio": _ratio(variance, mean_sq)}
        if offset is not None:
            direction = torch._foreach_add(self.mean, [o.to(torch.float64) for o in offset])
            direction_sq = _sum_of_dots(direction, direction)
            out.update(direction_mean_sq=direction_sq, direction_ratio=_ratio(variance, direction_sq))
        return out

    def stats(self, offset: Sequence[Tensor] | None = None) -> dict[str, float]:
        """:meth:`device_stats` as floats (one read of the device), with ``samples``."""
        return {"samples": self.count, **read_once(self.device_stats(offset))}


def _sum_of_dots(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """Σ_i ⟨a_i, b_i⟩ as one 0-d tensor on the tensors' device."""
    return torch.stack([torch.dot(x.reshape(-1), y.reshape(-1)) for x, y in zip(a, b)]).sum()


def _ratio(variance: Tensor, mean_sq: Tensor) -> Tensor:
    return torch.where(mean_sq > 0, variance / mean_sq, torch.full_like(variance, math.inf))


def read_once(values: dict[str, Tensor]) -> dict[str, float]:
    """0-d tensors (on one device) as floats, with one transfer to the host."""
    numbers = torch.stack([v.to(torch.float64) for v in values.values()]).tolist()
    return dict(zip(values, numbers))


def anchor_distance(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> Tensor | None:
    """‖w − w_t‖ over those of ``params`` that have an anchor in ``optimizer`` (TRAdam/TRSGD), in float64 on
    their device; None for optimizers without anchors."""
    if not hasattr(optimizer, "distance_to_anchor"):
        return None
    pairs = [(p.detach(), optimizer.state[p]["anchor"]) for p in params if "anchor" in optimizer.state.get(p, {})]
    if not pairs:
        return torch.zeros((), dtype=torch.float64, device=params[0].device)
    differences = [(p.to(torch.float64) - a.to(torch.float64)) for p, a in pairs]
    return _sum_of_dots(differences, differences).sqrt()


@torch.no_grad()
def direction_offset(optimizer: torch.optim.Optimizer, params: Sequence[Tensor]) -> list[Tensor]:
    """o for each of ``params`` (parameters of ``optimizer``) at its next step; see the module docstring."""
    schedule = getattr(optimizer, "inner_schedule", None)
    group_of = {p: g for g in optimizer.param_groups for p in g["params"]}
    offset = []
    for p in params:
        group = group_of[p]
        o = p.detach() * group.get("weight_decay", 0.0)
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
    stats = moments.device_stats(direction_offset(pix2pix.optimizer_G, list(pix2pix.netG.parameters())))
    distance = anchor_distance(pix2pix.optimizer_G, list(pix2pix.netG.parameters()))
    stats["distance_to_anchor"] = distance if distance is not None else torch.tensor(math.nan, device=device)
    return {"samples": moments.count, **read_once(stats)}


def gradient_noise(loss_fn, params: Sequence[nn.Parameter], samples: Iterable) -> dict[str, float]:
    """V, ‖ḡ‖² and r_g of ``loss_fn(sample)`` over ``samples``, one backward per sample (any model)."""
    moments = GradientMoments(params)
    for sample in samples:
        grads = torch.autograd.grad(loss_fn(sample), params)
        moments.add(grads)
    return moments.stats()
