"""The built-in synthetic city: both layouts, determinism, content, learnability, cache and command line."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from data import DataError, synthetic
from data.aligned import AlignedDataset
from data.cityscapes import find_frames, label_ids_to_color, label_ids_to_train_ids
from data.street import render_scene

REPO = Path(__file__).resolve().parents[2]


def test_both_layouts_hold_the_same_scenes(synthetic_root):
    official = synthetic_root.parent / "cityscapes"
    index = json.loads((synthetic_root / "index.json").read_text())
    assert (synthetic_root / index["cityscapes_root"]).resolve() == official.resolve()
    for split, count in (("train", 4), ("val", 3)):
        frames = find_frames(official, split)
        assert len(frames) == count == len(index[split])
        for i, frame in enumerate(frames):
            photo = Image.open(frame.image)
            assert photo.mode == "RGB" and photo.size == (128, 64)
            ids = np.asarray(Image.open(frame.label_ids))
            assert ids.shape == (64, 128)
            assert np.array_equal(np.asarray(Image.open(frame.color).convert("RGB")), label_ids_to_color(ids))
            # the pix2pix pair of frame i is made from these files
            assert index[split][f"{i}.jpg"] == frame.name
            assert Image.open(synthetic_root / split / f"{i}.jpg").size == (128, 64)
            exact = np.asarray(Image.open(synthetic_root / f"{split}_trainids" / f"{i}.png"))
            assert np.array_equal(exact, label_ids_to_train_ids(ids)[:, 1::2])  # nearest 2x along x


def test_deterministic_per_seed_and_frame():
    a_photo, a_ids = render_scene(synthetic.frame_rng(5, "train", 3), 96, 48)
    b_photo, b_ids = render_scene(synthetic.frame_rng(5, "train", 3), 96, 48)
    assert np.array_equal(a_photo, b_photo) and np.array_equal(a_ids, b_ids)
    c_photo, _ = render_scene(synthetic.frame_rng(6, "train", 3), 96, 48)
    d_photo, _ = render_scene(synthetic.frame_rng(5, "val", 3), 96, 48)
    assert not np.array_equal(a_photo, c_photo) and not np.array_equal(a_photo, d_photo)


def test_a_small_set_is_the_start_of_a_larger_one(synthetic_root, tmp_path):
    small = synthetic.generate(tmp_path / "small", n_train=2, n_val=1, seed=0, size=64)
    for split, i in (("train", 0), ("train", 1), ("val", 0)):
        name = json.loads((small / "index.json").read_text())[split][f"{i}.jpg"]
        big_index = json.loads((synthetic_root / "index.json").read_text())[split]
        j = next(k for k, v in big_index.items() if v == name)
        assert (small / split / f"{i}.jpg").read_bytes() == (synthetic_root / split / j).read_bytes()


def _scenes(count, width=128, height=64, seed=0):
    return [render_scene(synthetic.frame_rng(seed, "train", i), width, height) for i in range(count)]


def test_classes_and_layout_are_cityscapes_like():
    scenes = _scenes(24)
    present = set()
    for photo, ids in scenes:
        train_ids = label_ids_to_train_ids(ids)
        present |= set(np.unique(train_ids).tolist()) - {255}
        h, w = train_ids.shape
        top, bottom_centre = train_ids[: h // 10], train_ids[int(h * 0.7):int(h * 0.85), w // 3: 2 * w // 3]
        assert np.isin(top, [2, 5, 6, 7, 8, 10]).mean() > 0.9  # sky, buildings, trees, poles up there
        assert (top == 10).any() or (top == 2).any()
        assert (bottom_centre == 0).mean() > 0.3  # road ahead (cars may stand on it)
        assert photo.dtype == np.uint8 and photo.shape == (h, w, 3)
    assert len(present) >= 12, sorted(present)
    # the frequent classes appear in most frames
    for train_id in (0, 1, 2, 5, 8, 10, 13):
        assert sum(train_id in label_ids_to_train_ids(ids) for _, ids in scenes) >= 12, train_id


def test_photos_are_textured_and_not_a_function_of_the_label():
    """labels -> photo is a real task: the label explains part of the photo, texture and instances the rest."""
    scenes = _scenes(16)
    photos = np.stack([p for p, _ in scenes]).astype(np.float64)
    train_ids = np.stack([label_ids_to_train_ids(ids) for _, ids in scenes])
    class_mean = np.zeros((256, 3))
    for k in np.unique(train_ids):
        class_mean[k] = photos[train_ids == k].mean(0)
    l1_class_mean = np.abs(photos - class_mean[train_ids]).mean()
    l1_global_mean = np.abs(photos - photos.reshape(-1, 3).mean(0)).mean()
    assert l1_class_mean < 0.85 * l1_global_mean  # the label tells a lot about the photo...
    assert l1_class_mean > 8.0  # ...but not everything (grey levels)
    # road pixels vary inside one frame (texture, markings, shadows, noise)
    photo, ids = scenes[0]
    assert photo[label_ids_to_train_ids(ids) == 0].std(0).min() > 4.0


def _pixel_features(x):
    """RGB, local means at two scales, local contrast and image row, per pixel."""
    m3 = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    m7 = F.avg_pool2d(x, 7, 1, 3, count_include_pad=False)
    sd = (F.avg_pool2d(x * x, 3, 1, 1, count_include_pad=False) - m3**2).clamp(min=0).sqrt()
    row = torch.linspace(-1, 1, x.shape[2]).view(1, 1, -1, 1).expand(x.shape[0], 1, x.shape[2], x.shape[3])
    return torch.cat([x, m3, m7, sd, row], 1).permute(0, 2, 3, 1).reshape(-1, 13)


@pytest.fixture()
def one_thread():
    """Small tensor ops run faster on one thread (and do not fight other test processes)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_a_simple_segmenter_learns_the_photos(tmp_path, one_thread):
    """A per-pixel linear classifier on local colour statistics beats the majority class by far."""
    root = synthetic.generate(tmp_path, n_train=24, n_val=8, seed=1, size=64)

    def load(phase):
        ds = AlignedDataset(root, phase, crop_size=64, train=False)
        items = [ds[i] for i in range(len(ds))]
        return _pixel_features(torch.stack([it["target"] for it in items])), torch.stack([it["label"] for it in items]).flatten()

    (x_train, y_train), (x_val, y_val) = load("train"), load("val")
    keep = y_train != 255
    x_train, y_train = x_train[keep], y_train[keep]
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    torch.manual_seed(0)
    weight = torch.zeros(13, 19, requires_grad=True)
    bias = torch.zeros(19, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=0.05)
    for _ in range(150):
        idx = torch.randint(0, len(x_train), (4096,))
        loss = F.cross_entropy((x_train[idx] - mean) / std @ weight + bias, y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = ((x_val - mean) / std @ weight + bias).argmax(1)
    valid = y_val != 255
    accuracy = (pred == y_val)[valid].float().mean().item()
    majority = (y_val[valid] == y_val[valid].mode().values).float().mean().item()
    assert accuracy > 0.7 and accuracy > majority + 0.25, (accuracy, majority)


def test_generate_is_idempotent_and_refuses_other_data(tmp_path):
    root = synthetic.generate(tmp_path, n_train=2, n_val=1, seed=0, size=32)
    stamp = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    assert synthetic.generate(tmp_path, n_train=2, n_val=1, seed=0, size=32) == root
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == stamp
    with pytest.raises(DataError, match="--overwrite"):
        synthetic.generate(tmp_path, n_train=3, n_val=1, seed=0, size=32)
    synthetic.generate(tmp_path, n_train=3, n_val=1, seed=0, size=32, overwrite=True)
    assert len(list((root / "train").iterdir())) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cityscapes", "pix2pix"]  # no partial folders


def test_default_dataset_is_generated_once_and_reused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRALGO_DATA_CACHE", str(tmp_path / "cache"))
    root = synthetic.default_dataset(size=32, n_train=3, n_val=2, seed=4)
    first = capsys.readouterr().out.strip().splitlines()
    assert len(first) == 1 and "generated" in first[0] and str(root) in first[0]
    assert root.is_absolute() and root.parent.parent == (tmp_path / "cache").resolve()
    assert "s32" in root.parent.name and "train3" in root.parent.name and "seed4" in root.parent.name
    assert len(AlignedDataset(root, "val", crop_size=32, train=False)) == 2

    assert synthetic.default_dataset(size=32, n_train=3, n_val=2, seed=4) == root
    second = capsys.readouterr().out.strip().splitlines()
    assert len(second) == 1 and "using" in second[0] and "generated" not in second[0]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [root.parent.name]


def test_command_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "data.synthetic", "--out", str(tmp_path), "--train-frames", "2",
               "--val-frames", "1", "--seed", "3", "--size", "32"]
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1].startswith("wrote 2 train / 1 val")
    assert len(AlignedDataset(tmp_path / "pix2pix", "train", load_size=36, crop_size=32)) == 2
    run = subprocess.run(command[:-1] + ["48"], capture_output=True, text=True, env=env, cwd=REPO)
    assert run.returncode == 2 and run.stderr.startswith("error: ") and len(run.stderr.strip().splitlines()) == 1
    run = subprocess.run(command[:-3] + ["-3", "--size", "32"], capture_output=True, text=True, env=env, cwd=REPO)
    assert run.returncode == 2 and run.stderr.strip() == "error: --seed must be in [0, 2^31), got -3"


def test_the_command_names_the_folders_it_leaves(tmp_path):
    """Every path the command prints exists when it is done: none is its hidden work folder."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "data.synthetic", "--out", str(tmp_path / "city"), "--train-frames",
                          "2", "--val-frames", "1", "--size", "32"], capture_output=True, text=True, env=env, cwd=REPO)
    assert run.returncode == 0, run.stderr
    named = [word.strip(",()") for word in run.stdout.split() if str(tmp_path) in word]
    assert sorted(named) == [str(tmp_path / "city" / "cityscapes"), str(tmp_path / "city" / "pix2pix")], run.stdout
    assert all(Path(path).is_dir() for path in named) and ".partial" not in run.stdout + run.stderr


@pytest.mark.parametrize("size", [8, 31])
def test_a_size_below_the_bound_is_refused_before_any_frame_is_drawn(tmp_path, capsys, size):
    assert synthetic.main(["--out", str(tmp_path / "city"), "--train-frames", "1", "--val-frames", "1", "--size",
                           str(size)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --size must be >= 32 (smaller halves blend the resized colour labels' classes on so many pixels "
        f"that they no longer read as label images), got {size}")
    assert not (tmp_path / "city").exists()


def test_former_spellings_of_the_frame_counts_still_work_with_a_note(tmp_path, capsys):
    assert synthetic.main(["--out", str(tmp_path), "--train", "2", "--val", "1", "--size", "32"]) == 0
    assert capsys.readouterr().err.splitlines()[:2] == ["note: --train is now spelled --train-frames",
                                                        "note: --val is now spelled --val-frames"]
    assert len(AlignedDataset(tmp_path / "pix2pix", "train", load_size=36, crop_size=32)) == 2


def test_a_cached_dataset_is_reused_without_loading_the_renderer(tmp_path, monkeypatch):
    """train.py's default-data path: with the dataset cached, data.street and OpenCV are never imported
    (and the probe does see them once frames are drawn)."""
    monkeypatch.setenv("TRALGO_DATA_CACHE", str(tmp_path / "cache"))
    cached = synthetic.default_dataset(size=32, n_train=2, n_val=1, seed=0, verbose=False)
    probe = ("import sys\n"
             "from data.synthetic import default_dataset, generate\n"
             "loaded = lambda: sorted(m for m in sys.modules if m == 'cv2' or m.split('.')[:2] == ['data', 'street'])\n"
             "print(default_dataset(size=32, n_train=2, n_val=1, seed=0, verbose=False), loaded())\n"
             f"generate({str(tmp_path / 'drawn')!r}, n_train=1, n_val=1, size=32)\n"
             "print(loaded())\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=REPO)
    assert run.returncode == 0, run.stderr
    reused, drawn = run.stdout.strip().splitlines()
    assert reused == f"{cached} []"
    assert "'cv2'" in drawn and "'data.street'" in drawn
