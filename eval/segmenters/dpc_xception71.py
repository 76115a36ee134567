"""DeepLab's DPC Xception-71 Cityscapes scorer (Table 3 of the paper) in PyTorch, and its importer.

The paper scores Table 3 with DeepLab's model-zoo network ``deeplab_cityscapes_xception71_trainfine``
(tensorflow/models, ``research/deeplab/g3doc/model_zoo.md``; 80.31% Cityscapes val mIoU). That network
exists only as a TensorFlow frozen graph; this module rebuilds it layer for layer and reads its
weights from ``frozen_inference_graph.pb`` without TensorFlow (:mod:`eval.segmenters.frozen_graph`):

* **backbone** - Xception-71 as DeepLab builds it (``core/xception.py``): two 3x3 root convolutions
  (stride 2, then 1), then Xception units of three separable convolutions (depthwise 3x3 -> batch
  norm -> pointwise 1x1 -> batch norm, each preceded by a ReLU; in the last block the ReLUs follow the
  batch norms instead) with a 1x1 convolution shortcut, an identity shortcut (middle flow) or none
  (last block). Entry flow: blocks of 128 (stride 2), 256, 256 (stride 2), 728, 728 (stride 2)
  channels; middle flow: 16 units of 728; exit flow: 728-1024-1024 (stride 2), then 1536-1536-2048.
  Strides past the output stride become dilations. Batch-norm epsilon 1e-3.
* **dense prediction cell** (``core/dense_prediction_cell.py`` with
  ``dense_prediction_cell_branch5_top1_cityscapes.json``): five separable 3x3 branches of 256
  channels, the first on the features and the others on earlier branches, concatenated and projected
  to 256 by a 1x1 convolution; dilation rates doubled at output stride 8. Batch-norm epsilon 1e-5.
* **decoder** (``model.py``, decoder output stride 4): the cell's output resized to 1/4 of the crop,
  concatenated with a 48-channel projection of the entry flow's stride-4 features, two separable 3x3
  convolutions of 256, then 1x1 logits with a bias.
* **input handling** of the exported graph (``export_model.py``, ``input_preprocess.py``): the graph
  takes uint8 RGB, pads it at the bottom and right to the 1025x2049 evaluation crop with the mean
  pixel 127.5, maps [0, 255] to [-1, 1] (x * 2/255 - 1), upsamples the logits to the padded size with
  align-corners bilinear resizing and crops the image's own region.

Padding is explicit: "SAME" for stride 1 and DeepLab's fixed padding before stride-2 convolutions are
both symmetric for these 3x3 kernels, and dilated ("atrous") convolutions are plain dilated
convolutions here. ``tools/verify_dpc.py`` (``make verify-dpc``) checks all of it against DeepLab's own
TensorFlow graph.
"""
from __future__ import annotations

import hashlib
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.files import file_sha256
from data.cityscapes import CLASS_NAMES, NUM_CLASSES
from eval import EvalError
from eval.segmenters.base import Segmenter, to_uint8
from eval.segmenters.frozen_graph import FrozenGraph, read_frozen_graph
from eval.segmenters.protobuf_wire import ProtobufError, read_message_file, read_message_member

ARCH = "dpc_xception71"
GRAPH_FILE = "frozen_inference_graph.pb"
ZOO_FILE = "deeplab_cityscapes_xception71_trainfine_2018_09_08.tar.gz"
MEAN_PIXEL = 127.5
BACKBONE_EPS = 1e-3     # xception_arg_scope
HEAD_EPS = 1e-5         # dense prediction cell and decoder

# Xception-71's blocks: (scope, depths of the three separable convolutions, shortcut, units, stride,
# ReLU inside the separable convolutions instead of before them).
XCEPTION_71_BLOCKS = (
    ("entry_flow/block1", (128, 128, 128), "conv", 1, 2, False),
    ("entry_flow/block2", (256, 256, 256), "conv", 1, 1, False),
    ("entry_flow/block3", (256, 256, 256), "conv", 1, 2, False),
    ("entry_flow/block4", (728, 728, 728), "conv", 1, 1, False),
    ("entry_flow/block5", (728, 728, 728), "conv", 1, 2, False),
    ("middle_flow/block1", (728, 728, 728), "sum", 16, 1, False),
    ("exit_flow/block1", (728, 1024, 1024), "conv", 1, 2, False),
    ("exit_flow/block2", (1536, 1536, 2048), "none", 1, 1, True),
)
LOW_LEVEL_UNIT = "xception_71/entry_flow/block3/unit_1/xception_module"  # its 2nd conv feeds the decoder
# dense_prediction_cell_branch5_top1_cityscapes.json: (dilation rate (height, width), input branch;
# -1 = the backbone's features). Every branch is a separable 3x3 convolution.
DPC_CITYSCAPES_BRANCHES = (((1, 6), -1), ((18, 15), 0), ((6, 3), 1), ((1, 1), 0), ((6, 21), 0))
DPC_DEPTH = 256
DECODER_PROJECTION = 48
DECODER_DEPTH = 256
DECODER_OUTPUT_STRIDE = 4
# SpaceToBatchND ops (TensorFlow's dilated convolutions) in the exported graph -> its output stride.
OUTPUT_STRIDE_BY_SPACE_TO_BATCH = {7: 16, 59: 8}


@dataclass
class DPCXception71Config:
    """The exported graph's settings: its output stride (16 or 8), the evaluation crop it pads to,
    and ``width_mult`` (< 1 only for small test networks: every width scaled, names unchanged)."""
    output_stride: int = 16
    crop_size: tuple[int, int] = (1025, 2049)
    width_mult: float = 1.0

    def __post_init__(self):
        self.crop_size = tuple(int(v) for v in self.crop_size)
        if self.output_stride not in (8, 16):
            raise EvalError(f"dpc_xception71: output stride {self.output_stride} is not supported (8 or 16)")


def display_name(config: DPCXception71Config) -> str:
    extra = f", width x{config.width_mult:g}" if config.width_mult != 1.0 else ""
    return f"DPC Xception-71 (DeepLab, output stride {config.output_stride}{extra})"


def scale_dimension(size: int, scale: float) -> int:
    """DeepLab's size of a feature map of an input ``size`` at ``scale``: int((size - 1) * scale + 1)."""
    return int((size - 1) * scale + 1)


# --------------------------------------------------------------------------------------- layers
class ConvBN(nn.Module):
    """One slim convolution as DeepLab uses it: convolution (no bias) -> batch norm [-> ReLU].

    ``scope`` is its TensorFlow variable scope: ``<scope>/weights`` (``depthwise_weights`` for a
    depthwise convolution) and ``<scope>/BatchNorm/{gamma,beta,moving_mean,moving_variance}``.
    """

    def __init__(self, scope: str, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1,
                 rate: tuple[int, int] = (1, 1), depthwise: bool = False, eps: float = BACKBONE_EPS,
                 relu: bool = False):
        super().__init__()
        self.scope, self.depthwise, self.relu = scope, depthwise, relu
        padding = (rate[0] * (kernel - 1) // 2, rate[1] * (kernel - 1) // 2)
        self.conv = nn.Conv2d(in_ch, in_ch if depthwise else out_ch, kernel, stride, padding,
                              dilation=tuple(rate), groups=in_ch if depthwise else 1, bias=False)
        self.bn = nn.BatchNorm2d(self.conv.out_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The batch norm stays a separate step, as in TensorFlow: folding it into the convolution is 1.3x
        # faster on the CPU but doubles the rounding difference to DeepLab's graph (make verify-dpc).
        x = self.bn(self.conv(x))
        return F.relu(x, inplace=True) if self.relu else x

    def tf_variables(self) -> dict[str, torch.Tensor]:
        """TensorFlow variable name -> the tensor of ours it fills."""
        weights = "depthwise_weights" if self.depthwise else "weights"
        bn = f"{self.scope}/BatchNorm"
        return {f"{self.scope}/{weights}": self.conv.weight, f"{bn}/gamma": self.bn.weight,
                f"{bn}/beta": self.bn.bias, f"{bn}/moving_mean": self.bn.running_mean,
                f"{bn}/moving_variance": self.bn.running_var}


class SeparableConv(nn.Module):
    """DeepLab's split separable convolution: depthwise 3x3 -> BN [-> ReLU] -> pointwise 1x1 -> BN
    [-> ReLU] (scopes ``<scope>_depthwise`` and ``<scope>_pointwise``)."""

    def __init__(self, scope: str, in_ch: int, out_ch: int, stride: int = 1, rate: tuple[int, int] = (1, 1),
                 eps: float = BACKBONE_EPS, relu: bool = False):
        super().__init__()
        self.depthwise = ConvBN(f"{scope}_depthwise", in_ch, in_ch, 3, stride, rate, True, eps, relu)
        self.pointwise = ConvBN(f"{scope}_pointwise", in_ch, out_ch, 1, eps=eps, relu=relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class XceptionUnit(nn.Module):
    """One Xception module: three separable convolutions (the last one strided) plus a shortcut.

    ``relu_inside`` False (all but the last block): ReLU before each separable convolution, none
    inside; True: ReLU after each batch norm. Returns the output and the second convolution's output
    (the decoder's low-level features come from one unit's).
    """

    def __init__(self, scope: str, in_ch: int, depths, shortcut: str, stride: int, rate: int, relu_inside: bool):
        super().__init__()
        self.scope, self.shortcut_type, self.relu_inside = scope, shortcut, relu_inside
        channels = (in_ch,) + tuple(depths)
        self.convs = nn.ModuleList(
            SeparableConv(f"{scope}/separable_conv{i + 1}", channels[i], channels[i + 1],
                          stride=stride if i == 2 else 1, rate=(rate, rate), relu=relu_inside)
            for i in range(3))
        self.shortcut = (ConvBN(f"{scope}/shortcut", in_ch, depths[-1], 1, stride) if shortcut == "conv" else None)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        residual, second = x, None
        for i, conv in enumerate(self.convs):
            residual = conv(residual if self.relu_inside else F.relu(residual))
            if i == 1:
                second = residual
        if self.shortcut_type == "conv":
            residual = residual + self.shortcut(x)
        elif self.shortcut_type == "sum":
            residual = residual + x
        return residual, second


class Xception71(nn.Module):
    """DeepLab's Xception-71 features at ``output_stride`` (8 or 16) and the stride-4 low-level
    features the decoder uses."""

    def __init__(self, output_stride: int, width):
        super().__init__()
        scope = "xception_71/entry_flow"
        self.conv1_1 = ConvBN(f"{scope}/conv1_1", 3, width(32), 3, stride=2, relu=True)
        self.conv1_2 = ConvBN(f"{scope}/conv1_2", width(32), width(64), 3, relu=True)
        units, channels = [], width(64)
        current_stride, rate = 2, 1        # after the root; beyond output_stride strides become dilation
        for block, depths, shortcut, num_units, stride, relu_inside in XCEPTION_71_BLOCKS:
            depths = tuple(width(d) for d in depths)
            for u in range(num_units):
                unit_scope = f"xception_71/{block}/unit_{u + 1}/xception_module"
                if current_stride == output_stride:
                    units.append(XceptionUnit(unit_scope, channels, depths, shortcut, 1, rate, relu_inside))
                    rate *= stride
                else:
                    units.append(XceptionUnit(unit_scope, channels, depths, shortcut, stride, 1, relu_inside))
                    current_stride *= stride
                channels = depths[-1]
        if current_stride != output_stride:
            raise EvalError(f"dpc_xception71: output stride {output_stride} cannot be reached")
        self.units = nn.ModuleList(units)
        self.low_level_index = [u.scope for u in units].index(LOW_LEVEL_UNIT)
        self.out_channels = channels
        self.low_level_channels = units[self.low_level_index].convs[1].pointwise.conv.out_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv1_2(self.conv1_1(x))
        low_level = None
        for i, unit in enumerate(self.units):
            x, second = unit(x)
            if i == self.low_level_index:
                low_level = second
        return x, low_level


class DensePredictionCell(nn.Module):
    """The Cityscapes dense prediction cell (scope ``meta_architecture``): five separable 3x3
    branches, concatenated, projected by a 1x1 convolution."""

    def __init__(self, in_ch: int, output_stride: int, width):
        super().__init__()
        multiplier = 16 // output_stride
        depth = width(DPC_DEPTH)
        self.inputs = [source for _, source in DPC_CITYSCAPES_BRANCHES]
        self.branches = nn.ModuleList(
            SeparableConv(f"meta_architecture/branch{i}", in_ch if source < 0 else depth, depth,
                          rate=(rate[0] * multiplier, rate[1] * multiplier), eps=HEAD_EPS, relu=True)
            for i, (rate, source) in enumerate(DPC_CITYSCAPES_BRANCHES))
        self.projection = ConvBN("meta_architecture/concat_projection", depth * len(self.branches), depth,
                                 eps=HEAD_EPS, relu=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        outputs = []
        for branch, source in zip(self.branches, self.inputs):
            outputs.append(branch(features if source < 0 else outputs[source]))
        return self.projection(torch.cat(outputs, dim=1))   # dropout before it: inactive at inference


def resize_align_corners(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """DeepLab's ``tf.image.resize_bilinear(x, size, align_corners=True)`` of [N, C, H, W] maps: output
    pixel i samples the input at i * (in - 1) / (out - 1)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class DPCXception71(nn.Module):
    """The exported DPC Xception-71 graph: images in [-1, 1] -> class scores at the image size.

    :meth:`preprocess` does what the graph does before the backbone (uint8 quantisation, mean-pixel
    padding to the crop, x * 2/255 - 1), :meth:`logits` gives the graph's ``logits/semantic`` at 1/4 of
    the crop, :meth:`forward` upsamples them to the crop and keeps the image's region. Images are
    processed one at a time (each one is padded to the full crop anyway), so memory does not grow
    with the batch.
    """

    own_input_handling = True
    runs_in_fp32 = True  # the original network's predictions: never under autocast (eval.segmenters.base)
    channels_last = True   # run convolutions channels-last (1.4x faster on the CPU, bench/dpc_xception71.py)

    def __init__(self, num_classes: int = NUM_CLASSES, config: DPCXception71Config = DPCXception71Config()):
        super().__init__()
        self.config = config

        def width(channels: int) -> int:
            return max(1, int(round(channels * config.width_mult)))

        self.backbone = Xception71(config.output_stride, width)
        self.dpc = DensePredictionCell(self.backbone.out_channels, config.output_stride, width)
        self.feature_projection = ConvBN("decoder/feature_projection0", self.backbone.low_level_channels,
                                         width(DECODER_PROJECTION), eps=HEAD_EPS, relu=True)
        decoder_in = width(DPC_DEPTH) + width(DECODER_PROJECTION)
        self.decoder = nn.Sequential(
            SeparableConv("decoder/decoder_conv0", decoder_in, width(DECODER_DEPTH), eps=HEAD_EPS, relu=True),
            SeparableConv("decoder/decoder_conv1", width(DECODER_DEPTH), width(DECODER_DEPTH), eps=HEAD_EPS,
                          relu=True))
        self.classifier = nn.Conv2d(width(DECODER_DEPTH), num_classes, 1)
        crop_h, crop_w = config.crop_size
        self.decoder_size = (scale_dimension(crop_h, 1 / DECODER_OUTPUT_STRIDE),
                             scale_dimension(crop_w, 1 / DECODER_OUTPUT_STRIDE))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] [N, 3, h, w] -> the backbone's input [N, 3, crop_h, crop_w]: quantised to
        uint8 as our PNGs are, padded bottom/right with the mean pixel, mapped to [-1, 1]."""
        (h, w), (crop_h, crop_w) = images.shape[-2:], self.config.crop_size
        if h > crop_h or w > crop_w:
            raise EvalError(f"dpc_xception71: image of {h}x{w} is larger than the {crop_h}x{crop_w} crop the "
                            f"exported graph was built for")
        pixels = to_uint8(images).float()
        padded = F.pad(pixels, (0, crop_w - w, 0, crop_h - h), value=MEAN_PIXEL)
        return padded * torch.tensor(2.0 / 255.0, dtype=torch.float32) - 1.0

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed crops -> class logits at 1/4 of the crop (``logits/semantic`` of the graph)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features, low_level = self.backbone(x)
        cell = self.dpc(features)
        merged = torch.cat([resize_align_corners(cell, self.decoder_size),
                            resize_align_corners(self.feature_projection(low_level), self.decoder_size)], dim=1)
        return self.classifier(self.decoder(merged))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        scores = [resize_align_corners(self.logits(self.preprocess(image)), self.config.crop_size)[..., :h, :w]
                  for image in images.split(1)]
        return torch.cat(scores)

    def tf_variables(self) -> dict[str, torch.Tensor]:
        """Every TensorFlow variable name of the graph -> the tensor of ours it fills."""
        names = {}
        for module in self.modules():
            if isinstance(module, ConvBN):
                names.update(module.tf_variables())
        names["logits/semantic/weights"] = self.classifier.weight
        names["logits/semantic/biases"] = self.classifier.bias
        return names


# ------------------------------------------------------------------------------------- import
VARIABLE_SUFFIXES = ("/weights", "/depthwise_weights", "/biases", "/BatchNorm/gamma", "/BatchNorm/beta",
                     "/BatchNorm/moving_mean", "/BatchNorm/moving_variance")
# Ops that would mean a different network than the one built here (bounded activations, quantisation,
# image pooling / squeeze-excitation, flipped inputs).
UNSUPPORTED_OPS = ("Relu6", "FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel", "AvgPool",
                   "Sigmoid", "ReverseV2")


def _graph_bytes(source: Path) -> tuple[bytes, str]:
    """The frozen graph's bytes from the model-zoo tarball, its unpacked folder or the .pb itself, and
    where it was found (for messages)."""
    if source.is_dir():
        found = sorted(source.rglob(GRAPH_FILE))
        if len(found) != 1:
            raise EvalError(f"{source}: expected one {GRAPH_FILE} in the folder, found {len(found)}")
        return _bounded(read_message_file, found[0]), str(found[0])
    if source.name.endswith(".pb"):
        return _bounded(read_message_file, source), str(source)
    try:
        with tarfile.open(source) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and Path(m.name).name == GRAPH_FILE]
            if len(members) != 1:
                raise EvalError(f"{source}: expected one {GRAPH_FILE} in the archive, found {len(members)}")
            where = f"{source}:{members[0].name}"
            return _bounded(read_message_member, tar.extractfile(members[0]), members[0].size, where), where
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise EvalError(f"{source}: not the model-zoo tarball, its folder or a {GRAPH_FILE} ({exc})") from None


def _bounded(read, *args):
    """``read(*args)`` (a size-checked read of eval.segmenters.protobuf_wire) with its refusal as an EvalError."""
    try:
        return read(*args)
    except ProtobufError as exc:
        raise EvalError(str(exc)) from None


def _output_stride(graph: FrozenGraph, where: str) -> int:
    space_to_batch = graph.op_counts.get("SpaceToBatchND", 0)
    if space_to_batch not in OUTPUT_STRIDE_BY_SPACE_TO_BATCH:
        raise EvalError(f"{where}: {space_to_batch} SpaceToBatchND ops (dilated convolutions); the DPC "
                        f"Xception-71 graph has 7 at output stride 16 and 59 at output stride 8")
    return OUTPUT_STRIDE_BY_SPACE_TO_BATCH[space_to_batch]


def _crop_size(graph: FrozenGraph, where: str) -> tuple[int, int]:
    """The evaluation crop: from the logits' recorded shape [1, h, w, 19] (h = (crop - 1) / 4 + 1), else
    the Cityscapes default 1025x2049."""
    shape = graph.output_shape
    if not shape or len(shape) != 4 or min(shape[1:3]) <= 0:
        return DPCXception71Config.crop_size
    if shape[3] != NUM_CLASSES:
        raise EvalError(f"{where}: logits/semantic has {shape[3]} classes, expected the {NUM_CLASSES} Cityscapes classes")
    return tuple((s - 1) * DECODER_OUTPUT_STRIDE + 1 for s in shape[1:3])


def load_tf_variables(net: DPCXception71, constants: dict[str, np.ndarray], where: str) -> None:
    """Copy the graph's variables into ``net`` (TensorFlow layouts: conv HWIO, depthwise HWC1). Every
    variable must be there with its shape, and no variable of the graph may be left over."""
    targets = net.tf_variables()
    for name, target in targets.items():
        if name not in constants:
            raise EvalError(f"{where}: variable {name} not found (not DeepLab's DPC Xception-71 Cityscapes graph?)")
        value = torch.from_numpy(np.array(constants[name], dtype=np.float32))
        if target.dim() == 4:   # ours [out, in/groups, kh, kw]; TensorFlow [kh, kw, in, out] or [kh, kw, in, 1]
            value = value.permute(2, 3, 0, 1) if name.endswith("/depthwise_weights") else value.permute(3, 2, 0, 1)
        if tuple(value.shape) != tuple(target.shape):
            raise EvalError(f"{where}: variable {name} has shape {list(constants[name].shape)}, expected "
                            f"{_tf_shape(name, target)}")
        with torch.no_grad():
            target.copy_(value)
    extra = sorted(name for name in constants if name.endswith(VARIABLE_SUFFIXES) and name not in targets)
    if extra:
        raise EvalError(f"{where}: unsupported variable {extra[0]} (and {len(extra) - 1} more) in the graph; "
                        f"this is not the DPC Xception-71 Cityscapes network")


def _tf_shape(name: str, target: torch.Tensor) -> list[int]:
    if target.dim() != 4:
        return list(target.shape)
    out, inp, kh, kw = target.shape
    return [kh, kw, out, 1] if name.endswith("/depthwise_weights") else [kh, kw, inp, out]


def import_model_zoo(source: Path, width_mult: float = 1.0):
    """DeepLab's model-zoo DPC Xception-71 Cityscapes file (``.tar.gz``, its folder or the
    ``frozen_inference_graph.pb``) -> (our Segmenter with its weights, metadata).

    The output stride is read from the graph (its number of dilated-convolution ops), the crop from
    the logits' recorded shape. ``width_mult`` < 1 is for small test graphs only.
    """
    source = Path(source)
    data, where = _graph_bytes(source)
    graph = _read_graph(data, where)
    config = DPCXception71Config(output_stride=_output_stride(graph, where), crop_size=_crop_size(graph, where),
                                 width_mult=width_mult)
    net = DPCXception71(NUM_CLASSES, config)
    load_tf_variables(net, graph.constants, where)
    model = Segmenter(ARCH, config, net, display_name(config), NUM_CLASSES).eval()
    return model, _metadata(model, source, data, where, graph)


def _read_graph(data: bytes, where: str) -> FrozenGraph:
    """The frozen graph, checked to hold weights and none of the ops of another network."""
    try:
        graph = read_frozen_graph(data)
    except ProtobufError as exc:
        raise EvalError(f"{where}: not a TensorFlow GraphDef ({exc})") from None
    if not graph.constants:
        raise EvalError(f"{where}: no float constants; not a frozen TensorFlow graph")
    unsupported = [op for op in UNSUPPORTED_OPS if graph.op_counts.get(op)]
    if unsupported:
        raise EvalError(f"{where}: unsupported op {unsupported[0]} in the graph; this is not the DPC "
                        f"Xception-71 Cityscapes network")
    return graph


def _metadata(model: Segmenter, source: Path, data: bytes, where: str, graph: FrozenGraph) -> dict:
    """The description saved with the imported network."""
    config = model.config
    return {
        "arch": ARCH,
        "display_name": model.display_name,
        "config": asdict(config),
        "num_classes": NUM_CLASSES,
        "class_names": list(CLASS_NAMES),
        "normalization": {
            "input_range": [-1.0, 1.0],
            "note": ("as DeepLab's exported graph: x in [-1,1] -> uint8 round((x+1)*127.5) (as our PNGs), padded "
                     f"bottom/right to the {config.crop_size[0]}x{config.crop_size[1]} crop with the mean pixel "
                     "127.5, then u*2/255-1; logits upsampled to the crop (bilinear, align_corners) and "
                     "cropped to the image"),
        },
        "train_resolution": None,
        "trained_on": {"name": "Cityscapes train_fine (DeepLab model zoo)",
                       "published_val_miou": 0.8031},
        "provenance": f"DeepLab's model-zoo network, imported from {source.name}",
        "val_scores": None,
        "training": {},
        "source": {"file": source.name, "sha256": file_sha256(source) if source.is_file() else None,
                   "graph": where.split(":")[-1], "graph_sha256": hashlib.sha256(data).hexdigest(),
                   "space_to_batch_ops": graph.op_counts.get("SpaceToBatchND", 0)},
    }
