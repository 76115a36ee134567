"""What a GPU gives this project, in one command: ``python bench/gpu.py``.

On CUDA (the default when a GPU is visible) it measures the paper's configuration, unet_256 + basic
D at batch size 1 and 256x256:

1. one pix2pix training step (D update + G update), median over ``--steps`` steps:
   (a) the reference trainer's step (torch.optim.Adam with its defaults), (b) ours with Adam,
   (c) ours with TRAdam, (d) (c) + ``--amp`` (bf16 autocast), (e) (d) + ``--channels-last``,
   (f) (e) + ``--compile``; with the peak memory each needs;
2. ``optimizer.step()`` alone over G's and D's parameters: torch's fused Adam, TRAdam's default path
   (multi-tensor on CUDA), and TRAdam's per-tensor path, with the kernel launches of one step
   (counted by the profiler) and the memory beyond the parameters and gradients;
3. evaluation: frames/s of segmenting generated images with our FCN-8s and DeepLabV3+ Xception-71,
   which run at their training resolution (256x256) whatever the frame: a 256x256 frame (the TRAlgo
   paper's protocol) and a 2048x1024 frame (pix2pix's fullres protocol: the frame is resized to 256x256
   first, so the network's cost is the same and the resizing is what differs);
4. the imported reference scorers, which really run at full resolution (in fp32 whatever --amp-eval):
   pix2pix's Caffe FCN-8s on a 2048x1024 frame and DeepLab's DPC Xception-71 on its 1025x2049 crop
   (random weights of the real shapes), with frames/s and peak memory;
5. with more than one GPU visible (or ``--processes N``): train.py itself under torchrun, at 1 and at N
   processes: time per step and torch.distributed collectives per step (bench/torchrun_steps.py).

On the CPU (``--device cpu``, or no GPU) it runs the same measurements on a small version (unet_32
with 8 filters at 32x32, width-scaled segmenters, "fullres" = 64x128, narrow reference scorers, a few
steps, no compile unless ``--compile``, torchrun only with ``--processes N`` and then over gloo), so that
the benchmark itself is tested; its numbers say nothing about a GPU. Ratios are against (a), torch's
fused Adam and the 1-process run, measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from eval.segmenters.registry import build_segmenter  # noqa: E402
from common.amp import autocast  # noqa: E402
from gan.networks import build_discriminator, build_generator  # noqa: E402
from tralgo import TRAdam  # noqa: E402
from gan.pix2pix import ModelConfig, Pix2Pix, wrap_for_training  # noqa: E402
from gan.optimizers import OptimConfig  # noqa: E402
from train_step import ReferenceStep  # noqa: E402


@dataclass
class Scale:
    """The sizes of one run: the paper's on CUDA, a small stand-in on the CPU."""

    netG: str
    ngf: int
    ndf: int
    size: int
    fullres: tuple[int, int]
    segmenters: dict
    references: dict  # imported reference scorers: arch -> (config, classes)
    steps: int
    warmup: int


FULL = Scale("unet_256", 64, 64, 256, (1024, 2048),
             {"fcn8s": None, "deeplabv3plus_xception71": None},
             {"fcn8s_caffe": (None, 20), "dpc_xception71": (None, 19)}, steps=20, warmup=5)
SMALL = Scale("unet_32", 8, 8, 32, (64, 128),
              {"fcn8s": {"width_mult": 1 / 16},
               "deeplabv3plus_xception71": {"encoder": "mobilenetv3_small_050", "decoder_channels": 16}},
              {"fcn8s_caffe": ({"block_widths": (4, 8, 8, 16, 16), "fc_width": 32}, 20),
               "dpc_xception71": ({"crop_size": (65, 129), "width_mult": 1 / 32}, 19)},
              steps=3, warmup=1)


# ----------------------------------------------------------------------------- measuring
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device: torch.device, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


class PeakMemory:
    """Peak memory above the level at entry, in MB: CUDA's allocator on a GPU; on the CPU the growth of
    the process's peak resident set (Linux; NaN elsewhere), which freed memory reused inside the
    process can hide."""

    def __init__(self, device: torch.device):
        self.device, self.mb = device, float("nan")

    def __enter__(self):
        if self.device.type == "cuda":
            synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif os.path.exists("/proc/self/clear_refs"):
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # peak resident set := current
            self.base = _resident_kb("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            synchronize(self.device)
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self.base) / 2**20
        elif os.path.exists("/proc/self/clear_refs"):
            self.mb = (_resident_kb("VmHWM") - self.base) / 1024
        return False


def _resident_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith(field)).split()[1])


def optimizer_launches(step, device: torch.device) -> int:
    """Launches of one call of ``step`` by the profiler: GPU kernels on CUDA; on the CPU the aten
    operators it calls directly that compute (views and the profiler's own markers left out)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        step()
        synchronize(device)
    events = prof.events()
    if device.type == "cuda":
        return sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    roots = [e for e in events if e.name.startswith("Optimizer.step#")]
    return sum(1 for root in roots for e in root.cpu_children if _computes(e.name))


def _computes(name: str) -> bool:
    if not name.startswith("aten::"):
        return False
    packet = getattr(torch.ops.aten, name[len("aten::"):], None)
    overloads = [getattr(packet, o) for o in packet.overloads()] if packet is not None else []
    return not any(op.is_view for op in overloads)


# ----------------------------------------------------------------------------- 1. training step
class OurStep:
    """train.py's step: Pix2Pix with ``optim``, optionally bf16 autocast, channels_last and compile."""

    def __init__(self, scale: Scale, device, optim: str, amp=False, channels_last=False, compile_=False):
        model = ModelConfig(netG=scale.netG, ngf=scale.ngf, ndf=scale.ndf)
        self.model = Pix2Pix(model, OptimConfig(optim), OptimConfig(optim), device=device)
        wrap_for_training(self.model, device, channels_last=channels_last, compile=compile_)  # as train.py
        self.device, self.channels_last = device, channels_last
        self.autocast = (lambda: autocast(device)) if amp else None

    def __call__(self, a, b):
        if self.channels_last:
            a, b = a.contiguous(memory_format=torch.channels_last), b.contiguous(memory_format=torch.channels_last)
        self.model.training_step(a, b, autocast=self.autocast)


def training_variants(scale: Scale, device, with_compile: bool) -> dict:
    variants = {
        "(a) reference-style step, torch.optim.Adam defaults":
            lambda: ReferenceStep(scale.netG, scale.ngf, scale.ndf, device),
        "(b) ours, Adam": lambda: OurStep(scale, device, "adam"),
        "(c) ours, TRAdam": lambda: OurStep(scale, device, "tradam"),
        "(d) TRAdam + --amp": lambda: OurStep(scale, device, "tradam", amp=True),
        "(e) TRAdam + --amp --channels-last": lambda: OurStep(scale, device, "tradam", amp=True, channels_last=True),
    }
    if with_compile:
        variants["(f) TRAdam + --amp --channels-last --compile"] = lambda: OurStep(
            scale, device, "tradam", amp=True, channels_last=True, compile_=True)
    return variants


def bench_training(scale: Scale, device, with_compile: bool) -> list[tuple]:
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(1, 3, scale.size, scale.size, generator=g) * 2 - 1).to(device)
    b = (torch.rand(1, 3, scale.size, scale.size, generator=g) * 2 - 1).to(device)
    rows = []
    for name, make in training_variants(scale, device, with_compile).items():
        torch.manual_seed(0)
        with PeakMemory(device) as memory:
            step = make()
            ms = median_ms(lambda: step(a, b), device, scale.steps, scale.warmup)
        rows.append((name, ms, memory.mb))
        del step
    return rows


# ----------------------------------------------------------------------------- 2. optimizer step
def optimizer_variants() -> dict:
    betas = (0.5, 0.999)
    return {
        "torch Adam, fused": lambda ps: torch.optim.Adam(ps, lr=2e-4, betas=betas, fused=True),
        "TRAdam, default path": lambda ps: TRAdam(ps, lr=2e-4, betas=betas),
        "TRAdam, multi-tensor (foreach=True)": lambda ps: TRAdam(ps, lr=2e-4, betas=betas, foreach=True),
        "TRAdam, per tensor (foreach=False)": lambda ps: TRAdam(ps, lr=2e-4, betas=betas, foreach=False),
    }


def bench_optimizer(scale: Scale, device) -> tuple[list[tuple], int]:
    torch.manual_seed(0)
    nets = [build_generator(scale.netG, ngf=scale.ngf), build_discriminator("basic", ndf=scale.ndf)]
    shapes = [p.shape for net in nets for p in net.parameters()]
    del nets
    rows = []
    for name, make in optimizer_variants().items():
        params = [torch.randn(s, device=device).requires_grad_() for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        with PeakMemory(device) as memory:
            opt = make(params)
            ms = median_ms(opt.step, device, 3 * scale.steps, scale.warmup + 1)
        launches = optimizer_launches(opt.step, device)
        rows.append((name, ms, launches, memory.mb))
        del opt, params
    return rows, sum(s.numel() for s in shapes)


# ----------------------------------------------------------------------------- 3. evaluation
def bench_evaluation(scale: Scale, device, amp: bool) -> list[tuple]:
    rows = []
    for arch, config in scale.segmenters.items():
        model = build_segmenter(arch, config, input_size=(scale.size, scale.size)).to(device).eval()
        for protocol, (h, w) in (("256", (scale.size, scale.size)), ("fullres", scale.fullres)):
            images = torch.rand(1, 3, h, w, device=device) * 2 - 1

            @torch.no_grad()
            def segment():
                with autocast(device, amp) if amp else nullcontext():
                    model.predict(images, out_size=(h, w))

            ms = median_ms(segment, device, scale.steps, scale.warmup)
            rows.append((f"{model.display_name}", f"{protocol} ({w}x{h} frame, network at {scale.size}x{scale.size})",
                         1e3 / ms))
        del model
    return rows


def bench_references(scale: Scale, device, amp: bool) -> list[tuple]:
    """(name, what the network sees, frames/s, peak MB) of each imported reference scorer on one frame of
    the fullres size, as evaluate.py calls it (Segmenter.predict at the label size)."""
    rows = []
    h, w = scale.fullres
    for arch, (config, classes) in scale.references.items():
        torch.manual_seed(0)
        with PeakMemory(device) as memory:
            model = build_segmenter(arch, config, num_classes=classes).to(device).eval()
            images = torch.rand(1, 3, h, w, device=device) * 2 - 1

            @torch.no_grad()
            def segment():
                with autocast(device, amp) if amp else nullcontext():
                    model.predict(images, out_size=(h, w))

            ms = median_ms(segment, device, max(1, scale.steps // 4), 1)
        crop = getattr(model.net, "config", None)
        seen = getattr(crop, "crop_size", (h, w))
        rows.append((model.display_name, f"{seen[1]}x{seen[0]}", 1e3 / ms, memory.mb))
        del model, images
    return rows


# ----------------------------------------------------------------------------- 5. torchrun
def bench_torchrun(scale: Scale, device: torch.device, processes: int) -> list[tuple]:
    """(processes, ms per step, collectives per step) of train.py under torchrun at 1 and ``processes``
    processes (one GPU each on CUDA, gloo on the CPU), on a synthetic dataset large enough that the timed
    steps fall in one epoch; the first ``scale.warmup`` steps are not timed."""
    from data.synthetic import generate
    steps = scale.warmup + max(scale.steps, 2)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = generate(Path(folder) / "data", n_train=processes * (steps + 1), n_val=1, size=scale.size)
        for n in (1, processes):
            out = Path(folder) / f"steps{n}.json"
            options = ["--dataroot", str(root), "--checkpoints-dir", str(Path(folder) / "runs"), "--name", f"p{n}",
                       "--netG", scale.netG, "--ngf", str(scale.ngf), "--ndf", str(scale.ndf), "--load-size",
                       str(scale.size), "--crop-size", str(scale.size), "--max-steps", str(steps),
                       "--num-workers", "0" if device.type == "cpu" else "2", "--num-image-frames", "1",
                       "--device", "cuda" if device.type == "cuda" else "cpu", "--optim", "tradam"]
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_port",
                       str(port), str(Path(__file__).with_name("torchrun_steps.py")), str(out), *options]
            result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
            if result.returncode != 0:
                raise RuntimeError(f"torchrun with {n} processes failed: {result.stderr.strip()[-2000:]}")
            record = json.loads(out.read_text())
            times, counts = record["times"][:-1], record["collectives"][:-1]  # step starts (the last: after all)
            timed = len(times) - 1 - scale.warmup
            rows.append((n, (times[-1] - times[scale.warmup]) / timed * 1e3,
                         (counts[-1] - counts[scale.warmup]) / timed))
    return rows


# ----------------------------------------------------------------------------- report
def run(device: torch.device, scale: Scale, with_compile: bool, amp_eval: bool, processes: int = 0) -> str:
    lines = []
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (small stand-in sizes)"
    if device.type == "cpu":
        where += f", torch threads: {torch.get_num_threads()}"
    lines.append(f"bench/gpu.py on {where}, torch {torch.__version__}, {scale.netG} (ngf {scale.ngf}) + basic D "
                 f"(ndf {scale.ndf}), batch 1, {scale.size}x{scale.size}, medians of {scale.steps} steps\n")

    rows = bench_training(scale, device, with_compile)
    base = rows[0][1]
    lines += ["| training step | ms | speed-up over (a) | peak memory (MB) |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {ms:.1f} | {base / ms:.2f} | {mb:.0f} |" for name, ms, mb in rows]
    if not with_compile:
        lines.append("\n(f) + --compile left out (pass --compile; compiling takes minutes on the CPU)")

    rows, n_params = bench_optimizer(scale, device)
    fused = rows[0][1]
    lines += ["", f"| optimizer.step(), {n_params / 1e6:.1f} M parameters | ms | × torch fused Adam | "
                  f"launches per step | memory beyond params + grads (MB) |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {ms:.2f} | {ms / fused:.2f} | {launches} | {mb:.0f} |" for name, ms, launches, mb in rows]
    unit = "CUDA kernels" if device.type == "cuda" else "aten operators called by step()"
    lines.append(f"\nlaunches: {unit}, counted by torch.profiler; one parameter copy = {n_params * 4 / 2**20:.0f} MB")

    rows = bench_evaluation(scale, device, amp_eval)
    lines += ["", f"| evaluation: segmenting one frame{' (bf16 autocast)' if amp_eval else ''} | protocol | frames/s |",
              "|---|---|---:|"]
    lines += [f"| {name} | {protocol} | {fps:.1f} |" for name, protocol, fps in rows]

    rows = bench_references(scale, device, amp_eval)
    lines += ["", "| reference scorer at full resolution, fp32 | network input | frames/s | peak memory (MB) |",
              "|---|---|---:|---:|"]
    lines += [f"| {name} | {seen} | {fps:.2f} | {mb:.0f} |" for name, seen, fps, mb in rows]

    if processes > 1:
        rows = bench_torchrun(scale, device, processes)
        single = rows[0][1]
        lines += ["", "| train.py under torchrun | ms per step | × 1 process | collectives per step |",
                  "|---|---:|---:|---:|"]
        lines += [f"| {n} process{'es' if n > 1 else ''} | {ms:.1f} | {ms / single:.2f} | {per_step:.2f} |"
                  for n, ms, per_step in rows]
        lines.append("\ncollectives: torch.distributed calls from Python (train.py's agreements at --log-freq steps "
                     "and saves, DDP's buffer broadcasts); DDP's gradient all-reduce is not among them")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cuda, cuda:N or cpu")
    parser.add_argument("--small", action="store_true", help="the small sizes on CUDA too (a quick check)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant (default: 20 CUDA, 3 CPU)")
    parser.add_argument("--compile", action="store_true", help="include (f) on the CPU (always included on CUDA)")
    parser.add_argument("--amp-eval", action="store_true", help="segment with bf16 autocast (evaluate.py --amp)")
    parser.add_argument("--processes", type=int, default=None,
                        help="torchrun measurement with this many processes (default: the visible GPUs when more "
                             "than one on CUDA, else none; on the CPU over gloo)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of torch (default: torch's choice; 1 steadies timings on a busy machine)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    name = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = torch.device("cpu" if name == "auto" else name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            print(f"error: --device {args.device}: no CUDA device is available", file=sys.stderr)
            return 2
        torch.backends.cudnn.benchmark = True
    scale = SMALL if device.type != "cuda" or args.small else FULL
    if args.steps:
        scale = replace(scale, steps=args.steps)
    processes = args.processes if args.processes is not None else (
        torch.cuda.device_count() if device.type == "cuda" else 0)
    print(run(device, scale, with_compile=args.compile or device.type == "cuda", amp_eval=args.amp_eval,
              processes=processes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
