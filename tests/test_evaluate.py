"""``python evaluate.py`` end to end on tiny fake runs and tiny segmenters, plus its one-line errors."""
import csv
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import evaluate
import train
from common.checkpoint import save_atomic, weights_sha256
from eval.segmenters.files import load_segmenter, save_segmenter, segmenter_metadata
from eval.segmenters.registry import build_segmenter
from gan.networks import build_generator

REPO = Path(__file__).resolve().parents[1]
GENERATOR_CONFIG = {"name": "unet_64", "input_nc": 3, "output_nc": 3, "ngf": 8, "norm": "batch", "use_dropout": True}
RUNS = {"adam_seed0": ("adam", 0, True), "adam_seed1": ("adam", 1, True), "tradam_seed0": ("tradam", 0, False)}
SEGMENTERS = {"fcn8s": {"width_mult": 1 / 16}, "deeplabv3plus_xception71": {"encoder": "mobilenetv3_small_050",
                                                                          "decoder_channels": 16}}


def make_run(checkpoints: Path, name: str, optim: str, seed: int, finished: bool, dataroot: Path) -> Path:
    """A run folder as train.py writes it: options.json and latest.pt holding a tiny generator."""
    folder = checkpoints / name
    folder.mkdir(parents=True)
    torch.manual_seed(100 + seed + (10 if optim == "tradam" else 0))
    generator = build_generator("unet_64", ngf=8)
    save_atomic({"format_version": 1, "netG_config": GENERATOR_CONFIG, "netG": generator.state_dict(),
                 "epoch": 2 if finished else 1, "step": 8, "finished": finished}, folder / "latest.pt")
    options = {"optim": optim, "seed": seed, "dataroot": str(dataroot), "direction": "BtoA", "crop_size": 64,
               "netG": "unet_64", "ngf": 8, "norm": "batch", "no_dropout": False}
    (folder / "options.json").write_text(json.dumps(options))
    return folder


def make_segmenter(directory: Path, arch: str, dataroot: Path) -> Path:
    """A tiny untrained segmenter whose predictions still vary (random score layers)."""
    torch.manual_seed(7)
    model = build_segmenter(arch, SEGMENTERS[arch], input_size=(64, 64))
    if arch == "fcn8s":
        with torch.no_grad():
            for layer in (model.net.score_fr, model.net.score_pool4, model.net.score_pool3):
                layer.weight.normal_(0, 1.0)
    meta = segmenter_metadata(model, [f"c{i}" for i in range(19)], (64, 64),
                              {"dataroot": str(dataroot), "name": "tiny synthetic"}, None)
    return save_segmenter(directory / f"{arch}.pt", model, meta)


def independent_scores(segmenter_path: Path, images, labels) -> tuple[float, float]:
    """Per-pixel and per-class accuracy, frame by frame with numpy."""
    model, _ = load_segmenter(segmenter_path)
    hist = np.zeros((19, 19), dtype=np.int64)
    for image, label in zip(images, labels):
        x = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 127.5 - 1
        pred = model.predict(x)[0].numpy()
        keep = label != 255
        np.add.at(hist, (label[keep].astype(np.int64), pred[keep]), 1)
    rows = hist.sum(1)
    return np.trace(hist) / hist.sum(), np.mean([hist[c, c] / rows[c] for c in range(19) if rows[c] > 0])


@pytest.fixture(scope="module")
def evaluated(synthetic_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("evaluate")
    checkpoints = base / "checkpoints"
    for name, (optim, seed, finished) in RUNS.items():
        make_run(checkpoints, name, optim, seed, finished, synthetic_root)
    for arch in SEGMENTERS:
        make_segmenter(checkpoints / "segmenters", arch, synthetic_root)
    out = base / "results"
    proc = subprocess.run([sys.executable, "evaluate.py", "--checkpoints-dir", str(checkpoints), "--out", str(out),
                           "--device", "cpu", "--batch-size", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return {"checkpoints": checkpoints, "out": out, "stdout": proc.stdout, "root": synthetic_root}


def test_prints_both_tables_with_a_row_per_optimizer_and_the_gt_row(evaluated):
    stdout = evaluated["stdout"]
    report = json.loads((evaluated["out"] / "results.json").read_text())
    assert [s["table"] for s in report["segmenters"]] == ["Table 2", "Table 3"]
    assert "### Table 2: FCN-scores by FCN-8s (width x0.0625)" in stdout
    assert "### Table 3: FCN-scores by DeepLabV3+ (mobilenetv3_small_050 encoder, decoder 16)" in stdout
    assert "unfinished, epoch 1" in stdout  # the TRAdam run's latest.pt is not a final one
    for entry in report["segmenters"]:
        rows = {row["method"]: row for row in entry["rows"]}
        assert list(rows) == ["Adam", "TRAdam (unfinished)", "Ground truth"]
        assert rows["Adam"]["runs"] == ["adam_seed0", "adam_seed1"]
        per_run = {s["label"]: s["scores"] for s in entry["image_sets"]}
        for key in ("pixel_acc", "class_acc", "class_iou"):
            values = [per_run["adam_seed0"][key], per_run["adam_seed1"][key]]
            assert rows["Adam"][key]["mean"] == pytest.approx(statistics.fmean(values))
            assert rows["Adam"][key]["std"] == pytest.approx(statistics.stdev(values))
            assert rows["TRAdam (unfinished)"][key]["mean"] == pytest.approx(per_run["tradam_seed0"][key])
            assert rows["TRAdam (unfinished)"][key]["std"] is None
        adam = rows["Adam"]
        line = (f"| Adam (2 runs) | {adam['pixel_acc']['mean']:.3f} ± {adam['pixel_acc']['std']:.3f} | "
                f"{adam['class_acc']['mean']:.3f} ± {adam['class_acc']['std']:.3f} | "
                f"{adam['class_iou']['mean']:.3f} ± {adam['class_iou']['std']:.3f} |")
        assert line in stdout
        gt = rows["Ground truth"]
        assert f"| Ground truth | {gt['pixel_acc']['mean']:.3f} | {gt['class_acc']['mean']:.3f} |" in stdout
    assert stdout.strip().splitlines()[-1].startswith(f"wrote {evaluated['out']}/results.md")


def test_scores_match_an_independent_count(evaluated):
    out, root = evaluated["out"], evaluated["root"]
    report = json.loads((out / "results.json").read_text())
    index = json.loads((root / "index.json").read_text())
    files = sorted((root / "val").glob("*.jpg"))
    names = [index["val"][f.name] for f in files]
    labels = [np.asarray(Image.open(root / "val_trainids" / f"{f.stem}.png")) for f in files]
    photos = [np.asarray(Image.open(f).convert("RGB"))[:, :64] for f in files]
    run_images = [np.asarray(Image.open(out / "tradam_seed0" / "images" / f"{n}.png")) for n in names]
    for entry in report["segmenters"]:
        path = Path(entry["checkpoint"])
        gt = entry["ground_truth"][0]["scores"]
        assert (gt["pixel_acc"], gt["class_acc"]) == pytest.approx(independent_scores(path, photos, labels))
        run = next(s for s in entry["image_sets"] if s["label"] == "tradam_seed0")["scores"]
        assert (run["pixel_acc"], run["class_acc"]) == pytest.approx(independent_scores(path, run_images, labels))


def test_writes_csv_per_class_tables_figure_and_named_images(evaluated):
    out, root = evaluated["out"], evaluated["root"]
    with open(out / "results.csv") as f:
        lines = list(csv.DictReader(f))
    assert len(lines) == 2 * (len(RUNS) + 1)
    assert {line["method"] for line in lines} == {"Adam", "TRAdam (unfinished)", "Ground truth"}
    for arch in SEGMENTERS:
        table = (out / f"per_class_{arch}.md").read_text().splitlines()
        assert len(table) == 4 + 19 and table[4].startswith("| road |")
        assert "Adam acc | Adam IoU | TRAdam (unfinished) acc" in table[2]
    with Image.open(out / "comparison.png") as figure:
        assert figure.size == (128 * 4, 18 + 128 * 3)  # label | Adam | TRAdam | photo, 3 frames
    index = json.loads((root / "index.json").read_text())
    for run in RUNS:
        assert sorted(p.stem for p in (out / run / "images").glob("*.png")) == sorted(index["val"].values())
    assert "### Table 2" in (out / "results.md").read_text()


def test_images_and_generator_options_reproduce_the_run_scores(evaluated, tmp_path, capsys):
    out, checkpoints, root = evaluated["out"], evaluated["checkpoints"], evaluated["root"]
    report = json.loads((out / "results.json").read_text())
    expected = {s["label"]: s["scores"]["class_iou"] for s in report["segmenters"][0]["image_sets"]}
    common = ["--checkpoints-dir", str(checkpoints), "--segmenters", "fcn8s", "--device", "cpu"]

    assert evaluate.main(common + ["--images", str(out / "adam_seed1" / "images"), "--dataroot", str(root),
                                   "--out", str(tmp_path / "a")]) == 0
    again = json.loads((tmp_path / "a" / "results.json").read_text())["segmenters"][0]["image_sets"][0]
    assert again["label"] == "adam_seed1" and again["scores"]["class_iou"] == expected["adam_seed1"]

    # our checkpoint (options.json beside it): regenerated with the same seed -> the same scores
    assert evaluate.main(common + ["--generator", str(checkpoints / "adam_seed0" / "latest.pt"),
                                   "--out", str(tmp_path / "b")]) == 0
    again = json.loads((tmp_path / "b" / "results.json").read_text())["segmenters"][0]["image_sets"][0]
    assert (again["label"], again["method"]) == ("adam_seed0", "Adam")
    assert again["scores"]["class_iou"] == expected["adam_seed0"]

    # a reference trainer's bare state_dict
    reference = tmp_path / "ref_run" / "latest_net_G.pth"
    reference.parent.mkdir()
    state = torch.load(checkpoints / "tradam_seed0" / "latest.pt", weights_only=True)["netG"]
    torch.save(state, reference)
    assert evaluate.main(common + ["--generator", str(reference), "--netG", "unet_64", "--ngf", "8",
                                   "--dataroot", str(root), "--out", str(tmp_path / "c")]) == 0
    again = json.loads((tmp_path / "c" / "results.json").read_text())["segmenters"][0]["image_sets"][0]
    assert again["label"] == "ref_run" and again["scores"]["class_iou"] == expected["tradam_seed0"]
    assert "| ref_run |" in capsys.readouterr().out


def _error(argv, capsys) -> str:
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_bad_input_gives_one_line_errors(evaluated, tmp_path, capsys):
    checkpoints, out, root = evaluated["checkpoints"], evaluated["out"], evaluated["root"]
    mine = tmp_path / "checkpoints"
    shutil.copytree(checkpoints / "segmenters", mine / "segmenters")
    (mine / "empty_run").mkdir()
    err = _error(["--checkpoints-dir", str(mine), "--out", str(tmp_path / "o"), "--runs", "empty_run"], capsys)
    assert f"{mine / 'empty_run'}: empty run folder" in err
    assert evaluate.main(["--checkpoints-dir", str(mine), "--out", str(tmp_path / "o")]) == 2  # without --runs it is skipped: no runs left
    captured = capsys.readouterr()
    assert f"skipping {mine / 'empty_run'}: no checkpoint yet" in captured.out and "no training runs" in captured.err
    (mine / "empty_run").rmdir()

    no_segmenters = tmp_path / "bare"
    make_run(no_segmenters, "run", "adam", 0, True, root)
    err = _error(["--checkpoints-dir", str(no_segmenters), "--out", str(tmp_path / "n")], capsys)
    assert "fcn8s.pt: segmenter weights not found" in err and "python -m eval.train_segmenter --arch fcn8s" in err

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    shutil.copy(checkpoints / "segmenters" / "fcn8s.pt", wrong / "deeplabv3plus_xception71.pt")
    err = _error(["--checkpoints-dir", str(checkpoints), "--segmenter-dir", str(wrong),
                  "--segmenters", "deeplabv3plus_xception71", "--out", str(tmp_path / "w")], capsys)
    assert "holds a fcn8s segmenter, expected deeplabv3plus_xception71" in err

    partial = tmp_path / "partial"
    shutil.copytree(out / "adam_seed0" / "images", partial)
    missing = sorted(partial.glob("*.png"))[0]
    missing.unlink()
    err = _error(["--checkpoints-dir", str(checkpoints), "--images", str(partial), "--dataroot", str(root)], capsys)
    assert f"{partial}: 1 of 3 val frames have no <frame>.png ({missing.stem})" in err

    assert "not found" in _error(["--checkpoints-dir", str(checkpoints), "--generator", str(tmp_path / "nope.pt")],
                                 capsys)


def test_fullres_with_pix2pix_caffe_fcn8s_imported_from_a_caffemodel(evaluated, tmp_path, capsys):
    """Table 2 the pix2pix way: each generated 64x64 PNG upsampled by PIL's bilinear resize to the
    official label size (128x64 here), segmented there by the imported Caffe FCN-8s, scored against the
    full-resolution labels; channel-20 predictions are errors, or fast_hist's quirks with --fast-hist."""
    from data.cityscapes import label_ids_to_train_ids
    from eval.import_segmenter import main as import_main
    from tests.eval.segmenters.caffemodel_writer import fcn8s_weights, write_caffemodel

    checkpoints, root = evaluated["checkpoints"], evaluated["root"]
    caffemodel = write_caffemodel(tmp_path / "fcn-8s-cityscapes.caffemodel",
                                  fcn8s_weights((4, 8, 8, 16, 16), 32, seed=11))
    segmenters = tmp_path / "segmenters"
    assert import_main(["fcn8s_caffe", str(caffemodel), "--out", str(segmenters / "fcn8s_caffe.pt")]) == 0
    out = tmp_path / "results"
    proc = subprocess.run([sys.executable, "evaluate.py", "--checkpoints-dir", str(checkpoints), "--segmenter-dir",
                           str(segmenters), "--segmenters", "fcn8s_caffe", "--protocol", "fullres", "--out", str(out),
                           "--device", "cpu", "--batch-size", "2"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Table 2: FCN-scores by FCN-8s (pix2pix Caffe layout" in proc.stdout
    assert "imported from fcn-8s-cityscapes.caffemodel; protocol fullres" in proc.stdout
    entry = json.loads((out / "results.json").read_text())["segmenters"][0]
    assert [row["method"] for row in entry["rows"]] == ["Adam", "TRAdam (unfinished)", "Ground truth"]

    # independently: PIL upsampling of the PNGs, official labels, numpy histograms
    model, _ = load_segmenter(segmenters / "fcn8s_caffe.pt")
    index = json.loads((root / "index.json").read_text())
    official = root.parent / "cityscapes" / "gtFine" / "val"
    files = sorted((root / "val").glob("*.jpg"))
    names = [index["val"][f.name] for f in files]
    labels = [label_ids_to_train_ids(np.asarray(Image.open(next(official.glob(f"*/{n}_gtFine_labelIds.png")))))
              for n in names]
    sources = {"adam_seed1": [Image.open(out / "adam_seed1" / "images" / f"{n}.png") for n in names],
               "Ground truth": [Image.open(f).convert("RGB").crop((0, 0, 64, 64)) for f in files]}
    for label_name, images in sources.items():
        ours, reference, dropped = np.zeros((19, 20), np.int64), np.zeros((19, 19)), 0
        for image, label in zip(images, labels):
            assert label.shape == (64, 128)
            up = np.asarray(image.convert("RGB").resize((128, 64), Image.BILINEAR))
            pred = model.predict(torch.from_numpy(up.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1)[0].numpy()
            keep = label != 255
            np.add.at(ours, (label[keep].astype(np.int64), pred[keep]), 1)
            counts = np.bincount(19 * label[keep].astype(np.int64) + pred[keep], minlength=361)
            reference, dropped = (reference + counts.reshape(19, 19), dropped) if counts.size == 361 else \
                (reference, dropped + 1)
        scored = entry["ground_truth"][0] if label_name == "Ground truth" else \
            next(s for s in entry["image_sets"] if s["label"] == label_name)
        assert np.array_equal(np.array(scored["scores"]["confusion"]), ours)
        assert scored["scores"]["no_class_pixels"] == ours[:, 19].sum() > 0
        assert scored["scores"]["pixel_acc"] == pytest.approx(np.trace(ours) / ours.sum())
        sources[label_name] = (reference, dropped, ours[:, 19].sum())
    assert f"adam_seed1 {sources['adam_seed1'][2]}" in proc.stdout  # the channel-20 count under the table

    # --fast-hist: the reference script's histogram and scores, dropped frames reported
    assert evaluate.main(["--checkpoints-dir", str(checkpoints), "--segmenter-dir", str(segmenters), "--segmenters",
                          "fcn8s_caffe", "--protocol", "fullres", "--fast-hist", "--images",
                          str(out / "adam_seed1" / "images"), "--dataroot", str(root), "--out",
                          str(tmp_path / "fast"), "--device", "cpu"]) == 0
    fast = json.loads((tmp_path / "fast" / "results.json").read_text())["segmenters"][0]
    for label_name, scored in (("adam_seed1", fast["image_sets"][0]), ("Ground truth", fast["ground_truth"][0])):
        reference, dropped, no_class = sources[label_name]
        assert np.array_equal(np.array(scored["scores"]["confusion"]), reference)
        assert scored["scores"]["dropped_frames"] == dropped and scored["scores"]["no_class_pixels"] == no_class
        assert scored["scores"]["pixel_acc"] == np.diag(reference).sum() / (reference.sum() + 1e-12)
    assert "Frames dropped by fast_hist" in capsys.readouterr().out


def test_runs_without_a_checkpoint_are_skipped(evaluated, tmp_path, capsys):
    checkpoints, root = tmp_path / "checkpoints", evaluated["root"]
    shutil.copytree(evaluated["checkpoints"] / "segmenters", checkpoints / "segmenters")
    make_run(checkpoints, "adam_seed0", "adam", 0, True, root)
    starting = make_run(checkpoints, "tradam_seed0", "tradam", 0, True, root)
    (starting / "latest.pt").unlink()  # a run that has written its options but no checkpoint yet
    argv = ["--checkpoints-dir", str(checkpoints), "--segmenters", "fcn8s", "--max-val-frames", "1", "--device", "cpu",
            "--out", str(tmp_path / "out")]
    assert evaluate.main(argv) == 0
    assert f"skipping {starting}: no checkpoint yet" in capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [s["label"] for s in report["segmenters"][0]["image_sets"]] == ["adam_seed0"]
    assert evaluate.main(argv + ["--runs", "tradam_seed0"]) == 2  # named explicitly: an error
    assert f"{starting / 'latest.pt'}: missing" in capsys.readouterr().err


def test_nonfinite_generators_and_segmenters_are_refused(evaluated, tmp_path, capsys):
    checkpoints, root = evaluated["checkpoints"], evaluated["root"]
    state = torch.load(checkpoints / "adam_seed0" / "latest.pt", weights_only=True)
    name = next(k for k in state["netG"] if k.endswith("running_var"))
    state["netG"][name][0] = float("inf")  # what a diverged run's batch norm holds
    diverged = tmp_path / "diverged.pt"
    torch.save(state, diverged)
    err = _error(["--checkpoints-dir", str(checkpoints), "--generator", str(diverged), "--dataroot", str(root),
                  "--segmenters", "fcn8s", "--out", str(tmp_path / "a")], capsys)
    assert err.startswith(f"error: {diverged}: the generator holds non-finite values ({name})")

    segmenters = tmp_path / "segmenters"
    segmenters.mkdir()
    obj = torch.load(checkpoints / "segmenters" / "fcn8s.pt", weights_only=True)
    first = next(iter(obj["state_dict"]))
    obj["state_dict"][first].fill_(float("nan"))
    obj["metadata"]["weights_sha256"] = weights_sha256(obj["state_dict"])  # as a diverged training would save it
    torch.save(obj, segmenters / "fcn8s.pt")
    err = _error(["--checkpoints-dir", str(checkpoints), "--segmenter-dir", str(segmenters), "--segmenters", "fcn8s",
                  "--out", str(tmp_path / "b")], capsys)
    assert err.startswith(f"error: {segmenters / 'fcn8s.pt'}: the segmenter holds non-finite values ({first})")


def test_former_spellings_still_work_with_a_one_line_note(evaluated, tmp_path, capsys):
    out = tmp_path / "out"
    assert evaluate.main(["--checkpoints", str(evaluated["checkpoints"]), "--max-frames", "1", "--runs", "adam_seed0",
                          "--segmenters", "fcn8s", "--device", "cpu", "--out", str(out)]) == 0
    assert capsys.readouterr().err.splitlines() == ["note: --checkpoints is now spelled --checkpoints-dir",
                                                    "note: --max-frames is now spelled --max-val-frames"]
    report = json.loads((out / "results.json").read_text())
    assert [s["label"] for s in report["segmenters"][0]["image_sets"]] == ["adam_seed0"]
    assert {d["frames"] for d in report["datasets"].values()} == {1}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_device_cuda_n_is_a_device_name_with_the_error_train_py_gives(evaluated, tmp_path, capsys):
    err = _error(["--checkpoints-dir", str(evaluated["checkpoints"]), "--device", "cuda:0",
                  "--out", str(tmp_path / "out")], capsys)
    assert err == "error: --device cuda:0: no CUDA device is available"
    assert train.main(["--dataroot", str(evaluated["root"]), "--checkpoints-dir", str(tmp_path / "runs"),
                       "--device", "cuda:0"]) == 2
    assert capsys.readouterr().err.strip() == err
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("extra,message", [
    (["--max-val-frames", "0"], "--max-val-frames"),
    (["--batch-size", "0"], "--batch-size"),
    (["--size", "-64"], "--size"),
    (["--figure-frames", "-2"], "--figure-frames"),
    (["--out", "FILE"], "exists and is not a folder"),
    (["--device", "tpu"], "--device tpu: expected auto, cpu, cuda or cuda:N"),
    (["--seed", "-1"], "--seed must be in [0, 2^31), got -1"),
])
def test_every_option_is_checked_before_any_work(evaluated, tmp_path, capsys, extra, message):
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    extra = [str(a_file) if value == "FILE" else value for value in extra]
    out = ["--out", str(tmp_path / "out")] if "--out" not in extra else []
    err = _error(["--checkpoints-dir", str(evaluated["checkpoints"]), "--segmenters", "fcn8s", "--device", "cpu",
                  *out, *extra], capsys)
    assert message in err
    assert not (tmp_path / "out").exists() and a_file.read_text() == "not a folder"


# --------------------------------------------------------------------- DRN-D-105 and FID/KID
def official_val_labels(root: Path) -> list[np.ndarray]:
    """Full-resolution trainIds of the val frames (the official layout beside the pix2pix one)."""
    from data.cityscapes import label_ids_to_train_ids
    index = json.loads((root / "index.json").read_text())
    official = root.parent / "cityscapes" / "gtFine" / "val"
    names = [index["val"][f.name] for f in sorted((root / "val").glob("*.jpg"))]
    return names, [label_ids_to_train_ids(np.asarray(Image.open(next(official.glob(f"*/{n}_gtFine_labelIds.png")))))
                   for n in names]


@pytest.fixture(scope="module")
def drn_segmenters(tmp_path_factory):
    """A segmenter folder holding DRN-D-105 imported from a random-valued file in the published layout."""
    from eval.import_segmenter import main as import_main
    from tests.eval.segmenters.test_drn import random_state
    folder = tmp_path_factory.mktemp("drn")
    torch.save(random_state(seed=3), folder / "drn-d-105_ms_cityscapes.pth")
    assert import_main(["drn_d_105", str(folder / "drn-d-105_ms_cityscapes.pth"), "--out",
                        str(folder / "segmenters" / "drn_d_105.pt")]) == 0
    return folder / "segmenters"


def test_drn_d_105_miou_under_gan_compression_and_at_the_generated_size(evaluated, drn_segmenters, tmp_path, capsys):
    """GAN Compression's protocol: DRN on the 64x64 PNG, each log-softmax channel resized by PIL (mode F)
    to the official label size (128x64), argmax against the full-resolution trainIds; mIoU = nan-mean
    IoU x 100. generated_size: argmax at 64x64 against the 64x64 labels."""
    checkpoints, root, images = evaluated["checkpoints"], evaluated["root"], evaluated["out"] / "adam_seed1" / "images"
    model, _ = load_segmenter(drn_segmenters / "drn_d_105.pt")
    names, labels = official_val_labels(root)
    from data.aligned import AlignedDataset
    val = AlignedDataset(root, "val", direction="BtoA", load_size=64, crop_size=64, flip=False, train=False)
    for protocol in ("gan_compression", "generated_size"):
        out = tmp_path / protocol
        assert evaluate.main(["--checkpoints-dir", str(checkpoints), "--segmenter-dir", str(drn_segmenters),
                              "--segmenters", "drn_d_105", "--images", str(images), "--dataroot", str(root),
                              "--drn-protocol", protocol, "--out", str(out), "--device", "cpu"]) == 0
        stdout = capsys.readouterr().out
        entry = json.loads((out / "results.json").read_text())["segmenters"][0]
        assert entry["title"].startswith("mIoU table: mIoU and FCN-scores by DRN-D-105") and f"protocol {protocol}" in stdout
        assert f"Protocol {protocol}: " in stdout  # under the table
        hist = np.zeros((19, 19), np.int64)
        for name, label in zip(names, labels):
            image = np.asarray(Image.open(images / f"{name}.png").convert("RGB"))
            with torch.no_grad():
                scores = model(torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1)[0]
            if protocol == "gan_compression":
                resized = np.stack([np.asarray(Image.fromarray(c.numpy()).resize((label.shape[1], label.shape[0]),
                                                                                  Image.BILINEAR)) for c in scores])
                pred = resized.argmax(0)
            else:
                pred = scores.argmax(0).numpy()
                label = val[names.index(name)]["label"].numpy()
            keep = label != 255
            np.add.at(hist, (label[keep].astype(np.int64), pred[keep]), 1)
        scored = entry["image_sets"][0]["scores"]
        assert np.array_equal(np.array(scored["confusion"]), hist)
        union = hist.sum(0) + hist.sum(1) - np.diag(hist)
        miou = 100 * np.nanmean(np.where(union > 0, np.diag(hist) / np.maximum(union, 1), np.nan))
        row = entry["rows"][0]
        assert row["miou"]["mean"] == pytest.approx(miou)
        assert f"| {row['method']} | {miou:.2f} | " in stdout


def test_fid_and_kid_per_run_mean_and_std_over_seeds_and_the_floor_row(evaluated, tmp_path, monkeypatch, capsys):
    from data.aligned import AlignedDataset
    from eval import fidelity
    from eval.segmenters.base import to_uint8
    from tests.eval.inception_writer import write_random_inception
    from tests.eval.test_fidelity import frechet_by_scipy
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setattr(fidelity, "download", lambda *a, **k: pytest.fail("no test downloads anything"))
    weights = write_random_inception(tmp_path / "random-inception.pth")
    checkpoints, root, runs = evaluated["checkpoints"], evaluated["root"], evaluated["out"]
    out = tmp_path / "out"
    assert evaluate.main(["--checkpoints-dir", str(checkpoints), "--segmenters", "fcn8s", "--fid", "--kid",
                          "--inception-weights", str(weights), "--kid-subset-size", "3", "--kid-subsets", "4",
                          "--out", str(out), "--device", "cpu"]) == 0
    stdout = capsys.readouterr().out
    entry = json.loads((out / "results.json").read_text())["fidelity"]
    assert [row["method"] for row in entry["rows"]] == ["Adam", "TRAdam (unfinished)", "Real train vs real val (floor)"]
    assert "### FID/KID by torch-fidelity's InceptionV3" in stdout and "random-inception.pth" in stdout

    extract = fidelity.InceptionFeatures(weights)
    val = AlignedDataset(root, "val", direction="BtoA", load_size=64, crop_size=64, flip=False, train=False)
    train_set = AlignedDataset(root, "train", direction="BtoA", load_size=64, crop_size=64, flip=False, train=False)
    real = extract(to_uint8(val[i]["target"]) for i in range(len(val)))
    assert len(train_set) == 4 and len(val) == 3  # the floor takes 3 training photos, evenly spaced: 0, 2, 3
    train_features = extract(to_uint8(train_set[i]["target"]) for i in (0, 2, 3))
    names, _ = official_val_labels(root)
    per_run = {}
    for run in ("adam_seed0", "adam_seed1", "tradam_seed0"):
        features = extract(torch.from_numpy(np.asarray(Image.open(runs / run / "images" / f"{n}.png").convert("RGB"))
                                            .copy()).permute(2, 0, 1) for n in names)
        per_run[run] = frechet_by_scipy(features, real)
        scores = next(s for s in entry["image_sets"] if s["label"] == run)["scores"]
        assert scores["fid"] == pytest.approx(per_run[run], rel=1e-6)
        assert set(scores) == {"fid", "kid", "kid_subset_std"}
    rows = {row["method"]: row for row in entry["rows"]}
    adam = [per_run["adam_seed0"], per_run["adam_seed1"]]
    assert rows["Adam"]["fid"]["mean"] == pytest.approx(statistics.fmean(adam), rel=1e-6)
    assert rows["Adam"]["fid"]["std"] == pytest.approx(statistics.stdev(adam), rel=1e-6)
    assert rows["TRAdam (unfinished)"]["fid"]["std"] is None
    floor = rows["Real train vs real val (floor)"]
    assert floor["fid"]["mean"] == pytest.approx(frechet_by_scipy(train_features, real), rel=1e-6)
    assert f"| Adam (2 runs) | {rows['Adam']['fid']['mean']:.2f} ± {rows['Adam']['fid']['std']:.2f} |" in stdout


def test_fidelity_only_jobs_fill_a_cache_the_full_evaluation_reads_back(evaluated, tmp_path, monkeypatch, capsys):
    from eval import fidelity
    from tests.eval.inception_writer import write_random_inception
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setattr(fidelity, "download", lambda *a, **k: pytest.fail("no test downloads anything"))
    weights, cache = write_random_inception(tmp_path / "random-inception.pth"), tmp_path / "cache"
    base = ["--checkpoints-dir", str(evaluated["checkpoints"]), "--fid", "--kid", "--inception-weights", str(weights),
            "--kid-subset-size", "2", "--kid-subsets", "4", "--max-val-frames", "2", "--device", "cpu"]
    assert evaluate.main(base + ["--runs", "adam_seed0", "--fidelity-only", "--inception-cache", str(cache),
                                 "--out", str(tmp_path / "only")]) == 0
    only = json.loads((tmp_path / "only" / "results.json").read_text())
    assert only["segmenters"] == [] and [s["label"] for s in only["fidelity"]["image_sets"]] == ["adam_seed0"]
    assert len(list(cache.iterdir())) == 3  # real val photos, the floor's train photos, adam_seed0's images
    capsys.readouterr()
    assert evaluate.main(base + ["--segmenters", "fcn8s", "--inception-cache", str(cache),
                                 "--out", str(tmp_path / "cached")]) == 0
    assert f"Inception features: 3 of 5 image sets read from the cache {cache}" in capsys.readouterr().out
    assert evaluate.main(base + ["--segmenters", "fcn8s", "--out", str(tmp_path / "plain")]) == 0
    cached, plain = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("cached", "plain"))
    assert cached["fidelity"] == plain["fidelity"]  # every value the same, to the last bit
    assert [e["rows"] for e in cached["segmenters"]] == [e["rows"] for e in plain["segmenters"]]


def test_fid_kid_skipped_with_one_line_where_the_weights_cannot_be_had(evaluated, tmp_path, monkeypatch, capsys):
    from eval import fidelity
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    attempts = []

    def offline(url, path, timeout=None):
        attempts.append(url)
        raise OSError("network unreachable")
    monkeypatch.setattr(fidelity, "download", offline)
    out = tmp_path / "out"
    assert evaluate.main(["--checkpoints-dir", str(evaluated["checkpoints"]), "--segmenters", "fcn8s", "--fid",
                          "--kid", "--max-val-frames", "1", "--out", str(out), "--device", "cpu"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "FID" in line]
    assert len(lines) == 1 and lines[0].startswith("skipping FID/KID:") and "--inception-weights PATH" in lines[0]
    assert attempts == [fidelity.WEIGHTS_URL]
    assert "fidelity" not in json.loads((out / "results.json").read_text())


def test_fid_kid_bad_input_is_one_line_before_any_generation(evaluated, tmp_path, monkeypatch, capsys):
    from eval import fidelity
    from tests.eval.inception_writer import write_random_inception
    monkeypatch.setattr(fidelity, "download", lambda *a, **k: pytest.fail("no test downloads anything"))
    base = ["--checkpoints-dir", str(evaluated["checkpoints"]), "--segmenters", "fcn8s", "--device", "cpu",
            "--out", str(tmp_path / "out")]
    assert "--fidelity-only needs --fid or --kid" in _error(base + ["--fidelity-only"], capsys)
    (tmp_path / "a_file").write_text("x")
    err = _error(base + ["--fid", "--inception-cache", str(tmp_path / "a_file")], capsys)
    assert f"--inception-cache {tmp_path / 'a_file'}: exists and is not a folder" in err
    err = _error(base + ["--fid", "--inception-weights", str(tmp_path / "missing.pth")], capsys)
    assert f"--inception-weights {tmp_path / 'missing.pth'}: file not found" in err
    other = tmp_path / "resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, other)
    err = _error(base + ["--kid", "--kid-subset-size", "3", "--inception-weights", str(other)], capsys)
    assert f"{other}: not torch-fidelity's InceptionV3 weights" in err
    weights = write_random_inception(tmp_path / "random-inception.pth")
    images = evaluated["out"] / "adam_seed0" / "images"
    err = _error(base + ["--kid", "--inception-weights", str(weights), "--images", str(images), "--dataroot",
                         str(evaluated["root"])], capsys)  # 3 val frames, subsets of 100
    assert f"{images}: 3 images, fewer than the KID subset size 100; pass --kid-subset-size 3 or less" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------- checked before generating
def _evaluate_cli(*args):
    return subprocess.run([sys.executable, "evaluate.py", *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_a_size_the_generators_cannot_take_is_refused_before_generating(evaluated, tmp_path):
    result = _evaluate_cli("--checkpoints-dir", evaluated["checkpoints"], "--segmenters", "fcn8s", "--device", "cpu",
                           "--out", tmp_path / "out", "--size", "33")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error: --size 33: image size 33x33 does not suit generator unet_64")
    assert "generating" not in result.stdout and not (tmp_path / "out").exists()
    result = _evaluate_cli("--checkpoints-dir", evaluated["checkpoints"], "--device", "cpu", "--out", tmp_path / "out",
                           "--size", "100000")
    assert result.returncode == 2 and result.stderr.strip().startswith("error: --size must be <= 4096 (")


def test_a_label_value_outside_the_train_ids_is_refused_before_generating(evaluated, tmp_path):
    root = shutil.copytree(evaluated["root"], tmp_path / "data")
    label_path = root / "val_trainids" / "1.png"
    label = np.array(Image.open(label_path))
    label[5, 7] = 30
    Image.fromarray(label).save(label_path)
    run = evaluated["checkpoints"] / "adam_seed0" / "latest.pt"
    result = _evaluate_cli("--generator", run, "--dataroot", root, "--checkpoints-dir", evaluated["checkpoints"],
                           "--segmenters", "fcn8s", "--device", "cpu", "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {label_path}: value 30 at x=7, y=5 (1 pixel(s)) is not a trainId "
                                     f"(0..18, or 255 for ignore)")
    assert "generating" not in result.stdout and not (tmp_path / "out").exists()


def test_results_are_never_written_into_what_is_scored(evaluated, tmp_path):
    run = evaluated["checkpoints"] / "adam_seed0"
    before = sorted(p.name for p in run.iterdir())
    result = _evaluate_cli("--checkpoints-dir", evaluated["checkpoints"], "--segmenters", "fcn8s", "--device", "cpu",
                           "--out", run)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: --out {run}: is the input {run} (of --checkpoints-dir (a run))")
    assert sorted(p.name for p in run.iterdir()) == before


def test_a_run_an_interrupted_overwrite_set_aside_is_named(evaluated, tmp_path):
    checkpoints = shutil.copytree(evaluated["checkpoints"], tmp_path / "checkpoints")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    hidden = checkpoints / f".adam_seed1.replaced-{gone.pid}-0a1b2c"
    (checkpoints / "adam_seed1").rename(hidden)
    result = _evaluate_cli("--checkpoints-dir", checkpoints, "--segmenters", "fcn8s", "--device", "cpu", "--out",
                           tmp_path / "out", "--runs", "adam_seed0")
    assert result.returncode == 0, result.stderr
    assert (f"{checkpoints / 'adam_seed1'}: a previous version set aside by an interrupted command is in {hidden}; "
            f"the next command that writes adam_seed1 puts it back") in result.stdout


def test_a_full_size_label_map_of_the_wrong_kind_is_refused_before_generating(evaluated, tmp_path):
    """--protocol fullres reads gtFine labelIds only after generating: their headers are checked first."""
    data = shutil.copytree(evaluated["root"].parent, tmp_path / "data")
    label_path = sorted((data / "cityscapes" / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))[0]
    Image.new("RGB", Image.open(label_path).size).save(label_path)
    run = evaluated["checkpoints"] / "adam_seed0" / "latest.pt"
    result = _evaluate_cli("--generator", run, "--dataroot", data / "pix2pix", "--checkpoints-dir",
                           evaluated["checkpoints"], "--segmenters", "fcn8s", "--protocol", "fullres",
                           "--device", "cpu", "--out", tmp_path / "out")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {label_path}: expected a single-channel labelIds image, got mode RGB"
    assert "generating" not in result.stdout and not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------- nothing lost, nothing wrong
def test_an_existing_out_is_replaced_only_with_overwrite_whole_and_by_one_writer_at_a_time(evaluated, tmp_path, capsys):
    from common.outputs import OutputLock
    checkpoints, out = evaluated["checkpoints"], tmp_path / "R"
    args = ["--checkpoints-dir", str(checkpoints), "--segmenters", "fcn8s", "--device", "cpu", "--out", str(out)]
    assert evaluate.main([*args, "--runs", "adam_seed0"]) == 0
    capsys.readouterr()
    assert evaluate.main([*args, "--runs", "tradam_seed0"]) == 2
    assert capsys.readouterr().err == (f"error: --out {out}: holds an earlier output; pass --overwrite to replace it "
                                       f"(once the new one is complete) or choose another --out\n")
    assert (out / "adam_seed0" / "images").is_dir()  # untouched
    assert evaluate.main([*args, "--runs", "tradam_seed0", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["tradam_seed0"]  # nothing stale beside it
    with open(out / "results.csv") as file:
        assert {row["image_set"] for row in csv.DictReader(file)} == {"tradam_seed0", "real photos"}
    assert not list(tmp_path.glob(".R.partial-*")) and not list(tmp_path.glob(".R.replaced-*"))
    lock = OutputLock(out, "--out")  # another evaluation writing R (another process): a second one is refused at once
    try:
        busy = _evaluate_cli(*args, "--runs", "adam_seed0", "--overwrite")
    finally:
        lock.release()
    assert busy.returncode == 2 and f"--out {out}: being written by process" in busy.stderr
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["tradam_seed0"]


def flip_a_byte(path: Path, offset_fraction: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * offset_fraction)] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_generator_or_segmenter_changed_on_disk_since_its_save_is_refused(evaluated, tmp_path, capsys):
    checkpoints = shutil.copytree(evaluated["checkpoints"], tmp_path / "ck")
    flip_a_byte(checkpoints / "adam_seed0" / "latest.pt")
    err = _error(["--checkpoints-dir", str(checkpoints), "--runs", "adam_seed0", "--segmenters", "fcn8s",
                  "--out", str(tmp_path / "a")], capsys)
    assert err.startswith(f"error: {checkpoints / 'adam_seed0' / 'latest.pt'}: its SHA-256 differs from the one "
                          f"recorded when it was written")
    flip_a_byte(checkpoints / "segmenters" / "fcn8s.pt")
    err = _error(["--checkpoints-dir", str(checkpoints), "--runs", "adam_seed1", "--segmenters", "fcn8s",
                  "--out", str(tmp_path / "b")], capsys)
    assert err.startswith(f"error: {checkpoints / 'segmenters' / 'fcn8s.pt'}: its SHA-256 differs")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_runs_are_pooled_only_when_they_differ_by_seed_alone(evaluated, tmp_path):
    checkpoints = tmp_path / "ck"
    shutil.copytree(evaluated["checkpoints"] / "segmenters", checkpoints / "segmenters")
    root = evaluated["root"]
    for name, lr, seed in (("a", 2e-4, 0), ("b", 2e-4, 1), ("c", 0.01, 0)):
        folder = make_run(checkpoints, name, "tradam", seed, True, root)
        options = json.loads((folder / "options.json").read_text())
        (folder / "options.json").write_text(json.dumps({**options, "lr": lr, "name": name}))
    result = _evaluate_cli("--checkpoints-dir", checkpoints, "--segmenters", "fcn8s", "--device", "cpu",
                           "--out", tmp_path / "R")
    assert result.returncode == 0, result.stderr
    rows = {row["method"]: row["runs"] for row in json.loads((tmp_path / "R" / "results.json").read_text())
            ["segmenters"][0]["rows"]}
    assert rows == {"TRAdam (--lr 0.0002)": ["a", "b"], "TRAdam (--lr 0.01)": ["c"], "Ground truth": []}
    assert "| TRAdam (--lr 0.0002) (2 runs) |" in result.stdout and "| TRAdam (--lr 0.01) |" in result.stdout


def test_an_unfinished_run_is_a_row_of_its_own_that_says_so(evaluated):
    report = json.loads((evaluated["out"] / "results.json").read_text())
    assert [row["method"] for row in report["segmenters"][0]["rows"]] == ["Adam", "TRAdam (unfinished)",
                                                                          "Ground truth"]
    assert "| TRAdam (unfinished) |" in (evaluated["out"] / "results.md").read_text()
    with open(evaluated["out"] / "results.csv") as file:
        methods = {row["image_set"]: row["method"] for row in csv.DictReader(file)}
    assert methods["tradam_seed0"] == "TRAdam (unfinished)" and methods["adam_seed0"] == "Adam"


@pytest.mark.parametrize("kind,message", [
    ("truncated", "cannot be read as a checkpoint"),
    ("text", "not a PyTorch file (it starts with neither a zip header nor a pickle)"),
    ("segmenter", "checkpoint holds no generator (netG and netG_config expected)"),
    ("classifier", "weights do not match generator"),
])
def test_a_file_that_holds_no_generator_is_named_as_such_before_the_image_size(evaluated, tmp_path, capsys, kind,
                                                                               message):
    path = tmp_path / f"{kind}.pt"
    if kind == "truncated":
        path.write_bytes((evaluated["checkpoints"] / "adam_seed0" / "latest.pt").read_bytes()[:5000])
    elif kind == "text":
        path.write_text("hello, I am not a checkpoint\n")
    elif kind == "segmenter":
        shutil.copy(evaluated["checkpoints"] / "segmenters" / "fcn8s.pt", path)
    else:
        torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4, 2)).state_dict(), path)
    err = _error(["--generator", str(path), "--dataroot", str(evaluated["root"]), "--segmenter-dir",
                  str(evaluated["checkpoints"] / "segmenters"), "--segmenters", "fcn8s", "--out", str(tmp_path / "R")],
                 capsys)
    assert err.startswith(f"error: {path}: ") and message in err and "does not suit generator" not in err


def test_a_segmenter_given_twice_is_refused(evaluated, capsys):
    err = _error(["--checkpoints-dir", str(evaluated["checkpoints"]), "--segmenters", "fcn8s", "fcn8s"], capsys)
    assert err == "error: --segmenters: fcn8s given more than once"
