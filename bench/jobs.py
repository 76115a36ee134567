"""Training runs side by side: what one run with 2 threads, one with 1 thread and two 1-thread runs at
once give on this machine (the case for ``--jobs N --threads 1`` in the study and ``make demo``).

    python bench/jobs.py [--steps 300] [--repeats 2]

Each variant runs real ``train.py --preset demo --max-steps STEPS`` commands through common.jobs (the
same runner and process start-up in every variant), round-robin over ``--repeats`` rounds; the table gives
the median wall time per variant, the runs finished per minute and both as ratios to the baseline, one
run with 2 threads (what ``make demo`` did before). Times include each process's start-up; on a machine
shared with other work they move from round to round, so compare ratios, not seconds.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common.jobs import Job, run_jobs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VARIANTS = (("1 job x 2 threads (baseline)", 1, 2), ("1 job x 1 thread", 1, 1), ("2 jobs x 1 thread", 2, 1))


def timed(parallel: int, threads: int, steps: int, folder: Path) -> float:
    """Wall time of ``parallel`` demo runs of ``steps`` steps at once, ``threads`` threads each."""
    jobs = [Job(f"seed{seed}", (sys.executable, str(REPO / "train.py"), "--preset", "demo", "--max-steps", str(steps),
                                "--seed", str(seed), "--checkpoints-dir", str(folder), "--overwrite",
                                "--threads", str(threads), "--noise-freq", "0"))
            for seed in range(parallel)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    run_jobs(jobs, parallel, threads, folder / "logs", env=env, say=lambda line: None)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over the variants")
    args = parser.parse_args()
    times = {name: [] for name, _, _ in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        timed(1, 1, 1, Path(tmp) / "warmup")  # the built-in city exists, files are cached
        for _ in range(args.repeats):
            for name, parallel, threads in VARIANTS:
                times[name].append(timed(parallel, threads, args.steps, Path(tmp) / name.replace(" ", "_")))
    print(f"train.py --preset demo --max-steps {args.steps}, {os.cpu_count()} cores, median of {args.repeats} "
          f"rounds (wall time includes process start-up)\n")
    print("| variant | wall time (s) | runs per minute | wall time vs baseline | throughput vs baseline |")
    print("|---|---:|---:|---:|---:|")
    base_time = statistics.median(times[VARIANTS[0][0]])
    base_rate = VARIANTS[0][1] * 60 / base_time
    for name, parallel, _ in VARIANTS:
        wall = statistics.median(times[name])
        rate = parallel * 60 / wall
        print(f"| {name} | {wall:.1f} | {rate:.2f} | {wall / base_time:.2f}x | {rate / base_rate:.2f}x |")


if __name__ == "__main__":
    main()
