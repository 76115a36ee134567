"""``make demo``: Adam and TRAdam runs and both demo scorers on the built-in city, side by side, then Tables 2-3.

    python -m eval.demo [--jobs N] [--threads T]

Four independent jobs (:mod:`common.jobs`), ``--jobs`` at once with ``--threads`` CPU threads each:
``train.py --preset demo --optim adam|tradam`` into ``checkpoints/demo_<optim>_seed0`` and
``python -m eval.train_segmenter --preset demo --arch fcn8s|deeplabv3plus_xception71`` into
``checkpoints/segmenters/demo/``; then ``evaluate.py`` on the two runs into ``results/demo/``, whose tables
are printed. Finished runs and scorers are reused, unfinished ones resumed; logs go to
``checkpoints/logs/demo/``. SIGINT/SIGTERM are passed on to the running jobs (they save; exit 130/143).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from common.command_line import option_parser, run_main
from common.jobs import Job, check_jobs_and_threads, default_jobs, run_jobs

REPO = Path(__file__).resolve().parents[1]
OPTIMIZERS = ("adam", "tradam")
SCORERS = ("fcn8s", "deeplabv3plus_xception71")


def demo_jobs(checkpoints: Path, segmenters: Path, results: Path, threads: int) -> list[Job]:
    """The demo's jobs: two trainings and two scorer trainings (independent), then the evaluation."""
    from common.checkpoint import load_checkpoint
    from eval.train_segmenter import run_path
    python, jobs = sys.executable, []
    for optim in OPTIMIZERS:
        latest = checkpoints / f"demo_{optim}_seed0" / "latest.pt"
        jobs.append(Job(f"train demo_{optim}_seed0", (
            python, str(REPO / "train.py"), "--preset", "demo", "--optim", optim, "--checkpoints-dir", str(checkpoints),
            "--threads", str(threads), "--resume" if latest.is_file() else "--overwrite"),
            skip=lambda latest=latest: latest.is_file() and bool(load_checkpoint(latest).get("finished"))))
    for arch in SCORERS:
        out = segmenters / f"{arch}.pt"
        resume = ("--resume",) if (run_path(out) / "latest.pt").is_file() else ()
        jobs.append(Job(f"scorer {arch}", (python, "-m", "eval.train_segmenter", "--preset", "demo", "--arch", arch,
                                           "--out", str(out), "--threads", str(threads), *resume), skip=out.is_file))
    jobs.append(Job("evaluate", (python, str(REPO / "evaluate.py"), "--checkpoints-dir", str(checkpoints),
                                 "--runs", *(f"demo_{optim}_seed0" for optim in OPTIMIZERS),
                                 "--segmenter-dir", str(segmenters), "--out", str(results)),
                    after=tuple(job.name for job in jobs)))
    return jobs


def run_demo(jobs: int, threads: int, checkpoints: Path, results: Path) -> str:
    check_jobs_and_threads(jobs, threads)
    segmenters = checkpoints / "segmenters" / "demo"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    run_jobs(demo_jobs(checkpoints, segmenters, results, threads), jobs, threads, checkpoints / "logs" / "demo",
             env=env)
    print((results / "results.md").read_text(), flush=True)
    return f"the comparison figure: {results / 'comparison.png'}"


def main(argv=None) -> int:
    parser = option_parser(__doc__.split("\n\n")[0], prog="python -m eval.demo")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="jobs at once; default: the cores")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each job")
    parser.add_argument("--checkpoints-dir", default="checkpoints", help="folder of the demo's runs and scorers")
    parser.add_argument("--out", default="results/demo", help="the evaluation's folder")
    args = parser.parse_args(argv)
    return run_main(lambda: run_demo(args.jobs, args.threads, Path(args.checkpoints_dir), Path(args.out)))


if __name__ == "__main__":
    sys.exit(main())
