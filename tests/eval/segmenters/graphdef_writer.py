"""Write TensorFlow ``GraphDef`` bytes in the protobuf wire format, for tests (no TensorFlow needed).

Only what a frozen graph's reader looks at: nodes (name = 1, op = 2, attr = 5 as map entries key = 1,
value = 2), AttrValue (list = 1 with ListValue.shape = 7, tensor = 8), TensorProto (dtype = 1,
tensor_shape = 2, tensor_content = 4, float_val = 5) and TensorShapeProto (dim = 2, Dim.size = 1).
"""
from __future__ import annotations

import numpy as np

from eval.segmenters.protobuf_wire import bytes_field, varint_field

DT_FLOAT, DT_INT32 = 1, 3


def tensor_shape(shape) -> bytes:
    return b"".join(bytes_field(2, varint_field(1, int(size))) for size in shape)


def float_tensor(array, as_float_val: bool = False, shape=None) -> bytes:
    """A float32 TensorProto: raw ``tensor_content`` (as TensorFlow freezes variables) or, with
    ``as_float_val``, the values as a packed ``float_val`` (``shape`` may then claim more values)."""
    array = np.asarray(array, dtype="<f4")
    shape = array.shape if shape is None else shape
    values = bytes_field(5, array.tobytes()) if as_float_val else bytes_field(4, array.tobytes())
    return varint_field(1, DT_FLOAT) + bytes_field(2, tensor_shape(shape)) + values


def int32_tensor(array) -> bytes:
    array = np.asarray(array, dtype="<i4")
    return varint_field(1, DT_INT32) + bytes_field(2, tensor_shape(array.shape)) + bytes_field(4, array.tobytes())


def node(name: str, op: str, inputs=(), attrs: dict[str, bytes] | None = None) -> bytes:
    """A NodeDef; ``attrs`` maps keys to encoded AttrValue messages."""
    out = bytes_field(1, name) + bytes_field(2, op) + b"".join(bytes_field(3, i) for i in inputs)
    for key, value in (attrs or {}).items():
        out += bytes_field(5, bytes_field(1, key) + bytes_field(2, value))
    return out


def attr_tensor(tensor: bytes) -> bytes:
    return bytes_field(8, tensor)


def attr_output_shapes(*shapes) -> bytes:
    return bytes_field(1, b"".join(bytes_field(7, tensor_shape(s)) for s in shapes))


def const(name: str, tensor: bytes) -> bytes:
    return node(name, "Const", attrs={"value": attr_tensor(tensor), "dtype": varint_field(6, DT_FLOAT)})


def graph_def(nodes) -> bytes:
    return b"".join(bytes_field(1, n) for n in nodes) + bytes_field(4, varint_field(1, 27))  # + versions
