"""Time optimizer.step() on the parameters of the pix2pix generator + discriminator (CPU).

    python bench/optim_step.py [--steps 15] [--threads N]

Variants (all on unet_256 + basic D, ≈57.2 M parameters, random gradients):
  torch Adam fused, torch Adam foreach, TRAdam fused path, TRAdam plain path, and a per-parameter
  TRAdam written the way the official TRAlgorithm code does it (the baseline below).
Times are medians over --steps calls, measured round-robin in one process so that drifts of the
machine's speed hit every variant alike. Peak memory is measured per variant in a fresh subprocess:
the growth of the peak resident set over parameters + gradients during three steps.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.optim import Optimizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peak_memory import peak_memory_growth_mb  # noqa: E402
from gan.networks import build_discriminator, build_generator  # noqa: E402
from tralgo import TRAdam  # noqa: E402


class PerParameterTRAdam(Optimizer):
    """Baseline: TRAdam as the official code writes it — a Python loop over parameters, the proximal
    gradient added into p.grad in place, the caller passing the inner counter k, pre-1.0 Adam formula."""

    def __init__(self, params, lr=2e-4, betas=(0.5, 0.999), eps=1e-8, prox=0.1):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, prox=prox))

    @torch.no_grad()
    def step(self, k: int):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                if k == 0:
                    state["anchor"] = p.detach().clone()
                grad = p.grad
                grad.add_(p - state["anchor"], alpha=group["prox"])
                state["step"] += 1
                state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = state["exp_avg_sq"].sqrt().add_(group["eps"])
                step_size = group["lr"] / (k + 1) * math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
                p.addcdiv_(state["exp_avg"], denom, value=-step_size)


VARIANTS = {
    "torch Adam fused": lambda ps: torch.optim.Adam(ps, lr=2e-4, betas=(0.5, 0.999), fused=True),
    "torch Adam foreach": lambda ps: torch.optim.Adam(ps, lr=2e-4, betas=(0.5, 0.999), foreach=True),
    "TRAdam fused": lambda ps: TRAdam(ps, lr=2e-4, betas=(0.5, 0.999), fused=True),
    "TRAdam plain": lambda ps: TRAdam(ps, lr=2e-4, betas=(0.5, 0.999), fused=False),
    "per-parameter TRAdam (baseline)": lambda ps: PerParameterTRAdam(ps, lr=2e-4),
}


def make_params() -> list[torch.Tensor]:
    torch.manual_seed(0)
    params = list(build_generator("unet_256").parameters()) + list(build_discriminator("basic").parameters())
    params = [p.detach().clone().requires_grad_() for p in params]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    return params


def call_step(opt, n: int) -> None:
    if isinstance(opt, PerParameterTRAdam):
        opt.step(n % 10)
    else:
        opt.step()


def peak_memory_mb(name: str) -> float:
    """Growth of the peak RSS during three steps of ``name`` (state allocation included), in a fresh process."""
    return peak_memory_growth_mb("import optim_step as b\nps = b.make_params()",
                                 f"opt = b.VARIANTS[{name!r}](ps)\nfor n in range(3): b.call_step(opt, n)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    optimizers = {}
    for name, make in VARIANTS.items():
        params = make_params()
        optimizers[name] = (make(params), params)
    n_params = sum(p.numel() for p in next(iter(optimizers.values()))[1])
    for name, (opt, _) in optimizers.items():  # warm-up: allocate state, take the first anchors
        for n in range(2):
            call_step(opt, n)
    times = {name: [] for name in optimizers}
    for n in range(2, 2 + args.steps):
        for name, (opt, _) in optimizers.items():
            start = time.perf_counter()
            call_step(opt, n)
            times[name].append(time.perf_counter() - start)
    del optimizers

    medians = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    memory = {name: peak_memory_mb(name) for name in VARIANTS}
    fused, baseline = medians["torch Adam fused"], medians["per-parameter TRAdam (baseline)"]
    print(f"optimizer.step() on unet_256 + basic D: {n_params / 1e6:.1f} M parameters, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}, median of {args.steps} steps\n")
    print("| variant | step (ms) | × torch Adam fused | speed-up over baseline | peak extra memory (MB) |")
    print("|---|---:|---:|---:|---:|")
    for name in VARIANTS:
        print(f"| {name} | {medians[name]:.1f} | {medians[name] / fused:.2f} | {baseline / medians[name]:.1f} | "
              f"{memory[name]:.0f} |")
    print(f"\none parameter copy = {n_params * 4 / 2**20:.0f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps({"ms": medians, "peak_mb": memory, "params": n_params}, indent=2))


if __name__ == "__main__":
    main()
