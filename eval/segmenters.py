"""Segmenters that judge generated images: FCN-8s and DeepLabV3+ Xception-71, a registry, save and load.

* ``fcn8s``: VGG16 FCN-8s with the original skip topology (Long et al.): class scores from fc7 are
  upsampled 2x and added to scores from pool4, upsampled 2x again and added to scores from pool3, then
  upsampled 8x, all three upsamplings learnable transposed convolutions initialised to bilinear
  interpolation. The original pads conv1 by 100 pixels and crops after each upsampling; here the
  convolutions are padded so every map stays aligned with the input and nothing needs cropping.
* ``deeplabv3plus_xception71``: segmentation-models-pytorch DeepLabV3+ on the timm ``xception71``
  encoder at output stride 16, our stand-in for DeepLab's DPC-xception71 (whose weights exist only
  for TensorFlow).
* ``fcn8s_caffe``: pix2pix's own Caffe FCN-8s, imported from ``fcn-8s-cityscapes.caffemodel``
  (:mod:`eval.caffe_fcn8s`); it does its own input handling as the reference script does.

A segmenter takes images in [-1, 1] (the generator's range) and normalises them itself with the
ImageNet mean and standard deviation. It is saved with its metadata: architecture, its config,
classes, input normalisation, training resolution, the data it was trained on and its own
validation FCN-scores. Weights load from a local file only.

To add a segmenter, write a config dataclass (with a ``check()`` raising ValueError for values that
build no network, if there are such) and a builder and add one :class:`SegmenterSpec` to
``REGISTRY``.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from common.checkpoint import FORMAT_VERSION, describe_names, load_checkpoint, nonfinite_entries, save_atomic
from data.cityscapes import NUM_CLASSES
from eval import EvalError, dpc_xception71
from eval.caffe_fcn8s import CaffeFCN8s, CaffeFCN8sConfig
from eval.caffe_fcn8s import display_name as _caffe_fcn8s_name

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_DIR = Path("checkpoints") / "segmenters"


# ---------------------------------------------------------------------------------------- FCN-8s
@dataclass
class FCN8sConfig:
    """FCN-8s size. ``width_mult`` < 1 scales every VGG16 and fc6/fc7 width (small test/demo models);
    ``batch_norm`` uses VGG16-BN instead of plain VGG16 (easier to train from scratch)."""
    width_mult: float = 1.0
    batch_norm: bool = False

    def check(self) -> None:
        """ValueError naming a field whose value builds no network."""
        if not (math.isfinite(self.width_mult) and self.width_mult > 0):
            raise ValueError(f"width_mult must be a number > 0, got {self.width_mult}")


def _bilinear_kernel(channels: int, size: int) -> torch.Tensor:
    """Weights [C, C, k, k] that make a transposed convolution upsample each channel bilinearly."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float32) - center).abs() / factor
    kernel = ramp[:, None] * ramp[None, :]
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = kernel
    return weight


def _upsample(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Learnable exact ``factor``x upsampling (kernel 2f, stride f, padding f/2), bilinear at start."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(_bilinear_kernel(channels, 2 * factor))
    return up


class FCN8s(nn.Module):
    """VGG16 FCN-8s: pool3 (/8), pool4 (/16) and fc7 (/32) class scores fused by 2x, 2x, 8x upsampling."""

    size_divisor = 32

    def __init__(self, num_classes: int = NUM_CLASSES, config: FCN8sConfig = FCN8sConfig()):
        super().__init__()
        from torchvision.models import vgg

        self.batch_norm = config.batch_norm

        def width(channels: int) -> int:
            return max(1, int(round(channels * config.width_mult)))

        if config.width_mult == 1.0:  # torchvision's own module layout, so ImageNet weights load as is
            features = (vgg.vgg16_bn if config.batch_norm else vgg.vgg16)(weights=None).features
        else:
            cfg = [v if v == "M" else width(v) for v in vgg.cfgs["D"]]
            features = vgg.make_layers(cfg, batch_norm=config.batch_norm)
        pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]  # 5 pools
        self.to_pool3 = features[: pools[2] + 1]
        self.to_pool4 = features[pools[2] + 1: pools[3] + 1]
        self.to_pool5 = features[pools[3] + 1:]
        fc = width(4096)
        # fc6 / fc7 of VGG16 as convolutions (fc6 is 7x7, padded to keep the /32 map's size).
        self.fc = nn.Sequential(
            nn.Conv2d(width(512), fc, 7, padding=3), nn.ReLU(inplace=True), nn.Dropout(0.5),
            nn.Conv2d(fc, fc, 1), nn.ReLU(inplace=True), nn.Dropout(0.5),
        )
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        self.score_pool4 = nn.Conv2d(width(512), num_classes, 1)
        self.score_pool3 = nn.Conv2d(width(256), num_classes, 1)
        for score in (self.score_fr, self.score_pool4, self.score_pool3):  # as the original: start at 0
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
        for conv in (self.fc[0], self.fc[3]):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        self.upscore2 = _upsample(num_classes, 2)
        self.upscore_pool4 = _upsample(num_classes, 2)
        self.upscore8 = _upsample(num_classes, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool3 = self.to_pool3(x)
        pool4 = self.to_pool4(pool3)
        pool5 = self.to_pool5(pool4)
        score = self.upscore2(self.score_fr(self.fc(pool5)))             # /16
        score = self.upscore_pool4(score + self.score_pool4(pool4))       # /8
        return self.upscore8(score + self.score_pool3(pool3))             # /1

    def load_imagenet(self, allow_download: bool) -> str | None:
        """Initialise VGG16 (and fc6/fc7) from torchvision's ImageNet weights; returns a note or None."""
        from torchvision.models import vgg
        if self.fc[0].out_channels != 4096:  # only the full-width network has ImageNet weights
            return None
        weights = vgg.VGG16_BN_Weights.IMAGENET1K_V1 if self.batch_norm else vgg.VGG16_Weights.IMAGENET1K_V1
        state = _torch_hub_weights(weights.url, allow_download)
        if state is None:
            return None
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        ours = list(self.to_pool3) + list(self.to_pool4) + list(self.to_pool5)
        nn.Sequential(*ours).load_state_dict(features)
        with torch.no_grad():  # the classifier's fully connected fc6 / fc7 as convolutions
            self.fc[0].weight.copy_(state["classifier.0.weight"].view(4096, 512, 7, 7))
            self.fc[0].bias.copy_(state["classifier.0.bias"])
            self.fc[3].weight.copy_(state["classifier.3.weight"].view(4096, 4096, 1, 1))
            self.fc[3].bias.copy_(state["classifier.3.bias"])
        return f"ImageNet weights {Path(weights.url).name}"


def _torch_hub_weights(url: str, allow_download: bool) -> dict | None:
    """A torchvision state_dict from the torch hub cache, downloaded only if ``allow_download``."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    if not (allow_download and _reachable(urlparse(url).hostname)):
        return None
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False)
    except Exception:  # offline or the server refuses: train from scratch
        return None


# ------------------------------------------------------------------------------- DeepLabV3+
@dataclass
class DeepLabV3PlusConfig:
    """DeepLabV3+ on a timm encoder. The registry entry's encoder is ``xception71``; smaller encoders
    (for tests) are recorded here and in the display name."""
    encoder: str = "xception71"
    output_stride: int = 16
    decoder_channels: int = 256

    def check(self) -> None:
        """ValueError naming a field whose value builds no network."""
        import timm
        if not timm.is_model(self.encoder):
            raise ValueError(f"encoder {self.encoder!r} is not a timm model name")
        if self.output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {self.output_stride}")
        if self.decoder_channels < 1:
            raise ValueError(f"decoder_channels must be >= 1, got {self.decoder_channels}")


class DeepLabV3Plus(nn.Module):
    """segmentation-models-pytorch DeepLabV3+ with a timm (``tu-``) encoder, no pretrained weights."""

    size_divisor = 32

    def __init__(self, num_classes: int = NUM_CLASSES, config: DeepLabV3PlusConfig = DeepLabV3PlusConfig()):
        super().__init__()
        self.config = config
        self.model = self._build(num_classes, config, encoder_weights=None)

    @staticmethod
    def _build(num_classes, config, encoder_weights, **encoder_kwargs):
        import segmentation_models_pytorch as smp
        return smp.DeepLabV3Plus(encoder_name=f"tu-{config.encoder}", encoder_weights=encoder_weights,
                                 encoder_output_stride=config.output_stride,
                                 decoder_channels=config.decoder_channels, classes=num_classes, **encoder_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def load_imagenet(self, allow_download: bool) -> str | None:
        """Initialise the encoder from timm's ImageNet weights (Hugging Face cache, or online if allowed)."""
        import timm
        cfg = timm.models.get_pretrained_cfg(self.config.encoder)
        hub_id = getattr(cfg, "hf_hub_id", None)
        if not hub_id:
            return None
        extra = {}
        local = _hf_cached_file(hub_id)
        if local is not None:
            extra = {"pretrained_cfg_overlay": {"file": str(local)}}
        elif not (allow_download and _reachable("huggingface.co")):
            return None
        try:
            pretrained = self._build(self.model.segmentation_head[0].out_channels, self.config, True, **extra)
        except Exception:
            return None
        self.model.encoder.load_state_dict(pretrained.encoder.state_dict())
        return f"timm ImageNet weights {hub_id}"


def _hf_cached_file(repo_id: str) -> Path | None:
    """A weights file of ``repo_id`` already in the Hugging Face cache, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def _reachable(host: str, timeout: float = 3.0) -> bool:
    """Whether ``host`` answers on port 443 (so a download is worth trying)."""
    import socket
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class SegmenterSpec:
    """One registered segmenter: its config type, builder and a display name for tables."""
    name: str
    config_type: type
    build: Callable[[int, object], nn.Module]
    display_name: Callable[[object], str]
    obtain: str = ""   # the command that makes its file, for segmenters not trained by eval.train_segmenter


def _fcn8s_name(config: FCN8sConfig) -> str:
    extras = [f"width x{config.width_mult:g}"] if config.width_mult != 1.0 else []
    extras += ["BN"] if config.batch_norm else []
    return "FCN-8s" + (f" ({', '.join(extras)})" if extras else "")


def _deeplab_name(config: DeepLabV3PlusConfig) -> str:
    if config.encoder == "xception71" and config.decoder_channels == 256:
        return "DeepLabV3+ Xception-71"
    return f"DeepLabV3+ ({config.encoder} encoder, decoder {config.decoder_channels})"


REGISTRY: dict[str, SegmenterSpec] = {
    "fcn8s": SegmenterSpec("fcn8s", FCN8sConfig, lambda n, c: FCN8s(n, c), _fcn8s_name),
    "deeplabv3plus_xception71": SegmenterSpec(
        "deeplabv3plus_xception71", DeepLabV3PlusConfig, lambda n, c: DeepLabV3Plus(n, c), _deeplab_name),
    # pix2pix's Caffe FCN-8s (Table 2), imported from its caffemodel (20 output channels: num_classes=20)
    "fcn8s_caffe": SegmenterSpec("fcn8s_caffe", CaffeFCN8sConfig, lambda n, c: CaffeFCN8s(n, c), _caffe_fcn8s_name,
                                 obtain="python -m eval.import_segmenter fcn8s_caffe fcn-8s-cityscapes.caffemodel "
                                        "--out checkpoints/segmenters/fcn8s_caffe.pt"),
    # DeepLab's model-zoo DPC Xception-71 (Table 3), imported with `python -m eval.import_segmenter`
    "dpc_xception71": SegmenterSpec("dpc_xception71", dpc_xception71.DPCXception71Config,
                                    lambda n, c: dpc_xception71.DPCXception71(n, c), dpc_xception71.display_name,
                                    obtain=dpc_xception71.IMPORT_COMMAND),
}


def make_config(arch: str, overrides: dict | None = None):
    """The config dataclass of ``arch`` with the given fields changed (unknown fields: EvalError)."""
    spec = get_spec(arch)
    overrides = dict(overrides or {})
    known = {f.name for f in fields(spec.config_type)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise EvalError(f"segmenter {arch}: unknown config field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    config = spec.config_type(**overrides)
    try:
        if hasattr(config, "check"):  # a config may refuse values that build no network
            config.check()
    except ValueError as error:
        raise EvalError(f"segmenter {arch}: config {error}") from None
    return config


def get_spec(arch: str) -> SegmenterSpec:
    if arch not in REGISTRY:
        raise EvalError(f"unknown segmenter architecture {arch!r} (known: {', '.join(REGISTRY)})")
    return REGISTRY[arch]


class Segmenter(nn.Module):
    """A registered network plus its input handling: images in [-1, 1] -> class scores [N, C, H, W].

    Inputs are normalised with ``mean``/``std`` (on [0, 1] RGB) and padded to the network's size
    divisor; :meth:`predict` runs the network at ``input_size`` (its training resolution) when given
    and returns class indices at the requested output size.

    A network whose class sets ``own_input_handling = True`` reproduces an original scorer together
    with that scorer's preprocessing: it takes the images in [-1, 1] as they are and returns scores at
    their size (colour order, value range, padding and cropping are its own business); ``mean``/``std``
    are then unused.
    """

    def __init__(self, arch: str, config=None, num_classes: int = NUM_CLASSES,
                 mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size: tuple[int, int] | None = None):
        super().__init__()
        spec = get_spec(arch)
        self.arch = arch
        self.config = config if config is not None else spec.config_type()
        self.num_classes = num_classes
        self.input_size = tuple(input_size) if input_size is not None else None
        self.net = spec.build(num_classes, self.config)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @property
    def display_name(self) -> str:
        return get_spec(self.arch).display_name(self.config)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class scores at the input size for images in [-1, 1] (N, 3, H, W)."""
        if getattr(self.net, "own_input_handling", False):
            return self.net(images)
        x = ((images + 1) / 2 - self.mean) / self.std
        h, w = x.shape[-2:]
        div = getattr(self.net, "size_divisor", 1)
        pad_h, pad_w = (-h) % div, (-w) % div
        if pad_h or pad_w:  # zero after normalisation = the mean colour
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.net(x)[..., :h, :w]

    @torch.no_grad()
    def predict(self, images: torch.Tensor, out_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Class indices [N, H, W] at ``out_size`` (default: the image size). The network sees the
        images at its training resolution; its scores are resized bilinearly to ``out_size``."""
        out_size = tuple(out_size) if out_size is not None else tuple(images.shape[-2:])
        if self.input_size is not None and tuple(images.shape[-2:]) != self.input_size:
            images = F.interpolate(images, size=self.input_size, mode="bilinear", align_corners=False,
                                   antialias=True)
        scores = self(images)
        if tuple(scores.shape[-2:]) != out_size:
            scores = F.interpolate(scores.float(), size=out_size, mode="bilinear", align_corners=False)
        return scores.argmax(dim=1)

    def load_imagenet(self, allow_download: bool) -> str | None:
        """ImageNet initialisation of the backbone if its weights are at hand; a note, or None."""
        return self.net.load_imagenet(allow_download)


def build_segmenter(arch: str, config=None, num_classes: int = NUM_CLASSES,
                    input_size: tuple[int, int] | None = None) -> Segmenter:
    """A freshly initialised segmenter of a registered architecture (config: dataclass or dict)."""
    if config is None or isinstance(config, dict):
        config = make_config(arch, config)
    return Segmenter(arch, config, num_classes, input_size=input_size)


def default_path(arch: str, directory: str | os.PathLike = DEFAULT_DIR) -> Path:
    """Where a trained segmenter of ``arch`` lives by default: ``checkpoints/segmenters/<arch>.pt``."""
    return Path(directory) / f"{arch}.pt"


def train_command(arch: str) -> str:
    """The command that makes the segmenter file of ``arch`` (training it, or importing an original)."""
    spec = REGISTRY.get(arch)
    return spec.obtain if spec is not None and spec.obtain else f"python -m eval.train_segmenter --arch {arch}"


def segmenter_metadata(model: Segmenter, class_names, train_resolution, trained_on: dict,
                       val_scores: dict | None, training: dict | None = None) -> dict:
    """The description saved next to a segmenter's weights."""
    return {
        "arch": model.arch,
        "display_name": model.display_name,
        "config": asdict(model.config),
        "num_classes": model.num_classes,
        "class_names": list(class_names),
        "normalization": {"input_range": [-1.0, 1.0], "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                          "note": "x in [-1,1] -> ((x+1)/2 - mean) / std, RGB"},
        "train_resolution": list(train_resolution),
        "trained_on": dict(trained_on),
        "val_scores": val_scores,
        "training": dict(training or {}),
    }


def save_segmenter(path: str | os.PathLike, model: Segmenter, metadata: dict, extra: dict | None = None) -> Path:
    """Write weights and metadata atomically (``extra``: e.g. training state for a resume file)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    obj = {"format_version": FORMAT_VERSION, "kind": "segmenter", "metadata": metadata, "state_dict": state}
    obj.update(extra or {})
    return save_atomic(obj, path)


def read_segmenter_file(path: str | os.PathLike, arch: str | None = None) -> dict:
    """Load and check a segmenter file: EvalError naming it if missing, not a segmenter or of another
    architecture (CheckpointError if unreadable)."""
    path = Path(path)
    if not path.is_file():
        how = train_command(arch) if arch else "python -m eval.train_segmenter --arch ARCH"
        raise EvalError(f"{path}: segmenter weights not found; make them with `{how}`")
    obj = load_checkpoint(path, require_format=True)
    if obj.get("kind") != "segmenter" or "metadata" not in obj or "state_dict" not in obj:
        raise EvalError(f"{path}: not a segmenter checkpoint (no segmenter metadata)")
    found = obj["metadata"].get("arch")
    if arch is not None and found != arch:
        raise EvalError(f"{path}: holds a {found} segmenter, expected {arch}")
    if found not in REGISTRY:
        raise EvalError(f"{path}: unknown segmenter architecture {found!r} (known: {', '.join(REGISTRY)})")
    return obj


def load_segmenter(path: str | os.PathLike, arch: str | None = None,
                   device: str | torch.device = "cpu") -> tuple[Segmenter, dict]:
    """The segmenter saved at ``path`` (in eval mode, on ``device``) and its metadata."""
    obj = read_segmenter_file(path, arch)
    meta = obj["metadata"]
    bad = nonfinite_entries(obj["state_dict"])
    if bad:
        raise EvalError(f"{path}: the segmenter holds non-finite values ({describe_names(bad)}); its training "
                        f"diverged and it cannot score anything")
    config = make_config(meta["arch"], meta.get("config"))
    normalization = meta.get("normalization") or {}
    model = Segmenter(meta["arch"], config, meta["num_classes"],
                      mean=normalization.get("mean", IMAGENET_MEAN), std=normalization.get("std", IMAGENET_STD),
                      input_size=meta.get("train_resolution"))
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise EvalError(f"{path}: weights do not fit a {meta['arch']} segmenter with config {meta.get('config')} ({first})") from exc
    return model.to(device).eval(), meta
