"""``make demo``: an Adam and a TRAdam run on the built-in city, side by side, then Tables 2-3 by the shipped
demo segmenters.

    python -m experiments.demo [--jobs N] [--threads T] [--inception-weights PATH]

Two independent jobs (:mod:`common.jobs`), ``--jobs`` at once with ``--threads`` CPU threads each:
``train.py --preset demo --optim adam|tradam`` into ``checkpoints/demo_<optim>_seed0``; then ``evaluate.py``
on the two runs into ``results/demo/`` (the demo's own: replaced at each call) with the segmenters shipped in ``checkpoints/segmenters/demo/``
(``make scorers`` trains them again; the demo never does), whose tables are printed, with FID/KID where
torch-fidelity's InceptionV3 file can be had (``--inception-weights``, its cache or a download; else one
line says they were skipped). The Inception features are computed by one ``evaluate.py --fidelity-only``
job per run beside the others and kept in ``checkpoints/.features/``. Finished runs are reused, unfinished
ones resumed; logs go to ``checkpoints/logs/demo/``. SIGINT/SIGTERM are passed on to the running jobs (they
save; exit 130/143).
"""
from __future__ import annotations

import sys
from pathlib import Path

from common.command_line import InputError, option_parser, run_main
from common.jobs import Job, check_jobs_and_threads, default_jobs, run_jobs, with_python_path
from common.outputs import check_apart
from eval.fidelity import find_inception_weights, skip_line
from experiments.scorers import DEMO_SEGMENTERS
from gan.run_files import is_finished

REPO = Path(__file__).resolve().parents[1]
RUN_OPTIMIZERS = ("adam", "tradam")  # one demo run each
SHIPPED_SEGMENTERS = REPO / "checkpoints" / "segmenters" / "demo"
KID_SUBSET_SIZE = 25  # of the built-in city's 50 validation frames
FEATURES_DIR = ".features"  # in the checkpoints folder (a dot folder: evaluate.py looks past it for runs)


def demo_jobs(checkpoints: Path, segmenters: Path, results: Path, threads: int,
              inception_weights: Path | None = None) -> list[Job]:
    """The demo's jobs: the two runs (independent), then the evaluation. With ``inception_weights`` also a
    FID/KID job per run once it is trained: it computes the Inception features of the run's val images (the
    first one also those of the real photos) into a cache the evaluation reads back."""
    python = sys.executable
    cache = checkpoints / FEATURES_DIR
    fidelity = () if inception_weights is None else (
        "--fid", "--kid", "--kid-subset-size", str(KID_SUBSET_SIZE), "--inception-weights", str(inception_weights),
        "--inception-cache", str(cache / "inception"))
    jobs = []
    for optim in RUN_OPTIMIZERS:
        latest = checkpoints / f"demo_{optim}_seed0" / "latest.pt"
        jobs.append(Job(f"train demo_{optim}_seed0", (
            python, str(REPO / "train.py"), "--preset", "demo", "--optim", optim, "--checkpoints-dir", str(checkpoints),
            "--threads", str(threads), "--resume" if latest.is_file() else "--overwrite"),
            skip=lambda latest=latest: is_finished(latest)))
    evaluate = (python, str(REPO / "evaluate.py"), "--checkpoints-dir", str(checkpoints))
    if inception_weights is not None:
        for previous, optim in zip((None, *RUN_OPTIMIZERS), RUN_OPTIMIZERS):  # the first computes the real photos' too
            jobs.append(Job(f"fidelity demo_{optim}_seed0", (
                *evaluate, "--runs", f"demo_{optim}_seed0", "--fidelity-only", "--out", str(cache / optim),
                "--overwrite", *fidelity),
                after=(f"train demo_{optim}_seed0", *([f"fidelity demo_{previous}_seed0"] if previous else []))))
    jobs.append(Job("evaluate", (*evaluate, "--runs", *(f"demo_{optim}_seed0" for optim in RUN_OPTIMIZERS),
                                 "--segmenter-dir", str(segmenters), "--segmenters", *DEMO_SEGMENTERS[::-1],
                                 "--out", str(results), "--overwrite", *fidelity),
                    after=tuple(job.name for job in jobs)))
    return jobs


def check_before_starting(checkpoints: Path, results: Path, segmenters: Path) -> None:
    """One line (InputError) for what would fail only once the runs are trained: the segmenters missing, an
    output folder that cannot be one, an output inside the segmenters' folder."""
    missing = [arch for arch in DEMO_SEGMENTERS if not (segmenters / f"{arch}.pt").is_file()]
    if missing:
        raise InputError(f"{segmenters}: the demo's segmenters are missing ({', '.join(missing)}); `make scorers` "
                         f"trains them")
    for option, folder in (("--checkpoints-dir", checkpoints), ("--out", results)):
        blocked = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
        if blocked is not None:
            raise InputError(f"{option} {folder}: {blocked} exists and is not a folder")
    check_apart({"--out": results}, {segmenters: "--segmenter-dir"})  # the runs sit beside the segmenters


def run_demo(jobs: int, threads: int, checkpoints: Path, results: Path, segmenters: Path,
             inception_weights: str | None) -> str:
    check_jobs_and_threads(jobs, threads)
    check_before_starting(checkpoints, results, segmenters)
    weights, origin = find_inception_weights(inception_weights)
    if weights is None:
        print(skip_line(origin), flush=True)
    run_jobs(demo_jobs(checkpoints, segmenters, results, threads, weights), jobs, threads,
             checkpoints / "logs" / "demo", env=with_python_path(REPO))
    print((results / "results.md").read_text(), flush=True)
    return f"the comparison figure: {results / 'comparison.png'}"


def main(argv=None) -> int:
    parser = option_parser(__doc__.split("\n\n")[0], prog="python -m experiments.demo")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="jobs at once; default: the cores")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each job")
    parser.add_argument("--checkpoints-dir", default="checkpoints", help="folder of the demo's runs")
    parser.add_argument("--segmenter-dir", default=str(SHIPPED_SEGMENTERS),
                        help="folder of the demo's segmenters (the shipped ones; `make scorers` trains them again)")
    parser.add_argument("--out", default="results/demo", help="the evaluation's folder")
    parser.add_argument("--inception-weights", default=None, metavar="PATH",
                        help="torch-fidelity's InceptionV3 file for FID/KID (default: its cache, else a download)")
    args = parser.parse_args(argv)
    return run_main(lambda: run_demo(args.jobs, args.threads, Path(args.checkpoints_dir), Path(args.out),
                                     Path(args.segmenter_dir), args.inception_weights))


if __name__ == "__main__":
    sys.exit(main())
