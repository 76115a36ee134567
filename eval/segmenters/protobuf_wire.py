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

import math
import os
from typing import Iterator

import numpy as np

VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
# The largest protobuf file (or archive member) read: twice the largest original scorer file (pix2pix's FCN-8s
# caffemodel, 537 MB; DeepLab's DPC graph is 445 MB). It is checked before anything is allocated.
MAX_MESSAGE_BYTES = 1 << 30
# The most values a tensor declared with fewer values than its shape (a broadcast constant) may expand to:
# 64 MiB of floats. TensorFlow's freezer writes such constants only for small fills.
MAX_BROADCAST_VALUES = 1 << 24


class ProtobufError(ValueError):
    """Bytes that are not a well-formed protobuf message (the message says where)."""


def check_message_size(size: int, where: str) -> None:
    """Raise ProtobufError when a file or archive member of ``size`` bytes is larger than any scorer file."""
    if size > MAX_MESSAGE_BYTES:
        raise ProtobufError(f"{where}: {size} bytes, more than the {MAX_MESSAGE_BYTES} read (the original scorer "
                            f"files are at most 537 MB)")


def read_message_file(path, where: str | None = None) -> bytearray:
    """The bytes of the file at ``path``, its size checked (:func:`check_message_size`) before reading."""
    where = where or str(path)
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        check_message_size(size, where)
        data = bytearray(size)
        if file.readinto(data) != size:
            raise ProtobufError(f"{where}: the file changed while it was read")
    return data


def read_message_member(file, size: int, where: str) -> bytearray:
    """``size`` bytes (checked first) from the open archive member ``file``, read in 16 MiB blocks."""
    check_message_size(size, where)
    data = bytearray(size)
    view, pos = memoryview(data), 0
    while pos < size:
        count = file.readinto(view[pos:pos + (16 << 20)])
        if not count:
            raise ProtobufError(f"{where}: {pos} bytes of the {size} its header declares")
        pos += count
    return data


def shape_count(shape: list[int], what: str = "tensor") -> int:
    """The number of values of ``shape``, every dimension checked: >= 0, and a product computed exactly
    (Python integers: 2^32 x 2^32 does not wrap around). Raises ProtobufError."""
    if any(d < 0 for d in shape):
        raise ProtobufError(f"{what} has a negative dimension in its shape {list(shape)}")
    return math.prod(shape)


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
    pos = 0
    while pos < len(view):
        number, wire_type, value, pos = read_field(view, pos)
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


def read_field(buf: memoryview, pos: int) -> tuple[int, int, int | memoryview, int]:
    """The field starting at ``pos`` of a byte view: ``(field_number, wire_type, value, next_pos)``, the
    value as :func:`iter_fields` gives it."""
    key, pos = read_varint(buf, pos)
    number, wire_type = key >> 3, key & 7
    if number == 0:
        raise ProtobufError(f"field number 0 at byte {pos}")
    if wire_type == VARINT:
        value, pos = read_varint(buf, pos)
    elif wire_type in (FIXED64, FIXED32):
        size = 8 if wire_type == FIXED64 else 4
        value, pos = buf[pos:pos + size], pos + size
    elif wire_type == LENGTH_DELIMITED:
        length, pos = read_varint(buf, pos)
        value, pos = buf[pos:pos + length], pos + length
    else:
        raise ProtobufError(f"unsupported wire type {wire_type} of field {number} at byte {pos}")
    if pos > len(buf):
        raise ProtobufError(f"field {number} runs past the end of the message")
    return number, wire_type, value, pos


def _unpacked_run(buf: memoryview, pos: int, key: int, dtype: np.dtype) -> tuple[np.ndarray, int]:
    """The values of consecutive unpacked fields with the one-byte ``key`` from ``pos`` on, read in one
    vectorised step: the bytes are viewed as records (key byte, value) and the run ends at the first
    record whose key byte differs."""
    record = 1 + dtype.itemsize
    count = (len(buf) - pos) // record
    if count == 0:
        raise ProtobufError(f"field {key >> 3} runs past the end of the message")
    records = np.frombuffer(buf, dtype=np.uint8, count=count * record, offset=pos).reshape(count, record)
    other = np.flatnonzero(records[:, 0] != key)
    run = int(other[0]) if other.size else count
    values = np.ascontiguousarray(records[:run, 1:]).view(dtype).reshape(run)
    return values, pos + run * record


def fields_with_arrays(buf: bytes | memoryview, arrays: dict[int, str]) -> tuple[dict[int, list], dict[int, np.ndarray]]:
    """A message's fields, with big repeated numbers read as arrays.

    ``arrays`` maps field numbers of repeated fixed-width numeric fields (float, double, fixed32, ...)
    to their dtype (``"<f4"``, ``"<f8"``, ...). Returns ``(fields, values)``: ``fields`` holds every
    other field as :func:`fields_by_number` does, ``values[number]`` the field's values in file order
    as one array, whether they were written packed, unpacked or both. A run of unpacked values (one
    5- or 9-byte field per value; numbers below 16 have one-byte keys) is read in one vectorised step,
    so a blob of 100 million unpacked floats costs no Python loop.
    """
    view = memoryview(buf).cast("B") if not isinstance(buf, memoryview) or buf.format != "B" else buf
    dtypes = {number: np.dtype(dtype) for number, dtype in arrays.items()}
    fields: dict[int, list] = {}
    chunks: dict[int, list[np.ndarray]] = {number: [] for number in arrays}
    pos, end = 0, len(view)
    while pos < end:
        key = view[pos]
        number = key >> 3
        if key < 0x80 and number in dtypes and key & 7 in (FIXED32, FIXED64):
            dtype = dtypes[number]
            if (key & 7 == FIXED32) != (dtype.itemsize == 4):
                raise ProtobufError(f"field {number} has wire type {key & 7}, not a {dtype} value")
            values, pos = _unpacked_run(view, pos, key, dtype)
            chunks[number].append(values)
            continue
        number, wire_type, value, pos = read_field(view, pos)
        if number in dtypes:
            if wire_type != LENGTH_DELIMITED:
                raise ProtobufError(f"field {number} has wire type {wire_type}, not a {dtypes[number]} value")
            chunks[number].append(packed_array(value, dtypes[number].str))
        else:
            fields.setdefault(number, []).append(value)
    values = {number: parts[0] if len(parts) == 1 else np.concatenate(parts)
              for number, parts in chunks.items() if parts}
    return fields, values


# -------------------------------------------------------------------------------------- writing
# The inverse, for messages built in memory (the tests' and benchmarks' caffemodels and graphs).
def varint(value: int) -> bytes:
    """``value`` as a varint (a negative int64 as ten bytes of two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def varint_field(number: int, value: int) -> bytes:
    return varint(number << 3 | VARINT) + varint(value)


def bytes_field(number: int, payload: bytes | str) -> bytes:
    """A length-delimited field: bytes, a sub-message, or a string (written as UTF-8)."""
    payload = payload.encode() if isinstance(payload, str) else payload
    return varint(number << 3 | LENGTH_DELIMITED) + varint(len(payload)) + payload


def unpacked_floats(number: int, values: np.ndarray) -> bytes:
    """One fixed32 field per value (a one-byte key + 4 bytes, ``number`` < 16), built with numpy."""
    values = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
    records = np.empty((values.size, 5), dtype=np.uint8)
    records[:, 0] = number << 3 | FIXED32
    records[:, 1:] = values.view(np.uint8).reshape(-1, 4)
    return records.tobytes()
