"""common/run_folder.py: locks, and an --overwrite that is undone when the new run fails or is killed early."""
import pytest

from common.run_folder import RunFolder, RunFolderError, RunLock


def make_run(path, step="1"):
    path.mkdir(parents=True)
    (path / "latest.pt").write_text(step)
    (path / "options.json").write_text("{}")
    return path


def test_overwrite_puts_the_old_run_back_when_the_new_one_fails(tmp_path):
    old = make_run(tmp_path / "run")
    run = RunFolder(old)
    run.claim(resume=False, overwrite=True)
    assert (old / "latest.pt").read_text() == "1"  # nothing replaced before start()
    run.start()
    assert not (old / "latest.pt").exists() and len(list(tmp_path.glob(".run.replaced-*"))) == 1
    (old / "options.json").write_text("new")
    assert "back in place" in run.close(failed=True)
    assert (old / "latest.pt").read_text() == "1" and (old / "options.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_killed_overwrite_is_undone_by_the_next_claim(tmp_path, capsys):
    old = make_run(tmp_path / "run")
    run = RunFolder(old)
    run.claim(resume=False, overwrite=True)
    run.start()
    run.lock.release()  # what the kernel does when the process is killed
    run._aside_lock.release()
    again = RunFolder(old)
    again.claim(resume=True, overwrite=False)
    assert "put back the run" in capsys.readouterr().out
    assert (old / "latest.pt").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    again.close(failed=False)


def test_a_killed_overwrite_that_had_saved_keeps_the_new_run(tmp_path):
    old = make_run(tmp_path / "run")
    run = RunFolder(old)
    run.claim(resume=False, overwrite=True)
    run.start()
    (old / "latest.pt").write_text("new")  # its first checkpoint, then killed before the old run was deleted
    run.lock.release()
    run._aside_lock.release()
    RunFolder(old).claim(resume=True, overwrite=False)
    assert (old / "latest.pt").read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_one_holder_at_a_time_and_a_run_that_never_saved_is_no_obstacle(tmp_path):
    path = make_run(tmp_path / "run")
    first = RunFolder(path)
    first.claim(resume=True, overwrite=False)
    with pytest.raises(RunFolderError, match="in use by process"):
        RunFolder(path).claim(resume=True, overwrite=False)
    assert RunLock.is_held(path)
    first.close(failed=False)
    assert not RunLock.is_held(path)

    never_saved = tmp_path / "never_saved"
    (never_saved / "events").mkdir(parents=True)
    (never_saved / "options.json").write_text("{}")
    run = RunFolder(never_saved)
    run.claim(resume=False, overwrite=False)  # logs of a run without a checkpoint do not block a new one
    run.start()
    run.commit()
    run.close(failed=False)
    assert not (never_saved / "options.json").exists() and not list(tmp_path.glob(".never_saved*"))

    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("not a run")
    with pytest.raises(RunFolderError, match="run exists"):
        RunFolder(stranger).claim(resume=False, overwrite=False)


# ------------------------------------------------------------------------- through train.py's command line
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = ["--netG", "unet_32", "--ngf", "8", "--ndf", "8", "--load-size", "36", "--crop-size", "32", "--n-epochs", "1",
        "--n-epochs-decay", "1", "--num-workers", "0", "--device", "cpu"]
# train.main with two pauses a test controls through files in $MARKS: with PAUSE_START, RunFolder.start
# waits (after touching "at_start") until "go" exists; with PAUSE_FIRST_SAVE, the first checkpoint write
# stops half way (after touching "saving") for 60 s. With FULL_DISK=<name>, writing <name> fails as on a full disk.
DRIVER = """
import io, os, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
import torch
import train
from common.run_folder import RunFolder
marks = Path(os.environ["MARKS"])
real_start, real_save = RunFolder.start, torch.save

def paused_start(self):
    (marks / "at_start").touch()
    while not (marks / "go").exists():
        time.sleep(0.01)
    return real_start(self)

def paused_save(obj, f):
    buffer = io.BytesIO()
    real_save(obj, buffer)
    data = buffer.getvalue()
    f.write(data[: len(data) // 2])
    (marks / "saving").touch()
    time.sleep(60)
    f.write(data[len(data) // 2:])

real_fsync = os.fsync

def full_disk_fsync(fd):  # the disk fills up while a file named in $FULL_DISK is written
    if "." + os.environ["FULL_DISK"] + "." in os.readlink("/proc/self/fd/%d" % fd):
        raise OSError(28, os.strerror(28))
    return real_fsync(fd)

if os.environ.get("FULL_DISK"):
    os.fsync = full_disk_fsync
if os.environ.get("PAUSE_START"):
    RunFolder.start = paused_start
if os.environ.get("PAUSE_FIRST_SAVE"):
    torch.save = paused_save
sys.exit(train.main(sys.argv[1:]))
""".format(repo=str(REPO))


def start_driver(args, marks: Path, **env):
    marks.mkdir(exist_ok=True)
    return subprocess.Popen([sys.executable, "-c", DRIVER, *map(str, args)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, MARKS=str(marks), **env))


def wait_for(path: Path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.01)
    return True


def run_train(*args):
    return subprocess.run([sys.executable, str(REPO / "train.py"), *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_two_trainers_started_at_once_on_a_new_name_one_goes_ahead_and_no_run_is_lost(synthetic_root, tmp_path):
    """Both are past their claim before either has put its folder in place (the start of each is held)."""
    args = ["--dataroot", synthetic_root, "--checkpoints-dir", tmp_path, "--name", "race", *TINY, "--max-steps", "2"]
    first = start_driver(args + ["--seed", "1"], tmp_path / "m1", PAUSE_START="1")
    assert wait_for(tmp_path / "m1" / "at_start", first), first.communicate()
    second = start_driver(args + ["--seed", "2"], tmp_path / "m2", PAUSE_START="1")
    second_paused = wait_for(tmp_path / "m2" / "at_start", second)
    (tmp_path / "m1" / "go").touch()
    (tmp_path / "m2" / "go").touch()
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert (first.returncode, second.returncode) == (0, 2), outputs  # not both: one run would be lost
    assert not second_paused  # the second was refused at its claim, before any work
    err = outputs[1][1].strip()
    assert err == (f"error: {tmp_path / 'race'}: in use by process {first.pid} on {os.uname().nodename}; one process "
                   f"at a time writes a run (wait for it to end or stop it)")
    checkpoint = torch.load(tmp_path / "race" / "latest.pt", weights_only=True)
    assert checkpoint["options"]["seed"] == 1 and checkpoint["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("m")) == ["race"]


def test_an_overwrite_killed_by_two_sigterms_in_its_first_save_gives_the_old_run_back(synthetic_root, tmp_path):
    args = ["--dataroot", synthetic_root, "--checkpoints-dir", tmp_path, "--name", "run", *TINY]
    assert run_train(*args, "--max-steps", "2").returncode == 0
    run = tmp_path / "run"
    old = torch.load(run / "latest.pt", weights_only=True)
    process = start_driver(args + ["--overwrite", "--seed", "5"], tmp_path / "marks", PAUSE_FIRST_SAVE="1")
    assert wait_for(tmp_path / "marks" / "saving", process), process.communicate()
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    assert process.returncode == 143
    assert list(run.glob(".latest.pt.*.tmp"))  # the abandoned write is there
    assert len(list(tmp_path.glob(".run.replaced-*"))) == 1  # and the old run is hidden

    resumed = run_train(*args, "--resume", "--max-steps", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{run}: put back the run that an interrupted --overwrite had set aside" in resumed.stdout
    new = torch.load(run / "latest.pt", weights_only=True)
    assert new["step"] == 3 and new["options"]["seed"] == old["options"]["seed"] == 0
    assert not list(tmp_path.glob(".run.*"))


def test_overwrite_through_a_symlinked_run_folder_replaces_its_target(synthetic_root, tmp_path):
    target = tmp_path / "elsewhere" / "real_run"
    target.parent.mkdir()
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    link = checkpoints / "run"
    args = ["--dataroot", synthetic_root, "--checkpoints-dir", checkpoints, "--name", "run", *TINY]
    target.mkdir()
    link.symlink_to(target)
    assert run_train(*args, "--max-steps", "1").returncode == 0
    assert (target / "latest.pt").is_file()
    again = run_train(*args, "--max-steps", "2", "--overwrite", "--seed", "3")
    assert again.returncode == 0, again.stderr
    assert f"--overwrite: deleted the previous run at {link}" in again.stdout
    assert link.is_symlink() and link.resolve() == target.resolve()
    checkpoint = torch.load(target / "latest.pt", weights_only=True)
    assert checkpoint["step"] == 2 and checkpoint["options"]["seed"] == 3
    assert sorted(p.name for p in checkpoints.iterdir()) == ["run"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["real_run"]


def test_a_full_disk_at_start_names_the_file(synthetic_root, tmp_path):
    args = ["--dataroot", synthetic_root, "--checkpoints-dir", tmp_path, "--name", "run", *TINY]
    process = start_driver(args, tmp_path / "marks", FULL_DISK="options.json")
    err = process.communicate(timeout=300)[1]
    assert process.returncode == 2
    assert err.strip() == f"error: {tmp_path / 'run' / 'options.json'}: No space left on device"
    assert not list((tmp_path / "run").glob(".options.json.*"))
