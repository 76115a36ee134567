"""The seeds study: does TRAdam beat Adam at batch size 1, with the controls the paper lacks?

    make study                                        # built-in city, 3 seeds x 4 arms, about 46 min on 2 CPU cores
    python -m eval.study --seeds 0 1 2 3 4 --arms adam tradam
    python -m eval.study --preset paper --dataroot datasets/cityscapes --segmenter-dir checkpoints/segmenters

Arms (each run's exact train.py options are printed and stored in ``study.json``):

* ``adam``: Adam, the pix2pix baseline;
* ``tradam``: TRAdam as the paper (λ = 0.1, S = 10, inner step lr/(k+1));
* ``tradam_flat``: TRAdam without inner decay (inner step lr): the proximal term alone;
* ``adam_matched``: Adam at TRAdam's mean step size lr·H_S/S (0.293·lr for S = 10): the smaller step alone;
* optional: ``sgd``, ``trsgd``, and ``adam_beta2`` (β2 = β2^(1/B_ref): the half-life of β2 in samples
  kept from batch size B_ref = 16, as small-batch studies advise).

Seed s of every arm shares the data order and the initial weights, so arms are compared seed by seed
(:mod:`eval.statistics`). The steps, each reusing what an earlier call finished and resuming what it
left unfinished:

1. scorers: the built-in city's FCN-8s and DeepLabV3+ (trained once; ``--segmenter-dir`` to use others);
2. runs: ``train.py`` per arm and seed under ``<checkpoints-dir>/<arm>_seed<s>``, with G's gradient noise
   measured every ``--noise-freq`` steps (:mod:`gan.noise`);
3. final FCN-scores of every run and of the real photos (``evaluate.py``);
4. learning curves: every ``epoch_<NNN>.pt`` of every run, scored by the first scorer, and its
   validation L1 to the real photos;
5. ``--out`` (default ``docs/study``): ``study.md`` (tables, paired differences, what is and is not
   significant, the scorers' ranking margin), ``study.json`` (every number), ``learning_curves.png`` and
   ``noise.png``.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common.command_line import add_former_spelling, flag, option_parser, run_main
from common.device import check_device_name
from common.files import write_figure, write_json, write_text
from eval import EvalError
from data.images import read_rgb
from eval.fcn_score import open_eval_set
from eval.report import METRICS, difference_cell, markdown_table, number_cell, summary_cell
from eval.statistics import paired_difference, summarize
from eval.train_segmenter import run_path

REPO = Path(__file__).resolve().parents[1]
INNER_STEPS = 10
MEAN_INNER_FACTOR = sum(1 / (k + 1) for k in range(INNER_STEPS)) / INNER_STEPS  # H_S / S = 0.2929
BETA2_REFERENCE_BATCH = 16
SEGMENTER_ORDER = ("fcn8s", "deeplabv3plus_xception71")


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
        Arm("tradam_flat", "TRAdam, no inner decay", ("--optim", "tradam", "--no-inner-decay")),
        Arm("adam_matched", f"Adam at lr·H_S/S = {matched:.3g}", ("--optim", "adam", "--lr", f"{matched:.6g}")),
        Arm("adam_beta2", f"Adam, β2 = {beta2_bs1:.6f} (half-life of batch {BETA2_REFERENCE_BATCH})",
            ("--optim", "adam", "--beta2", f"{beta2_bs1:.10f}")),
        Arm("sgd", "SGD (momentum 0.9)", ("--optim", "sgd")),
        Arm("trsgd", "TRSGD", ("--optim", "trsgd")),
    ]
    return {arm.name: arm for arm in arms}


DEFAULT_ARMS = ("adam", "tradam", "tradam_flat", "adam_matched")

# Study sizes: train.py options, scorer training options, evaluation options.
PRESETS = {
    # The built-in synthetic city at 64 px: arms, seeds and scorers in about 46 min on 2 CPU cores.
    "demo": {
        "train": ["--preset", "demo"],
        "lr": 2e-4, "beta2": 0.999,
        "segmenters": {
            "fcn8s": ["--preset", "demo"],
            "deeplabv3plus_xception71": ["--preset", "demo"],
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
            "deeplabv3plus_xception71": ["--config", "encoder=resnet18", "--config", "decoder_channels=16",
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
    seeds: tuple[int, ...] = (0, 1, 2)
    dataroot: str | None = None
    checkpoints_dir: str = "checkpoints/study"
    segmenter_dir: str | None = None
    out: str = "docs/study"
    device: str = "auto"
    noise_freq: int | None = None
    extra_train: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------- running
def options(**values) -> list[str]:
    """``--option value`` pairs of a command line, each option spelled by :func:`flag` from its name; a
    value of None leaves its option out."""
    return [part for name, value in values.items() if value is not None for part in (flag(name), str(value))]


def run_command(args: list[str]) -> str:
    """Run a project command with this interpreter; its output streams through, EvalError on failure."""
    command = [sys.executable, *args]
    print("$ " + " ".join(command), flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env)
    print(result.stdout, end="", flush=True)
    if result.returncode != 0:
        raise EvalError(f"{' '.join(args[:2])}: failed with exit status {result.returncode} (see above)")
    return result.stdout


def train_options(config: StudyConfig, arm: Arm, seed: int) -> list[str]:
    """train.py options of one run (without --resume/--overwrite)."""
    preset = PRESETS[config.preset]
    noise_freq = preset["noise_freq"] if config.noise_freq is None else config.noise_freq
    return [*preset["train"], *arm.options,
            *options(seed=seed, name=run_name(arm, seed), checkpoints_dir=config.checkpoints_dir, device=config.device,
                     noise_freq=noise_freq, noise_probe=preset["noise_probe"]),
            *config.extra_train, *options(dataroot=config.dataroot or None)]


def shown_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it (reports name no machine's folders)."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def run_name(arm: Arm, seed: int) -> str:
    return f"{arm.name}_seed{seed}"


def train_runs(config: StudyConfig, arms: list[Arm]) -> dict[str, list[str]]:
    """Train (or resume, or reuse) every run; returns each run's options."""
    commands = {}
    for arm in arms:
        for seed in config.seeds:
            run = train_options(config, arm, seed)
            commands[run_name(arm, seed)] = run
            exists = (Path(config.checkpoints_dir) / run_name(arm, seed) / "latest.pt").is_file()
            run_command([str(REPO / "train.py"), *run, "--resume" if exists else "--overwrite"])
    return commands


def segmenter_folder(config: StudyConfig) -> Path:
    return Path(config.segmenter_dir) if config.segmenter_dir else Path(config.checkpoints_dir) / "segmenters"


def train_segmenters(config: StudyConfig) -> None:
    """Train the preset's scorers that are missing from the segmenter folder (resuming partial ones)."""
    if config.segmenter_dir:
        return
    folder = segmenter_folder(config)
    for arch, preset in PRESETS[config.preset]["segmenters"].items():
        out = folder / f"{arch}.pt"
        if out.is_file():
            print(f"scorer {arch}: reusing {out}", flush=True)
            continue
        resume = ["--resume"] if (run_path(out) / "latest.pt").is_file() else []
        run_command(["-m", "eval.train_segmenter", *options(arch=arch), *preset,
                     *options(dataroot=config.dataroot or None, out=out, device=config.device), *resume])


def evaluate_generators(config: StudyConfig, generators: list[Path] | None, runs: list[str] | None,
                        out: Path, segmenters: list[str] | None = None) -> dict:
    """``evaluate.py`` over runs (their latest.pt) or generator files; its results.json."""
    args = [str(REPO / "evaluate.py"), *options(checkpoints_dir=config.checkpoints_dir,
                                                segmenter_dir=segmenter_folder(config), out=out, device=config.device),
            *PRESETS[config.preset]["evaluate"]]
    if runs:
        args += [flag("runs"), *runs]
    for path in generators or []:
        args += options(generator=path)
    if segmenters:
        args += [flag("segmenters"), *segmenters]
    run_command(args)
    return json.loads((out / "results.json").read_text())


# ------------------------------------------------------------------------------- measuring
def validation_l1(images: Path, evalset) -> float:
    """Mean |generated − real| over the val frames, in [-1, 1] units (the L1 term of G's loss / λ)."""
    total = 0.0
    for i, name in enumerate(evalset.names):
        fake = read_rgb(images / f"{name}.png").float() / 127.5 - 1
        real = evalset.real_photo(i).float() / 127.5 - 1
        total += float((fake - real).abs().mean())
    return total / len(evalset.names)


def epoch_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of a run's epoch_<NNN>.pt files, in order."""
    found = []
    for path in run_dir.glob("epoch_*.pt"):
        match = re.fullmatch(r"epoch_(\d+)\.pt", path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def read_noise(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """The run's TensorBoard ``noise/*`` scalars: name -> [(step, value)] (the last write of a step wins)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run_dir / "events"), size_guidance={"scalars": 0})
    events.Reload()
    series = {}
    for tag in events.Tags()["scalars"]:
        if tag.startswith("noise/"):
            by_step = {e.step: e.value for e in events.Scalars(tag)}
            series[tag[len("noise/"):]] = sorted(by_step.items())
    return series


def steps_per_epoch(run_dir: Path) -> int | None:
    """Training steps in one epoch of a run (from its latest checkpoint)."""
    from common.checkpoint import load_checkpoint
    state = load_checkpoint(run_dir / "latest.pt")
    return state["step"] // state["epoch"] if state.get("epoch") else None


# ------------------------------------------------------------------------------- analysing
def per_run_scores(results: dict) -> tuple[dict, dict]:
    """From evaluate.py's results: {arch: {run label: scores}} and {arch: ground-truth scores}."""
    runs, truth = {}, {}
    for entry in results["segmenters"]:
        runs[entry["arch"]] = {s["label"]: s["scores"] for s in entry["image_sets"]}
        truth[entry["arch"]] = entry["ground_truth"][0]["scores"]
    return runs, truth


def analyse(arms: list[Arm], seeds: tuple[int, ...], values: dict[str, dict[str, float]],
            baseline: str = "adam") -> dict:
    """For each measure (``values[measure][run name]``): per-arm summaries and paired differences."""
    out = {}
    for measure, by_run in values.items():
        per_arm = {arm.name: {s: by_run[run_name(arm, s)] for s in seeds if run_name(arm, s) in by_run}
                   for arm in arms}
        out[measure] = {
            "summary": {name: summarize(list(v.values())) for name, v in per_arm.items()},
            "per_seed": per_arm,
            "vs_baseline": {name: paired_difference(v, per_arm[baseline]) for name, v in per_arm.items()
                            if name != baseline and baseline in per_arm},
        }
    return out


def ranking_margins(runs: dict, truth: dict) -> dict:
    """Ground truth minus the best generator, per scorer and metric (> 0: the scorer can rank)."""
    return {arch: {key: truth[arch][key] - max(s[key] for s in runs[arch].values()) for key, _ in METRICS}
            for arch in runs}


# -------------------------------------------------------------------------------- reporting
def measure_title(measure: str, display: dict) -> str:
    arch, _, metric = measure.partition(":")
    if arch == "val_l1":
        return "Validation L1 (lower is better)"
    return f"{display.get(arch, arch)}: {dict(METRICS)[metric]}"


def markdown_report(report: dict) -> str:
    """study.md: the tables, the paired differences and what they do and do not show."""
    arms = [Arm(**a) for a in report["arms"]]
    analysis, display = report["analysis"], report["display_names"]
    lines = ["# Seeds study: Adam vs TRAdam at batch size 1", "",
             f"{len(report['seeds'])} seeds ({', '.join(map(str, report['seeds']))}) per arm, preset "
             f"`{report['preset']}`, data `{report['dataroot']}`. Same seed = same data order and initial "
             "weights. Cells: mean ± sample std over seeds. Differences: paired by seed, arm − Adam, with the "
             "95% bootstrap interval over seeds; * marks an interval that excludes 0.", ""]
    for arch in report["scorers"]:
        rows = [[arm.label] + [summary_cell(analysis[f"{arch}:{key}"]["summary"][arm.name]) for key, _ in METRICS]
                for arm in arms]
        truth = report["ground_truth"][arch]
        rows.append(["Ground truth (real photos)"] + [number_cell(truth[key]) for key, _ in METRICS])
        lines += [f"## FCN-scores by {display[arch]}", "",
                  markdown_table(["Arm", *(name for _, name in METRICS)], rows), ""]
    rows = [[measure_title(measure, display)]
            + [difference_cell(entry["vs_baseline"][a.name], 4 if measure == "val_l1" else 3) for a in arms[1:]]
            for measure, entry in analysis.items()]
    lines += ["## Paired differences to Adam", "", markdown_table(["Measure", *(a.label for a in arms[1:])], rows)]
    lines += ["", "## What this shows", ""] + findings(report) + [""]
    return "\n".join(lines)


def findings(report: dict) -> list[str]:
    """Plain sentences: significant differences (whatever their sign), the rest, the scorers' margins."""
    arms = {a["name"]: a["label"] for a in report["arms"]}
    out, display = [], report["display_names"]
    for name, label in list(arms.items())[1:]:
        significant = []
        for measure, entry in report["analysis"].items():
            diff = entry["vs_baseline"][name]
            if diff["significant"]:
                better = diff["mean"] < 0 if measure == "val_l1" else diff["mean"] > 0
                significant.append(f"{measure_title(measure, display)} {'better' if better else 'worse'} "
                                   f"({diff['mean']:+.4f})")
        if significant:
            out.append(f"- {label} vs Adam: significant on {len(significant)} of {len(report['analysis'])} "
                       f"measures: " + "; ".join(significant) + ". The others are within seed noise.")
        else:
            out.append(f"- {label} vs Adam: no measure differs beyond seed noise (every interval includes 0).")
    for arch, margins in report["ranking_margins"].items():
        worst = min(margins.values())
        verdict = "ranks: the real photos score above every generator on every metric" if worst > 0 else \
            "CANNOT rank: a generator scores at or above the real photos on some metric"
        out.append(f"- Scorer {display[arch]} {verdict} (smallest margin {worst:+.3f}).")
    if len(report["seeds"]) <= 3:
        out.append(f"- With {len(report['seeds'])} seeds a bootstrap interval excludes 0 only when every seed's "
                   "difference has the same sign; more seeds (`--seeds`) sharpen the comparison.")
    return out


def _band_plot(ax, series_by_arm: dict, arms: list[Arm], title: str, ylabel: str, xlabel: str = "step") -> None:
    for arm in arms:
        curves = series_by_arm.get(arm.name, [])
        if not curves:
            continue
        steps = sorted(set.intersection(*(set(dict(c)) for c in curves)))
        if not steps:
            continue
        values = np.array([[dict(c)[s] for s in steps] for c in curves])
        mean = values.mean(0)
        ax.plot(steps, mean, label=arm.label)
        if len(curves) > 1:
            std = values.std(0, ddof=1)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def figures(report: dict, out: Path) -> None:
    """learning_curves.png and noise.png (mean over seeds, band: ± one std)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = [Arm(**a) for a in report["arms"]]
    curves = report["curves"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _band_plot(axes[0], {a: [r["val_l1"] for r in runs.values()] for a, runs in curves.items()}, arms,
               "Validation L1 to the real photos", "L1 ([-1, 1] units)")
    _band_plot(axes[1], {a: [r["class_iou"] for r in runs.values()] for a, runs in curves.items()}, arms,
               f"Class IoU by {report['display_names'][report['curve_scorer']]}", "class IoU")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    write_figure(out / "learning_curves.png", fig)
    plt.close(fig)

    panels = [("grad_ratio", "gradient noise V / ‖ḡ‖²", True), ("direction_ratio", "direction noise V / ‖ḡ + o‖²", True),
              ("variance", "V (per-sample gradient variance)", True), ("distance_to_anchor", "‖w − w_t‖ of G", False)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6))
    for ax, (key, title, log) in zip(axes, panels):
        series = {a: [r[key] for r in runs.values() if r.get(key)] for a, runs in report["noise"].items()}
        _band_plot(ax, series, arms, title, key)
        if log and any(series.values()):
            ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    write_figure(out / "noise.png", fig)
    plt.close(fig)


# ------------------------------------------------------------------------------------ study
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


def learning_curves(config: StudyConfig, arms: list[Arm], curve_scorer: str, evalset) -> tuple[dict, dict]:
    """Per arm and seed: validation L1 and class IoU (by ``curve_scorer``) of every epoch checkpoint, by
    step; and the run's gradient-noise series."""
    checkpoints = Path(config.checkpoints_dir)
    names = [run_name(arm, seed) for arm in arms for seed in config.seeds]
    generators = {name: epoch_checkpoints(checkpoints / name) for name in names}
    flat = [path for found in generators.values() for _, path in found]
    curve_results = evaluate_generators(config, flat, None, checkpoints / "curves", [curve_scorer])
    by_checkpoint = {Path(s["checkpoint"]).resolve(): s for s in curve_results["segmenters"][0]["image_sets"]}
    curves, noise = {}, {}
    for arm in arms:
        for seed in config.seeds:
            name = run_name(arm, seed)
            per_epoch = steps_per_epoch(checkpoints / name)
            l1, iou = [], []
            for epoch, path in generators[name]:
                scored = by_checkpoint[path.resolve()]
                step = epoch * per_epoch
                l1.append((step, validation_l1(Path(scored["images"]), evalset)))
                iou.append((step, scored["scores"]["class_iou"]))
            curves.setdefault(arm.name, {})[seed] = {"val_l1": l1, "class_iou": iou}
            noise.setdefault(arm.name, {})[seed] = read_noise(checkpoints / name)
    return curves, noise


def write_report(report: dict, out: Path) -> None:
    """Warn about scorers that cannot rank; print study.md and write it, study.json and the figures."""
    for arch, margins in report["ranking_margins"].items():
        if min(margins.values()) <= 0:
            print(f"warning: scorer {report['display_names'][arch]} cannot rank generators: margins "
                  + ", ".join(f"{k} {v:+.3f}" for k, v in margins.items()), file=sys.stderr)
    text = markdown_report(report)
    print(text)
    write_text(out / "study.md", text)
    write_json(out / "study.json", report)
    figures(report, out)


def run_study(config: StudyConfig) -> Path:
    """Every step of the module docstring; returns the report folder."""
    arms = study_arms(config)
    check_device_name(config.device)
    checkpoints, out = Path(config.checkpoints_dir), Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    for arm in arms:
        print(f"arm {arm.name}: {arm.label}: train.py {' '.join(arm.options)}", flush=True)

    train_segmenters(config)
    commands = train_runs(config, arms)
    names = list(commands)

    final = evaluate_generators(config, None, names, checkpoints / "evaluation")
    runs, truth = per_run_scores(final)
    scorers = [a for a in SEGMENTER_ORDER if a in runs] + [a for a in runs if a not in SEGMENTER_ORDER]
    display = {e["arch"]: e["display_name"] for e in final["segmenters"]}
    dataroot = final["segmenters"][0]["image_sets"][0]["dataroot"]
    evalset = open_eval_set(dataroot)
    values = {f"{arch}:{key}": {label: s[key] for label, s in runs[arch].items()}
              for arch in scorers for key, _ in METRICS}
    values["val_l1"] = {name: validation_l1(checkpoints / "evaluation" / name / "images", evalset) for name in names}
    curves, noise = learning_curves(config, arms, scorers[0], evalset)

    report = {"preset": config.preset, "seeds": list(config.seeds), "dataroot": shown_path(dataroot),
              "arms": [asdict(a) for a in arms], "train_options": commands, "scorers": scorers,
              "display_names": display, "ground_truth": truth, "per_run": values,
              "analysis": analyse(arms, config.seeds, values),
              "ranking_margins": ranking_margins(runs, truth), "curve_scorer": scorers[0],
              "curves": curves, "noise": noise, "config": asdict(config)}
    write_report(report, out)
    return out


def parse_args(argv=None) -> StudyConfig:
    parser = option_parser(__doc__.split("\n\n")[0], prog="python -m eval.study")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                        help="demo: the built-in city in about 46 min on 2 CPU cores; paper: the paper's runs "
                             "(GPU); quick: tiny networks, checks the machinery only")
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), metavar="ARM",
                        help="adam, tradam, tradam_flat, adam_matched, adam_beta2, sgd, trsgd")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of every arm")
    parser.add_argument("--dataroot", default=None, help="pix2pix-layout dataset; none: the built-in city")
    checkpoints_dir = parser.add_argument("--checkpoints-dir", default="checkpoints/study",
                                          help="folder of the study's runs")
    add_former_spelling(parser, checkpoints_dir, "--checkpoints")
    parser.add_argument("--segmenter-dir", default=None,
                        help="trained scorers to use (fcn8s.pt, ...); none: train the preset's into "
                             "<checkpoints-dir>/segmenters")
    parser.add_argument("--out", default="docs/study", help="report folder")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    parser.add_argument("--noise-freq", type=int, default=None,
                        help="steps between gradient-noise measurements (default: the preset's)")
    args = parser.parse_args(argv)
    return StudyConfig(preset=args.preset, arms=tuple(args.arms), seeds=tuple(args.seeds), dataroot=args.dataroot,
                       checkpoints_dir=args.checkpoints_dir, segmenter_dir=args.segmenter_dir, out=args.out,
                       device=args.device, noise_freq=args.noise_freq)


def main(argv=None) -> int:
    config = parse_args(argv)
    return run_main(lambda: f"wrote the study to {run_study(config)}")


if __name__ == "__main__":
    sys.exit(main())
