"""The seeds study: does TRAdam beat Adam at batch size 1, with the controls the paper lacks?

    make study                                        # built-in city, 8 seeds x 5 arms, 2 jobs at once
    python -m eval.study --seeds 0 1 2 3 4 --arms adam tradam --jobs 2
    python -m eval.study --preset paper --dataroot datasets/cityscapes --segmenter-dir checkpoints/segmenters

Arms (each run's exact train.py options are printed and stored in ``study.json``):

* ``adam``: Adam, the pix2pix baseline;
* ``tradam``: TRAdam as the paper (λ = 0.1, S = 10, inner step lr/(k+1));
* ``tradam_official``: TRAdam with the official code's proximal coefficient 2·λ·lr0/lr (``--prox-mode
  reference``: 0.2 at the base lr, growing as the schedule lowers lr);
* ``tradam_flat``: TRAdam without inner decay (inner step lr): the proximal term alone;
* ``adam_matched``: Adam at TRAdam's mean step size lr·H_S/S (0.293·lr for S = 10): the smaller step alone;
* optional: ``sgd``, ``trsgd``, and ``adam_beta2`` (β2 = β2^(1/B_ref): the half-life of β2 in samples
  kept from batch size B_ref = 16, as small-batch studies advise).

Seed s of every arm shares the data order and the initial weights, so arms are compared seed by seed
(:mod:`eval.statistics`). One comparison is named before the runs, the primary one: TRAdam (paper) − Adam
in class IoU by the first scorer, tested alone at 0.05 (exact sign-flip test). Every other comparison of
the report is Holm-corrected over the whole family; "significant" is said only where the adjusted p is
below 0.05. Effects are always shown with their 95% t intervals, and the minimum detectable effect at
80% power with each.

The work is a set of independent jobs (:mod:`common.jobs`), ``--jobs`` of them at once, each with
``--threads`` CPU threads (default 1: numbers that do not depend on the machine's core count nor on how
many jobs run at once; a rerun is bit-identical on the same CPU type). Each job reuses what an earlier
call finished and resumes what it left unfinished; their logs are in ``<checkpoints-dir>/logs/``:

1. scorers: the built-in city's FCN-8s and DeepLabV3+ (trained once; ``--segmenter-dir`` to use others);
2. runs: ``train.py`` per arm and seed under ``<checkpoints-dir>/<arm>_seed<s>``, with G's gradient noise
   measured every ``--noise-freq`` steps (:mod:`gan.noise`);
3. as soon as a run is trained, its scoring: final FCN-scores by every scorer (``evaluate.py``, with the
   real photos' row) and the learning curve, every ``epoch_<NNN>.pt`` scored by the first scorer with its
   validation L1 to the real photos;
4. each run's record, ``<out>/runs/<arm>_seed<s>.json`` (:mod:`eval.study_records`): the numbers the report
   needs of it. A later call, even from a fresh clone, reuses a record instead of training and scoring the
   run again while its key (options, device and CPU type, torch, code) and its scorers' weights are the
   same; so the study can be committed and finished in parts. A stopped or failed call still writes the
   records of the runs done by then;
5. ``--out`` (default ``docs/study``): ``study.md`` (the setting, the primary result, the corrected
   table, the minimum detectable effects, what the study can and cannot conclude), ``study.json``
   (every number), ``learning_curves.png`` and ``noise.png``.

SIGINT/SIGTERM are passed on to the running jobs, which save where they are; the study then exits
130/143 with one line, and the same command resumes.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from common.command_line import add_former_spelling, flag, option_parser, run_main
from common.device import check_device_name
from common.files import write_figure, write_json, write_text
from common.interrupts import Stopped
from common.jobs import Job, JobFailed, check_jobs_and_threads, default_jobs, run_jobs
from eval import EvalError
from data.fingerprint import files_fingerprint
from data.images import read_rgb
from eval.fcn_score import open_eval_set
from eval.report import METRICS, difference_cell, markdown_table, number_cell, summary_cell
from eval.statistics import ALPHA, POWER, decisions, paired_difference, summarize
from eval.study_records import RECORD_VERSION, StoredRecords, code_sha256, write_record
from eval.train_segmenter import run_path

REPO = Path(__file__).resolve().parents[1]
INNER_STEPS = 10
MEAN_INNER_FACTOR = sum(1 / (k + 1) for k in range(INNER_STEPS)) / INNER_STEPS  # H_S / S = 0.2929
BETA2_REFERENCE_BATCH = 16
SEGMENTER_ORDER = ("fcn8s", "deeplabv3plus_xception71")
PRIMARY_ARM, PRIMARY_METRIC = "tradam", "class_iou"  # named before the runs (with the first scorer)
TARGET_EFFECT = 0.01   # the effect whose seeds-needed the report gives (class IoU / accuracy units)
LAST_EPOCHS = 3        # the noise check: the mean of the last few epoch files' scores


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


# ---------------------------------------------------------------------------------- running
def options(**values) -> list[str]:
    """``--option value`` pairs of a command line, each option spelled by :func:`flag` from its name; a
    value of None leaves its option out."""
    return [part for name, value in values.items() if value is not None for part in (flag(name), str(value))]


def command(args: list[str]) -> tuple[str, ...]:
    """A project command run with this interpreter."""
    return (sys.executable, *map(str, args))


def child_env() -> dict:
    """The environment of the study's jobs: this one, with the project importable."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def train_options(config: StudyConfig, arm: Arm, seed: int) -> list[str]:
    """train.py options of one run (without --resume/--overwrite)."""
    preset = PRESETS[config.preset]
    noise_freq = preset["noise_freq"] if config.noise_freq is None else config.noise_freq
    return [*preset["train"], *arm.options,
            *options(seed=seed, name=run_name(arm, seed), checkpoints_dir=config.checkpoints_dir, device=config.device,
                     noise_freq=noise_freq, noise_probe=preset["noise_probe"], threads=config.threads),
            *config.extra_train, *options(dataroot=config.dataroot or None)]


def shown_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it (reports name no machine's folders)."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def run_name(arm: Arm, seed: int) -> str:
    return f"{arm.name}_seed{seed}"


def finished(latest: Path) -> bool:
    """Whether ``latest`` is the checkpoint of a finished run."""
    from common.checkpoint import load_checkpoint
    return latest.is_file() and bool(load_checkpoint(latest).get("finished"))


def newer_than(output: Path, inputs: list[Path]) -> bool:
    """Whether ``output`` exists and was written after every one of ``inputs`` (all of which exist)."""
    if not output.is_file() or not all(p.is_file() for p in inputs):
        return False
    return all(output.stat().st_mtime_ns > p.stat().st_mtime_ns for p in inputs)


def segmenter_folder(config: StudyConfig) -> Path:
    return Path(config.segmenter_dir) if config.segmenter_dir else Path(config.checkpoints_dir) / "segmenters"


def scorer_jobs(config: StudyConfig) -> list[Job]:
    """Train the preset's scorers that are missing from the segmenter folder (resuming partial ones)."""
    if config.segmenter_dir:
        return []
    jobs = []
    for arch, preset in PRESETS[config.preset]["segmenters"].items():
        out = segmenter_folder(config) / f"{arch}.pt"
        resume = ["--resume"] if (run_path(out) / "latest.pt").is_file() else []
        jobs.append(Job(f"scorer {arch}", command(
            ["-m", "eval.train_segmenter", *options(arch=arch), *preset,
             *options(dataroot=config.dataroot or None, out=out, device=config.device, threads=config.threads),
             *resume]), skip=out.is_file))
    return jobs


def train_jobs(config: StudyConfig, arms: list[Arm], records: StoredRecords | None = None
               ) -> tuple[list[Job], dict[str, list[str]]]:
    """A job per run (train, resume, or nothing for a finished run or a reusable record) and each run's
    options. A run with a record of its key waits for the scorers, against which the record is checked."""
    jobs, commands = [], {}
    scorers_trained = tuple(job.name for job in scorer_jobs(config))
    for arm in arms:
        for seed in config.seeds:
            name = run_name(arm, seed)
            run = train_options(config, arm, seed)
            commands[name] = run
            latest = Path(config.checkpoints_dir) / name / "latest.pt"
            recorded = records is not None and records.pending(name, run)
            jobs.append(Job(f"train {name}", command([REPO / "train.py", *run,
                                                       "--resume" if latest.is_file() else "--overwrite"]),
                            after=scorers_trained if recorded else (),
                            skip=lambda latest=latest, name=name, run=run, recorded=recorded: (
                                recorded and records.usable(name, run) is not None) or finished(latest)))
    return jobs, commands


def evaluate_command(config: StudyConfig, out: Path, runs: list[str] | None = None,
                     generators: list[Path] | None = None, segmenters: list[str] | None = None) -> tuple[str, ...]:
    """``evaluate.py`` over runs (their latest.pt) or generator files, into ``out``."""
    args = [REPO / "evaluate.py", *options(checkpoints_dir=config.checkpoints_dir,
                                           segmenter_dir=segmenter_folder(config), out=out, device=config.device),
            *PRESETS[config.preset]["evaluate"]]
    if runs:
        args += [flag("runs"), *runs]
    for path in generators or []:
        args += options(generator=path)
    if segmenters:
        args += [flag("segmenters"), *segmenters]
    return command(args)


def study_scorers(config: StudyConfig) -> list[str]:
    """The scorers of the study, the curve scorer first: the preset's, or those in --segmenter-dir."""
    if config.segmenter_dir:
        found = [p.stem for p in Path(config.segmenter_dir).glob("*.pt")]
    else:
        found = list(PRESETS[config.preset]["segmenters"])
    return [a for a in SEGMENTER_ORDER if a in found] + sorted(a for a in found if a not in SEGMENTER_ORDER)


def scoring_jobs(config: StudyConfig, name: str, done: Callable[[], bool]) -> tuple[list[Job], Path, Path]:
    """The jobs scoring run ``name`` once trained: its final FCN-scores by every scorer and the learning-curve
    scores of its epoch files by the first; and the folders of their results.json (final, curve). Neither
    runs when ``done()`` (the run's record is reused) or when its results are newer than its inputs."""
    checkpoints = Path(config.checkpoints_dir)
    scorers = study_scorers(config)
    waits_for = tuple(f"scorer {a}" for a in scorers) if not config.segmenter_dir else ()
    scorer_files = [segmenter_folder(config) / f"{arch}.pt" for arch in scorers]
    final, curve = checkpoints / "evaluation" / name, checkpoints / "curves" / name
    latest = checkpoints / name / "latest.pt"

    def epoch_files() -> list[Path]:
        return [path for _, path in epoch_checkpoints(checkpoints / name)]

    jobs = [Job(f"score {name}", evaluate_command(config, final, runs=[name]), after=(f"train {name}",) + waits_for,
                skip=lambda: done() or newer_than(final / "results.json", [latest, *scorer_files])),
            Job(f"curves {name}", lambda: evaluate_command(config, curve, generators=epoch_files(),
                                                           segmenters=scorers[:1]),
                after=(f"train {name}",) + waits_for[:1],
                skip=lambda: done() or not epoch_files() or newer_than(curve / "results.json",
                                                                       epoch_files() + scorer_files[:1]))]
    return jobs, final, curve


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
    """The run's TensorBoard ``noise/*`` scalars: name -> [(step, value)] (the last write of a step wins; a resumed
    run keeps what it wrote before its interruption: TensorBoard's purge of "orphaned" steps is off)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run_dir / "events"), size_guidance={"scalars": 0}, purge_orphaned_data=False)
    events.Reload()
    series = {}
    for tag in events.Tags()["scalars"]:
        if tag.startswith("noise/"):
            by_step = {e.step: e.value for e in events.Scalars(tag)}
            series[tag[len("noise/"):]] = sorted(by_step.items())
    return series


def run_length(run_dir: Path) -> tuple[int, int | None]:
    """(training steps, steps per epoch) of a run, from its latest checkpoint."""
    from common.checkpoint import load_checkpoint
    state = load_checkpoint(run_dir / "latest.pt")
    return state["step"], (state["step"] // state["epoch"] if state.get("epoch") else None)


# ------------------------------------------------------------------------------- analysing
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
            "vs_baseline": {name: paired_difference(v, per_arm[baseline], target_effect=TARGET_EFFECT)
                            for name, v in per_arm.items() if name != baseline and baseline in per_arm},
        }
    return out


def smallest_p(n: int) -> float:
    """The smallest two-sided sign-flip p-value n seeds can give (2 of the 2^n patterns; 0 when unknown)."""
    return 2 / 2 ** n if 0 < n <= 16 else 0.0


def comparisons(analysis: dict, arms: list[Arm], primary_measure: str | None) -> dict:
    """The decisions: the primary comparison (``primary_measure`` of PRIMARY_ARM − Adam) alone at ALPHA, every
    other (measure, arm − Adam) pair Holm-adjusted over the whole family."""
    pairs = [(m, a.name) for m in analysis for a in arms[1:]]
    primary = (primary_measure, PRIMARY_ARM) if (primary_measure, PRIMARY_ARM) in pairs else None
    family = [pair for pair in pairs if pair != primary]
    primary_p = analysis[primary[0]]["vs_baseline"][primary[1]]["p"] if primary else float("nan")
    decided = decisions(primary_p, [analysis[m]["vs_baseline"][a]["p"] for m, a in family])
    n = min((analysis[m]["vs_baseline"][a]["n"] for m, a in pairs), default=0)
    return {
        "alpha": ALPHA, "power": POWER, "target_effect": TARGET_EFFECT,
        "primary": None if primary is None else {"measure": primary[0], "arm": primary[1], "p": primary_p,
                                                 "significant": decided["primary"]},
        "family": [{"measure": m, "arm": a, "p": analysis[m]["vs_baseline"][a]["p"], "p_holm": adjusted,
                    "significant": significant}
                   for (m, a), adjusted, significant in zip(family, decided["adjusted"], decided["significant"])],
        "smallest_p": smallest_p(n), "smallest_p_holm": min(1.0, len(family) * smallest_p(n)),
    }


def ranking_margins(values: dict, truth: dict) -> dict:
    """Ground truth minus the best generator, per scorer and metric (> 0: the scorer can rank)."""
    return {arch: {key: truth[arch][key] - max(values[f"{arch}:{key}"].values()) for key, _ in METRICS}
            for arch in truth}


def curve_means(curves: dict, arms: list[Arm], key: str = "class_iou") -> tuple[list[int], dict[str, list[float]]]:
    """The steps every run of every arm was scored at, and each arm's mean over seeds there."""
    series = [dict(run[key]) for arm in arms for run in curves.get(arm.name, {}).values()]
    if not series:
        return [], {}
    steps = sorted(set.intersection(*(set(c) for c in series)))
    means = {arm.name: [float(np.mean([dict(run[key])[s] for run in curves[arm.name].values()])) for s in steps]
             for arm in arms if curves.get(arm.name)}
    return steps, means


def late_ranking(curves: dict, arms: list[Arm], points: int = LAST_EPOCHS) -> dict:
    """The arms ranked by mean class IoU at each of the last ``points`` curve points (best first), whether
    that ranking changed over them, and each arm's change of mean class IoU over them."""
    steps, means = curve_means(curves, arms)
    if len(steps) < 2:
        return {}
    last = list(range(max(0, len(steps) - points), len(steps)))
    rankings = [[name for name, _ in sorted(means.items(), key=lambda item: -item[1][i])] for i in last]
    return {"steps": [steps[i] for i in last], "rankings": rankings,
            "changed": any(r != rankings[-1] for r in rankings),
            "rise": {name: values[last[-1]] - values[last[0]] for name, values in means.items()}}


def last_epochs_mean(curves: dict, arms: list[Arm], seeds, points: int = LAST_EPOCHS) -> dict[str, float]:
    """Per run: the mean class IoU of its last ``points`` epoch files (a less noisy measure, compared with
    the final checkpoint's in the report)."""
    values = {}
    for arm in arms:
        for seed, run in curves.get(arm.name, {}).items():
            scores = [v for _, v in run["class_iou"]][-points:]
            if scores:
                values[run_name(arm, int(seed))] = float(np.mean(scores))
    return values


def noise_check(analysis: dict, measure: str, averaged: dict) -> dict:
    """Seed-to-seed sd of each arm's paired difference to Adam: final checkpoint (``measure``) against the
    mean of the last epoch files (``averaged``, :func:`analyse` of :func:`last_epochs_mean`)."""
    out = {}
    for arm, final in analysis.get(measure, {}).get("vs_baseline", {}).items():
        mean = averaged.get("vs_baseline", {}).get(arm)
        out[arm] = {"final_sd": final["sd"], "last_epochs_sd": mean["sd"] if mean else None}
    return out


# -------------------------------------------------------------------------------- reporting
def measure_title(measure: str, display: dict) -> str:
    arch, _, metric = measure.partition(":")
    if arch == "val_l1":
        return "Validation L1 (lower is better)"
    return f"{display.get(arch, arch)}: {dict(METRICS)[metric]}"


def p_cell(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def seeds_cell(n: int | None) -> str:
    return "> 100,000" if n is None else str(n)


def setting_sentence(report: dict) -> str:
    """The setting in plain words (data, size, steps, seeds, threads, CPU)."""
    setting = report["setting"]
    data = ("the built-in synthetic city (rendered street scenes, not Cityscapes)" if setting["builtin_data"]
            else f"the dataset `{report['dataroot']}`")
    text = (f"**Setting.** Data: {data}, at {setting['crop_size']} × {setting['crop_size']} pixels, generator "
            f"`{setting['netG']}`, {setting['steps']} training steps at batch size 1, {len(report['seeds'])} seeds "
            f"per arm ({', '.join(map(str, report['seeds']))}); scored by "
            f"{' and '.join(report['display_names'][a] for a in report['scorers'])} trained on the same data. Each "
            f"run used {setting['threads']} CPU thread(s) on {setting['cpu']}: a rerun on this CPU type gives the "
            "same numbers bit for bit, whatever the number of jobs at once; another CPU type can move them "
            "slightly (other kernels), which is why arms are compared seed by seed with intervals.")
    if report["preset"] != "paper":
        text += (" This is a small stand-in, not the paper's experiment (Cityscapes at 256 × 256, unet_256, "
                 "200 epochs): its results say nothing directly about that setting.")
    return text


def markdown_report(report: dict) -> str:
    """study.md: the setting, the primary result, the tables, the corrected comparisons, the minimum
    detectable effects, the learning curves and what the study can and cannot conclude."""
    arms = [Arm(**a) for a in report["arms"]]
    labels = {a.name: a.label for a in arms}
    analysis, display, tests = report["analysis"], report["display_names"], report["tests"]
    lines = ["# Seeds study: Adam vs TRAdam at batch size 1", "", setting_sentence(report), "",
             "Same seed = same data order and initial weights, so every difference is paired by seed (arm − Adam). "
             "Effects: mean difference with its paired Student-t 95% interval. p: exact two-sided sign-flip test "
             f"over all sign patterns of the seeds. The primary comparison, named before the runs, is tested alone "
             f"at {tests['alpha']}; every other comparison is Holm-corrected over the whole family, and "
             f"\"significant\" is said only where the corrected p is below {tests['alpha']}.", ""]
    lines += ["## Primary result", ""] + primary_lines(report) + [""]
    for arch in report["scorers"]:
        rows = [[arm.label] + [summary_cell(analysis[f"{arch}:{key}"]["summary"][arm.name]) for key, _ in METRICS]
                for arm in arms]
        truth = report["ground_truth"][arch]
        rows.append(["Ground truth (real photos)"] + [number_cell(truth[key]) for key, _ in METRICS])
        lines += [f"## FCN-scores by {display[arch]} (mean ± sd over seeds)", "",
                  markdown_table(["Arm", *(name for _, name in METRICS)], rows), ""]
    lines += ["## Every comparison to Adam (Holm-corrected)", "",
              f"MDE: the smallest true difference a paired t-test at {tests['alpha']} detects with "
              f"{tests['power']:.0%} power, from the observed sd of the differences; seeds for "
              f"{tests['target_effect']}: the seeds that would take.", ""]
    rows = []
    entries = ([dict(tests["primary"], p_holm=None, primary=True)] if tests["primary"] else []) + tests["family"]
    for entry in entries:
        diff = analysis[entry["measure"]]["vs_baseline"][entry["arm"]]
        digits = 4 if entry["measure"] == "val_l1" else 3
        verdict = "significant" if entry["significant"] else "not significant"
        rows.append([measure_title(entry["measure"], display) + (" (primary)" if entry.get("primary") else ""),
                     labels[entry["arm"]], difference_cell(diff, digits), p_cell(entry["p"]),
                     "tested alone" if entry.get("primary") else p_cell(entry["p_holm"]), verdict,
                     f"{diff['mde']:.{digits}f}" if not math.isnan(diff["mde"]) else "n/a",
                     seeds_cell(diff["seeds_for_target"])])
    lines += [markdown_table(["Measure", "Arm − Adam", "Effect [95% t interval]", "p", "Holm p", "Verdict",
                              "MDE (80%)", f"Seeds for {tests['target_effect']}"], rows), ""]
    lines += ["## What the study can and cannot conclude", ""] + findings(report) + [""]
    return "\n".join(lines)


def primary_lines(report: dict) -> list[str]:
    tests, analysis = report["tests"], report["analysis"]
    if tests["primary"] is None:
        return ["No primary comparison: it needs the arms `adam` and `tradam` and a scorer."]
    primary = tests["primary"]
    diff = analysis[primary["measure"]]["vs_baseline"][primary["arm"]]
    title = measure_title(primary["measure"], report["display_names"])
    verdict = (f"significant at {tests['alpha']}" if primary["significant"] else
               f"not significant at {tests['alpha']}")
    return [f"TRAdam (paper) − Adam, {title}: **{difference_cell(diff)}** (mean [95% t interval]) over {diff['n']} "
            f"seeds, sign-flip p = {p_cell(primary['p'])}: {verdict}. Minimum detectable effect at "
            f"{tests['power']:.0%} power: {diff['mde']:.3f}; detecting {tests['target_effect']} would take "
            f"{seeds_cell(diff['seeds_for_target'])} seeds (sd of the differences {diff['sd']:.4f})."]


def findings(report: dict) -> list[str]:
    """Plain sentences, whatever the sign: the primary result, the corrected family, the noise check, the
    learning curves, the scorers' margins and the study's scope."""
    tests, display, analysis = report["tests"], report["display_names"], report["analysis"]
    labels = {a["name"]: a["label"] for a in report["arms"]}
    out = []
    if tests["primary"] is not None:
        primary = tests["primary"]
        diff = analysis[primary["measure"]]["vs_baseline"][primary["arm"]]
        if primary["significant"]:
            direction = "higher" if diff["mean"] > 0 else "lower"
            out.append(f"- Primary: on this setting TRAdam (paper) gives a {direction} class IoU than Adam, by "
                       f"{diff['mean']:+.3f} (95% interval {diff['low']:+.3f} to {diff['high']:+.3f}).")
        else:
            out.append(f"- Primary: the study does not show a difference between TRAdam (paper) and Adam in class "
                       f"IoU. That is not evidence of no difference: differences inside the interval "
                       f"[{diff['low']:+.3f}, {diff['high']:+.3f}] fit the data, and only effects of about "
                       f"{diff['mde']:.3f} or more would have been detected with {tests['power']:.0%} probability.")
    significant = [e for e in tests["family"] if e["significant"]]
    if significant:
        out.append(f"- Other comparisons: {len(significant)} of {len(tests['family'])} significant after Holm: "
                   + "; ".join(f"{labels[e['arm']]} on {measure_title(e['measure'], display)} "
                               f"({analysis[e['measure']]['vs_baseline'][e['arm']]['mean']:+.4f}, Holm p "
                               f"{p_cell(e['p_holm'])})" for e in significant) + ".")
    elif tests["family"]:
        out.append(f"- Other comparisons: none of the {len(tests['family'])} is significant after Holm's correction; "
                   "their effects and intervals above are descriptive.")
    if tests["family"] and tests["smallest_p_holm"] >= tests["alpha"]:
        out.append(f"- With {len(report['seeds'])} seeds the smallest sign-flip p is {p_cell(tests['smallest_p'])}; "
                   f"Holm over {len(tests['family'])} comparisons multiplies it to {p_cell(tests['smallest_p_holm'])}, "
                   f"so no comparison but the primary one could reach significance in this design.")
    for arm, sds in report.get("noise_check", {}).items():
        if sds["final_sd"] is not None and sds["last_epochs_sd"] is not None:
            out.append(f"- Measurement noise, {labels[arm]} − Adam in class IoU by "
                       f"{display[report['curve_scorer']]}: sd over seeds {sds['final_sd']:.4f} for the final "
                       f"checkpoint, {sds['last_epochs_sd']:.4f} for the mean of the last {LAST_EPOCHS} epoch files.")
    ranking = report.get("late_ranking")
    if ranking:
        order = " > ".join(labels[name] for name in ranking["rankings"][-1])
        rising = [labels[name] for name, rise in ranking["rise"].items() if rise > 0]
        out.append(f"- Learning curves (class IoU by {display[report['curve_scorer']]}, mean over seeds): at the "
                   f"last point the order is {order}; over the last {len(ranking['steps'])} points (steps "
                   f"{', '.join(map(str, ranking['steps']))}) the ranking "
                   f"{'still changes' if ranking['changed'] else 'does not change'}"
                   + (f", and class IoU still rises for {', '.join(rising)}." if rising else "."))
    for arch, margins in report["ranking_margins"].items():
        worst = min(margins.values())
        verdict = "ranks: the real photos score above every generator on every metric" if worst > 0 else \
            "CANNOT rank: a generator scores at or above the real photos on some metric"
        out.append(f"- Scorer {display[arch]} {verdict} (smallest margin {worst:+.3f}).")
    out.append("- Scope: the study can say how these arms compare on this setting, at this length and learning "
               "rate, by these scorers. It cannot say how they compare on Cityscapes at the paper's size and "
               "length, at other learning rates or batch sizes, or by other scorers.")
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


def make_record(config: StudyConfig, arm: Arm, seed: int, key: dict, scorer_hashes: dict[str, str],
                final_folder: Path, curve_folder: Path) -> dict:
    """The record of a trained and scored run (:mod:`eval.study_records`): its final FCN-scores by every
    scorer (overall, per class, confusion matrix) and their ground-truth rows, validation L1, learning curve (validation L1 and class IoU by the first
    scorer at every epoch file), gradient-noise series and length."""
    name = run_name(arm, seed)
    run_dir = Path(config.checkpoints_dir) / name
    [final] = read_results([final_folder])
    entries = {entry["arch"]: entry for entry in final["segmenters"]}
    scorers = [a for a in SEGMENTER_ORDER if a in entries] + sorted(a for a in entries if a not in SEGMENTER_ORDER)
    sets = {arch: next(s for s in entries[arch]["image_sets"] if s["label"] == name) for arch in scorers}
    dataroot = sets[scorers[0]]["dataroot"]
    evalset = open_eval_set(dataroot)
    steps, per_epoch = run_length(run_dir)
    scored = {Path(s["checkpoint"]).resolve(): s for result in read_results([curve_folder])
              for s in result["segmenters"][0]["image_sets"]}
    l1, iou = [], []
    for epoch, path in epoch_checkpoints(run_dir):
        curve_set = scored.get(path.resolve())
        if curve_set is not None and per_epoch is not None:
            l1.append((epoch * per_epoch, validation_l1(Path(curve_set["images"]), evalset)))
            iou.append((epoch * per_epoch, curve_set["scores"]["class_iou"]))
    run_options = json.loads((run_dir / "options.json").read_text())
    return {"version": RECORD_VERSION, "key": key, "name": name, "arm": arm.name, "seed": seed,
            "steps": steps, "steps_per_epoch": per_epoch, "netG": run_options["netG"],
            "crop_size": run_options["crop_size"], "threads": run_options.get("threads"),
            "dataroot": shown_path(dataroot),
            "scorers": {arch: {"sha256": scorer_hashes[arch], "display_name": entries[arch]["display_name"],
                               "ground_truth": entries[arch]["ground_truth"][0]["scores"]}
                        for arch in scorers},
            "final": {arch: sets[arch]["scores"] for arch in scorers},
            "val_l1": validation_l1(Path(sets[scorers[0]]["images"]), evalset),
            "curve": {"val_l1": l1, "class_iou": iou}, "noise": read_noise(run_dir)}


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


def read_results(folders: list[Path]) -> list[dict]:
    """The results.json of each folder that has one."""
    return [json.loads((folder / "results.json").read_text()) for folder in folders
            if (folder / "results.json").is_file()]


def setting(config: StudyConfig, record: dict) -> dict:
    """What the runs were: data, size, length, threads and CPU (for the report's plain-words setting)."""
    return {"builtin_data": config.dataroot is None, "crop_size": record["crop_size"], "netG": record["netG"],
            "steps": record["steps"], "threads": record["threads"], "jobs": config.jobs,
            "cpu": record["key"]["device_name"]}


def stored_records(config: StudyConfig) -> StoredRecords:
    """The records of ``<out>/runs`` and what this call needs to reuse one (device, code, data, scorers)."""
    data = None
    if config.dataroot:
        root = Path(config.dataroot)
        data = files_fingerprint([p for p in root.rglob("*") if p.is_file()], root)
    scorer_files = {arch: segmenter_folder(config) / f"{arch}.pt" for arch in study_scorers(config)}
    return StoredRecords(Path(config.out) / "runs", config.device, code_sha256(), data, scorer_files)


def study_jobs(config: StudyConfig, arms: list[Arm], records: StoredRecords
               ) -> tuple[list[Job], dict[str, list[str]], dict[str, tuple[Path, Path]]]:
    """Every job of the study, each run's scorings right after its training (so a run is recorded as soon as
    it is trained); each run's options; and each run's (final, curve) result folders."""
    trainings, commands = train_jobs(config, arms, records)
    jobs, folders = scorer_jobs(config), {}
    for training, (name, run) in zip(trainings, commands.items()):
        scorings, final, curve = scoring_jobs(config, name, lambda name=name, run=run: records.usable(name, run)
                                              is not None)
        jobs += [training, *scorings]
        folders[name] = (final, curve)
    return jobs, commands, folders


def scored(config: StudyConfig, name: str, folders: dict) -> bool:
    """Whether run ``name`` is trained and both its scorings are newer than their inputs."""
    run_dir = Path(config.checkpoints_dir) / name
    scorer_files = [segmenter_folder(config) / f"{arch}.pt" for arch in study_scorers(config)]
    epochs = [path for _, path in epoch_checkpoints(run_dir)]
    final, curve = folders[name]
    return (newer_than(final / "results.json", [run_dir / "latest.pt", *scorer_files])
            and (not epochs or newer_than(curve / "results.json", epochs + scorer_files[:1]))
            and finished(run_dir / "latest.pt"))


def write_records(config: StudyConfig, arms: list[Arm], records: StoredRecords, commands: dict, folders: dict,
                  only_scored: bool = False) -> None:
    """Write the record of every run without a reusable one (``only_scored``: of those trained and scored,
    when the jobs stopped early)."""
    for arm in arms:
        for seed in config.seeds:
            name = run_name(arm, seed)
            if only_scored and not scored(config, name, folders):
                continue
            if records.usable(name, commands[name]) is None:
                write_record(records.folder, make_record(config, arm, seed, records.key(commands[name]),
                                                         records.scorer_hashes(), *folders[name]))


def run_study(config: StudyConfig) -> Path:
    """Every step of the module docstring; returns the report folder."""
    arms = study_arms(config)
    check_device_name(config.device)
    check_jobs_and_threads(config.jobs, config.threads)
    checkpoints, out = Path(config.checkpoints_dir), Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    for arm in arms:
        print(f"arm {arm.name}: {arm.label}: train.py {' '.join(arm.options)}", flush=True)

    records = stored_records(config)
    jobs, commands, folders = study_jobs(config, arms, records)
    reusable = sum(records.pending(name, run) for name, run in commands.items())
    print(f"{len(commands)} runs ({reusable} with a record in {records.folder} to check against the scorers), "
          f"{config.jobs} job(s) at once, {config.threads} thread(s) each; logs in {checkpoints / 'logs'}",
          flush=True)
    try:
        run_jobs(jobs, config.jobs, config.threads, checkpoints / "logs", env=child_env())
    except (Stopped, JobFailed):
        write_records(config, arms, records, commands, folders, only_scored=True)  # keep what is done
        raise
    write_records(config, arms, records, commands, folders)
    # Read back, so that a reused and a fresh record give the same report.
    by_run = {name: records.usable(name, run) for name, run in commands.items()}
    first = next(iter(by_run.values()))
    scorers = list(first["final"])
    values = {f"{arch}:{key}": {name: r["final"][arch][key] for name, r in by_run.items()}
              for arch in scorers for key, _ in METRICS}
    values["val_l1"] = {name: r["val_l1"] for name, r in by_run.items()}
    curves = {arm.name: {seed: by_run[run_name(arm, seed)]["curve"] for seed in config.seeds} for arm in arms}
    noise = {arm.name: {seed: by_run[run_name(arm, seed)]["noise"] for seed in config.seeds} for arm in arms}
    truth = {arch: first["scorers"][arch]["ground_truth"] for arch in scorers}
    display = {arch: first["scorers"][arch]["display_name"] for arch in scorers}
    analysis = analyse(arms, config.seeds, values)
    primary_measure = f"{scorers[0]}:{PRIMARY_METRIC}"
    averaged = analyse(arms, config.seeds, {"last": last_epochs_mean(curves, arms, config.seeds)})["last"]

    report = {"preset": config.preset, "seeds": list(config.seeds), "dataroot": first["dataroot"],
              "setting": setting(config, first),
              "arms": [asdict(a) for a in arms], "train_options": commands, "scorers": scorers,
              "display_names": display, "ground_truth": truth, "per_run": values, "analysis": analysis,
              "tests": comparisons(analysis, arms, primary_measure),
              "noise_check": noise_check(analysis, primary_measure, averaged),
              "late_ranking": late_ranking(curves, arms),
              "ranking_margins": ranking_margins(values, truth), "curve_scorer": scorers[0],
              "curves": curves, "noise": noise, "config": asdict(config)}
    write_report(report, out)
    return out


def parse_args(argv=None) -> StudyConfig:
    parser = option_parser(__doc__.split("\n\n")[0], prog="python -m eval.study")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                        help="demo: the built-in city at 64 px, 4000 steps per run (CPU); paper: the paper's runs "
                             "(GPU); quick: tiny networks, checks the machinery only")
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), metavar="ARM",
                        help="adam, tradam, tradam_official, tradam_flat, adam_matched, adam_beta2, sgd, trsgd")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS), help="seeds of every arm")
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
    parser.add_argument("--jobs", type=int, default=default_jobs(),
                        help="jobs (trainings, scorings) at once; default: the cores this process may use")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads of each job (recorded in every run's options.json); a fixed count "
                             "keeps the numbers independent of the machine's cores and of --jobs")
    args = parser.parse_args(argv)
    return StudyConfig(preset=args.preset, arms=tuple(args.arms), seeds=tuple(args.seeds), dataroot=args.dataroot,
                       checkpoints_dir=args.checkpoints_dir, segmenter_dir=args.segmenter_dir, out=args.out,
                       device=args.device, noise_freq=args.noise_freq, jobs=args.jobs, threads=args.threads)


def main(argv=None) -> int:
    config = parse_args(argv)
    return run_main(lambda: f"wrote the study to {run_study(config)}")


if __name__ == "__main__":
    sys.exit(main())
