"""Read Protocol Buffers messages from their wire format, without generated code.

The original scorers come as protobuf files: Caffe's ``NetParameter`` (a caffemodel) and TensorFlow's
``GraphDef`` (a frozen graph). Reading them needs only the wire format: a message is a sequence of
fields, each a key ``(field_number << 3) | wire_type`` (a varint) followed by its value:

* wire type 0: a varint (int32/int64/uint/bool/enum);
* wire type 1: 8 bytes (fixed64, double);
* wire type 2: a varint length, then that many bytes (string, bytes, sub-message, packed repeated);
* wire type 5: 4 bytes (fixed32, float).

Large payloads (weight blobs of hundreds of MB) are returned as ``memoryview`` slices of the buffer, so
nothing is copied until the caller turns them into an array.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5


class ProtobufError(ValueError):
    """Bytes that are not a well-formed protobuf message (the message says where)."""


def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """The varint starting at ``pos`` and the position after it."""
    result = shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise ProtobufError(f"varint runs past the end of the message at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ProtobufError(f"varint longer than 10 bytes ending at byte {pos}")


def iter_fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """``(field_number, wire_type, value)`` for each field of the message in ``buf``, in order.

    ``value`` is an int for varints, a 4- or 8-byte ``memoryview`` for fixed32/fixed64 and a
    ``memoryview`` of the payload for length-delimited fields. Groups (wire types 3/4, long deprecated)
    are not supported.
    """
    view = memoryview(buf).cast("B") if not isinstance(buf, memoryview) or buf.format != "B" else buf
    pos, end = 0, len(view)
    while pos < end:
        key, pos = read_varint(view, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtobufError(f"field number 0 at byte {pos}")
        if wire_type == VARINT:
            value, pos = read_varint(view, pos)
        elif wire_type == FIXED64:
            value, pos = view[pos:pos + 8], pos + 8
        elif wire_type == LENGTH_DELIMITED:
            length, pos = read_varint(view, pos)
            value, pos = view[pos:pos + length], pos + length
        elif wire_type == FIXED32:
            value, pos = view[pos:pos + 4], pos + 4
        else:
            raise ProtobufError(f"unsupported wire type {wire_type} of field {number} at byte {pos}")
        if pos > end:
            raise ProtobufError(f"field {number} runs past the end of the message")
        yield number, wire_type, value


def fields_by_number(buf: bytes | memoryview) -> dict[int, list]:
    """All fields of a message grouped by number: ``{number: [value, ...]}`` in file order."""
    grouped: dict[int, list] = {}
    for number, _, value in iter_fields(buf):
        grouped.setdefault(number, []).append(value)
    return grouped


def packed_varints(payload: memoryview) -> list[int]:
    """The integers of a packed repeated varint field."""
    values, pos = [], 0
    while pos < len(payload):
        value, pos = read_varint(payload, pos)
        values.append(value)
    return values


def signed64(value: int) -> int:
    """A varint read as int64 (negative numbers are stored as 10-byte two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def packed_array(payload: memoryview, dtype: str) -> np.ndarray:
    """A packed repeated fixed-width field (``"<f4"`` floats, ``"<f8"`` doubles, ...) as an array
    (a view of the buffer, read-only)."""
    itemsize = np.dtype(dtype).itemsize
    if len(payload) % itemsize:
        raise ProtobufError(f"packed field of {len(payload)} bytes is not a whole number of {dtype} values")
    return np.frombuffer(payload, dtype=dtype)


def string(payload: memoryview) -> str:
    """A string field's text."""
    try:
        return bytes(payload).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtobufError(f"string field is not UTF-8 ({exc})") from None
