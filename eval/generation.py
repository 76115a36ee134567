"""Generating the validation images of a generator: one PNG per frame, ``<frame name>.png``.

The pix2pix test protocol (default) keeps the generator in training mode: dropout on and batch norm on
each image's own statistics (batch size 1); seeded, so reruns are identical on the CPU.
``test_protocol=False`` uses running statistics and no dropout.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from common.amp import autocast
from common.files import write_png
from common.progress import progress
from eval import EvalError
from eval.eval_sets import EvalSet
from eval.segmenters.base import to_uint8
from gan.networks import load_generator


@torch.no_grad()
def generate_images(generator: torch.nn.Module, evalset: EvalSet, out_dir, device: torch.device,
                    test_protocol: bool = True, seed: int = 0, amp: bool = False,
                    bar: Callable | None = None) -> Path:
    """Write ``<out_dir>/<frame>.png`` for every val frame; returns ``out_dir``.

    Batch size 1, so with ``test_protocol`` each image is normalised by its own batch statistics
    (dropout on, as pix2pix tests). The dropout noise is seeded by ``seed``.
    """
    out_dir = Path(out_dir)
    generator = generator.to(device)
    generator.train(test_protocol)
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
    for i, name in enumerate(evalset.names):
        x = evalset.generator_input(i).unsqueeze(0).to(device)
        with autocast(device, amp):
            fake = generator(x)
        image = to_uint8(fake[0]).permute(1, 2, 0).cpu().numpy()
        write_png(out_dir / f"{name}.png", image)
        if bar is not None:
            bar.update(1)
    return out_dir


def generate_all(sources: list, evalsets: dict, out: Path, test_protocol: bool, seed: int, device: torch.device,
                 amp: bool) -> None:
    """Generate the val images of every source that has a generator checkpoint (batch size 1) into
    ``<out>/<source>/images/``; each source's ``images`` then names that folder."""
    mode = "pix2pix test protocol (dropout on, each image's own batch-norm statistics)" if test_protocol else \
        "eval mode (running statistics, no dropout)"
    for source in sources:
        if source.checkpoint is None:
            continue
        evalset = evalsets[source.dataroot.resolve()]
        note = f" ({source.note})" if source.note else ""
        print(f"generating {len(evalset)} val images with {source.checkpoint}{note}, {mode}, seed {seed}")
        generator = load_generator(source.checkpoint, **source.generator_kwargs)
        source.images = out / source.label / "images"
        bar = progress(total=len(evalset), desc=f"generate {source.label}", unit="img")
        try:
            generate_images(generator, evalset, source.images, device, test_protocol, seed, amp, bar)
        except RuntimeError as exc:  # e.g. a unet_256 given 64x64 images
            reason = str(exc).strip().splitlines()[0]
            raise EvalError(f"{source.checkpoint}: the generator fails on the {evalset.size}x{evalset.size} "
                            f"val images of {evalset.dataroot} ({reason})") from None
        bar.close()
