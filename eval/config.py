"""evaluate.py's options: the command line, :class:`EvalConfig` and the checks made before any work."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from common.command_line import add_former_spelling, flag, option_parser
from common.device import check_device_name
from eval import EvalError
from eval.drn_score import DRN_PROTOCOLS
from eval.eval_sets import PROTOCOLS
from eval.segmenters.registry import REGISTRY
from gan.networks import NORMS

MAX_SIZE = 4096  # --size


@dataclass
class EvalConfig:
    """Every option of evaluate.py (``python evaluate.py --help`` explains each)."""

    checkpoints_dir: str
    runs: list | None
    generator: list
    images: list
    netG: str
    norm: str
    ngf: int
    dataroot: str | None
    segmenters: list | None
    segmenter_dir: str | None
    protocol: str
    drn_protocol: str
    fid: bool
    kid: bool
    inception_weights: str | None
    inception_cache: str | None
    fidelity_only: bool
    kid_subset_size: int
    kid_subsets: int
    fast_hist: bool
    size: int | None
    eval_mode: bool
    seed: int
    max_val_frames: int | None
    figure_frames: int
    out: str
    overwrite: bool
    batch_size: int
    device: str
    amp: bool

    @property
    def segmenter_folder(self) -> Path:
        """Where the segmenters are: --segmenter-dir, else <checkpoints-dir>/segmenters."""
        return Path(self.segmenter_dir) if self.segmenter_dir else Path(self.checkpoints_dir) / "segmenters"

    @property
    def generator_kwargs(self) -> dict:
        """How a bare reference generator state_dict is built (--netG, --norm, --ngf)."""
        return {"name": self.netG, "norm": self.norm, "ngf": self.ngf}

    def check(self) -> None:
        """One-line errors (EvalError) for bad options, before any work."""
        for name in ("max_val_frames", "batch_size", "size", "figure_frames", "ngf", "kid_subsets"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise EvalError(f"{flag(name)} must be >= 1, got {value}")
        twice = sorted({arch for arch in self.segmenters or [] if self.segmenters.count(arch) > 1})
        if twice:
            raise EvalError(f"--segmenters: {', '.join(twice)} given more than once")
        if self.kid_subset_size < 2:
            raise EvalError(f"--kid-subset-size must be >= 2 (KID's unbiased estimate), got {self.kid_subset_size}")
        if self.fidelity_only and not (self.fid or self.kid):
            raise EvalError("--fidelity-only needs --fid or --kid")
        if self.inception_cache is not None and Path(self.inception_cache).exists() \
                and not Path(self.inception_cache).is_dir():
            raise EvalError(f"--inception-cache {self.inception_cache}: exists and is not a folder")
        if self.inception_weights is not None and not Path(self.inception_weights).is_file():
            raise EvalError(f"--inception-weights {self.inception_weights}: file not found")
        if self.size is not None and self.size > MAX_SIZE:
            raise EvalError(f"--size must be <= {MAX_SIZE} (twice Cityscapes' 2048-pixel photos; generating at 8192 "
                            f"takes tens of GB), got {self.size}")
        if not 0 <= self.seed < 2**31:
            raise EvalError(f"--seed must be in [0, 2^31), got {self.seed}")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise EvalError(f"--out {self.out}: exists and is not a folder")
        check_device_name(self.device)


def parse_config(argv=None, description: str | None = None) -> EvalConfig:
    """evaluate.py's command line as an :class:`EvalConfig`."""
    parser = option_parser(description or __doc__, prog="evaluate.py")
    add_source_options(parser)
    add_scoring_options(parser)
    add_fidelity_options(parser)
    return EvalConfig(**vars(parser.parse_args(argv)))


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """What to score: runs, generator files, image folders; and with which segmenters."""
    checkpoints_dir = parser.add_argument("--checkpoints-dir", default="checkpoints",
                                          help="folder holding the training runs")
    add_former_spelling(parser, checkpoints_dir, "--checkpoints")
    parser.add_argument("--runs", nargs="+", default=None, metavar="NAME",
                        help="score only these run folders of --checkpoints-dir; None: every run")
    parser.add_argument("--generator", action="append", default=[], metavar="PATH",
                        help="score this generator checkpoint instead of the runs (repeatable): our latest.pt "
                             "or a reference latest_net_G.pth (see --netG, --norm)")
    parser.add_argument("--images", action="append", default=[], metavar="DIR",
                        help="score this folder of generated <frame>.png images instead of the runs (repeatable)")
    parser.add_argument("--netG", default="unet_256", help="architecture of a bare reference generator state_dict")
    parser.add_argument("--norm", default="batch", choices=NORMS,
                        help="normalisation of a bare reference generator state_dict")
    parser.add_argument("--ngf", type=int, default=64, help="base width of a bare reference generator state_dict")
    parser.add_argument("--dataroot", default=None,
                        help="dataset for --generator / --images (runs use their own); None: the dataroot "
                             "in options.json next to the checkpoint, else the built-in synthetic city")
    parser.add_argument("--segmenters", nargs="+", default=None, choices=list(REGISTRY), metavar="ARCH",
                        help=f"segmenters to use, of {', '.join(REGISTRY)} ; None: every one that is trained")
    parser.add_argument("--segmenter-dir", default=None,
                        help="folder with <arch>.pt segmenters; None: <checkpoints-dir>/segmenters")


def add_scoring_options(parser: argparse.ArgumentParser) -> None:
    """How to score, FID/KID, and where the results go."""
    parser.add_argument("--protocol", choices=PROTOCOLS, default="256",
                        help="256: score at the dataset's 256x256 with nearest-resized labels (TRAlgo paper); "
                             "fullres: upsample to the official label size and score against gtFine (pix2pix)")
    parser.add_argument("--drn-protocol", choices=list(DRN_PROTOCOLS), default="gan_compression",
                        help="how drn_d_105 scores: gan_compression: its log-softmax at the generated size resized "
                             "per class to 2048x1024 (PIL bilinear) against the full-resolution trainIds, as GAN "
                             "Compression's cityscapes_mIoU.py; generated_size: at the generated size against the "
                             "S x S trainIds")
    parser.add_argument("--fast-hist", action="store_true",
                        help="count pixels with the pix2pix script's fast_hist and get_scores, bit for bit and "
                             "quirks included: a 20th-channel prediction for true class c lands in cell [c+1, 0], "
                             "a frame with one for class 18 is dropped whole (the number of dropped frames is "
                             "reported), classes absent from the ground truth count as 0 in the means; default: "
                             "every pixel counted, a 20th-channel prediction is an error for its true class")
    parser.add_argument("--size", type=int, default=None,
                        help="image size to generate and score at; None: the dataset's (256 for Cityscapes)")
    parser.add_argument("--eval-mode", action="store_true",
                        help="generate with running batch-norm statistics and no dropout instead of the pix2pix "
                             "test protocol (dropout on, each image's own statistics)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dropout noise at generation")
    max_val_frames = parser.add_argument("--max-val-frames", type=int, default=None,
                                         help="score only the first N val frames")
    add_former_spelling(parser, max_val_frames, "--max-frames")
    parser.add_argument("--figure-frames", type=int, default=4, help="frames shown in comparison.png")
    parser.add_argument("--out", default="results", help="output folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing --out (once the new results are complete; nothing of the old "
                             "ones is left beside them)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per segmenter forward pass")
    parser.add_argument("--device", default="auto", help="where models run: auto (cuda if available), cpu, cuda "
                                                         "or cuda:N")
    parser.add_argument("--amp", action="store_true",
                        help="bf16 autocast for generating and segmenting, as train.py --amp (where the device has "
                             "bf16: the CPU and CUDA from Ampere on; elsewhere fp32)")


def add_fidelity_options(parser: argparse.ArgumentParser) -> None:
    """FID and KID by torch-fidelity's InceptionV3."""
    parser.add_argument("--fid", action="store_true",
                        help="add FID (torch-fidelity's InceptionV3) of each run's val images against the real val "
                             "photos, and the floor row real train vs real val")
    parser.add_argument("--kid", action="store_true", help="add KID (mean and std over subsets), as --fid")
    parser.add_argument("--inception-weights", default=None, metavar="PATH",
                        help="torch-fidelity's weights-inception-2015-12-05-6726825d.pth for --fid/--kid; None: "
                             "its torch hub cache, else a download there (skipped with one line when offline)")
    parser.add_argument("--inception-cache", default=None, metavar="DIR",
                        help="keep each image set's Inception features in DIR and reuse them when the same set is "
                             "scored again with the same weights and settings (keyed by its pixels); None: no cache")
    parser.add_argument("--fidelity-only", action="store_true",
                        help="with --fid/--kid: compute only FID/KID (no segmenter is loaded, no FCN-score table)")
    parser.add_argument("--kid-subset-size", type=int, default=100,
                        help="images per KID subset (every image set must hold this many)")
    parser.add_argument("--kid-subsets", type=int, default=100, help="random subsets KID averages over")
