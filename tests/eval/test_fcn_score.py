"""Generate -> segment -> score on tiny synthetic data, checked frame by frame against plain loops."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

from data.images import read_rgb
from eval import EvalError
from eval.eval_sets import check_image_folder, open_eval_set
from eval.fcn_score import score_folder, score_real_photos
from eval.generation import generate_images
from eval.segmenters.registry import build_segmenter
from gan.networks import build_generator

CPU = torch.device("cpu")


class ColourNet(torch.nn.Module):
    """A test segmenter: one random 3x3 convolution from colours to class scores."""

    def __init__(self, num_classes, config):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, num_classes, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


@pytest.fixture(autouse=True)
def colour_segmenter(monkeypatch):
    from dataclasses import dataclass

    from eval.segmenters import registry as segmenters

    @dataclass
    class NoConfig:
        pass

    monkeypatch.setitem(segmenters.REGISTRY, "colour",
                        segmenters.SegmenterSpec("colour", NoConfig, ColourNet, lambda c: "colour"))


def varied_segmenter(seed=0):
    """A segmenter whose (untrained) predictions use several classes."""
    torch.manual_seed(seed)
    model = build_segmenter("colour", input_size=(64, 64)).eval()
    with torch.no_grad():
        model.net.conv.weight.normal_(0, 3.0)
    return model


def reference_confusion(model, images, labels):
    """One frame at a time, counted with numpy: rows ground truth, columns prediction."""
    hist = np.zeros((19, 19), dtype=np.int64)
    for image, label in zip(images, labels):
        pred = model.predict(image[None].float() / 127.5 - 1, out_size=tuple(label.shape))[0].numpy()
        label = label.numpy()
        keep = label != 255
        np.add.at(hist, (label[keep].astype(np.int64), pred[keep]), 1)
    return hist


def test_eval_set_names_and_labels_follow_index_json(synthetic_root):
    evalset = open_eval_set(synthetic_root)
    index = json.loads((synthetic_root / "index.json").read_text())
    files = sorted((synthetic_root / "val").glob("*.jpg"))
    assert evalset.names == [index["val"][f.name] for f in files]
    assert evalset.size == 64 and len(evalset) == 3
    for i, f in enumerate(files):
        expected = np.asarray(Image.open(synthetic_root / "val_trainids" / f"{f.stem}.png"))
        assert np.array_equal(evalset.label(i).numpy(), expected)


def test_generation_is_seeded_and_named_after_frames(synthetic_root, tmp_path):
    evalset = open_eval_set(synthetic_root)
    torch.manual_seed(0)
    generator = build_generator("unet_64", ngf=8)
    first = generate_images(generator, evalset, tmp_path / "a", CPU, seed=3)
    second = generate_images(generator, evalset, tmp_path / "b", CPU, seed=3)
    other_seed = generate_images(generator, evalset, tmp_path / "c", CPU, seed=4)
    eval_mode = generate_images(generator, evalset, tmp_path / "d", CPU, test_protocol=False, seed=3)
    assert sorted(p.stem for p in first.glob("*.png")) == sorted(evalset.names)
    name = evalset.names[0]
    a = np.asarray(Image.open(first / f"{name}.png"))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, np.asarray(Image.open(second / f"{name}.png")))
    assert not np.array_equal(a, np.asarray(Image.open(other_seed / f"{name}.png")))  # dropout noise
    assert not np.array_equal(a, np.asarray(Image.open(eval_mode / f"{name}.png")))
    # the test protocol: one image, dropout on, batch statistics of that image
    generator.train()
    torch.manual_seed(3)
    with torch.no_grad():
        fake = generator(evalset.generator_input(0)[None])[0]
    expected = ((fake.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.array_equal(a, expected)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_folder_scores_match_frame_by_frame_counts(synthetic_root, tmp_path, batch_size):
    evalset = open_eval_set(synthetic_root)
    generate_images(build_generator("unet_64", ngf=8), evalset, tmp_path, CPU)
    model = varied_segmenter()
    conf = score_folder(model, evalset, tmp_path, CPU, batch_size=batch_size)
    images = [read_rgb(tmp_path / f"{n}.png") for n in evalset.names]
    labels = [evalset.label(i) for i in range(len(evalset))]
    hist = reference_confusion(model, images, labels)
    assert np.array_equal(conf.numpy(), hist)
    assert (hist.sum(0) > 0).sum() >= 3  # the predictions really are varied
    assert hist.sum() == sum(int((label != 255).sum()) for label in labels)


def test_real_photo_row_scores_the_val_photos(synthetic_root):
    evalset = open_eval_set(synthetic_root)
    model = varied_segmenter(1)
    conf = score_real_photos(model, evalset, CPU, batch_size=3)
    photos = []
    for f in sorted((synthetic_root / "val").glob("*.jpg")):
        pair = np.asarray(Image.open(f).convert("RGB"))
        photos.append(torch.from_numpy(pair[:, :64].copy()).permute(2, 0, 1))  # A = the photo
    hist = reference_confusion(model, photos, [evalset.label(i) for i in range(3)])
    assert np.array_equal(conf.numpy(), hist)


def test_fullres_protocol_scores_against_official_labels(synthetic_root, tmp_path):
    from data.cityscapes import label_ids_to_train_ids
    evalset = open_eval_set(synthetic_root, protocol="fullres")
    generate_images(build_generator("unet_64", ngf=8), evalset, tmp_path, CPU)
    model = varied_segmenter(2)
    conf = score_folder(model, evalset, tmp_path, CPU, batch_size=2)
    official = synthetic_root.parent / "cityscapes" / "gtFine" / "val"
    hist = np.zeros((19, 19), dtype=np.int64)
    for name in evalset.names:
        ids = np.asarray(Image.open(next(official.glob(f"*/{name}_gtFine_labelIds.png"))))
        label = label_ids_to_train_ids(ids)
        assert label.shape == (64, 128)  # the official images are 2S x S
        # as the reference script: the uint8 PNG resized by PIL's bilinear filter (scipy.misc.imresize)
        up = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB").resize(label.shape[::-1], Image.BILINEAR))
        up = torch.from_numpy(up.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
        pred = model.predict(up, out_size=label.shape)[0].numpy()
        keep = label != 255
        np.add.at(hist, (label[keep].astype(np.int64), pred[keep]), 1)
    assert np.array_equal(conf.numpy(), hist)


def test_fullres_needs_the_official_layout(synthetic_root, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(synthetic_root, copy)
    index = json.loads((copy / "index.json").read_text())
    index["cityscapes_root"] = None
    (copy / "index.json").write_text(json.dumps(index))
    with pytest.raises(EvalError, match="cityscapes_root is null"):
        open_eval_set(copy, protocol="fullres")


def test_image_folder_problems_name_the_file(synthetic_root, tmp_path):
    evalset = open_eval_set(synthetic_root)
    generate_images(build_generator("unet_64", ngf=8), evalset, tmp_path, CPU)
    assert len(check_image_folder(tmp_path, evalset)) == 3
    small = tmp_path / f"{evalset.names[1]}.png"
    Image.open(small).resize((32, 32)).save(small)
    with pytest.raises(EvalError) as info:
        check_image_folder(tmp_path, evalset)
    assert str(small) in str(info.value) and "32x32, expected 64x64" in str(info.value)
    (tmp_path / f"{evalset.names[2]}.png").unlink()
    with pytest.raises(EvalError) as info:
        check_image_folder(tmp_path, evalset)
    message = str(info.value)
    assert "1 of 3 val frames" in message and evalset.names[2] in message and "\n" not in message


class ConvDtypes(TorchDispatchMode):
    """The dtypes convolutions compute in while it is active."""

    def __init__(self):
        super().__init__()
        self.dtypes = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.startswith("convolution"):
            self.dtypes.add(args[0].dtype)
        return func(*args, **(kwargs or {}))


def test_amp_means_bf16_autocast_as_in_training(synthetic_root, tmp_path):
    """evaluate.py --amp and train.py --amp mean the same: bf16 autocast where the device has bf16
    (the CPU included), for generating and for segmenting."""
    evalset = open_eval_set(synthetic_root)
    torch.manual_seed(0)
    with ConvDtypes() as generating:
        generate_images(build_generator("unet_64", ngf=8), evalset, tmp_path, CPU, amp=True)
    with ConvDtypes() as segmenting:
        score_folder(varied_segmenter(), evalset, tmp_path, CPU, amp=True)
    assert generating.dtypes == {torch.bfloat16} and segmenting.dtypes == {torch.bfloat16}
    with ConvDtypes() as plain:
        score_folder(varied_segmenter(), evalset, tmp_path, CPU, amp=False)
    assert plain.dtypes == {torch.float32}
