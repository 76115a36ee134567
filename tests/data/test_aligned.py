"""The pix2pix aligned dataset: splitting, jitter, labels, names, and bad input."""
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from data import DataError
from data.aligned import AlignedDataset
from data.cityscapes import color_to_train_ids


def _as_input(image: Image.Image) -> torch.Tensor:
    """Independent reference of the reference transform's tail: ToTensor then Normalize(0.5, 0.5)."""
    array = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    return torch.from_numpy((array - 0.5) / 0.5).permute(2, 0, 1).float()


def _halves(path):
    pair = Image.open(path).convert("RGB")
    w, h = pair.size
    return pair.crop((0, 0, w // 2, h)), pair.crop((w // 2, 0, w, h))


def test_item_contract(synthetic_root):
    ds = AlignedDataset(synthetic_root, "train", load_size=72, crop_size=64)
    assert len(ds) == 4 and [p.name for p in ds.paths] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    item = ds[1]
    assert set(item) == {"input", "target", "label", "name", "index"}
    for key in ("input", "target"):
        assert item[key].shape == (3, 64, 64) and item[key].dtype == torch.float32
        assert item[key].min() >= -1 and item[key].max() <= 1
    assert item["label"].shape == (64, 64) and item["label"].dtype == torch.int64
    assert set(item["label"].unique().tolist()) <= set(range(19)) | {255}
    index = json.loads((synthetic_root / "index.json").read_text())
    assert item["name"] == index["train"]["1.jpg"] == "alderbrook_000001_000019"
    assert item["index"] == 1


@pytest.mark.parametrize("direction", ["BtoA", "AtoB"])
def test_test_time_is_a_plain_resize(synthetic_root, direction):
    ds = AlignedDataset(synthetic_root, "val", direction=direction, crop_size=48, train=False)
    a, b = _halves(ds.paths[2])
    item = ds[2]
    a_ref = _as_input(a.resize((48, 48), Image.Resampling.BICUBIC))
    b_ref = _as_input(b.resize((48, 48), Image.Resampling.BICUBIC))
    source, target = (b_ref, a_ref) if direction == "BtoA" else (a_ref, b_ref)
    assert torch.allclose(item["input"], source, atol=1e-6)
    assert torch.allclose(item["target"], target, atol=1e-6)
    exact = Image.open(synthetic_root / "val_trainids" / "2.png").resize((48, 48), Image.Resampling.NEAREST)
    assert np.array_equal(item["label"].numpy(), np.asarray(exact))
    assert item["name"] == "cedarport_000002_000019"


def test_training_jitter_matches_the_reference_recipe(synthetic_root):
    """Resize to load_size (bicubic), one random crop and flip for both halves and the label."""
    ds = AlignedDataset(synthetic_root, "train", load_size=80, crop_size=64)
    a, b = _halves(ds.paths[0])
    label = Image.open(synthetic_root / "train_trainids" / "0.png")
    flips = set()
    for seed in range(12):
        torch.manual_seed(seed)
        item = ds[0]
        torch.manual_seed(seed)  # replay the same draws: x, y, flip
        x = int(torch.randint(0, 80 - 64 + 1, ()).item())
        y = int(torch.randint(0, 80 - 64 + 1, ()).item())
        flip = bool(torch.rand(()) < 0.5)
        flips.add(flip)

        def jitter(image, resample):
            image = image.resize((80, 80), resample).crop((x, y, x + 64, y + 64))
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else image

        assert torch.allclose(item["input"], _as_input(jitter(b, Image.Resampling.BICUBIC)), atol=1e-6)
        assert torch.allclose(item["target"], _as_input(jitter(a, Image.Resampling.BICUBIC)), atol=1e-6)
        assert np.array_equal(item["label"].numpy(), np.asarray(jitter(label, Image.Resampling.NEAREST)))
    assert flips == {True, False}


def test_label_is_aligned_with_the_jittered_colour_half(synthetic_root):
    """Read back from the jittered colour input, the label agrees best with no shift and no extra flip."""
    ds = AlignedDataset(synthetic_root, "train", load_size=80, crop_size=64)
    for seed in range(4):
        torch.manual_seed(seed)
        item = ds[seed % len(ds)]
        colour = ((item["input"].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
        read_back = color_to_train_ids(colour)[4:-4, 4:-4]
        label = item["label"].numpy()
        scores = {}
        for flip in (False, True):
            moved = label[:, ::-1] if flip else label
            for dy in range(-3, 4):
                for dx in range(-3, 4):
                    scores[flip, dy, dx] = (moved[4 + dy:60 + dy, 4 + dx:60 + dx] == read_back).mean()
        assert max(scores, key=scores.get) == (False, 0, 0) and scores[False, 0, 0] > 0.75


def test_identical_halves_get_identical_jitter(tmp_path):
    rng = np.random.default_rng(0)
    half = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    (tmp_path / "train").mkdir()
    Image.fromarray(np.concatenate([half, half], 1)).save(tmp_path / "train" / "0.png")
    ds = AlignedDataset(tmp_path, "train", load_size=40, crop_size=32)
    with pytest.raises(DataError, match="0.png: not a Cityscapes colour label"):
        ds[0]  # random pixels are no label image: the colour half cannot give a label
    colours = np.asarray(Image.fromarray(rng.integers(0, 19, (32, 32)).astype(np.uint8)).convert("P"))
    from data.cityscapes import train_ids_to_color
    half = train_ids_to_color(colours)
    Image.fromarray(np.concatenate([half, half], 1)).save(tmp_path / "train" / "0.png")
    for seed in range(6):
        torch.manual_seed(seed)
        item = ds[0]
        assert torch.equal(item["input"], item["target"])


def test_no_flip_option(synthetic_root):
    ds = AlignedDataset(synthetic_root, "train", load_size=64, crop_size=64, flip=False)
    reference = AlignedDataset(synthetic_root, "train", crop_size=64, train=False)[2]
    for seed in range(5):
        torch.manual_seed(seed)
        item = ds[2]  # load == crop and no flip: no jitter left at all
        assert torch.equal(item["input"], reference["input"]) and torch.equal(item["label"], reference["label"])


def test_reproducible_with_dataloader_workers(synthetic_root):
    ds = AlignedDataset(synthetic_root, "train", load_size=72, crop_size=64)

    def run():
        loader = torch.utils.data.DataLoader(ds, batch_size=2, shuffle=True, num_workers=2,
                                             generator=torch.Generator().manual_seed(3))
        return [(batch["input"], batch["label"], batch["name"]) for batch in loader]

    first, second = run(), run()
    for (x1, l1, n1), (x2, l2, n2) in zip(first, second):
        assert torch.equal(x1, x2) and torch.equal(l1, l2) and n1 == n2


def test_val_falls_back_to_test_and_plain_reference_folder(synthetic_root, tmp_path):
    """A reference pix2pix folder: only JPEGs under test/, no index, no exact labels."""
    shutil.copytree(synthetic_root / "val", tmp_path / "test")
    plain = AlignedDataset(tmp_path, "val", crop_size=64, train=False)
    exact = AlignedDataset(synthetic_root, "val", crop_size=64, train=False)
    assert plain.folder.name == "test" and len(plain) == 3
    for i in range(3):
        p, e = plain[i], exact[i]
        assert p["name"] == str(i)  # the file stem
        assert torch.equal(p["input"], e["input"])
        agree = (p["label"] == e["label"])[e["label"] != 255].float().mean()
        assert agree > 0.85  # only class boundaries can differ at this small size


def test_sorted_like_the_reference(tmp_path, synthetic_root):
    (tmp_path / "train").mkdir()
    for n in (0, 2, 10, 1):
        shutil.copy(synthetic_root / "train" / "0.jpg", tmp_path / "train" / f"{n}.jpg")
    (tmp_path / "train" / "notes.txt").write_text("not an image")
    ds = AlignedDataset(tmp_path, "train", load_size=64, crop_size=64)
    assert [p.name for p in ds.paths] == ["0.jpg", "1.jpg", "10.jpg", "2.jpg"]


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_bad_folders(tmp_path):
    with pytest.raises(DataError) as info:
        AlignedDataset(tmp_path / "missing")
    assert _one_line(info).startswith(str(tmp_path / "missing"))
    with pytest.raises(DataError, match="train: folder not found"):
        AlignedDataset(tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="no image files"):
        AlignedDataset(tmp_path)


def test_bad_files(tmp_path, synthetic_root):
    folder = tmp_path / "train"
    folder.mkdir()
    good = (synthetic_root / "train" / "0.jpg").read_bytes()

    (folder / "0.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError) as info:
        AlignedDataset(tmp_path)
    assert _one_line(info).startswith(str(folder / "0.jpg")) and "not an image" in str(info.value)

    (folder / "0.jpg").write_bytes(good)
    Image.new("RGB", (64, 64)).save(folder / "1.jpg")
    with pytest.raises(DataError, match=r"1.jpg: size 64x64, expected width = 2 x height"):
        AlignedDataset(tmp_path)

    Image.new("L", (128, 64)).save(folder / "1.jpg")
    with pytest.raises(DataError, match=r"1.jpg: grayscale"):
        AlignedDataset(tmp_path)

    # a truncated JPEG has a valid header: it is found when the item is read, and named
    (folder / "1.jpg").write_bytes(good[: len(good) // 2])
    ds = AlignedDataset(tmp_path, load_size=64, crop_size=64)
    ds[0]
    with pytest.raises(DataError) as info:
        ds[1]
    assert _one_line(info).startswith(str(folder / "1.jpg")) and "truncated" in str(info.value)


def test_a_pair_is_read_by_its_mode_and_one_with_transparent_pixels_refused(tmp_path, synthetic_root):
    (tmp_path / "train").mkdir()
    pair = np.asarray(Image.open(synthetic_root / "train" / "0.jpg").convert("RGBA")).copy()
    Image.fromarray(pair).save(tmp_path / "train" / "0.png")  # opaque: read as its RGB
    pair[5, 7, 3] = 0
    Image.fromarray(pair).save(tmp_path / "train" / "1.png")
    ds = AlignedDataset(tmp_path, crop_size=64, train=False)
    assert torch.equal(ds[0]["input"], AlignedDataset(synthetic_root, crop_size=64, train=False)[0]["input"])
    with pytest.raises(DataError) as info:
        ds[1]
    assert _one_line(info) == (f"{tmp_path / 'train' / '1.png'}: 1 pixel(s) not fully opaque (mode RGBA with alpha); "
                               f"expected an opaque image")


def test_corrupt_file_is_named_inside_a_dataloader_worker(tmp_path, synthetic_root):
    folder = tmp_path / "train"
    folder.mkdir()
    good = (synthetic_root / "train" / "0.jpg").read_bytes()
    (folder / "0.jpg").write_bytes(good[: len(good) // 2])
    loader = torch.utils.data.DataLoader(AlignedDataset(tmp_path, load_size=64, crop_size=64), num_workers=1)
    with pytest.raises(DataError) as info:
        next(iter(loader))
    assert _one_line(info).startswith(f"{folder / '0.jpg'}: corrupt or truncated image")


def test_missing_exact_label_is_named(tmp_path, synthetic_root):
    shutil.copytree(synthetic_root, tmp_path / "data")
    (tmp_path / "data" / "train_trainids" / "3.png").unlink()
    ds = AlignedDataset(tmp_path / "data", load_size=64, crop_size=64)
    with pytest.raises(DataError, match=r"train_trainids/3.png: label file missing"):
        ds[3]


# --------------------------------------------------------------------- through train.py's command line
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = ["--netG", "unet_32", "--ngf", "8", "--ndf", "8", "--load-size", "36", "--crop-size", "32", "--n-epochs", "1",
        "--n-epochs-decay", "1", "--num-workers", "0", "--device", "cpu"]


def _train(dataroot, checkpoints):
    return subprocess.run([sys.executable, str(REPO / "train.py"), "--dataroot", str(dataroot), "--checkpoints-dir",
                           str(checkpoints), *TINY], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))


@pytest.mark.parametrize("content, problem", [
    ("[]", "expected a JSON object, found list"),
    ('{"train": ["x"]}', '"train": expected an object of image file -> frame name, found list'),
    ('{"val": {"0.jpg": 7}}', '"val"."0.jpg": expected a frame name (a string), found 7'),
    ('{"train": ', "unreadable index"),
])
def test_a_malformed_index_is_one_line_naming_it(synthetic_root, tmp_path, content, problem):
    root = shutil.copytree(synthetic_root, tmp_path / "data")
    (root / "index.json").write_text(content)
    result = _train(root, tmp_path / "checkpoints")
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith(f"error: {root / 'index.json'}: {problem}"), line
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_a_folder_named_like_an_image_is_named_not_skipped(synthetic_root, tmp_path):
    root = shutil.copytree(synthetic_root, tmp_path / "data")
    (root / "train" / "4.jpg").mkdir()
    result = _train(root, tmp_path / "checkpoints")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {root / 'train' / '4.jpg'}: named like an image but not a file (a "
                                     f"folder?); move it out of {root / 'train'}")
