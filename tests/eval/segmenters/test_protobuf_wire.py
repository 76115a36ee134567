"""The wire-format reader against hand-encoded bytes and against the protobuf package's own encoder."""
import numpy as np
import pytest

from eval.segmenters import protobuf_wire as wire
from eval.segmenters.protobuf_wire import (
    ProtobufError,
    fields_by_number,
    iter_fields,
    packed_array,
    packed_varints,
    signed64,
    string,
)


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


def test_arrays_packed_unpacked_and_mixed_read_in_file_order():
    from eval.segmenters.protobuf_wire import fields_with_arrays
    values = np.arange(10, dtype="<f4") * 1.5 - 3
    doubles = np.array([0.25, -7.0], dtype="<f8")
    unpacked = b"".join(bytes([0x2D]) + np.float32(v).tobytes() for v in values[:6])  # field 5, fixed32
    packed = bytes([0x2A, 16]) + values[6:].tobytes()                                # field 5, packed
    unpacked_doubles = b"".join(bytes([0x41]) + np.float64(v).tobytes() for v in doubles)  # field 8, fixed64
    trailer = bytes([0x08, 0x03, 0x3A, 0x02, 0x08, 0x0A])  # field 1 = 3, field 7 = message {1: 10}
    message = bytes([0x10, 0x07]) + unpacked + packed + unpacked_doubles + trailer
    fields, arrays = fields_with_arrays(message, {5: "<f4", 8: "<f8"})
    np.testing.assert_array_equal(arrays[5], values)
    np.testing.assert_array_equal(arrays[8], doubles)
    assert fields[2] == [7] and fields[1] == [3] and fields_by_number(fields[7][0]) == {1: [10]}


def test_a_run_of_unpacked_floats_ends_where_another_field_starts():
    from eval.segmenters.protobuf_wire import fields_with_arrays
    rng = np.random.default_rng(0)
    values = rng.standard_normal(100_000).astype("<f4")
    records = np.empty((values.size, 5), np.uint8)
    records[:, 0] = 0x2D
    records[:, 1:] = values.view(np.uint8).reshape(-1, 4)
    # the next field's key (0x35: field 6, fixed32) sits where the next record's key would be
    message = records.tobytes() + bytes([0x35]) + np.float32(9).tobytes()
    fields, arrays = fields_with_arrays(message, {5: "<f4"})
    np.testing.assert_array_equal(arrays[5], values)
    assert np.frombuffer(fields[6][0], "<f4")[0] == 9
    with pytest.raises(ProtobufError, match="wire type"):
        fields_with_arrays(bytes([0x2D]) + np.float32(1).tobytes(), {5: "<f8"})
    with pytest.raises(ProtobufError):
        fields_with_arrays(records.tobytes()[:-2], {5: "<f4"})  # the last float is cut short


# ------------------------------------------------------------------- bounded reads through the importer's command line
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.eval.segmenters.graphdef_writer import const, float_tensor, graph_def  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def import_segmenter(*args):
    return subprocess.run([sys.executable, "-m", "eval.import_segmenter", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)))


def test_a_tiny_graph_declaring_a_huge_broadcast_constant_is_refused_before_any_allocation(tmp_path):
    pb = tmp_path / "frozen_inference_graph.pb"
    pb.write_bytes(graph_def([const("c", float_tensor(np.ones(1), as_float_val=True, shape=(65536, 65536)))]))
    assert pb.stat().st_size < 100
    result = import_segmenter("dpc_xception71", pb, "--out", tmp_path / "out.pt")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {pb}: not a TensorFlow GraphDef (constant c declares shape [65536, 65536] (4294967296 values) from "
        f"1 float_val; more than {wire.MAX_BROADCAST_VALUES} repeated values are not expanded)")
    assert not (tmp_path / "out.pt").exists()

    from eval.segmenters.frozen_graph import read_frozen_graph  # and in bounded memory: no 16 GiB array
    tracemalloc.start()
    with pytest.raises(wire.ProtobufError):
        read_frozen_graph(pb.read_bytes())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("shape, problem", [
    ((-3, 2), "constant c has a negative dimension in its shape [-3, 2]"),
    ((2**32, 2**32), f"constant c of shape [{2**32}, {2**32}] ({2**64} values) holds 16 bytes of tensor_content, "
                     f"not {4 * 2**64}"),
])
def test_graph_dimensions_negative_or_overflowing_are_one_line(tmp_path, shape, problem):
    pb = tmp_path / "frozen_inference_graph.pb"
    pb.write_bytes(graph_def([const("c", float_tensor(np.ones(4), shape=shape))]))
    result = import_segmenter("dpc_xception71", pb, "--out", tmp_path / "out.pt")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {pb}: not a TensorFlow GraphDef ({problem})"


def _sparse_tar(path: Path, member: str, size: int) -> Path:
    """An uncompressed tar whose one member declares ``size`` bytes (a sparse file: no disk used)."""
    info = tarfile.TarInfo(member)
    info.size = size
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    with open(path, "wb") as file:
        file.write(header)
        file.seek(len(header) + (size + 511) // 512 * 512)
        file.write(b"\0" * 1024)  # end of archive
    return path


def test_an_archive_member_larger_than_the_cap_is_refused_before_it_is_read(tmp_path):
    member = "deeplab/frozen_inference_graph.pb"
    tar = _sparse_tar(tmp_path / "model.tar", member, 2_000_000_000)
    result = import_segmenter("dpc_xception71", tar, "--out", tmp_path / "out.pt")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {tar}:{member}: 2000000000 bytes, more than the {wire.MAX_MESSAGE_BYTES} "
                                     f"read (the original scorer files are at most 537 MB)")

    from eval import EvalError
    from eval.segmenters.dpc_xception71 import import_model_zoo
    tracemalloc.start()
    with pytest.raises(EvalError, match="more than the"):
        import_model_zoo(tar)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 16 << 20


def test_a_truncated_archive_member_is_one_line(tmp_path):
    member = "deeplab/frozen_inference_graph.pb"
    tar = _sparse_tar(tmp_path / "model.tar", member, 1000)
    with open(tar, "r+b") as file:  # cut inside the member's data
        file.truncate(512 + 100)
    result = import_segmenter("dpc_xception71", tar, "--out", tmp_path / "out.pt")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"error: {tar}")
