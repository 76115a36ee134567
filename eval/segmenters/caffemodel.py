"""Read the layers and weight blobs of a Caffe ``.caffemodel`` without Caffe.

A caffemodel is a serialized ``NetParameter`` (caffe.proto, proto2). Only the parts that carry weights
are read:

* ``NetParameter``: ``layer = 100`` (``LayerParameter``) and the legacy ``layers = 2``
  (``V1LayerParameter``);
* ``LayerParameter``: ``name = 1``, ``type = 2`` (a string such as ``"Convolution"``), ``blobs = 7``;
* ``V1LayerParameter``: ``name = 4``, ``type = 5`` (an enum), ``blobs = 6``;
* ``BlobProto``: ``shape = 7`` (``BlobShape``: ``dim = 1``, int64), or the legacy 4-D
  ``num = 1, channels = 2, height = 3, width = 4``; values in ``data = 5`` (float) or ``double_data = 8``,
  packed or not.

:func:`encode_layer` and :func:`encode_blob` write the same messages in each of these forms (for
caffemodels built in memory by the tests and benchmarks).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from eval.segmenters.protobuf_wire import (
    ProtobufError,
    bytes_field,
    fields_by_number,
    fields_with_arrays,
    iter_fields,
    packed_varints,
    read_message_file,
    shape_count,
    signed64,
    string,
    unpacked_floats,
    varint,
    varint_field,
)

LAYER, V1_LAYERS = 100, 2
# V1LayerParameter.LayerType numbers of the layer types that hold weights (and of the weightless ReLU and
# Pooling, for writing), as LayerParameter names them.
V1_TYPES = {4: "Convolution", 39: "Deconvolution", 14: "InnerProduct", 0: "None", 18: "ReLU", 17: "Pooling"}
# BlobProto fields whose values are repeated numbers: data, diff, double_data, double_diff.
BLOB_ARRAYS = {5: "<f4", 6: "<f4", 8: "<f8", 9: "<f8"}


class CaffeModelError(ValueError):
    """A file that is not a readable caffemodel (the message says what is wrong, without the path)."""


@dataclass
class CaffeLayer:
    """One layer of a caffemodel: its name, type (``"Convolution"``, ...) and weight blobs (float32
    arrays in the shape the file records: ``shape`` or the legacy ``(num, channels, height, width)``)."""
    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)


def read_blob(payload: memoryview) -> np.ndarray:
    """A ``BlobProto`` as a float32 array of its recorded shape."""
    fields, values = fields_with_arrays(payload, BLOB_ARRAYS)
    if 7 in fields:
        dims = fields_by_number(fields[7][-1]).get(1, [])
        shape = []
        for dim in dims:  # packed (one payload of varints) or one varint per dim
            shape += [signed64(v) for v in packed_varints(dim)] if isinstance(dim, memoryview) else [signed64(dim)]
    else:
        shape = [fields.get(number, [0])[-1] for number in (1, 2, 3, 4)]  # num, channels, height, width
    try:
        count = shape_count(shape, "blob")  # exact: 2^32 x 2^32 does not wrap around to 0
    except ProtobufError as exc:
        raise CaffeModelError(str(exc)) from None
    data = values[5] if 5 in values else values.get(8, np.zeros(0, np.float64))
    if data.size != count:
        raise CaffeModelError(f"blob of shape {tuple(shape)} holds {data.size} values")
    return data.astype(np.float32, copy=False).reshape(shape)


def _layer(payload: memoryview, legacy: bool) -> CaffeLayer:
    name_field, type_field, blobs_field = (4, 5, 6) if legacy else (1, 2, 7)
    fields = {}
    for number, _, value in iter_fields(payload):
        if number in (name_field, type_field, blobs_field):
            fields.setdefault(number, []).append(value)
    name = string(fields[name_field][-1]) if name_field in fields else ""
    if legacy:
        code = fields.get(type_field, [0])[-1]
        kind = V1_TYPES.get(code, f"V1 layer type {code}")
    else:
        kind = string(fields[type_field][-1]) if type_field in fields else ""
    try:
        blobs = [read_blob(blob) for blob in fields.get(blobs_field, [])]
    except (CaffeModelError, ProtobufError) as exc:
        raise CaffeModelError(f"layer {name or '?'}: {exc}") from None
    return CaffeLayer(name, kind, blobs)


def read_layers(data: bytes | memoryview) -> dict[str, CaffeLayer]:
    """The layers of a serialized ``NetParameter`` that hold blobs, by name (``layer`` and legacy
    ``layers`` alike; a name seen twice keeps its last layer, as Caffe's weight copy does)."""
    layers = {}
    try:
        for number, wire_type, value in iter_fields(data):
            if number in (LAYER, V1_LAYERS) and wire_type == 2:
                layer = _layer(value, legacy=number == V1_LAYERS)
                if layer.blobs:
                    layers[layer.name] = layer
    except ProtobufError as exc:
        raise CaffeModelError(f"not a readable caffemodel ({exc})") from None
    return layers


def _looks_like_text(head: bytes) -> bool:
    """Whether the start of a file is plain text (a prototxt); a binary NetParameter has bytes >= 0x80
    within its first layer's key."""
    return bool(head) and all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def read_caffemodel(path: str | Path) -> tuple[dict[str, CaffeLayer], bytearray]:
    """The weight-holding layers of the caffemodel at ``path`` and the file's bytes.

    The blobs are float32 arrays, views of the returned (writable) buffer where the file stores packed
    floats. Raises CaffeModelError (without the path) if it is not a NetParameter or no layer holds
    weights.
    """
    path = Path(path)
    try:
        data = read_message_file(path, "the file")  # its size checked before anything is allocated
    except ProtobufError as exc:
        raise CaffeModelError(str(exc).replace("the file: ", "", 1)) from None
    if _looks_like_text(bytes(data[:256])):
        raise CaffeModelError("not a caffemodel: a text file (a prototxt?), expected the binary weights")
    layers = read_layers(memoryview(data))
    if not layers:
        raise CaffeModelError("not a caffemodel: no layer holds weights")
    return layers, data


# -------------------------------------------------------------------------------------- writing
def encode_blob(array: np.ndarray, shape_form: str = "shape", packed: bool = True) -> bytes:
    """A BlobProto of float32 values. ``shape_form``: "shape" (BlobShape, field 7) or "legacy"
    (num/channels/height/width, the shape right-aligned in 4 dims); ``packed`` False writes one field per
    value."""
    array = np.asarray(array, dtype="<f4")
    if shape_form == "shape":
        header = b""
        trailer = bytes_field(7, bytes_field(1, b"".join(varint(d) for d in array.shape)))  # dim, packed
    else:
        legacy = (1,) * (4 - array.ndim) + array.shape
        header = b"".join(varint_field(number, d) for number, d in zip((1, 2, 3, 4), legacy))
        trailer = b""
    data = bytes_field(5, array.tobytes()) if packed else unpacked_floats(5, array)
    return header + data + trailer  # the order Caffe writes: num..width, data, shape


def encode_layer(name: str, kind: str, blobs: list[bytes], legacy: bool = False) -> bytes:
    """A ``layer`` field (LayerParameter, the type as a string) or, with ``legacy``, a ``layers`` field
    (V1LayerParameter, the type as an enum) of a NetParameter, holding the encoded ``blobs``."""
    if legacy:
        code = {text: number for number, text in V1_TYPES.items()}[kind]
        body = bytes_field(4, name) + varint_field(5, code) + b"".join(bytes_field(6, b) for b in blobs)
        return bytes_field(V1_LAYERS, body)
    body = bytes_field(1, name) + bytes_field(2, kind) + b"".join(bytes_field(7, b) for b in blobs)
    return bytes_field(LAYER, body)
