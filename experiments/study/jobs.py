"""The study as jobs (:mod:`common.jobs`): the command lines of its trainings and scorings and their order.

1. scorers: the built-in city's FCN-8s and DeepLabV3+ (trained once; ``--segmenter-dir`` to use others);
2. runs: ``train.py`` per arm and seed under ``<checkpoints-dir>/<arm>_seed<s>``, with G's gradient noise
   measured every ``--noise-freq`` steps (:mod:`training.noise`);
3. as soon as a run is trained, its scoring: final FCN-scores by every scorer (``evaluate.py``, with the
   real photos' row) and the learning curve, every ``epoch_<NNN>.pt`` scored by the first scorer.

A job whose outputs are up to date is skipped; a run with a reusable record (:mod:`experiments.study.records`)
is neither trained nor scored again.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from common.command_line import flag
from common.jobs import Job, with_python_path
from eval.segmenters.training import run_path
from experiments.study.design import PRESETS, SEGMENTER_ORDER, Arm, StudyConfig, run_name
from experiments.study.records import StoredRecords
from gan.run_files import epoch_files, is_finished

REPO = Path(__file__).resolve().parents[2]


def options(**values) -> list[str]:
    """``--option value`` pairs of a command line, each option spelled by :func:`flag` from its name; a
    value of None leaves its option out."""
    return [part for name, value in values.items() if value is not None for part in (flag(name), str(value))]


def command(args: list[str]) -> tuple[str, ...]:
    """A project command run with this interpreter."""
    return (sys.executable, *map(str, args))


def child_env() -> dict:
    """The environment of the study's jobs: this one, with the project importable."""
    return with_python_path(REPO)


def train_options(config: StudyConfig, arm: Arm, seed: int) -> list[str]:
    """train.py options of one run (without --resume/--overwrite)."""
    preset = PRESETS[config.preset]
    noise_freq = preset["noise_freq"] if config.noise_freq is None else config.noise_freq
    return [*preset["train"], *arm.options,
            *options(seed=seed, name=run_name(arm, seed), checkpoints_dir=config.checkpoints_dir, device=config.device,
                     noise_freq=noise_freq, noise_probe=preset["noise_probe"], threads=config.threads),
            *config.extra_train, *options(dataroot=config.dataroot or None)]


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
                                recorded and records.usable(name, run) is not None) or is_finished(latest)))
    return jobs, commands


def evaluate_command(config: StudyConfig, out: Path, runs: list[str] | None = None,
                     generators: list[Path] | None = None, segmenters: list[str] | None = None) -> tuple[str, ...]:
    """``evaluate.py`` over runs (their latest.pt) or generator files, into ``out``."""
    args = [REPO / "evaluate.py", *options(checkpoints_dir=config.checkpoints_dir,
                                           segmenter_dir=segmenter_folder(config), out=out, device=config.device),
            flag("overwrite"),
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

    def run_epoch_files() -> list[Path]:
        return [path for _, path in epoch_files(checkpoints / name)]

    jobs = [Job(f"score {name}", evaluate_command(config, final, runs=[name]), after=(f"train {name}",) + waits_for,
                skip=lambda: done() or newer_than(final / "results.json", [latest, *scorer_files])),
            Job(f"curves {name}", lambda: evaluate_command(config, curve, generators=run_epoch_files(),
                                                           segmenters=scorers[:1]),
                after=(f"train {name}",) + waits_for[:1],
                skip=lambda: done() or not run_epoch_files() or newer_than(curve / "results.json",
                                                                       run_epoch_files() + scorer_files[:1]))]
    return jobs, final, curve


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
    epochs = [path for _, path in epoch_files(run_dir)]
    final, curve = folders[name]
    return (newer_than(final / "results.json", [run_dir / "latest.pt", *scorer_files])
            and (not epochs or newer_than(curve / "results.json", epochs + scorer_files[:1]))
            and is_finished(run_dir / "latest.pt"))
