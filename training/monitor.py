"""What a training run shows while it runs: TensorBoard scalars and sample grids, noise probes, a progress bar.

:class:`TrainingMonitor` only logs; it is made on the main process alone (the others log nothing).
TensorBoard tags: the four losses, ``lr``, ``grad_norm_G``/``grad_norm_D``, ``anchor_distance_G``/``_D``
(TRAdam/TRSGD: ‖w − w_t‖), ``step_time`` (seconds), ``noise/*`` (:mod:`training.noise`, with ``noise/k`` the inner position of the step that follows), the image grid
``label | generated | real`` and the run's options as text.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torchvision
from torch import nn

from common.distributed import local_copy
from common.progress import progress
from gan.pix2pix import Pix2Pix
from training.noise import probe_generator_noise


def grad_norm(module: nn.Module) -> float:
    """‖∇‖ over the parameters of ``module`` that have a gradient."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))


@torch.no_grad()
def sample_grid(netG: nn.Module, frames: dict, seed: int) -> torch.Tensor:
    """label | generated | real rows for the fixed frames, generated with the pix2pix test protocol
    (dropout on, the image's own batch statistics) on a copy of G, so training state is untouched."""
    generator = local_copy(netG).train()  # under --norm syncbatch: plain batch norm, no collectives
    rows = []
    with torch.random.fork_rng(devices=[frames["input"].device] if frames["input"].is_cuda else []):
        torch.manual_seed(seed)
        for a, b in zip(frames["input"], frames["target"]):
            fake = generator(a[None])[0]
            rows += [a, fake, b]
    return torchvision.utils.make_grid(torch.stack(rows).float().cpu(), nrow=3, padding=2, normalize=True,
                                       value_range=(-1, 1))


def is_probe_step(step: int, noise_freq: int, inner_steps: int) -> bool:
    """Whether the noise is probed after ``step`` steps: every ``noise_freq`` steps a round of ``inner_steps``
    consecutive probes, so that the next step's inner position k = step mod S takes every value 0..S-1 (the
    proximal pull is 0 at k = 0 and grows with k). 0: never."""
    return bool(noise_freq) and step >= noise_freq and step % noise_freq < inner_steps


def options_markdown(options: dict) -> str:
    return "| option | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in sorted(options.items()))


class TrainingMonitor:
    """Scalars every ``log_freq`` steps, sample grids every ``image_freq`` (also written to
    ``<run>/samples/``), noise probes every ``noise_freq`` (0: never) and a progress bar."""

    def __init__(self, run_dir: Path, options, frames: dict, probe: list, step: int, total_steps: int):
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only where a run logs

        self.run_dir, self.options, self.frames, self.probe = run_dir, options, frames, probe
        self.writer = SummaryWriter(str(run_dir / "events"), purge_step=step or None)
        self.bar = progress(total=total_steps, initial=step, desc=options.name, unit="step")
        self.tick = time.perf_counter()

    def write_options(self, options: dict) -> None:
        self.writer.add_text("options", options_markdown(options), 0)

    def epoch_started(self) -> None:
        self.tick = time.perf_counter()

    def after_step(self, step: int, losses: dict, pix2pix: Pix2Pix) -> None:
        """The progress bar; scalars, sample grids and noise probes at their frequencies."""
        self.bar.update(1)
        if step % self.options.log_freq == 0:
            self.write_scalars(step, losses, pix2pix)
        if step % self.options.image_freq == 0:
            self.write_samples(step, pix2pix)
        if is_probe_step(step, self.options.noise_freq, self.options.inner_steps):
            for key, value in probe_generator_noise(pix2pix, self.probe, self.options.seed).items():
                self.writer.add_scalar(f"noise/{key}", value, step)
            self.writer.add_scalar("noise/k", step % self.options.inner_steps, step)

    def write_scalars(self, step: int, losses: dict, pix2pix: Pix2Pix) -> None:
        """Losses, lr, gradient norms, TR's distance to the anchor and the time per step since the last call."""
        device = next(pix2pix.netG.parameters()).device
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = time.perf_counter()
        scalars = {k: float(v) for k, v in losses.items()}
        scalars.update(lr=pix2pix.optimizer_G.param_groups[0]["lr"], grad_norm_G=grad_norm(pix2pix.netG),
                       grad_norm_D=grad_norm(pix2pix.netD), step_time=(now - self.tick) / self.options.log_freq)
        for name, optimizer in (("G", pix2pix.optimizer_G), ("D", pix2pix.optimizer_D)):
            if hasattr(optimizer, "distance_to_anchor"):
                scalars[f"anchor_distance_{name}"] = optimizer.distance_to_anchor()
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        self.bar.set_postfix({k: scalars[k] for k in ("G_GAN", "G_L1", "D_real", "D_fake")})
        self.tick = now

    def write_samples(self, step: int, pix2pix: Pix2Pix) -> None:
        grid = sample_grid(pix2pix.netG, self.frames, self.options.seed)
        self.writer.add_image("label | generated | real", grid, step)
        torchvision.utils.save_image(grid, self.run_dir / "samples" / f"step_{step:07d}.png")

    def close(self) -> None:
        self.bar.close()
        self.writer.close()
