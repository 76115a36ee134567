"""``make demo``: Adam and TRAdam runs and both demo scorers on the built-in city, side by side, then Tables 2-3.

    python -m experiments.demo [--jobs N] [--threads T] [--inception-weights PATH]

Four independent jobs (:mod:`common.jobs`), ``--jobs`` at once with ``--threads`` CPU threads each:
``train.py --preset demo --optim adam|tradam`` into ``checkpoints/demo_<optim>_seed0`` and
``python -m eval.train_segmenter --preset demo --arch fcn8s|deeplabv3plus_resnet18`` into
``checkpoints/segmenters/demo/``; then ``evaluate.py`` on the two runs into ``results/demo/``, whose tables
are printed, with FID/KID where torch-fidelity's InceptionV3 file can be had (``--inception-weights``, its
cache or a download; else one line says they were skipped). The Inception features are computed by one
``evaluate.py --fidelity-only`` job per run beside the others and kept in ``checkpoints/.features/``.
Finished runs and scorers are reused, unfinished ones resumed; logs go to ``checkpoints/logs/demo/``. SIGINT/SIGTERM are passed on to the running jobs (they save; exit 130/143).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from common.command_line import option_parser, run_main
from common.jobs import Job, check_jobs_and_threads, default_jobs, log_name, run_jobs
from eval.fidelity import find_inception_weights, skip_line
from eval.segmenters.training import run_path
from gan.run_files import is_finished

REPO = Path(__file__).resolve().parents[1]
RUN_OPTIMIZERS = ("adam", "tradam")  # one demo run each
SCORERS = ("deeplabv3plus_resnet18", "fcn8s")
KID_SUBSET_SIZE = 25  # of the built-in city's 50 validation frames
FEATURES_DIR = ".features"  # in the checkpoints folder (a dot folder: evaluate.py looks past it for runs)


def demo_jobs(checkpoints: Path, segmenters: Path, results: Path, threads: int,
              inception_weights: Path | None = None) -> list[Job]:
    """The demo's jobs: DeepLabV3+'s training, the two runs and FCN-8s's training (independent; listed
    longest first, so that no core idles long at the end), then the evaluation. With ``inception_weights``
    also a FID/KID job per run once it is trained, listed after those so that it fills a core they leave
    idle: it computes the Inception features of the run's val images (the first one also those of the real
    photos) into a cache the evaluation reads back."""
    python = sys.executable
    cache = checkpoints / FEATURES_DIR
    fidelity = () if inception_weights is None else (
        "--fid", "--kid", "--kid-subset-size", str(KID_SUBSET_SIZE), "--inception-weights", str(inception_weights),
        "--inception-cache", str(cache / "inception"))
    scorers = {}
    for arch in SCORERS:
        out = segmenters / f"{arch}.pt"
        resume = ("--resume",) if (run_path(out) / "latest.pt").is_file() else ()
        scorers[arch] = Job(f"scorer {arch}", (python, "-m", "eval.train_segmenter", "--preset", "demo", "--arch", arch,
                                               "--out", str(out), "--threads", str(threads), *resume), skip=out.is_file)
    runs = []
    for optim in RUN_OPTIMIZERS:
        latest = checkpoints / f"demo_{optim}_seed0" / "latest.pt"
        runs.append(Job(f"train demo_{optim}_seed0", (
            python, str(REPO / "train.py"), "--preset", "demo", "--optim", optim, "--checkpoints-dir", str(checkpoints),
            "--threads", str(threads), "--resume" if latest.is_file() else "--overwrite"),
            skip=lambda latest=latest: is_finished(latest)))
    jobs = [scorers["deeplabv3plus_resnet18"], *runs, scorers["fcn8s"]]
    evaluate = (python, str(REPO / "evaluate.py"), "--checkpoints-dir", str(checkpoints))
    if inception_weights is not None:
        for previous, optim in zip((None, *RUN_OPTIMIZERS), RUN_OPTIMIZERS):  # the first computes the real photos' too
            jobs.append(Job(f"fidelity demo_{optim}_seed0", (
                *evaluate, "--runs", f"demo_{optim}_seed0", "--fidelity-only", "--out", str(cache / optim), *fidelity),
                after=(f"train demo_{optim}_seed0", *([f"fidelity demo_{previous}_seed0"] if previous else []))))
    jobs.append(Job("evaluate", (*evaluate, "--runs", *(f"demo_{optim}_seed0" for optim in RUN_OPTIMIZERS),
                                 "--segmenter-dir", str(segmenters), "--out", str(results), *fidelity),
                    after=tuple(job.name for job in jobs)))
    return jobs


def skipped_tables(log: Path, offset: int) -> str:
    """The "skipping ..." lines the evaluation wrote to its log past ``offset`` (e.g. DRN-D-105 without
    the users' file)."""
    if not log.is_file():
        return ""
    with open(log, "rb") as file:
        file.seek(offset)
        lines = file.read().decode(errors="replace").splitlines()
    return "".join(line + "\n" for line in lines if line.startswith("skipping"))


def run_demo(jobs: int, threads: int, checkpoints: Path, results: Path, inception_weights: str | None) -> str:
    check_jobs_and_threads(jobs, threads)
    weights, origin = find_inception_weights(inception_weights)
    if weights is None:
        print(skip_line(origin), flush=True)
    segmenters, logs = checkpoints / "segmenters" / "demo", checkpoints / "logs" / "demo"
    evaluate_log = logs / log_name("evaluate")
    logged_before = evaluate_log.stat().st_size if evaluate_log.is_file() else 0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    run_jobs(demo_jobs(checkpoints, segmenters, results, threads, weights), jobs, threads, logs, env=env)
    print(skipped_tables(evaluate_log, logged_before), end="", flush=True)
    print((results / "results.md").read_text(), flush=True)
    return f"the comparison figure: {results / 'comparison.png'}"


def main(argv=None) -> int:
    parser = option_parser(__doc__.split("\n\n")[0], prog="python -m experiments.demo")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="jobs at once; default: the cores")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each job")
    parser.add_argument("--checkpoints-dir", default="checkpoints", help="folder of the demo's runs and scorers")
    parser.add_argument("--out", default="results/demo", help="the evaluation's folder")
    parser.add_argument("--inception-weights", default=None, metavar="PATH",
                        help="torch-fidelity's InceptionV3 file for FID/KID (default: its cache, else a download)")
    args = parser.parse_args(argv)
    return run_main(lambda: run_demo(args.jobs, args.threads, Path(args.checkpoints_dir), Path(args.out),
                                     args.inception_weights))


if __name__ == "__main__":
    sys.exit(main())
