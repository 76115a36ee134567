"""Write Caffe caffemodels for tests: a small protobuf encoder with caffe.proto's field numbers, and the
layers of pix2pix's FCN-8s deploy net with random weights.

Forms: ``layer`` (LayerParameter, field 100) or legacy ``layers`` (V1LayerParameter, field 2); blobs with a
``shape`` or with num/channels/height/width; data packed or one field per float.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CONV_NAMES = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
              "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
V1_CONVOLUTION, V1_DECONVOLUTION, V1_RELU, V1_POOLING = 4, 39, 18, 17


def varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 -> ten bytes of two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def int_field(number: int, value: int) -> bytes:
    return key(number, 0) + varint(value)


def bytes_field(number: int, payload: bytes) -> bytes:
    return key(number, 2) + varint(len(payload)) + payload


def string_field(number: int, text: str) -> bytes:
    return bytes_field(number, text.encode())


def unpacked_floats(number: int, values: np.ndarray) -> bytes:
    """One fixed32 field per value (key byte + 4 bytes), built with numpy."""
    values = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
    records = np.empty((values.size, 5), dtype=np.uint8)
    records[:, 0] = key(number, 5)[0]
    records[:, 1:] = values.view(np.uint8).reshape(-1, 4)
    return records.tobytes()


def blob(array: np.ndarray, shape_form: str = "shape", packed: bool = True) -> bytes:
    """A BlobProto. ``shape_form``: "shape" (BlobShape, field 7) or "legacy" (num/channels/height/width,
    the shape right-aligned in 4 dims)."""
    array = np.asarray(array, dtype="<f4")
    if shape_form == "shape":
        dims = b"".join(varint(d) for d in array.shape)
        header = b""
        trailer = bytes_field(7, bytes_field(1, dims))  # shape = 7 { dim = 1 (packed) }
    else:
        legacy = (1,) * (4 - array.ndim) + array.shape
        header = b"".join(int_field(number, d) for number, d in zip((1, 2, 3, 4), legacy))
        trailer = b""
    data = bytes_field(5, array.tobytes()) if packed else unpacked_floats(5, array)
    return header + data + trailer  # the order Caffe writes: num..width, data, shape


def layer(name: str, kind: str, blobs: list[bytes], legacy: bool = False) -> bytes:
    """A LayerParameter (``layer``, type as a string) or a V1LayerParameter (``layers``, type as an enum)."""
    if legacy:
        code = {"Convolution": V1_CONVOLUTION, "Deconvolution": V1_DECONVOLUTION, "ReLU": V1_RELU,
                "Pooling": V1_POOLING}[kind]
        body = string_field(4, name) + int_field(5, code) + b"".join(bytes_field(6, b) for b in blobs)
        return bytes_field(2, body)
    body = string_field(1, name) + string_field(2, kind) + b"".join(bytes_field(7, b) for b in blobs)
    return bytes_field(100, body)


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
    widths = [block_widths[0]] * 2 + [block_widths[1]] * 2 + [block_widths[2]] * 3 + [block_widths[3]] * 3 \
        + [block_widths[4]] * 3
    for name, width in zip(CONV_NAMES, widths):
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
    yield string_field(1, "FCN8s-test")
    for name, blobs in weights.items():
        kind = "Deconvolution" if name.startswith("upscore") else "Convolution"
        yield layer(name, kind, [blob(b, shape_form, packed) for b in blobs], legacy)
        if name.startswith(("conv", "fc")):
            yield layer(name.replace("conv", "relu").replace("fc", "relu"), "ReLU", [], legacy)
        if name in ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"):
            yield layer(f"pool{name[4]}", "Pooling", [], legacy)


def caffemodel_bytes(weights: dict[str, list[np.ndarray]], **form) -> bytes:
    return b"".join(caffemodel_parts(weights, **form))


def write_caffemodel(path: Path, weights: dict[str, list[np.ndarray]], **form) -> Path:
    path = Path(path)
    with open(path, "wb") as f:
        for part in caffemodel_parts(weights, **form):
            f.write(part)
    return path
