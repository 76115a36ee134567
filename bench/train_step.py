"""Time one pix2pix training step (one D + one G update, batch 1, batch norm) in the paper's configuration
and in the demo's, each beside its compute limit.

    python bench/train_step.py [--config paper|demo|both] [--threads 1] [--steps 7] [--no-compile]

Configurations: ``paper`` (unet_256 + basic D, ngf/ndf 64, 256x256) and ``demo`` (unet_64 + basic D,
ngf/ndf 32, 64x64: train.py --preset demo). Variants, timed round-robin in one process (medians over
--steps steps after warm-up):
  (a) baseline: the reference trainer's step — the same networks, torch.optim.Adam with default
      settings (a loop over parameters on the CPU), fp32, contiguous tensors;
  (b) ours with Adam (gan.pix2pix.Pix2Pix: the same computation, fused Adam kernel);
  (c) ours with TRAdam (λ = 0.1, S = 10);
  (d) (c) + torch.compile of G and D (train.py --compile);
  (e) (c) + torch.compile in mode max-autotune-no-cudagraphs (autotuned kernels);
  (f) (c) + channels_last tensors (train.py --channels-last);
  (g) (c) + bf16 autocast (train.py --amp; changes the arithmetic, fast on CPUs with AVX512-BF16/AMX).
Beside each: the compute limit, the step's FLOPs (torch.utils.flop_counter: convolutions and matmuls,
forward and backward) divided by the fp32 matmul peak measured at the same thread count, and how many
times the limit the step takes. Peak memory of each is measured in a fresh subprocess (growth of the peak
resident set during the steps, after the networks exist).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from peak_memory import peak_memory_growth_mb  # noqa: E402

from gan.losses import GANLoss  # noqa: E402
from gan.networks import build_discriminator, build_generator  # noqa: E402
from gan.optimizers import OptimConfig  # noqa: E402
from gan.pix2pix import ModelConfig, Pix2Pix, set_requires_grad, wrap_for_training  # noqa: E402

CONFIGS = {"paper": dict(netG="unet_256", ngf=64, ndf=64, size=256),
           "demo": dict(netG="unet_64", ngf=32, ndf=32, size=64)}


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
    def __init__(self, optim: str, netG: str = "unet_256", ngf: int = 64, ndf: int = 64, compile_: str | None = None,
                 channels_last: bool = False, amp: bool = False):
        self.model = Pix2Pix(ModelConfig(netG=netG, ngf=ngf, ndf=ndf), OptimConfig(optim), OptimConfig(optim))
        self.channels_last = channels_last
        wrap_for_training(self.model, torch.device("cpu"), channels_last=channels_last, compile=compile_ is not None)
        if compile_ not in (None, "default"):
            m = self.model
            m.wrap(*(torch.compile(net, mode=compile_) for net in (m.netG, m.netD, m.netD)))
        self.autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if amp else None

    def __call__(self, a, b):
        if self.channels_last:
            a, b = a.contiguous(memory_format=torch.channels_last), b.contiguous(memory_format=torch.channels_last)
        self.model.training_step(a, b, autocast=self.autocast)


def variants(config: dict) -> dict:
    net = {key: config[key] for key in ("netG", "ngf", "ndf")}
    return {
        "(a) reference-style step, torch Adam defaults": lambda: ReferenceStep(**net),
        "(b) ours, Adam": lambda: OurStep("adam", **net),
        "(c) ours, TRAdam": lambda: OurStep("tradam", **net),
        "(d) (c) + compile": lambda: OurStep("tradam", compile_="default", **net),
        "(e) (c) + compile max-autotune-no-cudagraphs": lambda: OurStep("tradam", compile_="max-autotune-no-cudagraphs",
                                                                         **net),
        "(f) (c) + channels_last": lambda: OurStep("tradam", channels_last=True, **net),
        "(g) (c) + bf16 autocast (--amp)": lambda: OurStep("tradam", amp=True, **net),
    }


def batch(size: int, n: int):
    g = torch.Generator().manual_seed(n)
    return torch.rand(1, 3, size, size, generator=g) * 2 - 1, torch.rand(1, 3, size, size, generator=g) * 2 - 1


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 matmul throughput at this process's thread count: the best of ``repeats`` n x n products."""
    x, y = torch.randn(n, n), torch.randn(n, n)
    torch.mm(x, y)
    best = min(_timed(lambda: torch.mm(x, y)) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def step_gflop(config: dict) -> float:
    """FLOPs of one of our steps (convolutions and matmuls, forward and backward), in GFLOP."""
    torch.manual_seed(0)
    step = OurStep("tradam", **{key: config[key] for key in ("netG", "ngf", "ndf")})
    counter = FlopCounterMode(display=False)
    with counter:
        step(*batch(config["size"], 0))
    return counter.get_total_flops() / 1e9


def peak_memory_mb(config_name: str, name: str) -> float:
    """Growth of the peak RSS over three steps of ``name`` after building it, in a fresh process."""
    size = CONFIGS[config_name]["size"]
    return peak_memory_growth_mb(f"import train_step as b, torch\ntorch.manual_seed(0)\n"
                                 f"step = b.variants(b.CONFIGS[{config_name!r}])[{name!r}]()",
                                 f"for n in range(3): step(*b.batch({size}, n))")


def time_variants(config: dict, names: list[str], steps: int, warmup: int) -> dict[str, float]:
    """Median ms of each variant's step, timed round-robin."""
    built = {}
    for name in names:
        torch.manual_seed(0)
        built[name] = variants(config)[name]()
        for n in range(warmup):
            built[name](*batch(config["size"], n))
    times = {name: [] for name in names}
    for n in range(steps):
        a, b = batch(config["size"], 100 + n)
        for name in names:
            times[name].append(_timed(lambda: built[name](a, b)))
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}


def report(config_name: str, args) -> None:
    config = CONFIGS[config_name]
    names = [n for n in variants(config) if not (args.no_compile and "compile" in n)]
    medians = time_variants(config, names, args.steps, args.warmup)
    gflop, peak = step_gflop(config), matmul_peak_gflops()
    limit = gflop / peak * 1e3
    memory = {name: peak_memory_mb(config_name, name) for name in names}
    base = medians[names[0]]
    print(f"\n{config_name}: {config['netG']} + basic D, ngf/ndf {config['ngf']}/{config['ndf']}, batch 1, "
          f"{config['size']}x{config['size']}; {torch.get_num_threads()} thread(s), torch {torch.__version__}; "
          f"median of {args.steps} steps; {gflop:.2f} GFLOP per step, fp32 matmul peak {peak:.0f} GFLOP/s, "
          f"so a compute limit of {limit:.1f} ms\n")
    print("| variant | step (ms) | speed-up over (a) | × the compute limit | peak memory growth (MB) |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        print(f"| {name} | {medians[name]:.1f} | {base / medians[name]:.2f} | {medians[name] / limit:.1f} | "
              f"{memory[name]:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", choices=[*CONFIGS, "both"], default="both", help="which configuration")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    parser.add_argument("--steps", type=int, default=7, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled variants")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for name in (CONFIGS if args.config == "both" else [args.config]):
        report(name, args)


if __name__ == "__main__":
    main()
