"""``make scorers``: train the demo's two segmenters again, side by side, into the folder they ship in.

    python -m experiments.scorers [--jobs N] [--threads T] [--out checkpoints/segmenters/demo]

The shipped files (``checkpoints/segmenters/demo/fcn8s.pt`` and ``deeplabv3plus_resnet10t.pt``, weights in
float16) are what ``make demo`` and the seeds study score with; nothing trains them unless asked. Each is
``python -m eval.train_segmenter --preset demo --arch ARCH`` on the built-in city (its provenance, ground-truth
row and weights' SHA-256 are in its metadata); an existing file is replaced once its successor is trained.
Then ``<out>/README.md`` lists what the files are, and the line printed last says how long it took.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from common.command_line import option_parser, run_main
from common.files import write_text
from common.jobs import Job, check_jobs_and_threads, default_jobs, duration, run_jobs, with_python_path
from eval.markdown import markdown_table, number_cell
from eval.metrics import METRICS
from eval.segmenters.files import load_segmenter
from eval.segmenters.training import run_path

REPO = Path(__file__).resolve().parents[1]
DEMO_SEGMENTERS = ("deeplabv3plus_resnet10t", "fcn8s")  # the longer one first
SHIPPED = Path("checkpoints") / "segmenters" / "demo"  # run from the checkout: its files record no machine path


def scorer_jobs(out: Path, threads: int) -> list[Job]:
    """One training per demo segmenter into ``out`` (resumed where a run of it was stopped)."""
    jobs = []
    for arch in DEMO_SEGMENTERS:
        path = out / f"{arch}.pt"
        how = "--resume" if (run_path(path) / "latest.pt").is_file() else "--overwrite"
        jobs.append(Job(f"segmenter {arch}", (sys.executable, "-m", "eval.train_segmenter", "--preset", "demo",
                                              "--arch", arch, "--out", str(path), "--threads", str(threads), how)))
    return jobs


def shipped_summary(out: Path) -> str:
    """``<out>/README.md``: each shipped file with its size, weights' SHA-256, ground-truth row and provenance."""
    rows, lines = [], []
    for arch in DEMO_SEGMENTERS:
        path = out / f"{arch}.pt"
        _, meta = load_segmenter(path, arch)
        training = meta["training"]
        rows.append([f"`{path.name}`", meta["display_name"], f"{path.stat().st_size / 1e6:.1f}",
                     *(number_cell(meta["val_scores"][key]) for key, _ in METRICS)])
        lines.append(f"- `{path.name}`: `{training['command']}`; weights {meta['storage_dtype']}, SHA-256 "
                     f"`{meta['weights_sha256']}`; code {training.get('code_revision')}; "
                     f"{training['machine']['device']}, torch {training['machine']['torch']}, "
                     f"{training['machine']['threads']} thread(s); {training['started_at']} to {training['finished_at']}.")
    table = markdown_table(["File", "Segmenter", "MB", *(name for _, name in METRICS)], rows)
    return "\n\n".join(["# The demo's segmenters, shipped", "Made by `make scorers` (`python -m experiments.scorers`), "
                        "read by `make demo` and the seeds study. Ground-truth row: the real val photos of the "
                        "built-in city, scored with the weights as stored.", table, "\n".join(lines)]) + "\n"


def make_scorers(jobs: int, threads: int, out: Path) -> str:
    check_jobs_and_threads(jobs, threads)
    started = time.monotonic()
    run_jobs(scorer_jobs(out, threads), jobs, threads, out.parent / "logs" / out.name, env=with_python_path(REPO))
    write_text(out / "README.md", shipped_summary(out))
    return f"trained the demo's segmenters into {out} in {duration(time.monotonic() - started)}; see {out / 'README.md'}"


def main(argv=None) -> int:
    parser = option_parser(__doc__.split("\n\n")[0], prog="python -m experiments.scorers")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="trainings at once; default: the cores")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each training")
    parser.add_argument("--out", default=str(SHIPPED), help="the folder of the demo's segmenters")
    args = parser.parse_args(argv)
    return run_main(lambda: make_scorers(args.jobs, args.threads, Path(args.out)))


if __name__ == "__main__":
    sys.exit(main())
