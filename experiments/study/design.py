"""The study's design: its arms (the train.py options of each treatment), seeds, presets (the study's
sizes) and :class:`StudyConfig`, what one call runs.

Arms (each run's exact train.py options are printed and stored in ``study.json``):

* ``adam``: Adam, the pix2pix baseline;
* ``tradam``: TRAdam as the paper (λ = 0.1, S = 10, inner step lr/(k+1));
* ``tradam_official``: TRAdam with the official code's proximal coefficient 2·λ·lr0/lr (``--prox-mode
  reference``: 0.2 at the base lr, growing as the schedule lowers lr);
* ``tradam_flat``: TRAdam without inner decay (inner step lr): the proximal term alone;
* ``adam_matched``: Adam at TRAdam's mean step size lr·H_S/S (0.293·lr for S = 10): the smaller step alone;
* optional: ``sgd``, ``trsgd``, and ``adam_beta2`` (β2 = β2^(1/B_ref): the half-life of β2 in samples
  kept from batch size B_ref = 16, as small-batch studies advise).

Seed s of every arm shares the data order and the initial weights, so arms are compared seed by seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from common.jobs import default_jobs
from eval import EvalError

INNER_STEPS = 10
MEAN_INNER_FACTOR = sum(1 / (k + 1) for k in range(INNER_STEPS)) / INNER_STEPS  # H_S / S = 0.2929


BETA2_REFERENCE_BATCH = 16
SEGMENTER_ORDER = ("fcn8s", "deeplabv3plus_resnet10t", "deeplabv3plus_xception71")


@dataclass(frozen=True)
class Arm:
    """One treatment: a table label and the train.py options that make it."""
    name: str
    label: str
    options: tuple[str, ...]


def make_arms(lr: float, beta2: float) -> dict[str, Arm]:
    """Every arm the study knows, for base learning rate ``lr`` and Adam β2 ``beta2``."""
    matched = lr * MEAN_INNER_FACTOR
    beta2_bs1 = beta2 ** (1 / BETA2_REFERENCE_BATCH)
    arms = [
        Arm("adam", "Adam", ("--optim", "adam")),
        Arm("tradam", "TRAdam (paper: λ 0.1, S 10, lr/(k+1))", ("--optim", "tradam")),
        Arm("tradam_official", "TRAdam, official code's coefficient 2·λ·lr0/lr",
            ("--optim", "tradam", "--prox-mode", "reference")),
        Arm("tradam_flat", "TRAdam, no inner decay", ("--optim", "tradam", "--no-inner-decay")),
        Arm("adam_matched", f"Adam at lr·H_S/S = {matched:.3g}", ("--optim", "adam", "--lr", f"{matched:.6g}")),
        Arm("adam_beta2", f"Adam, β2 = {beta2_bs1:.6f} (half-life of batch {BETA2_REFERENCE_BATCH})",
            ("--optim", "adam", "--beta2", f"{beta2_bs1:.10f}")),
        Arm("sgd", "SGD (momentum 0.9)", ("--optim", "sgd")),
        Arm("trsgd", "TRSGD", ("--optim", "trsgd")),
    ]
    return {arm.name: arm for arm in arms}
DEFAULT_ARMS = ("adam", "tradam", "tradam_official", "tradam_flat", "adam_matched")
DEFAULT_SEEDS = tuple(range(8))


# Study sizes: train.py options, scorer training options, evaluation options.
PRESETS = {
    # The built-in synthetic city at 64 px, 4000 steps per run; a weights-only epoch file every epoch for
    # the learning curves (20 points per run).
    "demo": {
        "train": ["--preset", "demo", "--save-epoch-freq", "1"],
        "lr": 2e-4, "beta2": 0.999,
        "segmenters": {
            "fcn8s": ["--preset", "demo"],
            "deeplabv3plus_resnet10t": ["--preset", "demo"],
        },
        "evaluate": [],
        "noise_freq": 250, "noise_probe": 8,
    },
    # The paper's configuration (Cityscapes, unet_256, 200 epochs): a GPU job; bring your own scorers.
    "paper": {"train": ["--preset", "paper"], "lr": 2e-4, "beta2": 0.999, "segmenters": {}, "evaluate": [],
              "noise_freq": 5000, "noise_probe": 16},
    # Tiny networks and a few dozen steps: checks the machinery (tests), says nothing about optimizers.
    "quick": {
        "train": ["--netG", "unet_32", "--ngf", "4", "--ndf", "4", "--load-size", "36", "--crop-size", "32",
                  "--n-epochs", "1", "--n-epochs-decay", "1", "--num-workers", "0", "--log-freq", "2",
                  "--image-freq", "1000", "--num-image-frames", "1", "--save-epoch-freq", "1"],
        "lr": 2e-4, "beta2": 0.999,
        "segmenters": {
            "fcn8s": ["--config", "width_mult=0.0625", "--n-epochs", "1", "--batch-size", "2", "--crop-size", "32",
                      "--load-size", "36", "--num-workers", "0"],
            "deeplabv3plus_resnet10t": ["--config", "decoder_channels=16",
                                         "--n-epochs", "1", "--batch-size", "2", "--crop-size", "32",
                                         "--load-size", "36", "--num-workers", "0"],
        },
        "evaluate": ["--batch-size", "2", "--figure-frames", "1"],
        "noise_freq": 2, "noise_probe": 2,
    },
}


@dataclass
class StudyConfig:
    """What to run and where (see the module docstring)."""
    preset: str = "demo"
    arms: tuple[str, ...] = DEFAULT_ARMS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    dataroot: str | None = None
    checkpoints_dir: str = "checkpoints/study"
    segmenter_dir: str | None = None
    out: str = "docs/study"
    device: str = "auto"
    noise_freq: int | None = None
    extra_train: list[str] = field(default_factory=list)
    jobs: int = field(default_factory=default_jobs)
    threads: int = 1


def study_arms(config: StudyConfig) -> list[Arm]:
    """The arms of ``config``, the Adam baseline first; EvalError for unknown arms or fewer than two seeds."""
    preset = PRESETS[config.preset]
    known = make_arms(preset["lr"], preset["beta2"])
    unknown = [a for a in config.arms if a not in known]
    if unknown or "adam" not in config.arms:
        raise EvalError(f"--arms {' '.join(config.arms)}: " + (f"unknown arm {unknown[0]!r} (known: "
                        f"{', '.join(known)})" if unknown else "the Adam baseline 'adam' must be one of them"))
    if len(set(config.seeds)) < 2:
        raise EvalError(f"--seeds {' '.join(map(str, config.seeds))}: at least two different seeds are needed")
    return [known["adam"]] + [known[a] for a in config.arms if a != "adam"]


def run_name(arm: Arm, seed: int) -> str:
    return f"{arm.name}_seed{seed}"
