"""Segmenters: FCN-8s topology and size, DeepLabV3+ Xception-71 config, registry, save / load errors."""
import pytest
import torch
from torch import nn

from eval import EvalError
from eval import segmenters as seg
from eval.segmenters import (FCN8s, FCN8sConfig, build_segmenter, load_segmenter, save_segmenter,
                             segmenter_metadata)
from common.checkpoint import CheckpointError, save_atomic

TINY_FCN = {"width_mult": 1 / 16}
TINY_DEEPLAB = {"encoder": "mobilenetv3_small_050", "decoder_channels": 16}
NAMES = [f"c{i}" for i in range(19)]


def test_full_fcn8s_has_the_vgg16_fcn8s_parameter_count():
    # VGG16 convolutions + fc6 (7x7) + fc7 + three score layers + three bias-free upsamplings, 19 classes.
    vgg_convs = 14_714_688
    fc6 = 512 * 7 * 7 * 4096 + 4096
    fc7 = 4096 * 4096 + 4096
    scores = (4096 + 1) * 19 + (512 + 1) * 19 + (256 + 1) * 19
    upsampling = 19 * 19 * (4 * 4 + 4 * 4 + 16 * 16)
    net = FCN8s(19, FCN8sConfig())
    assert sum(p.numel() for p in net.parameters()) == vgg_convs + fc6 + fc7 + scores + upsampling


def test_fcn8s_skip_topology_and_strides():
    net = FCN8s(19, FCN8sConfig(width_mult=1 / 16)).eval()
    x = torch.randn(1, 3, 64, 96)
    pool3 = net.to_pool3(x)
    pool4 = net.to_pool4(pool3)
    pool5 = net.to_pool5(pool4)
    assert pool3.shape[-2:] == (8, 12) and pool4.shape[-2:] == (4, 6) and pool5.shape[-2:] == (2, 3)
    assert net.upscore2.stride == (2, 2) and net.upscore_pool4.stride == (2, 2) and net.upscore8.stride == (8, 8)
    assert net(x).shape == (1, 19, 64, 96)


def test_upsampling_starts_as_bilinear_interpolation():
    up = seg._upsample(2, 8)
    x = torch.rand(1, 2, 5, 5)
    y = up(x)
    assert y.shape == (1, 2, 40, 40)
    constant = up(torch.ones(1, 2, 5, 5))
    assert torch.allclose(constant[..., 8:-8, 8:-8], torch.ones(1, 2, 24, 24))  # interior keeps a constant
    # each output channel depends only on its own input channel
    x2 = x.clone()
    x2[:, 1] = 0
    assert torch.equal(up(x2)[:, 0], y[:, 0])


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
    assert seg._deeplab_name(config) == "DeepLabV3+ Xception-71"


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


def test_imagenet_encoder_weights_come_from_the_local_cache(tmp_path, monkeypatch):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    import huggingface_hub.constants as hub_constants
    encoder = TINY_DEEPLAB["encoder"]
    repo_id = timm.models.get_pretrained_cfg(encoder).hf_hub_id
    torch.manual_seed(3)
    imagenet = timm.create_model(encoder)  # stands in for the downloaded ImageNet weights
    snapshot = tmp_path / f"models--{repo_id.replace('/', '--')}" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in imagenet.state_dict().items()}, snapshot / "model.safetensors")
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("abc")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(seg, "_reachable", lambda host, timeout=3.0: pytest.fail("must not go online"))

    model = build_segmenter("deeplabv3plus_xception71", TINY_DEEPLAB)
    note = model.load_imagenet(allow_download=False)
    assert note == f"timm ImageNet weights {repo_id}"
    loaded = model.net.model.encoder.state_dict()
    stem = next(k for k in loaded if k.endswith("conv_stem.weight"))
    assert torch.equal(loaded[stem], imagenet.state_dict()["conv_stem.weight"])


def test_no_imagenet_weights_offline_means_from_scratch(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub_constants
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(seg, "_reachable", lambda host, timeout=3.0: False)
    assert build_segmenter("deeplabv3plus_xception71", TINY_DEEPLAB).load_imagenet(allow_download=True) is None
    assert FCN8s(19, FCN8sConfig()).load_imagenet(allow_download=True) is None
