"""Read a TensorFlow frozen graph (a serialized ``GraphDef``) without TensorFlow: its float constants
(the frozen variables), its op counts and one node's recorded output shape.

Only the messages that carry these are read (:mod:`eval.segmenters.protobuf_wire`): ``GraphDef.node``,
``NodeDef`` name, op and attributes, ``AttrValue`` tensor and shape list, ``TensorProto`` and
``TensorShapeProto``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from eval.segmenters.protobuf_wire import (
    MAX_BROADCAST_VALUES,
    ProtobufError,
    fields_by_number,
    shape_count,
    signed64,
    string,
)

DT_FLOAT = 1
DEEPLAB_LOGITS = "logits/semantic/BiasAdd"   # the node of DeepLab's exported graphs whose shape tells the crop


@dataclass
class FrozenGraph:
    """What an importer needs of a TensorFlow ``GraphDef``: float constants by node name, how many
    nodes of each op type it has, and the ``_output_shapes`` recorded for one node (None if absent)."""
    constants: dict[str, np.ndarray]
    op_counts: Counter
    output_shape: list[int] | None


def _tensor_shape(payload) -> list[int]:
    """TensorShapeProto {repeated Dim dim = 2 {int64 size = 1}} -> sizes (-1 unknown)."""
    return [signed64(fields_by_number(dim).get(1, [0])[0]) for dim in fields_by_number(payload).get(2, [])]


def _float_tensor(payload, name: str = "?") -> np.ndarray | None:
    """A TensorProto's values as float32 [shape], or None if it does not hold floats.

    TensorProto: dtype = 1, tensor_shape = 2, tensor_content = 4 (raw little-endian bytes), float_val = 5
    (packed or not; fewer values than the shape repeat the last one, none means zeros). Every dimension is
    checked, and the declared size against the bytes present before anything is allocated; a constant
    that repeats its values is expanded to at most MAX_BROADCAST_VALUES values.
    """
    fields = fields_by_number(payload)
    if fields.get(1, [0])[0] != DT_FLOAT:
        return None
    shape = _tensor_shape(fields[2][0]) if 2 in fields else []
    what = f"constant {name}"
    count = shape_count(shape, what)
    if 4 in fields:
        content = fields[4][0]
        if len(content) != 4 * count:
            raise ProtobufError(f"{what} of shape {shape} ({count} values) holds {len(content)} bytes of "
                                f"tensor_content, not {4 * count}")
        values = np.frombuffer(content, dtype="<f4")
    else:
        parts = fields.get(5, [])
        present = sum(len(v) if isinstance(v, memoryview) else 0 for v in parts) // 4
        if count > max(present, MAX_BROADCAST_VALUES):
            raise ProtobufError(f"{what} declares shape {shape} ({count} values) from {present} float_val; more "
                                f"than {MAX_BROADCAST_VALUES} repeated values are not expanded")
        values = np.frombuffer(b"".join(bytes(v) for v in parts), dtype="<f4")
        if 0 < len(values) < count:
            values = np.concatenate([values, np.full(count - len(values), values[-1], "<f4")])
        elif len(values) == 0:
            values = np.zeros(count, "<f4")
    if len(values) != count:
        raise ProtobufError(f"{what} of shape {shape} holds {len(values)} values")
    return values.reshape(shape)


def read_frozen_graph(data: bytes, output_node: str = DEEPLAB_LOGITS) -> FrozenGraph:
    """Parse a ``GraphDef`` (node = 1; NodeDef: name = 1, op = 2, attr = 5 as map entries key = 1,
    value = 2; AttrValue: list = 1 (ListValue.shape = 7), tensor = 8), keeping the recorded output
    shape of ``output_node``."""
    constants, op_counts, output_shape = {}, Counter(), None
    for node in fields_by_number(data).get(1, []):
        fields = fields_by_number(node)
        name, op = string(fields.get(1, [b""])[0]), string(fields.get(2, [b""])[0])
        op_counts[op] += 1
        if op != "Const" and name != output_node:
            continue
        for entry in fields.get(5, []):
            entry = fields_by_number(entry)
            key, value = string(entry.get(1, [b""])[0]), fields_by_number(entry.get(2, [b""])[0])
            if op == "Const" and key == "value" and 8 in value:
                tensor = _float_tensor(value[8][0], name)
                if tensor is not None:
                    constants[name] = tensor
            elif key == "_output_shapes" and 1 in value:
                shapes = fields_by_number(value[1][0]).get(7, [])
                if shapes:
                    output_shape = _tensor_shape(shapes[0])
    return FrozenGraph(constants, op_counts, output_shape)
