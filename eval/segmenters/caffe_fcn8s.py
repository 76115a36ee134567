"""pix2pix's Caffe FCN-8s (``fcn-8s-cityscapes.caffemodel``) as a PyTorch network, and its importer.

The network is the reference's ``scripts/eval_cityscapes/caffemodel/deploy.prototxt`` layer for layer:

* input: RGB -> BGR, values 0-255, minus the BGR mean (72.78044, 83.21195, 73.45286);
* VGG16 convolutions (3x3, ReLU), ``conv1_1`` padded by 100 pixels, the others by 1; max pooling 2x2
  stride 2 with Caffe's output size ceil((H - 2) / 2) + 1;
* ``fc6_cs`` 7x7 without padding, ``fc7_cs`` 1x1 (both ReLU; no dropout in the deploy net);
* 20 class scores from ``score_fr``, upsampled 2x by ``upscore2`` (a transposed convolution, kernel 4,
  stride 2, no bias), plus ``score_pool4`` cropped at offset 5; upsampled 2x by ``upscore_pool4``, plus
  ``score_pool3`` cropped at offset 9; upsampled 8x by ``upscore8`` (kernel 16, stride 8) and cropped at
  offset 31 to the input's size.

Scores come out at the input size for any input size. The 20th channel is no Cityscapes class; the
scoring counts a pixel predicted as it as an error for the pixel's true class.

``import_caffemodel(path)`` reads the weights straight from the caffemodel (:mod:`eval.segmenters.caffemodel`)
and returns our :class:`eval.segmenters.base.Segmenter` with its metadata; ``python -m eval.import_segmenter
fcn8s_caffe fcn-8s-cityscapes.caffemodel --out OUT.pt`` saves it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from data.cityscapes import CLASS_NAMES
from eval import EvalError
from eval.segmenters.base import Segmenter, imported_entries
from eval.segmenters.caffemodel import CaffeModelError, read_caffemodel

ARCH = "fcn8s_caffe"
FILE_NAME = "fcn-8s-cityscapes.caffemodel"
NUM_OUTPUTS = 20                                # 19 Cityscapes classes + one more channel
MEAN_BGR = (72.78044, 83.21195, 73.45286)       # subtracted from B, G, R in 0-255
DISPLAY_NAME = "FCN-8s (pix2pix Caffe)"
CONV_BLOCKS = (("conv1_1", "conv1_2"), ("conv2_1", "conv2_2"), ("conv3_1", "conv3_2", "conv3_3"),
               ("conv4_1", "conv4_2", "conv4_3"), ("conv5_1", "conv5_2", "conv5_3"))
DECONVOLUTIONS = ("upscore2", "upscore_pool4", "upscore8")


@dataclass
class CaffeFCN8sConfig:
    """Channel widths of the deploy net: the five VGG16 blocks and fc6/fc7. The caffemodel fixes them
    (the importer reads them from its blob shapes); other values serve small test networks."""
    block_widths: tuple[int, ...] = (64, 128, 256, 512, 512)
    fc_width: int = 4096

    def __post_init__(self):
        self.block_widths = tuple(int(w) for w in self.block_widths)
        if len(self.block_widths) != 5:
            raise EvalError(f"fcn8s_caffe: block_widths needs 5 widths, got {self.block_widths}")


def display_name(config: CaffeFCN8sConfig) -> str:
    """"FCN-8s (pix2pix Caffe)" for the real widths; narrower test nets say their widths."""
    if config == CaffeFCN8sConfig():
        return DISPLAY_NAME
    widths = "/".join(str(w) for w in config.block_widths)
    return f"FCN-8s (pix2pix Caffe layout, widths {widths}, fc {config.fc_width})"


def caffe_crop(x: torch.Tensor, offset: int, like: torch.Tensor) -> torch.Tensor:
    """Caffe's Crop layer on axes 2 and 3: ``x`` from ``offset`` on, to the height and width of ``like``."""
    h, w = like.shape[-2:]
    return x[..., offset:offset + h, offset:offset + w]


class CaffeFCN8s(nn.Module):
    """The deploy net of pix2pix's FCN-8s; modules are named after its layers. Takes images in [-1, 1]
    (RGB, N x 3 x H x W) and returns the 20 class scores at H x W (``own_input_handling``)."""

    own_input_handling = True
    runs_in_fp32 = True  # the original network's predictions: never under autocast (eval.segmenters.base)

    def __init__(self, num_outputs: int = NUM_OUTPUTS, config: CaffeFCN8sConfig = CaffeFCN8sConfig()):
        super().__init__()
        if num_outputs != NUM_OUTPUTS:
            raise EvalError(f"fcn8s_caffe is pix2pix's trained network with {NUM_OUTPUTS} output channels, not "
                            f"{num_outputs}; import it with `python -m eval.import_segmenter fcn8s_caffe "
                            f"fcn-8s-cityscapes.caffemodel --out OUT.pt`")
        channels = 3
        for block, width in zip(CONV_BLOCKS, config.block_widths):
            for name in block:
                setattr(self, name, nn.Conv2d(channels, width, 3, padding=100 if name == "conv1_1" else 1))
                channels = width
        self.fc6_cs = nn.Conv2d(channels, config.fc_width, 7)
        self.fc7_cs = nn.Conv2d(config.fc_width, config.fc_width, 1)
        self.score_fr = nn.Conv2d(config.fc_width, num_outputs, 1)
        self.score_pool4 = nn.Conv2d(config.block_widths[3], num_outputs, 1)
        self.score_pool3 = nn.Conv2d(config.block_widths[2], num_outputs, 1)
        self.upscore2 = nn.ConvTranspose2d(num_outputs, num_outputs, 4, stride=2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(num_outputs, num_outputs, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(num_outputs, num_outputs, 16, stride=8, bias=False)
        self.register_buffer("mean_bgr", torch.tensor(MEAN_BGR).view(1, 3, 1, 1), persistent=False)

    def caffe_input(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (RGB) -> the reference's preprocessing: 0-255, BGR, minus the mean."""
        return (images + 1).mul(127.5).flip(1) - self.mean_bgr

    def _block(self, x: torch.Tensor, names: tuple[str, ...]) -> torch.Tensor:
        for name in names:
            x = F.relu(getattr(self, name)(x), inplace=True)
        return F.max_pool2d(x, 2, 2, ceil_mode=True)

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """The deploy net on a batch, all frames in one pass."""
        x = self.caffe_input(images)
        for names in CONV_BLOCKS[:3]:
            x = self._block(x, names)
        pool3 = x
        pool4 = self._block(pool3, CONV_BLOCKS[3])
        pool5 = self._block(pool4, CONV_BLOCKS[4])
        fc7 = F.relu(self.fc7_cs(F.relu(self.fc6_cs(pool5), inplace=True)), inplace=True)
        upscore2 = self.upscore2(self.score_fr(fc7))
        fuse_pool4 = upscore2 + caffe_crop(self.score_pool4(pool4), 5, upscore2)
        upscore_pool4 = self.upscore_pool4(fuse_pool4)
        fuse_pool3 = upscore_pool4 + caffe_crop(self.score_pool3(pool3), 9, upscore_pool4)
        return caffe_crop(self.upscore8(fuse_pool3), 31, images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Scores [N, 20, H, W]. On the CPU the frames go through one at a time, so the peak memory stays
        that of one frame whatever the batch size (a 2048x1024 frame alone needs about 2 GB of
        activations: conv1 runs at 2246x1246); elsewhere the batch goes through in one pass."""
        if images.device.type == "cpu" and images.shape[0] > 1:
            return torch.cat([self.scores(frame[None]) for frame in images])
        return self.scores(images)


# ------------------------------------------------------------------------------------- import
def _expected_shapes(config: CaffeFCN8sConfig) -> dict[str, list[tuple[int, ...]]]:
    """Layer name -> the shapes of its blobs (weights, then bias) for a net of ``config``."""
    shapes, channels = {}, 3
    for block, width in zip(CONV_BLOCKS, config.block_widths):
        for name in block:
            shapes[name] = [(width, channels, 3, 3), (width,)]
            channels = width
    fc, n = config.fc_width, NUM_OUTPUTS
    shapes["fc6_cs"] = [(fc, channels, 7, 7), (fc,)]
    shapes["fc7_cs"] = [(fc, fc, 1, 1), (fc,)]
    shapes["score_fr"] = [(n, fc, 1, 1), (n,)]
    shapes["score_pool4"] = [(n, config.block_widths[3], 1, 1), (n,)]
    shapes["score_pool3"] = [(n, config.block_widths[2], 1, 1), (n,)]
    for name, kernel in zip(DECONVOLUTIONS, (4, 4, 16)):
        shapes[name] = [(n, n, kernel, kernel)]  # (C_in, C_out / group, kh, kw), no bias
    return shapes


def _same_shape(found: tuple[int, ...], expected: tuple[int, ...]) -> bool:
    """Shapes equal up to leading 1s, as Caffe accepts a legacy (1, 1, 1, 20) blob for a (20,) bias."""
    def strip(shape):
        shape = tuple(shape)
        while shape and shape[0] == 1:
            shape = shape[1:]
        return shape
    return strip(found) == strip(expected)


def _layer(layers: dict, name: str, source: Path):
    if name not in layers:
        raise EvalError(f"{source}: layer {name} is missing (not pix2pix's FCN-8s caffemodel?)")
    return layers[name]


def config_from_layers(layers: dict, source: Path) -> CaffeFCN8sConfig:
    """The channel widths recorded in the caffemodel's blob shapes (conv<k>_1 and fc6_cs outputs)."""
    widths = []
    for block in CONV_BLOCKS:
        blobs = _layer(layers, block[0], source).blobs
        if not blobs or blobs[0].ndim != 4:
            raise EvalError(f"{source}: layer {block[0]}: expected a 4-D weight blob")
        widths.append(int(blobs[0].shape[0]))
    fc6 = _layer(layers, "fc6_cs", source).blobs
    if not fc6 or fc6[0].ndim != 4:
        raise EvalError(f"{source}: layer fc6_cs: expected a 4-D weight blob")
    return CaffeFCN8sConfig(tuple(widths), int(fc6[0].shape[0]))


def state_from_layers(layers: dict, config: CaffeFCN8sConfig, source: Path) -> dict[str, torch.Tensor]:
    """Our network's state_dict from the caffemodel's layers, every blob's count and shape checked."""
    state = {}
    for name, shapes in _expected_shapes(config).items():
        layer = _layer(layers, name, source)
        kind = "Deconvolution" if name in DECONVOLUTIONS else "Convolution"
        if layer.type != kind:
            raise EvalError(f"{source}: layer {name} is a {layer.type or 'layer without type'}, expected {kind}")
        if len(layer.blobs) != len(shapes):
            raise EvalError(f"{source}: layer {name} has {len(layer.blobs)} blob(s), expected {len(shapes)}")
        for blob, shape, key in zip(layer.blobs, shapes, ("weight", "bias")):
            if not _same_shape(blob.shape, shape):
                raise EvalError(f"{source}: layer {name}: {key} blob has shape {tuple(blob.shape)}, "
                                f"expected {shape}")
            state[f"{name}.{key}"] = torch.from_numpy(blob).reshape(shape)
    return state


def import_caffemodel(source: Path):
    """(Segmenter, metadata) of pix2pix's FCN-8s read from the caffemodel at ``source``.

    Raises EvalError with one line naming the file (and the layer) when it is not a caffemodel, lacks a
    layer of the deploy net or holds a blob of another shape.
    """
    source = Path(source)
    try:
        layers, data = read_caffemodel(source)
    except CaffeModelError as exc:
        raise EvalError(f"{source}: {exc}") from None
    except OSError as exc:
        raise EvalError(f"{source}: cannot read ({exc.strerror or exc})") from None
    config = config_from_layers(layers, source)
    state = state_from_layers(layers, config, source)
    net = CaffeFCN8s(NUM_OUTPUTS, config)
    net.load_state_dict(state)
    model = Segmenter(ARCH, config, net, display_name(config), NUM_OUTPUTS)
    metadata = caffe_metadata(model, source, data)
    return model.eval(), metadata


def caffe_metadata(model, source: Path, data: bytes | bytearray) -> dict:
    """The description saved with the imported network."""
    return {
        "arch": ARCH,
        "display_name": display_name(model.config),
        "config": asdict(model.config),
        "num_classes": NUM_OUTPUTS,
        "class_names": list(CLASS_NAMES) + ["channel 20 (no Cityscapes class; scored as an error)"],
        "normalization": {"input_range": [-1.0, 1.0], "mean_bgr_0_255": list(MEAN_BGR),
                          "note": "as pix2pix's eval_cityscapes: x in [-1,1] -> (x+1)*127.5 (0-255), "
                                  "RGB -> BGR, minus the BGR mean"},
        **imported_entries("Cityscapes (pix2pix authors' FCN-8s)", source.name, data,
                           "Caffe caffemodel (NetParameter)"),
    }
