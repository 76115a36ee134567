"""Training a segmenter on tiny synthetic photos: beats chance, saves metadata, resumes exactly."""
import numpy as np
import pytest
import torch
from PIL import Image

import eval.train_segmenter as ts
from eval.segmenters import load_segmenter, read_segmenter_file

TINY = ["--arch", "fcn8s", "--config", "width_mult=0.0625", "--config", "batch_norm=true", "--workers", "0",
        "--crop-size", "64", "--load-size", "72", "--batch-size", "4"]


def majority_baseline(root):
    """Per-pixel and per-class accuracy of always predicting the most frequent val class."""
    counts = np.zeros(256, dtype=np.int64)
    for path in sorted((root / "val_trainids").glob("*.png")):
        counts += np.bincount(np.asarray(Image.open(path)).ravel(), minlength=256)
    counts = counts[:19]
    present = int((counts > 0).sum())
    return counts.max() / counts.sum(), 1 / present


def test_a_few_steps_beat_chance_and_save_everything(synthetic_root, tmp_path, capsys):
    out = tmp_path / "fcn8s.pt"
    assert ts.main(TINY + ["--dataroot", str(synthetic_root), "--out", str(out), "--epochs", "30",
                           "--lr", "3e-3", "--pretrained-backbone"]) == 0
    printed = capsys.readouterr().out
    assert "training from scratch" in printed  # no ImageNet weights for a width-scaled VGG16
    assert f"wrote segmenter {out}" in printed
    assert not ts.resume_path(out).exists()

    model, meta = load_segmenter(out, "fcn8s")
    pixel_chance, class_chance = majority_baseline(synthetic_root)
    scores = meta["val_scores"]
    assert scores["pixel_acc"] > pixel_chance + 0.1
    assert scores["class_acc"] > 1.5 * class_chance
    assert meta["train_resolution"] == [64, 64]
    assert meta["trained_on"]["dataroot"] == str(synthetic_root.resolve())
    assert meta["trained_on"]["train_frames"] == 4 and meta["trained_on"]["val_frames"] == 3
    assert meta["config"] == {"width_mult": 0.0625, "batch_norm": True}
    assert meta["training"]["backbone"] == "random initialisation"
    assert "per-pixel acc" in printed and "| road |" in printed

    # the saved val scores are those of the saved weights on the real val photos
    from data.aligned import AlignedDataset
    val = AlignedDataset(synthetic_root, "val", crop_size=64, train=False, flip=False)
    photos = torch.stack([val[i]["target"] for i in range(len(val))])
    photos = ((photos + 1) * 127.5).round() / 127.5 - 1
    labels = torch.stack([val[i]["label"] for i in range(len(val))])
    pred = model.predict(photos)
    keep = labels != 255
    assert (pred[keep] == labels[keep]).double().mean().item() == pytest.approx(scores["pixel_acc"], abs=1e-9)


def test_resume_continues_the_same_trajectory(synthetic_root, tmp_path, monkeypatch):
    args = TINY + ["--dataroot", str(synthetic_root), "--epochs", "3", "--max-val-frames", "1"]
    straight = tmp_path / "straight" / "fcn8s.pt"
    assert ts.main(args + ["--out", str(straight)]) == 0

    resumed = tmp_path / "resumed" / "fcn8s.pt"
    real_save = ts.save_segmenter

    def crash_after_first_epoch(path, model, meta, extra=None):
        real_save(path, model, meta, extra)
        if extra and extra["train_state"]["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(ts, "save_segmenter", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        ts.main(args + ["--out", str(resumed)])
    monkeypatch.setattr(ts, "save_segmenter", real_save)
    partial = ts.resume_path(resumed)
    assert partial.is_file() and not resumed.exists()
    assert read_segmenter_file(partial)["train_state"]["epoch"] == 1

    assert ts.main(args + ["--out", str(resumed), "--resume"]) == 0
    a, b = read_segmenter_file(straight)["state_dict"], read_segmenter_file(resumed)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)

    # --resume on a finished segmenter keeps it
    before = resumed.stat().st_mtime_ns
    assert ts.main(args + ["--out", str(resumed), "--resume"]) == 0
    assert resumed.stat().st_mtime_ns == before

    # resuming with other settings is refused in one line
    monkeypatch.setattr(ts, "save_segmenter", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        ts.main(args + ["--out", str(resumed)])
    monkeypatch.setattr(ts, "save_segmenter", real_save)
    assert ts.main(args + ["--out", str(resumed), "--resume", "--lr", "0.1"]) == 2


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert ts.main(["--arch", "fcn8s", "--dataroot", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nowhere" in err and "\n" not in err
    assert ts.main(["--arch", "fcn8s", "--config", "width=2", "--dataroot", str(tmp_path)]) == 2
    assert "width_mult" in capsys.readouterr().err


def test_demo_preset_fills_defaults_and_explicit_options_win():
    args = ts.parse_args(["--arch", "fcn8s", "--preset", "demo", "--epochs", "2", "--config", "width_mult=0.5"])
    preset = ts.PRESETS["demo"]["fcn8s"]
    assert args.epochs == 2 and args.crop_size == preset["crop_size"]
    config = ts.parse_config("fcn8s", args.config)
    assert config.width_mult == 0.5 and config.batch_norm is True
