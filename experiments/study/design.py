"""The study's design: its arms (the train.py options of each treatment), seeds, presets (the study's
sizes, one way as every command's: option values by name) and :class:`StudyConfig`, what one call runs.

Arms (each run's exact train.py options are printed and stored in ``study.json``). The confirmatory four:

* ``adam``: Adam at lr 2e-4, the pix2pix baseline;
* ``tradam``: TRAdam as the paper (λ = 0.1, S = 10, inner step lr/(k+1), lr 2e-4);
* ``tradam_adam_step``: TRAdam at Adam's mean step, lr = 2e-4·S/H_S (6.83e-4: its first inner step is
  6.8e-4, its last 6.8e-5, their mean Adam's 2e-4): the proximal term without the smaller step;
* ``adam_matched``: Adam at TRAdam's mean step, lr = 2e-4·H_S/S (5.86e-5): the smaller step without the
  proximal term.

Available too: ``tradam_official`` (the official code's coefficient 2·λ·lr0/lr), ``tradam_flat`` (no inner
decay), ``adam_beta2`` (β2 = β2^(1/16): its half-life in samples kept from batch 16), ``sgd``, ``trsgd``.
Seed s of every arm shares the data order, the initial weights and the noise probe's pairs, so arms are
compared seed by seed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from common.jobs import default_jobs
from eval import EvalError

INNER_STEPS = 10                                                    # S
HARMONIC = sum(1 / k for k in range(1, INNER_STEPS + 1))            # H_S = 2.928968
MEAN_INNER_FACTOR = HARMONIC / INNER_STEPS                          # TRAdam's mean inner step / lr = 0.2929
BETA2_REFERENCE_BATCH = 16
SEGMENTER_ORDER = ("fcn8s", "deeplabv3plus_resnet10t", "deeplabv3plus_xception71")
CONFIRMATORY_ARMS = ("adam", "tradam", "tradam_adam_step", "adam_matched")
DEFAULT_SEEDS = tuple(range(100, 116))  # never used before this study (the pilot used 0..7)


@dataclass(frozen=True)
class Arm:
    """One treatment: a table label and the train.py options that make it."""
    name: str
    label: str
    options: tuple[str, ...]


def make_arms(lr: float, beta2: float) -> dict[str, Arm]:
    """Every arm the study knows, for base learning rate ``lr`` and Adam β2 ``beta2``."""
    small, large = lr * MEAN_INNER_FACTOR, lr / MEAN_INNER_FACTOR
    beta2_bs1 = beta2 ** (1 / BETA2_REFERENCE_BATCH)
    arms = [
        Arm("adam", "Adam", ("--optim", "adam")),
        Arm("tradam", "TRAdam (paper: λ 0.1, S 10, lr/(k+1))", ("--optim", "tradam")),
        Arm("tradam_adam_step", f"TRAdam at Adam's mean step (lr·S/H_S = {large:.3g})",
            ("--optim", "tradam", "--lr", f"{large:.6g}")),
        Arm("adam_matched", f"Adam at TRAdam's mean step (lr·H_S/S = {small:.3g})",
            ("--optim", "adam", "--lr", f"{small:.6g}")),
        Arm("tradam_official", "TRAdam, official code's coefficient 2·λ·lr0/lr",
            ("--optim", "tradam", "--prox-mode", "reference")),
        Arm("tradam_flat", "TRAdam, no inner decay", ("--optim", "tradam", "--no-inner-decay")),
        Arm("adam_beta2", f"Adam, β2 = {beta2_bs1:.6f} (half-life of batch {BETA2_REFERENCE_BATCH})",
            ("--optim", "adam", "--beta2", f"{beta2_bs1:.10f}")),
        Arm("sgd", "SGD (momentum 0.9)", ("--optim", "sgd")),
        Arm("trsgd", "TRSGD", ("--optim", "trsgd")),
    ]
    return {arm.name: arm for arm in arms}


# The study's sizes: values of StudyConfig's fields by preset name.
PRESETS = {
    # The built-in synthetic city at 64 px, 4000 steps per run, scored by the shipped demo segmenters; an
    # epoch file every epoch for the learning curves (20 points per run); a round of S noise probes on 32
    # pairs after steps 800, 1600, 2400 and 3200.
    "demo": {"train_args": ["--preset", "demo", "--save-epoch-freq", "1"], "evaluate_args": [], "lr": 2e-4,
             "beta2": 0.999, "noise_freq": 800, "noise_probe": 32, "segmenter_dir": "checkpoints/segmenters/demo"},
    # The paper's configuration (Cityscapes, unet_256, 200 epochs): a GPU job; bring your own segmenters.
    "paper": {"train_args": ["--preset", "paper"], "evaluate_args": [], "lr": 2e-4, "beta2": 0.999,
              "noise_freq": 50000, "noise_probe": 32, "segmenter_dir": "checkpoints/segmenters"},
    # Tiny networks and a few dozen steps: checks the machinery (tests), says nothing about optimizers.
    "quick": {"train_args": ["--netG", "unet_32", "--ngf", "4", "--ndf", "4", "--load-size", "36", "--crop-size", "32",
                             "--n-epochs", "1", "--n-epochs-decay", "1", "--num-workers", "0", "--log-freq", "2",
                             "--image-freq", "1000", "--num-image-frames", "1", "--save-epoch-freq", "1",
                             "--inner-steps", "2"],
              "evaluate_args": ["--batch-size", "2", "--figure-frames", "1"], "lr": 2e-4, "beta2": 0.999,
              "noise_freq": 2, "noise_probe": 2, "segmenter_dir": None},
}


@dataclass
class StudyConfig:
    """What to run and where (``python -m experiments.study --help``; the preset fills what is not given)."""
    preset: str = "demo"
    arms: tuple[str, ...] = CONFIRMATORY_ARMS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    dataroot: str | None = None
    checkpoints_dir: str = "checkpoints/study"
    segmenter_dir: str | None = None
    out: str = "docs/study"
    plan: str | None = None           # the plan the report cites (None: <out>/plan.md when it exists)
    device: str = "auto"
    noise_freq: int = 0
    noise_probe: int = 32
    train_args: list[str] = field(default_factory=list)
    evaluate_args: list[str] = field(default_factory=list)
    lr: float = 2e-4
    beta2: float = 0.999
    jobs: int = field(default_factory=default_jobs)
    threads: int = 1


def study_arms(config: StudyConfig) -> list[Arm]:
    """The arms of ``config``, the Adam baseline first; EvalError for unknown arms or fewer than two seeds."""
    known = make_arms(config.lr, config.beta2)
    unknown = [a for a in config.arms if a not in known]
    if unknown or "adam" not in config.arms:
        raise EvalError(f"--arms {' '.join(config.arms)}: " + (f"unknown arm {unknown[0]!r} (known: "
                        f"{', '.join(known)})" if unknown else "the Adam baseline 'adam' must be one of them"))
    if len(set(config.seeds)) < 2:
        raise EvalError(f"--seeds {' '.join(map(str, config.seeds))}: at least two different seeds are needed")
    return [known["adam"]] + [known[a] for a in config.arms if a != "adam"]


def run_name(arm: Arm, seed: int) -> str:
    return f"{arm.name}_seed{seed}"
