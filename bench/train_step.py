"""Time one pix2pix training step (one D + one G update, batch 1, 256x256, unet_256 + basic D, batch norm).

    python bench/train_step.py [--steps 7] [--size 256] [--no-compile]

Variants, timed round-robin in one process (medians over --steps steps after warm-up):
  (a) baseline: the reference trainer's step — the same networks, torch.optim.Adam with default
      settings (a loop over parameters on the CPU), fp32, contiguous tensors;
  (b) ours with Adam (gan.pix2pix.Pix2Pix: the same computation, fused Adam kernel);
  (c) ours with TRAdam (λ = 0.1, S = 10);
  (d) ours with TRAdam and torch.compile of G and D (train.py --compile);
  (e) ours with TRAdam and channels_last tensors (train.py --channels-last);
  (f) ours with TRAdam and bf16 autocast (train.py --amp; changes the arithmetic, fast on CPUs with
      AVX512-BF16/AMX).
Peak memory of each is measured in a fresh subprocess (growth of the peak resident set during the
steps, after the networks exist).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peak_memory import peak_memory_growth_mb  # noqa: E402
from gan.losses import GANLoss  # noqa: E402
from gan.networks import build_discriminator, build_generator  # noqa: E402
from gan.pix2pix import ModelConfig, Pix2Pix, wrap_for_training, set_requires_grad  # noqa: E402
from gan.optimizers import OptimConfig  # noqa: E402


class ReferenceStep:
    """The reference trainer's optimize_parameters() with torch.optim.Adam at its defaults."""

    def __init__(self, netG: str = "unet_256", ngf: int = 64, ndf: int = 64, device="cpu"):
        self.G = build_generator(netG, ngf=ngf).to(device)
        self.D = build_discriminator("basic", ndf=ndf).to(device)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.gan = GANLoss("vanilla")

    def __call__(self, a, b):
        fake = self.G(a)
        set_requires_grad(self.D, True)
        self.opt_D.zero_grad()
        loss_D = 0.5 * (self.gan(self.D(torch.cat((a, fake.detach()), 1)), False)
                        + self.gan(self.D(torch.cat((a, b), 1)), True))
        loss_D.backward()
        self.opt_D.step()
        set_requires_grad(self.D, False)
        self.opt_G.zero_grad()
        loss_G = self.gan(self.D(torch.cat((a, fake), 1)), True) + 100.0 * torch.nn.functional.l1_loss(fake, b)
        loss_G.backward()
        self.opt_G.step()


class OurStep:
    def __init__(self, optim: str, compile_: bool = False, channels_last: bool = False, amp: bool = False):
        self.model = Pix2Pix(ModelConfig(), OptimConfig(optim), OptimConfig(optim))
        self.channels_last = channels_last
        wrap_for_training(self.model, torch.device("cpu"), channels_last=channels_last, compile=compile_)  # as train.py
        self.autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp else None

    def __call__(self, a, b):
        if self.channels_last:
            a, b = a.contiguous(memory_format=torch.channels_last), b.contiguous(memory_format=torch.channels_last)
        self.model.training_step(a, b, autocast=self.autocast)


VARIANTS = {
    "(a) reference-style step, torch Adam defaults": lambda: ReferenceStep(),
    "(b) ours, Adam": lambda: OurStep("adam"),
    "(c) ours, TRAdam": lambda: OurStep("tradam"),
    "(d) ours, TRAdam + compile": lambda: OurStep("tradam", compile_=True),
    "(e) ours, TRAdam + channels_last": lambda: OurStep("tradam", channels_last=True),
    "(f) ours, TRAdam + bf16 autocast (--amp)": lambda: OurStep("tradam", amp=True),
}


def batch(size: int, n: int):
    g = torch.Generator().manual_seed(n)
    return torch.rand(1, 3, size, size, generator=g) * 2 - 1, torch.rand(1, 3, size, size, generator=g) * 2 - 1


def peak_memory_mb(name: str, size: int) -> float:
    """Growth of the peak RSS over three steps of ``name`` after building it, in a fresh process."""
    return peak_memory_growth_mb(f"import train_step as b, torch\ntorch.manual_seed(0)\nstep = b.VARIANTS[{name!r}]()",
                                 f"for n in range(3): step(*b.batch({size}, n))")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=7, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--size", type=int, default=256, help="image size")
    parser.add_argument("--no-compile", action="store_true", help="skip variant (d)")
    args = parser.parse_args()
    names = [n for n in VARIANTS if not (args.no_compile and "compile" in n)]

    steps = {}
    for name in names:
        torch.manual_seed(0)
        steps[name] = VARIANTS[name]()
        for n in range(args.warmup):
            steps[name](*batch(args.size, n))
    times = {name: [] for name in names}
    for n in range(args.steps):
        a, b = batch(args.size, 100 + n)
        for name in names:
            start = time.perf_counter()
            steps[name](a, b)
            times[name].append(time.perf_counter() - start)
    del steps
    medians = {name: statistics.median(ts) * 1e3 for name, ts in times.items()}
    memory = {name: peak_memory_mb(name, args.size) for name in names}
    base = medians[names[0]]
    print(f"pix2pix training step, batch 1, {args.size}x{args.size}, unet_256 + basic D, CPU, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, median of {args.steps} steps\n")
    print("| variant | step (ms) | speed-up over (a) | peak memory growth (MB) |")
    print("|---|---:|---:|---:|")
    for name in names:
        print(f"| {name} | {medians[name]:.0f} | {base / medians[name]:.2f} | {memory[name]:.0f} |")
    n_params = sum(p.numel() for p in build_generator("unet_256").parameters()) + \
        sum(p.numel() for p in build_discriminator("basic").parameters())
    b, c = "(b) ours, Adam", "(c) ours, TRAdam"
    print(f"\n(c) / (b) step time: {medians[c] / medians[b]:.3f}; peak memory (c) - (b): {memory[c] - memory[b]:.0f} MB;"
          f" one copy of the parameters: {n_params * 4 / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
