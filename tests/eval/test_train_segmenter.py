"""Training a segmenter on tiny synthetic photos: beats chance, saves metadata, resumes exactly (also after
SIGTERM), never overwrites a segmenter by accident, checks its options."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import eval.segmenters.training as seg_training
import eval.train_segmenter as ts
from eval.segmenters.files import load_segmenter, read_segmenter_file
from eval.segmenters.registry import REGISTRY

TINY = ["--arch", "fcn8s", "--config", "width_mult=0.0625", "--config", "batch_norm=true", "--num-workers", "0",
        "--crop-size", "64", "--load-size", "72", "--batch-size", "4"]
REPO = Path(__file__).resolve().parents[2]
# eval.train_segmenter in a process of its own whose batches take 0.3 s; $MARKS/batch<n> marks the n-th batch.
DRIVER = """
import os, sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
import eval.segmenters.training as seg_training
import eval.train_segmenter as ts
marks, calls, real_jitter = Path(os.environ["MARKS"]), [0], seg_training.jitter_colors

def slow_jitter(*args, **kwargs):
    calls[0] += 1
    (marks / f"batch{{calls[0]}}").touch()
    time.sleep(0.3)
    return real_jitter(*args, **kwargs)

seg_training.jitter_colors = slow_jitter
sys.exit(ts.main(sys.argv[1:]))
""".format(repo=str(REPO))


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
    assert ts.main(TINY + ["--dataroot", str(synthetic_root), "--out", str(out), "--n-epochs", "30",
                           "--lr", "3e-3", "--pretrained-backbone"]) == 0
    printed = capsys.readouterr().out
    assert "training from scratch" in printed  # no ImageNet weights for a width-scaled VGG16
    assert f"wrote segmenter {out}" in printed
    assert not seg_training.run_path(out).exists()

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


def test_a_segmenter_trained_above_the_data_size_scores_the_photos_at_the_data_size(synthetic_root, tmp_path):
    """Trained on 64 px photos upsampled to 96 px, its saved val scores are those of the 64 px photos and
    labels (the ground-truth row evaluate.py prints), the network seeing them at 96 px."""
    out = tmp_path / "fcn8s.pt"
    args = [*TINY, "--crop-size", "96", "--load-size", "104", "--dataroot", str(synthetic_root),
            "--out", str(out), "--n-epochs", "2"]
    assert ts.main(args) == 0
    model, meta = load_segmenter(out, "fcn8s")
    assert meta["train_resolution"] == [96, 96]

    from data.aligned import AlignedDataset
    val = AlignedDataset(synthetic_root, "val", load_size=64, crop_size=64, train=False, flip=False)  # as stored
    labels = torch.stack([val[i]["label"] for i in range(len(val))])
    assert labels.shape[-2:] == (64, 64)
    photos = torch.stack([val[i]["target"] for i in range(len(val))])
    pred = model.predict(((photos + 1) * 127.5).round() / 127.5 - 1)
    assert pred.shape == labels.shape
    keep = labels != 255
    assert (pred[keep] == labels[keep]).double().mean().item() == pytest.approx(meta["val_scores"]["pixel_acc"],
                                                                                abs=1e-9)


def test_resume_continues_the_same_trajectory(synthetic_root, tmp_path, monkeypatch):
    args = TINY + ["--dataroot", str(synthetic_root), "--n-epochs", "3", "--max-val-frames", "1"]
    straight = tmp_path / "straight" / "fcn8s.pt"
    assert ts.main(args + ["--out", str(straight)]) == 0

    resumed = tmp_path / "resumed" / "fcn8s.pt"
    crash_after_first_epoch(monkeypatch, args + ["--out", str(resumed)])
    latest = seg_training.run_path(resumed) / "latest.pt"
    assert latest.is_file() and not resumed.exists()
    assert read_segmenter_file(latest)["train_state"]["epoch"] == 1

    assert ts.main(args + ["--out", str(resumed), "--resume"]) == 0
    a, b = read_segmenter_file(straight)["state_dict"], read_segmenter_file(resumed)["state_dict"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)

    # --resume on a finished segmenter keeps it
    before = resumed.stat().st_mtime_ns
    assert ts.main(args + ["--out", str(resumed), "--resume"]) == 0
    assert resumed.stat().st_mtime_ns == before

    # resuming with other settings is refused in one line
    crash_after_first_epoch(monkeypatch, args + ["--out", str(resumed), "--overwrite"])
    assert ts.main(args + ["--out", str(resumed), "--resume", "--lr", "0.1"]) == 2

    # a latest.pt changed on disk since its save is refused, not continued from
    data = bytearray(latest.read_bytes())
    data[len(data) * 3 // 5] ^= 0x40
    latest.write_bytes(bytes(data))
    assert ts.main(args + ["--out", str(resumed), "--resume"]) == 2


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert ts.main(["--arch", "fcn8s", "--dataroot", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nowhere" in err and "\n" not in err
    assert ts.main(["--arch", "fcn8s", "--config", "width=2", "--dataroot", str(tmp_path)]) == 2
    assert "width_mult" in capsys.readouterr().err


def test_demo_preset_fills_defaults_and_explicit_options_win():
    args = ts.parse_args(["--arch", "fcn8s", "--preset", "demo", "--n-epochs", "2", "--config", "width_mult=0.5"])
    preset = REGISTRY["fcn8s"].presets["demo"]
    assert args.n_epochs == 2 and args.crop_size == preset["crop_size"]
    config = seg_training.parse_config("fcn8s", args.config)
    assert config.width_mult == 0.5 and config.batch_norm is True


def crash_after_first_epoch(monkeypatch, args):
    """Run ``args`` until latest.pt of epoch 1 is written, then stop as an interrupt would."""
    real_save = seg_training.save_segmenter

    def save(path, model, meta, extra=None):
        real_save(path, model, meta, extra)
        if extra and extra["train_state"]["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(seg_training, "save_segmenter", save)
    with pytest.raises(KeyboardInterrupt):
        ts.main(args)
    monkeypatch.setattr(seg_training, "save_segmenter", real_save)


class StopHere(Exception):
    pass


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")  # weights need no values on meta
def test_resumed_optimizer_state_lives_on_the_training_device(synthetic_root, tmp_path, monkeypatch):
    """--resume on a GPU: the AdamW moments must be where the parameters are when the first step runs
    (the meta device stands in for CUDA)."""
    args = TINY + ["--dataroot", str(synthetic_root), "--n-epochs", "2", "--out", str(tmp_path / "fcn8s.pt")]
    crash_after_first_epoch(monkeypatch, args)
    seen = {}

    def first_step(job, *rest):
        seen["params"] = {p.device.type for p in job.model.parameters()}
        seen["state"] = {t.device.type for s in job.optimizer.state.values() for t in s.values()
                         if torch.is_tensor(t) and t.dim() > 0}
        raise StopHere

    monkeypatch.setattr(seg_training, "resolve_device", lambda name: torch.device("meta"))
    monkeypatch.setattr(seg_training, "train_one_epoch", first_step)
    with pytest.raises(StopHere):
        ts.main(args + ["--resume"])
    assert seen["params"] == {"meta"} and seen["state"] == {"meta"}


def test_training_reads_the_loss_back_rarely(synthetic_root, tmp_path, monkeypatch):
    """Reading a loss value waits for the GPU; an epoch of 4 steps reads it once (the progress bar shows
    the epoch's mean loss), not once per step."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class LossReads(TorchDispatchMode):
        """Reads of floating-point values other than AdamW's own step counters (CPU tensors)."""

        def __init__(self, optimizer):
            super().__init__()
            self.optimizer, self.reads = optimizer, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default and args[0].is_floating_point():
                if not any(args[0] is s.get("step") for s in self.optimizer.state.values()):
                    self.reads += 1
            return func(*args, **(kwargs or {}))

    real_epoch, reads = seg_training.train_one_epoch, []

    def counted_epoch(job, *rest):
        with LossReads(job.optimizer) as counter:
            real_epoch(job, *rest)
        reads.append(counter.reads)

    monkeypatch.setattr(seg_training, "train_one_epoch", counted_epoch)
    args = TINY + ["--dataroot", str(synthetic_root), "--n-epochs", "2", "--batch-size", "1", "--max-val-frames", "1",
                   "--out", str(tmp_path / "fcn8s.pt")]
    assert ts.main(args) == 0
    assert reads == [1, 1]


def test_sigterm_saves_within_the_epoch_and_resume_is_bit_identical(synthetic_root, tmp_path):
    args = TINY + ["--dataroot", str(synthetic_root), "--n-epochs", "2", "--batch-size", "1", "--max-val-frames", "1"]
    straight = tmp_path / "straight" / "fcn8s.pt"
    assert ts.main(args + ["--out", str(straight)]) == 0

    out, marks = tmp_path / "stopped" / "fcn8s.pt", tmp_path / "marks"
    marks.mkdir()
    process = subprocess.Popen([sys.executable, "-c", DRIVER, *args, "--out", str(out)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, MARKS=str(marks)))
    deadline = time.monotonic() + 240
    while not (marks / "batch2").exists():  # the second of 4 batches of epoch 1 is under way
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=120)[1].strip()
    assert process.returncode == 143
    latest = seg_training.run_path(out) / "latest.pt"
    state = read_segmenter_file(latest)["train_state"]
    assert (state["epoch"], state["epoch_step"]) in ((0, 2), (0, 3))  # the batch under way was finished
    command = shlex.join(["python", "-m", "eval.train_segmenter", *args, "--out", str(out), "--resume"])
    assert err == (f"interrupted by SIGTERM: {latest} holds step {state['step']} (epoch 1/2 up to batch "
                   f"{state['epoch_step']}/4); continue with {command}")
    assert not out.exists()

    assert ts.main(args + ["--out", str(out), "--resume"]) == 0
    a, b = read_segmenter_file(straight)["state_dict"], read_segmenter_file(out)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_existing_segmenter_is_only_replaced_with_overwrite(synthetic_root, tmp_path, capsys):
    args = TINY + ["--dataroot", str(synthetic_root), "--n-epochs", "1", "--max-val-frames", "1"]
    out = tmp_path / "fcn8s.pt"
    assert ts.main(args + ["--out", str(out)]) == 0
    before = out.read_bytes()
    capsys.readouterr()
    assert ts.main(args + ["--out", str(out), "--n-epochs", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {out}: a trained segmenter is there; pass --overwrite to replace it or choose another --out"
    assert out.read_bytes() == before and not seg_training.run_path(out).exists()

    latest = seg_training.run_path(out) / "latest.pt"
    latest.parent.mkdir()
    latest.write_bytes(before)  # an unfinished training left behind
    out.unlink()
    assert ts.main(args + ["--out", str(out)]) == 2
    assert "--resume to continue it or --overwrite" in capsys.readouterr().err
    assert latest.read_bytes() == before

    out.write_bytes(before)
    assert ts.main(args + ["--out", str(out), "--overwrite", "--seed", "1"]) == 0
    assert out.read_bytes() != before and not seg_training.run_path(out).exists()


@pytest.mark.parametrize("extra,message", [
    (["--n-epochs", "0"], "--n-epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--lr", "-1"], "--lr"),
    (["--config", "width_mult=-1"], "width_mult"),
    (["--arch", "deeplabv3plus_xception71", "--config", "encoder=x"], "encoder 'x'"),
    (["--arch", "deeplabv3plus_xception71", "--config", "output_stride=3"], "output_stride"),
    (["--num-workers", "-1"], "--num-workers"),
    (["--resume", "--overwrite"], "--overwrite"),
])
def test_every_option_is_checked_before_any_work(synthetic_root, tmp_path, capsys, extra, message):
    out = tmp_path / "segmenters" / "x.pt"
    arch = [] if "--arch" in extra else TINY[:6]  # fcn8s and its tiny config unless the case names its own
    assert ts.main([*arch, "--num-workers", "0", "--dataroot", str(synthetic_root), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not out.exists() and not seg_training.run_path(out).exists()


def test_former_spellings_work_with_a_one_line_note(capsys):
    args = ts.parse_args(["--arch", "fcn8s", "--preset", "demo", "--epochs", "2", "--workers", "1"])
    assert args.n_epochs == 2 and args.num_workers == 1
    notes = capsys.readouterr().err.strip().splitlines()
    assert notes == ["note: --epochs is now spelled --n-epochs", "note: --workers is now spelled --num-workers"]
    help_text = ts.build_parser().format_help()
    assert "--n-epochs" in help_text and "--epochs " not in help_text and "--workers" not in help_text


def test_device_takes_cuda_n_and_refuses_other_names(synthetic_root, tmp_path, capsys):
    out = tmp_path / "fcn8s.pt"
    assert ts.main([*TINY, "--dataroot", str(synthetic_root), "--out", str(out), "--device", "gpu"]) == 2
    assert "--device gpu: expected auto, cpu, cuda or cuda:N" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert ts.main([*TINY, "--dataroot", str(synthetic_root), "--out", str(out), "--device", "cuda:0"]) == 2
        assert "--device cuda:0: no CUDA device" in capsys.readouterr().err
    assert not seg_training.run_path(out).exists()


def test_resume_without_a_run_is_one_line(synthetic_root, tmp_path, capsys):
    out = tmp_path / "fcn8s.pt"
    assert ts.main([*TINY, "--dataroot", str(synthetic_root), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {seg_training.run_path(out)}: nothing to resume (no latest.pt)"


def test_resume_of_a_run_that_finished_training_scores_and_saves(synthetic_root, tmp_path, monkeypatch, capsys):
    """Stopped while it scored the val photos after its last epoch: --resume trains no further step."""
    args = TINY + ["--dataroot", str(synthetic_root), "--n-epochs", "1", "--max-val-frames", "1",
                   "--out", str(tmp_path / "fcn8s.pt")]
    real_scores = seg_training.val_scores

    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(seg_training, "val_scores", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ts.main(args)
    latest = seg_training.run_path(tmp_path / "fcn8s.pt") / "latest.pt"
    saved = read_segmenter_file(latest)
    assert saved["train_state"]["epoch"] == 1 and saved["train_state"]["epoch_step"] == 0
    monkeypatch.setattr(seg_training, "val_scores", real_scores)
    monkeypatch.setattr(seg_training, "train_one_epoch", lambda *_: pytest.fail("a finished training trained again"))
    capsys.readouterr()
    assert ts.main(args + ["--resume"]) == 0
    assert "resuming" in capsys.readouterr().out
    weights = read_segmenter_file(tmp_path / "fcn8s.pt")["state_dict"]
    assert all(torch.equal(weights[k], saved["state_dict"][k]) for k in weights)
    assert not seg_training.run_path(tmp_path / "fcn8s.pt").exists()


def test_overwrite_keeps_the_old_run_until_the_new_one_saved(synthetic_root, tmp_path, monkeypatch):
    out = tmp_path / "fcn8s.pt"
    args = TINY + ["--dataroot", str(synthetic_root), "--n-epochs", "2", "--max-val-frames", "1", "--out", str(out)]
    crash_after_first_epoch(monkeypatch, args)
    run = seg_training.run_path(out)
    old = (run / "latest.pt").read_bytes()
    assert json.loads((run / "options.json").read_text())["n_epochs"] == 2

    real_epoch = seg_training.train_one_epoch

    def broken(*_):
        raise StopHere  # the new run fails before its first latest.pt

    monkeypatch.setattr(seg_training, "train_one_epoch", broken)
    with pytest.raises(StopHere):
        ts.main(args + ["--overwrite", "--seed", "1"])
    assert (run / "latest.pt").read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fcn8s"]  # nothing set aside is left over

    monkeypatch.setattr(seg_training, "train_one_epoch", real_epoch)
    real_save, saves = seg_training.save_latest, []

    def save_once(*rest):  # the new run saves epoch 1, then fails before epoch 2 is saved
        if saves:
            raise StopHere
        saves.append(real_save(*rest))

    monkeypatch.setattr(seg_training, "save_latest", save_once)
    with pytest.raises(StopHere):
        ts.main(args + ["--overwrite", "--seed", "1"])
    assert (run / "latest.pt").read_bytes() != old
    assert read_segmenter_file(run / "latest.pt")["train_state"]["settings"]["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fcn8s"]


def test_a_run_in_use_is_refused(synthetic_root, tmp_path, capsys):
    from common.run_folder import RunLock

    out = tmp_path / "fcn8s.pt"
    seg_training.run_path(out).mkdir()
    lock = RunLock(seg_training.run_path(out))  # another process training it
    try:
        assert ts.main([*TINY, "--dataroot", str(synthetic_root), "--out", str(out), "--overwrite"]) == 2
    finally:
        lock.release()
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {seg_training.run_path(out)}: in use by process ") and "\n" not in err
