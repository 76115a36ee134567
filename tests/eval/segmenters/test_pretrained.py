"""ImageNet weights of the trained scorers' backbones: from the local caches, and none offline."""
import pytest
import torch

from eval.segmenters import pretrained
from eval.segmenters.fcn8s import FCN8s, FCN8sConfig
from eval.segmenters.registry import build_segmenter
from tests.eval.test_segmenters import TINY_DEEPLAB


def test_imagenet_encoder_weights_come_from_the_local_cache(tmp_path, monkeypatch):
    timm = pytest.importorskip("timm")
    import huggingface_hub.constants as hub_constants
    from safetensors.torch import save_file
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
    monkeypatch.setattr(pretrained, "_reachable", lambda host, timeout=3.0: pytest.fail("must not go online"))

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
    monkeypatch.setattr(pretrained, "_reachable", lambda host, timeout=3.0: False)
    assert build_segmenter("deeplabv3plus_xception71", TINY_DEEPLAB).load_imagenet(allow_download=True) is None
    assert FCN8s(19, FCN8sConfig()).load_imagenet(allow_download=True) is None
