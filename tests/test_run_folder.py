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
