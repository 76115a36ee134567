"""Segmenters: input handling, DeepLabV3+ Xception-71 config, registry, save / load errors."""
import pytest
import torch
from torch import nn

from common.checkpoint import CheckpointError, save_atomic
from eval import EvalError
from eval.segmenters import deeplabv3plus
from eval.segmenters import registry as seg
from eval.segmenters.files import load_segmenter, save_segmenter, segmenter_metadata
from eval.segmenters.registry import build_segmenter

TINY_FCN = {"width_mult": 1 / 16}
TINY_DEEPLAB = {"encoder": "mobilenetv3_small_050", "decoder_channels": 16}
NAMES = [f"c{i}" for i in range(19)]


def test_segmenter_pads_odd_sizes_and_predicts_at_any_size():
    model = build_segmenter("fcn8s", TINY_FCN).eval()
    images = torch.rand(2, 3, 50, 70) * 2 - 1
    assert model(images).shape == (2, 19, 50, 70)
    pred = model.predict(images, out_size=(100, 140))
    assert pred.shape == (2, 100, 140) and pred.dtype == torch.int64
    assert int(pred.min()) >= 0 and int(pred.max()) < 19


def test_deeplab_registry_entry_is_xception71_at_output_stride_16():
    config = seg.make_config("deeplabv3plus_xception71")
    assert (config.encoder, config.output_stride) == ("xception71", 16)
    model = build_segmenter("deeplabv3plus_xception71", TINY_DEEPLAB).eval()
    assert model.display_name == "DeepLabV3+ (mobilenetv3_small_050 encoder, decoder 16)"  # honest name
    assert model(torch.rand(1, 3, 64, 64) * 2 - 1).shape == (1, 19, 64, 64)
    assert deeplabv3plus.display_name(config) == "DeepLabV3+ Xception-71"


def _save(tmp_path, arch, config, name=None):
    model = build_segmenter(arch, config, input_size=(64, 64))
    meta = segmenter_metadata(model, NAMES, (64, 64), {"dataroot": "/x", "name": "x"}, {"pixel_acc": 0.5})
    path = tmp_path / (name or f"{arch}.pt")
    save_segmenter(path, model, meta)
    return model, path


def test_save_and_load_roundtrip_keeps_weights_and_metadata(tmp_path):
    model, path = _save(tmp_path, "fcn8s", TINY_FCN)
    loaded, meta = load_segmenter(path, "fcn8s")
    assert meta["arch"] == "fcn8s" and meta["config"] == {"width_mult": 1 / 16, "batch_norm": False}
    assert meta["display_name"] == "FCN-8s (width x0.0625)"
    assert meta["class_names"] == NAMES and meta["train_resolution"] == [64, 64]
    assert meta["normalization"]["mean"] == list(seg.IMAGENET_MEAN)
    assert meta["trained_on"]["name"] == "x" and meta["val_scores"] == {"pixel_acc": 0.5}
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.equal(loaded(images), model.eval()(images))
    assert not loaded.training


def test_missing_file_says_how_to_train(tmp_path):
    with pytest.raises(EvalError) as info:
        load_segmenter(tmp_path / "deeplabv3plus_xception71.pt", "deeplabv3plus_xception71")
    message = str(info.value)
    assert "\n" not in message and "deeplabv3plus_xception71.pt" in message
    assert "python -m eval.train_segmenter --arch deeplabv3plus_xception71" in message


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    _, path = _save(tmp_path, "fcn8s", TINY_FCN, name="deeplabv3plus_xception71.pt")
    with pytest.raises(EvalError, match="holds a fcn8s segmenter, expected deeplabv3plus_xception71"):
        load_segmenter(path, "deeplabv3plus_xception71")


def test_other_files_are_refused_with_one_line(tmp_path):
    generator_like = tmp_path / "g.pt"
    save_atomic({"format_version": 1, "netG": {}}, generator_like)
    with pytest.raises(EvalError, match="not a segmenter checkpoint"):
        load_segmenter(generator_like)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_segmenter(garbage)
    _, path = _save(tmp_path, "fcn8s", TINY_FCN)
    obj = torch.load(path, weights_only=True)
    obj["metadata"]["config"]["width_mult"] = 1 / 8  # weights no longer fit the config
    save_atomic(obj, path)
    with pytest.raises(EvalError, match="do not fit") as info:
        load_segmenter(path)
    assert "\n" not in str(info.value)


def test_a_third_segmenter_is_one_registry_entry(tmp_path, monkeypatch):
    from dataclasses import dataclass

    @dataclass
    class PixelConfig:
        hidden: int = 4

    class PixelNet(nn.Module):
        def __init__(self, n, config):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, config.hidden, 1), nn.ReLU(), nn.Conv2d(config.hidden, n, 1))

        def forward(self, x):
            return self.body(x)

    spec = seg.SegmenterSpec("pixel", PixelConfig, PixelNet, lambda c: f"Pixel MLP ({c.hidden})")
    monkeypatch.setitem(seg.REGISTRY, "pixel", spec)
    model, path = _save(tmp_path, "pixel", {"hidden": 3})
    loaded, meta = load_segmenter(path, "pixel")
    assert meta["display_name"] == "Pixel MLP (3)"
    images = torch.rand(1, 3, 8, 8) * 2 - 1
    assert torch.equal(loaded(images), model.eval()(images))


def test_unknown_config_field_is_an_error():
    with pytest.raises(EvalError, match="unknown config field"):
        build_segmenter("fcn8s", {"depth": 3})
