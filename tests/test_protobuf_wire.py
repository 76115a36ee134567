"""The wire-format reader against hand-encoded bytes and against the protobuf package's own encoder."""
import numpy as np
import pytest

from eval.protobuf_wire import (ProtobufError, fields_by_number, iter_fields, packed_array, packed_varints,
                                signed64, string)


def test_hand_encoded_examples():
    # The protobuf documentation's example: field 1 = 150 is 08 96 01; field 2 = "testing".
    message = bytes([0x08, 0x96, 0x01, 0x12, 0x07]) + b"testing"
    fields = list(iter_fields(message))
    assert [(n, t) for n, t, _ in fields] == [(1, 0), (2, 2)]
    assert fields[0][2] == 150
    assert string(fields[1][2]) == "testing"
    # A fixed32 float (field 5, wire type 5) and a fixed64 (field 6, wire type 1).
    message = bytes([0x2D]) + np.float32(1.5).tobytes() + bytes([0x31]) + np.float64(-2.0).tobytes()
    grouped = fields_by_number(message)
    assert np.frombuffer(grouped[5][0], "<f4")[0] == 1.5
    assert np.frombuffer(grouped[6][0], "<f8")[0] == -2.0


def test_against_the_protobuf_package():
    descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
    proto = descriptor_pb2.FileDescriptorProto(name="a.proto", package="pkg", dependency=["x", "y"])
    proto.options.java_multiple_files = True  # field 8 (message) -> field 10 (bool)
    proto.source_code_info.location.add(path=[4, 0, 2, 300], span=[1, 2, 3])  # packed int32
    grouped = fields_by_number(proto.SerializeToString())
    assert string(grouped[1][0]) == "a.proto" and string(grouped[2][0]) == "pkg"
    assert [string(v) for v in grouped[3]] == ["x", "y"]
    assert fields_by_number(grouped[8][0])[10] == [1]
    location = fields_by_number(fields_by_number(grouped[9][0])[1][0])
    assert packed_varints(location[1][0]) == [4, 0, 2, 300]
    assert packed_varints(location[2][0]) == [1, 2, 3]


def test_packed_floats_and_negative_int64():
    values = np.arange(6, dtype="<f4") - 2.5
    payload = memoryview(values.tobytes())
    np.testing.assert_array_equal(packed_array(payload, "<f4"), values)
    assert signed64((1 << 64) - 3) == -3 and signed64(7) == 7
    with pytest.raises(ProtobufError):
        packed_array(payload[:5], "<f4")


@pytest.mark.parametrize("broken", [b"\x08", b"\x12\x05abc", b"\x0b\x00", b"\x00\x01", b"\xff" * 11])
def test_malformed_messages_raise(broken):
    with pytest.raises(ProtobufError):
        list(iter_fields(broken))
