"""common/outputs.py, the output rule, and the commands that follow it: an output never overlaps an input."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.outputs import OutputError, check_apart, make_partial, recover_hidden, replace_folder

REPO = Path(__file__).resolve().parents[2]
TINY = ["--netG", "unet_32", "--ngf", "8", "--ndf", "8", "--load-size", "36", "--crop-size", "32", "--n-epochs", "1",
        "--n-epochs-decay", "1", "--num-workers", "0", "--device", "cpu"]


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _dead_pid() -> int:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def test_check_apart_compares_resolved_paths(tmp_path):
    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(data)
    for out, how in ((data, "is"), (data / "train" / "x", "is inside"), (tmp_path, "contains"), (link / "train", "is inside")):
        with pytest.raises(OutputError, match=f"--out {out}: {how} the input {data} \\(of --dataroot\\)"):
            check_apart({"--out": out}, {data: "--dataroot"})
    check_apart({"--out": tmp_path / "elsewhere"}, {data: "--dataroot"})
    check_apart({"--out": tmp_path / "data2"}, {data: "--dataroot"})  # a common prefix is not containment


def test_a_folder_is_replaced_only_once_its_successor_is_complete(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    work = make_partial(out)
    (work / "new.txt").write_text("new")
    assert (out / "old.txt").read_text() == "old"  # untouched while the successor is built
    replace_folder(work, out)
    assert _tree(out) == {"new.txt": b"new"} and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_hidden_copies_of_a_killed_command_are_restored_deleted_or_named(tmp_path):
    out = tmp_path / "out"
    pid = _dead_pid()
    old = tmp_path / f".out.replaced-{pid}-00aa11bb"
    old.mkdir()
    (old / "data.txt").write_text("previous")
    partial = tmp_path / f".out.partial-{pid}-22cc33dd"
    partial.mkdir()
    live = tmp_path / f".out.partial-{os.getpid()}-44ee55ff"  # a live writer's work is its own
    live.mkdir()
    notes = recover_hidden(out)
    assert notes == [f"{out}: deleted {partial.name}, the unfinished output of an interrupted run",
                     f"{out}: put back the previous output that an interrupted run had set aside in {old.name}"]
    assert (out / "data.txt").read_text() == "previous" and live.is_dir() and not partial.exists()


def _run(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_train_never_writes_its_run_over_its_dataset(synthetic_root, tmp_path):
    import shutil
    data = shutil.copytree(synthetic_root, tmp_path / "data")
    before = _tree(data)
    result = _run("train.py", "--dataroot", data, "--checkpoints-dir", data, "--name", "train", "--overwrite", *TINY)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: --checkpoints-dir/--name {data / 'train'}: is inside the input {data} "
                                     f"(of --dataroot); writing there would replace what it reads: choose another "
                                     f"--checkpoints-dir/--name")
    assert _tree(data) == before


def test_import_segmenter_never_writes_over_its_source(tmp_path):
    source = tmp_path / "fcn.caffemodel"
    source.write_bytes(b"\x08\x01" * 100)
    result = _run("-m", "eval.import_segmenter", "fcn8s_caffe", source, "--out", source, "--overwrite")
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: --out {source}: is the input {source} (of SOURCE)")
    assert source.read_bytes() == b"\x08\x01" * 100


def test_train_segmenter_never_puts_its_run_folder_in_the_dataset(synthetic_root, tmp_path):
    import shutil
    data = shutil.copytree(synthetic_root, tmp_path / "data")
    before = _tree(data)
    result = _run("-m", "eval.train_segmenter", "--arch", "fcn8s", "--dataroot", data, "--out", data / "train.pt",
                  "--overwrite", "--device", "cpu")
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: --out {data / 'train.pt'}: is inside the input {data} "
                                            f"(of --dataroot)"), result.stderr
    assert _tree(data) == before
