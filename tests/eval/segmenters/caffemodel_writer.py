"""Write Caffe caffemodels for tests: the layers of pix2pix's FCN-8s deploy net with random weights.

Forms (:func:`eval.segmenters.caffemodel.encode_layer`, :func:`~eval.segmenters.caffemodel.encode_blob`):
``layer`` (LayerParameter, field 100) or legacy ``layers`` (V1LayerParameter, field 2); blobs with a
``shape`` or with num/channels/height/width; data packed or one field per float.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from eval.segmenters.caffe_fcn8s import CONV_BLOCKS
from eval.segmenters.caffemodel import encode_blob, encode_layer
from eval.segmenters.protobuf_wire import bytes_field


def _uniform(rng, shape, std: float) -> np.ndarray:
    """Zero-mean uniform values of standard deviation ``std``. Blobs above 4M values repeat a random
    block of prime length (cheap to make at full size; neighbouring filters still differ)."""
    size = int(np.prod(shape))
    base = rng.random(min(size, 4_194_301), dtype=np.float32)
    values = base if base.size == size else np.resize(base, size)
    return ((values - np.float32(0.5)) * np.float32(std * 12 ** 0.5)).reshape(shape)


def fcn8s_weights(block_widths=(64, 128, 256, 512, 512), fc_width=4096, seed=0) -> dict[str, list[np.ndarray]]:
    """Random weights of the deploy net by layer name: conv weights of variance 2/fan_in, biases of
    standard deviation 0.1, score layers and deconvolutions scaled so the 20 scores vary from pixel to pixel."""
    rng = np.random.default_rng(seed)

    def conv(out_c, in_c, k, gain=2.0):
        return [_uniform(rng, (out_c, in_c, k, k), (gain / (in_c * k * k)) ** 0.5), _uniform(rng, (out_c,), 0.1)]

    weights, channels = {}, 3
    for block, width in zip(CONV_BLOCKS, block_widths):
        for name in block:
            weights[name] = conv(width, channels, 3)
            channels = width
    weights["fc6_cs"] = conv(fc_width, channels, 7)
    weights["fc7_cs"] = conv(fc_width, fc_width, 1)
    weights["score_fr"] = conv(20, fc_width, 1, 1.0)
    weights["score_pool4"] = conv(20, block_widths[3], 1, 1.0)
    weights["score_pool3"] = conv(20, block_widths[2], 1, 1.0)
    for name, k in (("upscore2", 4), ("upscore_pool4", 4), ("upscore8", 16)):
        weights[name] = [_uniform(rng, (20, 20, k, k), 1.0 / k)]
    return weights


def caffemodel_parts(weights: dict[str, list[np.ndarray]], legacy: bool = False, shape_form: str = "shape",
                     packed: bool = True):
    """The pieces of a NetParameter holding ``weights`` in deploy order, with weightless ReLU/Pooling
    layers between."""
    yield bytes_field(1, "FCN8s-test")
    for name, blobs in weights.items():
        kind = "Deconvolution" if name.startswith("upscore") else "Convolution"
        yield encode_layer(name, kind, [encode_blob(b, shape_form, packed) for b in blobs], legacy)
        if name.startswith(("conv", "fc")):
            yield encode_layer(name.replace("conv", "relu").replace("fc", "relu"), "ReLU", [], legacy)
        if name in ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"):
            yield encode_layer(f"pool{name[4]}", "Pooling", [], legacy)


def caffemodel_bytes(weights: dict[str, list[np.ndarray]], **form) -> bytes:
    return b"".join(caffemodel_parts(weights, **form))


def write_caffemodel(path: Path, weights: dict[str, list[np.ndarray]], **form) -> Path:
    path = Path(path)
    with open(path, "wb") as f:
        for part in caffemodel_parts(weights, **form):
            f.write(part)
    return path
