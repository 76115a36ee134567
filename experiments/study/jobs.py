"""The study as jobs (:mod:`common.jobs`): the command lines of its trainings and scorings and their order.

1. runs: ``train.py`` per arm and seed under ``<checkpoints-dir>/<arm>_seed<s>``, with G's gradient noise
   probed in rounds of S steps every ``noise_freq`` steps (:mod:`training.noise`); a run that diverges (exit
   status 1) is done all the same: it is scored as its last epoch file, never dropped;
2. as soon as a run is trained, its scoring by the segmenters of ``segmenter_dir`` (never trained here:
   ``make scorers`` makes the demo's): its final FCN-scores by every segmenter (``evaluate.py``, with the real
   photos' row) and its learning curve, every ``epoch_<NNN>.pt`` scored by the first.

A job whose outputs are up to date is skipped; a run with a reusable record (:mod:`experiments.study.records`)
is neither trained nor scored again. :func:`command_lines` lists every command, one per line, for a user
who runs them with a scheduler of their own.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Callable

from common.command_line import flag
from common.jobs import Job, with_python_path
from experiments.study.design import SEGMENTER_ORDER, Arm, StudyConfig, run_name
from experiments.study.records import StoredRecords
from gan.run_files import epoch_files, is_finished, latest_path
from training.options import parse_args

REPO = Path(__file__).resolve().parents[2]
DIVERGED = 1  # train.py's exit status when a run diverges


def options(**values) -> list[str]:
    """``--option value`` pairs of a command line, each option spelled by :func:`flag` from its name; a
    value of None leaves its option out."""
    return [part for name, value in values.items() if value is not None for part in (flag(name), str(value))]


def command(args: list) -> tuple[str, ...]:
    """A project command run with this interpreter."""
    return (sys.executable, *map(str, args))


def child_env() -> dict:
    """The environment of the study's jobs: this one, with the project importable."""
    return with_python_path(REPO)


def train_options(config: StudyConfig, arm: Arm, seed: int) -> list[str]:
    """train.py options of one run (without --resume/--overwrite)."""
    return [*config.train_args, *arm.options,
            *options(seed=seed, name=run_name(arm, seed), checkpoints_dir=config.checkpoints_dir, device=config.device,
                     noise_freq=config.noise_freq, noise_probe=config.noise_probe, threads=config.threads),
            *options(dataroot=config.dataroot or None)]


def newer_than(output: Path, inputs: list[Path]) -> bool:
    """Whether ``output`` exists and was written after every one of ``inputs`` (all of which exist)."""
    if not output.is_file() or not all(p.is_file() for p in inputs):
        return False
    return all(output.stat().st_mtime_ns > p.stat().st_mtime_ns for p in inputs)


def segmenter_folder(config: StudyConfig) -> Path:
    return Path(config.segmenter_dir) if config.segmenter_dir else Path(config.checkpoints_dir) / "segmenters"


def study_scorers(config: StudyConfig) -> list[str]:
    """The segmenters of the study (those in its segmenter folder), the curve scorer first."""
    found = [p.stem for p in segmenter_folder(config).glob("*.pt")]
    return [a for a in SEGMENTER_ORDER if a in found] + sorted(a for a in found if a not in SEGMENTER_ORDER)


def train_jobs(config: StudyConfig, arms: list[Arm], records: StoredRecords | None = None
               ) -> tuple[list[Job], dict[str, list[str]]]:
    """A job per run (train, resume, or nothing for a finished run or a reusable record) and each run's options,
    seed by seed (a seed's arms one after another: a study stopped part way has whole seeds, and a study made
    in segments on several machines has a seed's arms on one machine but where a segment ends)."""
    jobs, commands = [], {}
    for seed in config.seeds:
        for arm in arms:
            name = run_name(arm, seed)
            run = train_options(config, arm, seed)
            commands[name] = run
            latest = latest_path(Path(config.checkpoints_dir) / name)
            jobs.append(Job(f"train {name}", command([REPO / "train.py", *run,
                                                       "--resume" if latest.is_file() else "--overwrite"]),
                            skip=lambda latest=latest, name=name, run=run: (
                                records is not None and records.usable(name, run) is not None) or is_finished(latest),
                            done_statuses=(0, DIVERGED)))
    return jobs, commands


def final_generator(run_dir: Path) -> Path | None:
    """What a run is scored as: its latest.pt once training finished, else (it diverged, or it stopped) its last
    epoch file; None when it has neither."""
    if is_finished(latest_path(run_dir)):
        return latest_path(run_dir)
    epochs = epoch_files(run_dir)
    return epochs[-1][1] if epochs else None


def evaluate_command(config: StudyConfig, out: Path, generators: list[Path], segmenters: list[str] | None = None
                     ) -> tuple[str, ...]:
    """``evaluate.py`` over generator files into ``out`` (replaced: the study owns it)."""
    args = [REPO / "evaluate.py", *options(checkpoints_dir=config.checkpoints_dir,
                                           segmenter_dir=segmenter_folder(config), out=out, device=config.device),
            flag("overwrite"), *config.evaluate_args]
    for path in generators:
        args += options(generator=path)
    if segmenters:
        args += [flag("segmenters"), *segmenters]
    return command(args)


def result_folders(config: StudyConfig, name: str) -> tuple[Path, Path]:
    """Where run ``name``'s final scores and learning-curve scores are written."""
    checkpoints = Path(config.checkpoints_dir)
    return checkpoints / "evaluation" / name, checkpoints / "curves" / name


def scoring_jobs(config: StudyConfig, name: str, done: Callable[[], bool]) -> list[Job]:
    """The jobs scoring run ``name`` once trained: its final FCN-scores by every segmenter and the learning-curve
    scores of its epoch files by the first. Neither runs when ``done()`` (the run's record is reused) or when its
    results are newer than its inputs."""
    run_dir = Path(config.checkpoints_dir) / name
    scorers = study_scorers(config)
    scorer_files = [segmenter_folder(config) / f"{arch}.pt" for arch in scorers]
    final, curve = result_folders(config, name)

    def run_epoch_files() -> list[Path]:
        return [path for _, path in epoch_files(run_dir)]

    return [Job(f"score {name}", lambda: evaluate_command(config, final, [final_generator(run_dir)]),
                after=(f"train {name}",),
                skip=lambda: done() or newer_than(final / "results.json", [final_generator(run_dir), *scorer_files])),
            Job(f"curves {name}", lambda: evaluate_command(config, curve, run_epoch_files(), scorers[:1]),
                after=(f"train {name}",),
                skip=lambda: done() or not run_epoch_files() or newer_than(curve / "results.json",
                                                                           run_epoch_files() + scorer_files[:1]))]


def study_jobs(config: StudyConfig, arms: list[Arm], records: StoredRecords) -> tuple[list[Job], dict[str, list[str]]]:
    """Every job of the study, each run's scorings right after its training (so a run is recorded as soon as
    it is trained), and each run's options."""
    trainings, commands = train_jobs(config, arms, records)
    jobs = []
    for training, (name, run) in zip(trainings, commands.items()):
        jobs += [training, *scoring_jobs(config, name, lambda name=name, run=run: records.usable(name, run)
                                         is not None)]
    return jobs, commands


def command_lines(config: StudyConfig, arms: list[Arm]) -> list[str]:
    """Every training and scoring command of the study, one a line, in an order that works run by run (each
    run's scorings after its training), for a scheduler of the user's own; then ``python -m experiments.study``
    with the same options collects the records and writes the report."""
    lines = []
    for seed in config.seeds:
        for arm in arms:
            name = run_name(arm, seed)
            run_dir = Path(config.checkpoints_dir) / name
            final, curve = result_folders(config, name)
            epochs = [run_dir / f"epoch_{epoch:03d}.pt" for epoch in range(1, epochs_of(config) + 1)]
            lines += [shlex.join(command([REPO / "train.py", *train_options(config, arm, seed), "--overwrite"])),
                      shlex.join(evaluate_command(config, final, [latest_path(run_dir)])),
                      shlex.join(evaluate_command(config, curve, epochs, study_scorers(config)[:1]))]
    return lines


def epochs_of(config: StudyConfig) -> int:
    """The epochs of the study's runs (train.py's options as the study gives them)."""
    options = parse_args([*config.train_args])  # train.py's own parser: the epochs its preset and options give
    return options.n_epochs + options.n_epochs_decay


def scored(config: StudyConfig, name: str) -> bool:
    """Whether run ``name`` is trained (or diverged) and both its scorings are newer than their inputs."""
    run_dir = Path(config.checkpoints_dir) / name
    generator = final_generator(run_dir)
    scorer_files = [segmenter_folder(config) / f"{arch}.pt" for arch in study_scorers(config)]
    epochs = [path for _, path in epoch_files(run_dir)]
    final, curve = result_folders(config, name)
    return (generator is not None and newer_than(final / "results.json", [generator, *scorer_files])
            and (not epochs or newer_than(curve / "results.json", epochs + scorer_files[:1])))
