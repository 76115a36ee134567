"""Official Cityscapes layout -> pix2pix layout (data.prepare), checked against independent computations."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label
from PIL import Image

from data import DataError
from data import prepare as prep

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def official(synthetic_root, tmp_path):
    """A private copy of the official-layout synthetic frames (train 4 at 128x64, val 3)."""
    root = tmp_path / "cityscapes"
    shutil.copytree(synthetic_root.parent / "cityscapes", root)
    return root


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name or ".old-" in p.name)


def test_output_matches_the_reference_recipe(official, tmp_path):
    out = prep.prepare(official, tmp_path / "out", size=32, show_progress=False)
    index = json.loads((out / "index.json").read_text())
    # frames in sorted path order, numbered from 0 like the reference script
    photos = sorted(official.glob("leftImg8bit/train/*/*_leftImg8bit.png"))
    expected_names = [p.name.replace("_leftImg8bit.png", "") for p in photos]
    assert index["train"] == {f"{i}.jpg": name for i, name in enumerate(expected_names)}
    assert len(index["val"]) == 3 and index["size"] == 32
    assert (out / index["cityscapes_root"]).resolve() == official.resolve()

    to_train_id = np.array([id2label[i].trainId if 0 <= id2label[i].trainId < 19 else 255 for i in range(34)])
    for i, photo_path in enumerate(photos):
        pair = np.asarray(Image.open(out / "train" / f"{i}.jpg"), dtype=np.int32)
        assert pair.shape == (32, 64, 3)
        name = photo_path.name.replace("_leftImg8bit.png", "")
        label_path = official / "gtFine" / "train" / photo_path.parent.name / f"{name}_gtFine_color.png"
        photo = Image.open(photo_path).convert("RGB").resize((32, 32), Image.Resampling.BICUBIC)
        colour = Image.open(label_path).convert("RGB").resize((32, 32), Image.Resampling.BICUBIC)
        expected = np.concatenate([np.asarray(photo), np.asarray(colour)], 1).astype(np.int32)
        assert np.abs(pair - expected).mean() < 1.0 and np.abs(pair - expected).max() <= 16  # JPEG q100, 4:4:4

        ids_path = label_path.parent / f"{name}_gtFine_labelIds.png"
        ids = np.asarray(Image.open(ids_path))
        rows = (np.arange(32) * ids.shape[0] / 32 + ids.shape[0] / 64).astype(int)  # nearest: pixel centres
        cols = (np.arange(32) * ids.shape[1] / 32 + ids.shape[1] / 64).astype(int)
        expected_train_ids = to_train_id[ids[np.ix_(rows, cols)]]
        assert np.array_equal(np.asarray(Image.open(out / "train_trainids" / f"{i}.png")), expected_train_ids)


def test_idempotent_and_refuses_to_overwrite_different_output(official, tmp_path, capsys):
    out = tmp_path / "out"
    prep.prepare(official, out, size=32, show_progress=False)
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    prep.prepare(official, out, size=32)  # same input, same size: nothing to do
    assert "nothing to do" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamp

    with pytest.raises(DataError) as info:
        prep.prepare(official, out, size=48, show_progress=False)
    assert str(info.value).startswith(str(out)) and "--overwrite" in str(info.value)
    assert json.loads((out / "index.json").read_text())["size"] == 32  # untouched

    prep.prepare(official, out, size=48, overwrite=True, show_progress=False)
    assert json.loads((out / "index.json").read_text())["size"] == 48
    assert Image.open(out / "val" / "0.jpg").size == (96, 48)
    assert _leftovers(tmp_path) == []

    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("someone else's folder")
    with pytest.raises(DataError, match="--overwrite"):
        prep.prepare(official, stranger, size=32, show_progress=False)


def test_interrupted_run_leaves_nothing_complete(official, tmp_path, monkeypatch):
    calls = []
    real = prep.convert_frame

    def flaky(frame, size):
        calls.append(frame.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(frame, size)

    monkeypatch.setattr(prep, "convert_frame", flaky)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare(official, tmp_path / "out", size=32, show_progress=False)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_corrupt_photo_is_named_and_nothing_is_written(official, tmp_path):
    photo = next(official.glob("leftImg8bit/val/*/*.png"))
    data = photo.read_bytes()
    photo.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError) as info:
        prep.prepare(official, tmp_path / "out", size=32, show_progress=False)
    assert str(info.value).startswith(str(photo)) and "\n" not in str(info.value)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_bad_inputs_are_named(official, tmp_path):
    photo = sorted(official.glob("leftImg8bit/train/*/*.png"))[0]
    name = photo.name.replace("_leftImg8bit.png", "")
    label_dir = official / "gtFine" / "train" / photo.parent.name
    color = label_dir / f"{name}_gtFine_color.png"
    ids = label_dir / f"{name}_gtFine_labelIds.png"

    Image.open(photo).convert("L").save(photo)
    with pytest.raises(DataError, match=f"{name}_leftImg8bit.png: expected an RGB photo"):
        prep.prepare(official, tmp_path / "a", size=32, show_progress=False)
    Image.open(color).convert("RGB").save(photo)  # restore an RGB photo

    Image.open(sorted(official.glob("leftImg8bit/val/*/*.png"))[0]).save(color)  # a "colour label" that is a photo
    with pytest.raises(DataError, match=f"{name}_gtFine_color.png: not a Cityscapes colour label"):
        prep.prepare(official, tmp_path / "b", size=32, show_progress=False)
    color.unlink()  # no colour file at all: drawn from the label ids instead

    original_ids = np.asarray(Image.open(ids))
    Image.fromarray(np.full_like(original_ids, 200)).save(ids)
    with pytest.raises(DataError, match=f"{name}_gtFine_labelIds.png: holds value 200"):
        prep.prepare(official, tmp_path / "c", size=32, show_progress=False)
    Image.fromarray(original_ids[:, :10]).save(ids)
    with pytest.raises(DataError, match=f"{name}_gtFine_labelIds.png: size"):
        prep.prepare(official, tmp_path / "d", size=32, show_progress=False)
    Image.fromarray(original_ids).save(ids)
    out = prep.prepare(official, tmp_path / "e", size=32, show_progress=False)
    assert _leftovers(tmp_path) == []

    from data.cityscapes import color_to_train_ids
    pair = np.asarray(Image.open(out / "train" / "0.jpg").convert("RGB"))
    exact = np.asarray(Image.open(out / "train_trainids" / "0.png"))
    assert (color_to_train_ids(pair[:, 32:]) == exact).mean() > 0.8


def test_unpaired_frames_are_refused(official, tmp_path):
    ids = sorted(official.glob("gtFine/val/*/*_labelIds.png"))[1]
    ids.unlink()
    with pytest.raises(DataError, match="unpaired"):
        prep.prepare(official, tmp_path / "out", size=32, show_progress=False)
    assert not (tmp_path / "out").exists()


def test_command_line(official, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "data.prepare", "--cityscapes", str(official), "--out",
                          str(tmp_path / "out"), "--size", "32"], capture_output=True, text=True, env=env, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1].startswith("wrote 4 train / 3 val frames")
    run = subprocess.run([sys.executable, "-m", "data.prepare", "--cityscapes", str(tmp_path / "none"), "--out",
                          str(tmp_path / "out2")], capture_output=True, text=True, env=env, cwd=REPO)
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and len(run.stderr.strip().splitlines()) == 1


def test_changed_sources_are_noticed_and_leftovers_of_a_killed_run_removed(official, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--cityscapes", str(official), "--out", str(out), "--size", "32"]
    assert prep.main(argv) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("wrote 4 train / 3 val frames")
    assert prep.main(argv) == 0
    printed = capsys.readouterr().out
    assert "nothing to do" in printed and "wrote" not in printed

    # a label map whose content changed (same name): all road now
    ids = sorted(official.glob("gtFine/train/*/*_labelIds.png"))[0]
    Image.fromarray(np.full_like(np.asarray(Image.open(ids)), 7)).save(ids)  # label id 7 = road
    os.utime(ids, ns=(ids.stat().st_atime_ns, ids.stat().st_mtime_ns + 10**9))
    frame = json.loads((out / "index.json").read_text())["train"]
    index = next(int(k[:-4]) for k, v in frame.items() if ids.name.startswith(v))
    assert (np.asarray(Image.open(out / "train_trainids" / f"{index}.png")) != 0).any()
    assert prep.main(argv) == 0
    assert "input files changed" in capsys.readouterr().out
    assert (np.asarray(Image.open(out / "train_trainids" / f"{index}.png")) == 0).all()  # road = trainId 0

    # the work folder of a run that was killed (its process is gone) is removed by the next run
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    leftover = tmp_path / f".out.partial-{gone.pid}-0a1b2c3d"
    (leftover / "train").mkdir(parents=True)
    assert prep.main(argv) == 0
    assert _leftovers(tmp_path) == []


def test_size_is_checked_before_any_work(official, tmp_path, capsys):
    assert prep.main(["--cityscapes", str(official), "--out", str(tmp_path / "out"), "--size", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--size" in err and "\n" not in err
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def run_prepare(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "data.prepare", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", [".", "gtFine", "leftImg8bit/train", "parent"])
def test_an_output_that_overlaps_the_input_is_refused_and_the_input_kept(official, where):
    """--out the --cityscapes folder, one of its input folders, inside one, or a folder holding them."""
    before = _tree(official)
    out = official.parent if where == "parent" else official / where
    run = run_prepare("--cityscapes", official, "--out", out, "--size", "32", "--overwrite")
    assert run.returncode == 2, run.stdout + run.stderr
    line = run.stderr.strip()
    assert "\n" not in line and line.startswith(f"error: --out {out}: ") and "(of --cityscapes)" in line
    assert _tree(official) == before


def test_an_output_beside_the_inputs_in_the_same_root_is_fine(official):
    run = run_prepare("--cityscapes", official, "--out", official / "pix2pix", "--size", "32")
    assert run.returncode == 0, run.stderr
    assert (official / "pix2pix" / "index.json").is_file() and (official / "gtFine").is_dir()


def test_a_size_beyond_the_bound_is_refused_before_reading_anything(tmp_path):
    run = run_prepare("--cityscapes", tmp_path / "none", "--out", tmp_path / "out", "--size", "100000")
    assert run.returncode == 2
    assert run.stderr.strip() == ("error: --size must be <= 4096 (a frame of side S takes about 20 S^2 bytes "
                                  "while it is converted), got 100000")


@pytest.mark.parametrize("size", [1, 4, 31])
def test_a_size_below_the_bound_is_refused_with_the_reason_before_reading_anything(official, tmp_path, size):
    """Below 32 the resized colour labels no longer read as labels: refused, not blamed on a valid input."""
    run = run_prepare("--cityscapes", official, "--out", tmp_path / "out", "--size", size)
    assert run.returncode == 2
    assert run.stderr.strip() == (f"error: --size must be >= 32 (smaller halves blend the resized colour labels' "
                                  f"classes on so many pixels that they no longer read as label images), got {size}")
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_the_smallest_size_gives_a_dataset_that_reads(official, tmp_path):
    run = run_prepare("--cityscapes", official, "--out", tmp_path / "out", "--size", 32)
    assert run.returncode == 0, run.stderr
    from data.aligned import AlignedDataset
    for phase, count in (("train", 4), ("val", 3)):
        for train in (False, True):
            dataset = AlignedDataset(tmp_path / "out", phase, load_size=36, crop_size=32, train=train)
            assert [dataset[i]["label"].shape for i in range(len(dataset))] == [(32, 32)] * count


def test_a_previous_output_set_aside_by_a_killed_run_is_put_back_and_named(official, tmp_path):
    out = tmp_path / "out"
    assert run_prepare("--cityscapes", official, "--out", out, "--size", "32").returncode == 0
    before = _tree(out)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    aside = tmp_path / f".out.replaced-{gone.pid}-0a1b2c3d"
    out.rename(aside)  # killed between moving the old output aside and renaming its successor in
    run = run_prepare("--cityscapes", official, "--out", out, "--size", "32")
    assert run.returncode == 0, run.stderr
    assert f"put back the previous output that an interrupted run had set aside in {aside.name}" in run.stdout
    assert "nothing to do" in run.stdout and _tree(out) == before and not aside.exists()


def test_an_unreadable_photo_starts_its_own_line_after_the_progress_bar(official, tmp_path):
    photo = sorted(official.glob("leftImg8bit/val/*/*.png"))[-1]
    photo.write_bytes(b"")
    run = run_prepare("--cityscapes", official, "--out", tmp_path / "out", "--size", "32")
    assert run.returncode == 2
    assert f"\nerror: {photo}: " in run.stderr  # not glued to the bar's last line
    assert not (tmp_path / "out").exists()
