"""The whole pipeline through the real command lines, at a tiny size: data -> train (Adam, TRAdam)
-> train both segmenters -> evaluate.py prints Tables 2-3 and writes its files."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def run(*args, cwd):
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.slow
def test_pipeline_from_data_to_tables(tmp_path):
    data = tmp_path / "data"
    out = run("-m", "data.synthetic", "--out", str(data), "--train-frames", "6", "--val-frames", "4", "--size", "64",
              "--seed", "1", cwd=REPO)
    root = data / "pix2pix"
    assert (root / "index.json").is_file() and str(data) in out

    ckpt = tmp_path / "checkpoints"
    tiny = ["--dataroot", str(root), "--checkpoints-dir", str(ckpt), "--netG", "unet_32", "--ngf", "8", "--ndf", "8",
            "--load-size", "36", "--crop-size", "32", "--n-epochs", "1", "--n-epochs-decay", "1",
            "--num-workers", "0", "--image-freq", "6", "--log-freq", "3"]
    for optim in ("adam", "tradam"):
        out = run(str(REPO / "train.py"), "--optim", optim, *tiny, cwd=tmp_path)
        assert f"trained {optim}_seed0 for 12 steps" in out

    segmenters = ckpt / "segmenters"
    seg = ["--dataroot", str(root), "--epochs", "1", "--batch-size", "2", "--crop-size", "32", "--load-size", "36",
           "--workers", "0"]
    run("-m", "eval.train_segmenter", "--arch", "fcn8s", "--config", "width_mult=0.0625",
        "--out", str(segmenters / "fcn8s.pt"), *seg, cwd=REPO)
    run("-m", "eval.train_segmenter", "--arch", "deeplabv3plus_xception71", "--config", "encoder=resnet18",
        "--config", "decoder_channels=16", "--out", str(segmenters / "deeplabv3plus_xception71.pt"), *seg, cwd=REPO)

    results = tmp_path / "results"
    out = run(str(REPO / "evaluate.py"), "--checkpoints-dir", str(ckpt), "--out", str(results), "--batch-size", "2",
              cwd=tmp_path)
    assert "Table 2" in out and "Table 3" in out
    for row in ("| Adam", "| TRAdam", "| Ground truth"):
        assert row in out, f"missing row {row!r} in:\n{out}"
    for name in ("results.json", "results.csv", "results.md", "comparison.png"):
        assert (results / name).is_file(), name
    scores = json.loads((results / "results.json").read_text())
    assert scores
    frames = json.loads((root / "index.json").read_text())["val"].values()
    for run_name in ("adam_seed0", "tradam_seed0"):
        written = {p.stem for p in (results / run_name / "images").glob("*.png")}
        assert written == set(frames)
