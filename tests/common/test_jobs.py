"""The job runner with small child processes whose progress is told by files (no timing): side by side,
in dependency order, pinned threads, a failure that stops the others, signals passed on once."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.command_line import InputError
from common.jobs import Job, JobFailed, run_jobs

REPO = Path(__file__).resolve().parents[2]
# A child: records its pid and thread variables, says it started, then either waits for another job's
# mark (exit 0, or argv[5] if given) or blocks until a signal. On a signal it "saves" for 0.5 s (a second
# copy of the signal would be recorded meanwhile), writes the signals it got and exits 128 + the first.
CHILD = """
import os, signal, sys, time
from pathlib import Path
marks, name, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
received = []
for s in (signal.SIGINT, signal.SIGTERM):
    signal.signal(s, lambda signum, frame: received.append(signum))
print(f"{name}: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}", flush=True)
(marks / f"{name}.pid").write_text(str(os.getpid()))
(marks / f"{name}.started").touch()
deadline = time.monotonic() + 60
while not received and time.monotonic() < deadline:
    if mode == "wait" and (marks / sys.argv[4]).exists():
        (marks / f"{name}.done").touch()
        print(f"{name}: finished", flush=True)
        sys.exit(int(sys.argv[5]) if len(sys.argv) > 5 else 0)
    time.sleep(0.02)
if not received:
    sys.exit(99)  # waited in vain
time.sleep(0.5)
(marks / f"{name}.signals").write_text(" ".join(signal.Signals(s).name for s in received))
print(f"{name}: saved", flush=True)
sys.exit(128 + received[0])
"""


def child(marks: Path, name: str, mode: str, *args) -> tuple[str, ...]:
    return (sys.executable, "-c", CHILD, str(marks), name, mode, *map(str, args))


def test_jobs_run_side_by_side_after_their_dependencies_with_pinned_threads(tmp_path):
    # a and b each wait until the other has started: they finish only if they run at the same time.
    jobs = [Job("a", child(tmp_path, "a", "wait", "b.started")), Job("b", child(tmp_path, "b", "wait", "a.started")),
            Job("c", child(tmp_path, "c", "wait", "a.done"), after=("a", "b")),
            Job("d", child(tmp_path, "d", "wait", "never"), skip=lambda: True)]
    lines = []
    run_jobs(jobs, parallel=2, threads=3, log_dir=tmp_path / "logs", say=lines.append)
    assert all((tmp_path / f"{name}.done").exists() for name in "abc")
    assert not (tmp_path / "d.started").exists() and any(line.endswith("] d: up to date") for line in lines)
    assert (tmp_path / "b.done").stat().st_mtime_ns <= (tmp_path / "c.started").stat().st_mtime_ns
    log = (tmp_path / "logs" / "a.log").read_text()
    assert "a: OMP_NUM_THREADS=3" in log and log.startswith("$ ")
    assert sum(line.startswith("[") and "done in" in line for line in lines) == 3
    assert any(line.endswith("c: finished") for line in lines)  # the end line carries the job's last line


def test_a_failed_job_stops_the_others_which_save(tmp_path):
    jobs = [Job("fails", child(tmp_path, "fails", "wait", "blocks.started", 3)),
            Job("blocks", child(tmp_path, "blocks", "block")),
            Job("later", child(tmp_path, "later", "wait", "fails.done"))]
    lines = []
    with pytest.raises(JobFailed) as failure:
        run_jobs(jobs, parallel=2, threads=1, log_dir=tmp_path / "logs", say=lines.append)
    message = str(failure.value)
    assert message.startswith("fails: failed with exit status 3 (fails: finished); its log: ")
    assert "\n" not in message and str(tmp_path / "logs" / "fails.log") in message
    assert (tmp_path / "blocks.signals").read_text() == "SIGTERM"  # stopped once, cleanly
    assert not (tmp_path / "later.started").exists()  # nothing new starts after a failure
    assert any(line.startswith("blocks: stopped after") and "saved" in line for line in lines)


DRIVER = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from common.command_line import run_main
from common.jobs import Job, run_jobs
marks = Path(sys.argv[1])
child = sys.argv[2]
jobs = [Job(n, (sys.executable, "-c", child, str(marks), n, "block")) for n in ("one", "two", "three")]
sys.exit(run_main(lambda: run_jobs(jobs, parallel=2, threads=1, log_dir=marks / "logs")))
""".format(repo=str(REPO))


def wait_for(paths, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"no {paths} after {timeout} s"
        time.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("signum,whole_group", [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_a_signal_is_passed_on_once_to_every_running_job(tmp_path, signum, whole_group):
    """SIGTERM to the runner (a scheduler), or SIGINT to its whole process group (Ctrl-C in a terminal):
    each running job gets it exactly once, saves and stops; no new job starts; one line, exit 128 + N."""
    process = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), CHILD], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=whole_group)
    wait_for([tmp_path / "one.started", tmp_path / "two.started"], process)
    (os.killpg if whole_group else os.kill)(process.pid, signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signum, err
    name = signal.Signals(signum).name
    assert err.strip().splitlines() == [f"interrupted by {name}: 3 of 3 jobs not done (those running saved and "
                                        f"stopped); the same command resumes"]
    for job in ("one", "two"):
        assert (tmp_path / f"{job}.signals").read_text() == name
        assert gone(int((tmp_path / f"{job}.pid").read_text()))
    assert not (tmp_path / "three.started").exists()
    assert f"{name}: passed on to 2 running job(s)" in out


def test_bad_counts_are_refused():
    with pytest.raises(InputError, match="--jobs must be >= 1, got 0"):
        run_jobs([], parallel=0, threads=1, log_dir=Path("unused"))
    with pytest.raises(InputError, match="--threads must be >= 1, got 0"):
        run_jobs([], parallel=1, threads=0, log_dir=Path("unused"))
    with pytest.raises(ValueError, match="unknown dependencies"):
        run_jobs([Job("a", ("true",), after=("b",))], parallel=1, threads=1, log_dir=Path("unused"))
