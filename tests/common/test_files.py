"""common/files.py: write_atomic's cleanup touches only the temporary files of writers that are gone."""
import subprocess
import sys

from common.files import write_atomic, write_text


def test_stale_temporaries_of_dead_writers_go_those_of_live_writers_stay(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead_tmp = tmp_path / f".results.json.{gone.pid}.abc123.tmp"
        live_tmp = tmp_path / f".results.json.{live.pid}.def456.tmp"  # another writer, still writing
        other = tmp_path / ".results.json.notes.tmp"  # not one of write_atomic's names
        for path in (dead_tmp, live_tmp, other):
            path.write_text("partial")
        write_text(tmp_path / "results.json", "{}")
        assert not dead_tmp.exists() and live_tmp.read_text() == "partial" and other.exists()
        assert (tmp_path / "results.json").read_text() == "{}"
    finally:
        live.kill()
        live.wait()


def test_an_error_without_a_file_name_is_given_the_destination(tmp_path):
    def fail(file):
        raise OSError(28, "No space left on device")

    try:
        write_atomic(tmp_path / "out.bin", fail)
    except OSError as error:
        assert error.filename == str(tmp_path / "out.bin") and error.errno == 28
    else:
        raise AssertionError("no error")
    assert list(tmp_path.iterdir()) == []
