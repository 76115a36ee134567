"""Run independent commands side by side: at most ``parallel`` at once, each pinned to ``threads`` threads.

    jobs = [Job("train a", (python, "train.py", ...)), Job("score a", (...), after=("train a",))]
    run_jobs(jobs, parallel=2, threads=1, log_dir=Path("logs"))

On a small machine one process using every core is slower than as many one-thread processes side by
side, and a fixed thread count per process (:mod:`common.threads`) keeps every number independent of how
many jobs run at once. The contract:

* a job starts once every job named in its ``after`` has succeeded, in the order given otherwise; a job
  whose ``skip`` returns True when its turn comes (its outputs are up to date) is not run;
* each job's output (stdout and stderr) goes to ``<log_dir>/<name>.log`` (appended to, so a resumed job
  keeps its history); the console gets one line when a job starts, one when it ends (with its last output
  line) and, every ``interval`` seconds, one line per running job with its latest output line;
* a job that fails stops the others: no new job starts, the running ones get SIGTERM (the project's
  commands then save where they are and exit), and :class:`JobFailed` names the failed job, its exit status,
  its last output line and its log. The same call run again resumes: it is the caller's jobs that know how
  to continue (``train.py --resume``);
* SIGINT and SIGTERM to this process are forwarded to every running job (which run in their own process
  groups, so a Ctrl-C in a terminal reaches each of them once, through here); no new job starts, and once
  every running job has exited :class:`common.interrupts.Stopped` reports it (exit 130 / 143). A second
  signal is forwarded too (the project's commands then stop at once, keeping their last checkpoint).
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from common.command_line import InputError
from common.interrupts import STOP_SIGNALS, Stopped, signal_name
from common.threads import thread_env


@dataclass(frozen=True)
class Job:
    """One command: ``name`` (unique; also its log's name), its argv (or a function returning it when the
    job starts, for commands naming files that earlier jobs write), the jobs it waits for, an optional
    check made when its turn comes that says its outputs are already up to date, and the exit statuses that
    count as done."""
    name: str
    command: tuple[str, ...] | Callable[[], tuple[str, ...]]
    after: tuple[str, ...] = ()
    skip: Callable[[], bool] | None = None
    done_statuses: tuple[int, ...] = (0,)  # exit statuses that count as done (a study counts a diverged run)


class JobFailed(InputError):
    """A job exited with a non-zero status; the message is one line naming it and its log."""


def with_python_path(root: Path, env: dict | None = None) -> dict:
    """``env`` (default: this process's environment) with ``root`` first on PYTHONPATH, so that jobs started
    from any folder import the project of ``root``."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env


def default_jobs() -> int:
    """The number of cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_jobs_and_threads(jobs: int, threads: int) -> None:
    """InputError naming --jobs or --threads when either is below 1."""
    for name, value in (("--jobs", jobs), ("--threads", threads)):
        if value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")


def log_name(name: str) -> str:
    """A job name as a file name (``/`` and spaces replaced)."""
    return "".join(c if c.isalnum() or c in "-_.:" else "_" for c in name) + ".log"


def last_line(path: Path, limit: int = 4096) -> str:
    """The last non-empty line of a text file ('' when there is none)."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - limit))
            lines = f.read().decode(errors="replace").replace("\r", "\n").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class _Running:
    """A started job: its process, log file and start time."""

    def __init__(self, job: Job, process: subprocess.Popen, log, log_path: Path):
        self.job, self.process, self.log, self.log_path = job, process, log, log_path
        self.started = time.monotonic()
        self.forwarded = 0  # signals passed on to it


class JobRunner:
    """The state of one :func:`run_jobs` call (see the module docstring)."""

    def __init__(self, jobs: Sequence[Job], parallel: int, threads: int, log_dir: Path, env: dict | None,
                 interval: float, say: Callable[[str], None]):
        names = [job.name for job in jobs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        unknown = sorted({a for job in jobs for a in job.after if a not in names})
        if duplicates or unknown:
            raise ValueError(f"jobs: duplicate names {duplicates} or unknown dependencies {unknown}")
        check_jobs_and_threads(parallel, threads)
        self.waiting = list(jobs)
        self.parallel, self.threads, self.log_dir, self.interval, self.say = parallel, threads, log_dir, interval, say
        self.env = {**(os.environ if env is None else env), **thread_env(threads)}
        self.running: list[_Running] = []
        self.succeeded: set[str] = set()
        self.failed: tuple[Job, int, Path] | None = None
        self.stop_signal: int | None = None   # the first SIGINT/SIGTERM received
        self.signals: list[int] = []           # every one received, in order
        self.announced = False
        self.total = len(jobs)

    # ------------------------------------------------------------------ signals
    def _record(self, signum: int, frame=None) -> None:
        """The signal handler: only records (the loop passes the signal on within 0.1 s)."""
        self.stop_signal = self.stop_signal or signum
        self.signals.append(signum)

    def _pass_on(self) -> None:
        """Each running job gets every signal this process received since it started, once."""
        if not self.signals:
            return
        if not self.announced and self.running:
            self.announced = True
            self.say(f"{signal_name(self.signals[0])}: passed on to {len(self.running)} running job(s); waiting "
                     f"for them to save and stop")
        for running in self.running:
            while running.forwarded < len(self.signals) and running.process.poll() is None:
                running.process.send_signal(self.signals[running.forwarded])
                running.forwarded += 1

    # ------------------------------------------------------------------ jobs
    def _ready(self) -> Job | None:
        for job in self.waiting:
            if all(a in self.succeeded for a in job.after):
                return job
        return None

    def _start(self, job: Job) -> None:
        self.waiting.remove(job)
        if job.skip is not None and job.skip():
            self.succeeded.add(job.name)
            self.say(f"[{len(self.succeeded)}/{self.total}] {job.name}: up to date")
            return
        argv = [str(part) for part in (job.command() if callable(job.command) else job.command)]
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / log_name(job.name)
        log = open(log_path, "ab")
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=self.env, start_new_session=True)
        self.running.append(_Running(job, process, log, log_path))
        self.say(f"{job.name}: started ({self.threads} thread{'s' if self.threads > 1 else ''}; log {log_path})")

    def _reap(self) -> None:
        for running in list(self.running):
            code = running.process.poll()
            if code is None:
                continue
            running.log.close()
            self.running.remove(running)
            took = duration(time.monotonic() - running.started)
            tail = last_line(running.log_path)
            if code in running.job.done_statuses:
                self.succeeded.add(running.job.name)
                self.say(f"[{len(self.succeeded)}/{self.total}] {running.job.name}: done in {took}: {tail}")
            elif self.stop_signal is not None or self.failed is not None:
                self.say(f"{running.job.name}: stopped after {took} (exit status {code}): {tail}")
            else:
                self.failed = (running.job, code, running.log_path)
                self.say(f"{running.job.name}: FAILED after {took} (exit status {code}): {tail}")
                self._forward_failure()

    def _forward_failure(self) -> None:
        for running in self.running:
            if running.process.poll() is None:
                running.process.send_signal(signal.SIGTERM)
        if self.running:
            self.say(f"stopping the {len(self.running)} other running job(s); each saves where it is")

    def _report(self) -> None:
        for running in self.running:
            self.say(f"  {running.job.name} ({duration(time.monotonic() - running.started)}): "
                     f"{last_line(running.log_path)}")

    def run(self) -> None:
        installed = {}
        if threading.current_thread() is threading.main_thread():
            installed = {s: signal.signal(s, self._record) for s in STOP_SIGNALS}
        try:
            self._loop()
        finally:
            for signum, handler in installed.items():
                signal.signal(signum, handler)
            for running in self.running:  # only after an unexpected error: leave nothing behind
                running.process.kill()
                running.process.wait()
                running.log.close()
        if self.failed is not None:
            job, code, log_path = self.failed
            tail = last_line(log_path)
            raise JobFailed(f"{job.name}: failed with exit status {code}" + (f" ({tail})" if tail else "")
                            + f"; its log: {log_path}; the jobs that were running saved and stopped, and the "
                              f"same command resumes")
        if self.stop_signal is not None:
            raise Stopped(f"interrupted by {signal_name(self.stop_signal)}: {self.total - len(self.succeeded)} "
                          f"of {self.total} jobs not done (those running saved and stopped); the same command "
                          f"resumes", self.stop_signal)
        if self.waiting:  # dependencies that can never be met (a cycle)
            raise ValueError(f"jobs: {[job.name for job in self.waiting]} wait for each other")

    def _loop(self) -> None:
        next_report = time.monotonic() + self.interval
        while True:
            self._pass_on()
            self._reap()
            stopping = self.stop_signal is not None or self.failed is not None
            while not stopping and len(self.running) < self.parallel:
                job = self._ready()
                if job is None:
                    break
                self._start(job)
            if not self.running and (stopping or self._ready() is None):
                return
            if time.monotonic() >= next_report:
                self._report()
                next_report = time.monotonic() + self.interval
            time.sleep(0.1)


def run_jobs(jobs: Sequence[Job], parallel: int, threads: int, log_dir: Path, env: dict | None = None,
             interval: float = 60.0, say: Callable[[str], None] | None = None) -> None:
    """Run ``jobs`` as the module docstring says; returns when all succeeded, raises JobFailed or Stopped."""
    JobRunner(jobs, parallel, threads, Path(log_dir), env, interval, say or (lambda line: print(line, flush=True))).run()
