"""The seeds study: does TRAdam beat Adam at batch size 1, with the controls the paper lacks?

    make study                                        # built-in city, 8 seeds x 5 arms, 2 jobs at once
    python -m experiments.study --seeds 0 1 2 3 4 --arms adam tradam --jobs 2
    python -m experiments.study --preset paper --dataroot datasets/cityscapes --segmenter-dir checkpoints/segmenters

The arms and presets are :mod:`experiments.study.design`'s. One comparison is named before the runs, the
primary one: TRAdam (paper) − Adam in class IoU by the first scorer, tested alone at 0.05 (exact sign-flip
test). Every other comparison of the report is Holm-corrected over the whole family; "significant" is said
only where the adjusted p is below 0.05. Effects are always shown with their 95% t intervals, and the
minimum detectable effect at 80% power with each.

The work is a set of independent jobs (:mod:`experiments.study.jobs`), ``--jobs`` of them at once, each with
``--threads`` CPU threads (default 1: numbers that do not depend on the machine's core count nor on how
many jobs run at once; a rerun is bit-identical on the same CPU type). Each job reuses what an earlier
call finished and resumes what it left unfinished; their logs are in ``<checkpoints-dir>/logs/``. Each run's
record, ``<out>/runs/<arm>_seed<s>.json`` (:mod:`experiments.study.records`), holds the numbers the report
needs of it; a later call, even from a fresh clone, reuses it instead of training and scoring the run again
while its key and its scorers' weights are the same. The report (:mod:`experiments.study.report`) goes to
``--out`` (default ``docs/study``).

SIGINT/SIGTERM are passed on to the running jobs, which save where they are; the study then exits
130/143 with one line, and the same command resumes.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from common.command_line import add_former_spelling, option_parser, run_main
from common.device import check_device_name
from common.interrupts import Stopped
from common.jobs import JobFailed, check_jobs_and_threads, default_jobs, run_jobs
from eval.metrics import METRICS
from experiments.study.analysis import (
    PRIMARY_METRIC,
    analyse,
    comparisons,
    last_epochs_mean,
    late_ranking,
    noise_check,
    ranking_margins,
    setting,
)
from experiments.study.design import DEFAULT_ARMS, DEFAULT_SEEDS, PRESETS, StudyConfig, run_name, study_arms
from experiments.study.jobs import child_env, study_jobs
from experiments.study.report import write_report
from experiments.study.runs import stored_records, write_records


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
    parser = option_parser(__doc__.split("\n\n")[0], prog="python -m experiments.study.cli")
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
