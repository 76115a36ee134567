"""The seeds study: does TRAdam beat Adam at batch size 1, and is it more than a smaller step?

    make study                                        # the plan's 4 arms x 16 seeds, 2 jobs at once
    python -m experiments.study --list-jobs           # every command, one a line, for a scheduler of your own
    python -m experiments.study --preset paper --dataroot datasets/cityscapes --segmenter-dir checkpoints/segmenters

The arms, seeds and presets are :mod:`experiments.study.design`'s; the hypotheses, their test and the family's
correction are the plan's (``docs/study/plan.md``, committed before the runs) and
:mod:`experiments.study.analysis`'s. The work is a set of independent jobs (:mod:`experiments.study.jobs`),
``--jobs`` at once, each with ``--threads`` CPU threads (default 1: numbers that do not depend on the
machine's core count nor on how many jobs run at once; a rerun is bit-identical on the same CPU type).
Each job reuses what an earlier call finished and resumes what it left unfinished; logs are in
``<checkpoints-dir>/logs/``. Each run's record, ``<out>/runs/<arm>_seed<s>.json``
(:mod:`experiments.study.records`), holds what the report needs of it; a later call, even from a fresh clone,
reuses it while its key and its segmenters' weights are the same. The report
(:mod:`experiments.study.report`) is written only once every run of the design has its record.

SIGINT/SIGTERM are passed on to the running jobs, which save where they are; the study then exits
130/143 with one line, and the same command resumes.
"""
from __future__ import annotations

import sys
from pathlib import Path

from common.command_line import InputError, add_former_spelling, option_parser, parse_with_presets, run_main
from common.device import check_device_name
from common.interrupts import Stopped
from common.jobs import JobFailed, check_jobs_and_threads, default_jobs, run_jobs
from common.outputs import OutputLock
from experiments.study.design import CONFIRMATORY_ARMS, DEFAULT_SEEDS, PRESETS, StudyConfig, study_arms
from experiments.study.jobs import child_env, command_lines, segmenter_folder, study_jobs, study_scorers
from experiments.study.report import report_of, write_report
from experiments.study.runs import stored_records, write_records


def check(config: StudyConfig) -> None:
    """One line (InputError) for what would fail only after the runs, before any of them starts."""
    check_device_name(config.device)
    check_jobs_and_threads(config.jobs, config.threads)
    out = Path(config.out)
    blocked = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise InputError(f"--out {out}: {blocked} exists and is not a folder")
    if not study_scorers(config):
        raise InputError(f"{segmenter_folder(config)}: no segmenters (<arch>.pt) to score with; give --segmenter-dir "
                         f"(the demo's are made by `make scorers`)")


def run_study(config: StudyConfig) -> Path:
    """Train and score every run (reusing records), write their records, then the report; returns --out."""
    arms = study_arms(config)
    check(config)
    out = Path(config.out)
    lock = OutputLock(out, "--out")  # one study at a time writes its records and report
    try:
        for arm in arms:
            print(f"arm {arm.name}: {arm.label}: train.py {' '.join(arm.options)}", flush=True)
        records = stored_records(config)
        jobs, commands = study_jobs(config, arms, records)
        print(f"{len(commands)} runs, {config.jobs} job(s) at once, {config.threads} thread(s) each; logs in "
              f"{Path(config.checkpoints_dir) / 'logs'}; records in {records.folder}", flush=True)
        try:
            run_jobs(jobs, config.jobs, config.threads, Path(config.checkpoints_dir) / "logs", env=child_env())
        except (Stopped, JobFailed):
            write_records(config, arms, records, commands, only_scored=True)  # keep what is done
            raise
        write_records(config, arms, records, commands)
        by_run = {name: records.usable(name, run) for name, run in commands.items()}
        missing = [name for name, record in by_run.items() if record is None]
        if missing:
            raise InputError(f"{records.folder}: no usable record of {', '.join(missing)}; the report needs every run")
        write_report(report_of(config, arms, by_run, commands), out)
    finally:
        lock.release()
    return out


def parse_args(argv=None) -> tuple[StudyConfig, bool]:
    """The study's options (defaults < --preset < the command line) and whether to list its jobs only."""
    parser = option_parser(__doc__.split("\n\n")[0], prog="python -m experiments.study")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                        help="demo: the built-in city at 64 px, 4000 steps per run (CPU); paper: the paper's runs "
                             "(GPU); quick: tiny networks, checks the machinery only")
    parser.add_argument("--arms", nargs="+", default=list(CONFIRMATORY_ARMS), metavar="ARM",
                        help="of adam, tradam, tradam_adam_step, adam_matched (the plan's), tradam_official, "
                             "tradam_flat, adam_beta2, sgd, trsgd")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS), help="seeds of every arm")
    parser.add_argument("--dataroot", default=None, help="pix2pix-layout dataset; none: the built-in city")
    checkpoints_dir = parser.add_argument("--checkpoints-dir", default="checkpoints/study",
                                          help="folder of the study's runs")
    add_former_spelling(parser, checkpoints_dir, "--checkpoints")
    parser.add_argument("--segmenter-dir", default=None,
                        help="the segmenters to score with (<arch>.pt); none: the preset's (demo: the shipped ones)")
    parser.add_argument("--out", default="docs/study", help="report folder (records in <out>/runs)")
    parser.add_argument("--plan", default=None, help="the plan the report cites; none: <out>/plan.md")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N")
    parser.add_argument("--noise-freq", type=int, help="steps between rounds of noise probes (default: the preset's)")
    parser.add_argument("--noise-probe", type=int, help="pairs per noise probe (default: the preset's)")
    parser.add_argument("--jobs", type=int, default=default_jobs(),
                        help="jobs (trainings, scorings) at once; default: the cores this process may use")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads of each job (recorded in every run's options.json); a fixed count "
                             "keeps the numbers independent of the machine's cores and of --jobs")
    parser.add_argument("--list-jobs", action="store_true",
                        help="print every training and scoring command, one a line, and exit")
    namespace, _ = parse_with_presets(parser, argv, PRESETS)
    values = {k: v for k, v in vars(namespace).items() if k != "list_jobs" and v is not None}
    values.update(arms=tuple(namespace.arms), seeds=tuple(namespace.seeds))
    return StudyConfig(**values), namespace.list_jobs


def main(argv=None) -> int:
    config, list_jobs = parse_args(argv)
    if list_jobs:
        return run_main(lambda: "\n".join(command_lines(config, study_arms(config))))
    return run_main(lambda: f"wrote the study to {run_study(config)}")


if __name__ == "__main__":
    sys.exit(main())
