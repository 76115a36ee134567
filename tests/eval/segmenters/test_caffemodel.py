"""The caffemodel reader against the protobuf package's own encoder (caffe.proto's messages built at run
time) and across the forms a caffemodel can take."""
import numpy as np
import pytest

from eval.segmenters.caffemodel import (
    CaffeModelError,
    encode_blob,
    encode_layer,
    read_blob,
    read_caffemodel,
    read_layers,
)
from eval.segmenters.protobuf_wire import bytes_field
from tests.eval.segmenters.caffemodel_writer import caffemodel_bytes


def caffe_messages():
    """NetParameter, LayerParameter, V1LayerParameter, BlobProto, BlobShape with caffe.proto's field numbers."""
    descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
    from google.protobuf import descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe", syntax="proto2")

    def message(name, *fields):
        msg = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name, packed in fields:
            field = msg.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
            if packed:
                field.options.packed = True

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("BlobShape", ("dim", 1, F.TYPE_INT64, rep, None, True))
    message("BlobProto", ("num", 1, F.TYPE_INT32, opt, None, False), ("channels", 2, F.TYPE_INT32, opt, None, False),
            ("height", 3, F.TYPE_INT32, opt, None, False), ("width", 4, F.TYPE_INT32, opt, None, False),
            ("data", 5, F.TYPE_FLOAT, rep, None, True), ("diff", 6, F.TYPE_FLOAT, rep, None, True),
            ("shape", 7, F.TYPE_MESSAGE, opt, ".caffe.BlobShape", False),
            ("double_data", 8, F.TYPE_DOUBLE, rep, None, True))
    message("LayerParameter", ("name", 1, F.TYPE_STRING, opt, None, False),
            ("type", 2, F.TYPE_STRING, opt, None, False), ("bottom", 3, F.TYPE_STRING, rep, None, False),
            ("top", 4, F.TYPE_STRING, rep, None, False), ("blobs", 7, F.TYPE_MESSAGE, rep, ".caffe.BlobProto", False))
    message("V1LayerParameter", ("bottom", 2, F.TYPE_STRING, rep, None, False),
            ("top", 3, F.TYPE_STRING, rep, None, False), ("name", 4, F.TYPE_STRING, opt, None, False),
            ("type", 5, F.TYPE_INT32, opt, None, False), ("blobs", 6, F.TYPE_MESSAGE, rep, ".caffe.BlobProto", False))
    message("NetParameter", ("name", 1, F.TYPE_STRING, opt, None, False),
            ("layers", 2, F.TYPE_MESSAGE, rep, ".caffe.V1LayerParameter", False),
            ("layer", 100, F.TYPE_MESSAGE, rep, ".caffe.LayerParameter", False))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"caffe.{name}"))
            for name in ("NetParameter", "BlobProto")}


def test_reads_what_the_protobuf_package_writes():
    messages = caffe_messages()
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    deconv = rng.standard_normal((2, 2, 4, 4))
    net = messages["NetParameter"](name="net")
    conv = net.layer.add(name="conv1_1", type="Convolution", bottom=["data"], top=["conv1_1"])
    conv.blobs.add(data=weight.ravel()).shape.dim.extend(weight.shape)
    conv.blobs.add(data=bias.ravel()).shape.dim.extend(bias.shape)
    net.layer.add(name="relu1_1", type="ReLU")
    up = net.layer.add(name="upscore2", type="Deconvolution")
    up.blobs.add(double_data=deconv.ravel(), num=2, channels=2, height=4, width=4)  # legacy shape, doubles
    old = net.layers.add(name="score_fr", type=4)
    old.blobs.add(data=bias.ravel(), num=1, channels=1, height=1, width=4)
    layers = read_layers(net.SerializeToString())
    assert sorted(layers) == ["conv1_1", "score_fr", "upscore2"]  # the ReLU holds no weights
    assert layers["conv1_1"].type == "Convolution" and layers["upscore2"].type == "Deconvolution"
    assert layers["score_fr"].type == "Convolution"  # V1 enum 4
    np.testing.assert_array_equal(layers["conv1_1"].blobs[0], weight)
    np.testing.assert_array_equal(layers["conv1_1"].blobs[1], bias)
    np.testing.assert_array_equal(layers["upscore2"].blobs[0], deconv.astype(np.float32))
    assert layers["score_fr"].blobs[0].shape == (1, 1, 1, 4)


def test_the_writer_agrees_with_the_protobuf_package():
    """The writer (used by the tests and benchmarks) encodes what the package parses back."""
    messages = caffe_messages()
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 5
    for form in ({"shape_form": "shape", "packed": True}, {"shape_form": "legacy", "packed": False}):
        parsed = messages["BlobProto"].FromString(encode_blob(array, **form))
        np.testing.assert_array_equal(np.array(parsed.data, np.float32), array.ravel())
        shape = tuple(parsed.shape.dim) if form["shape_form"] == "shape" else \
            (parsed.num, parsed.channels, parsed.height, parsed.width)
        assert shape == (array.shape if form["shape_form"] == "shape" else (1, 2, 3, 4))
    net = messages["NetParameter"].FromString(encode_layer("a", "Convolution", [encode_blob(array)]) +
                                              encode_layer("b", "Deconvolution", [encode_blob(array)], legacy=True))
    assert net.layer[0].name == "a" and net.layer[0].type == "Convolution"
    assert net.layers[0].name == "b" and net.layers[0].type == 39


@pytest.mark.parametrize("form", [{"legacy": True}, {"shape_form": "legacy"}, {"packed": False},
                                  {"legacy": True, "shape_form": "legacy", "packed": False}])
def test_every_form_holds_the_same_blobs(form):
    rng = np.random.default_rng(1)
    weights = {"conv1_1": [rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
                           rng.standard_normal(8).astype(np.float32)],
               "upscore8": [rng.standard_normal((20, 20, 16, 16)).astype(np.float32)]}
    plain = read_layers(caffemodel_bytes(weights))
    other = read_layers(caffemodel_bytes(weights, **form))
    assert sorted(plain) == sorted(other) == ["conv1_1", "upscore8"]
    for name, blobs in weights.items():
        assert other[name].type == plain[name].type
        for ours, theirs, original in zip(other[name].blobs, plain[name].blobs, blobs):
            np.testing.assert_array_equal(ours.reshape(original.shape), original)
            np.testing.assert_array_equal(theirs, original)


def test_not_a_caffemodel(tmp_path):
    text = tmp_path / "deploy.prototxt"
    text.write_text('layer {\n  name: "data"\n  type: "Input"\n}\n')
    with pytest.raises(CaffeModelError, match="text file"):
        read_caffemodel(text)
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(caffemodel_bytes({"conv1_1": [np.ones((2, 3, 3, 3), np.float32)]})[:-7])
    with pytest.raises(CaffeModelError, match="not a readable caffemodel"):
        read_caffemodel(cut)
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(encode_layer("relu", "ReLU", []))
    with pytest.raises(CaffeModelError, match="no layer holds weights"):
        read_caffemodel(empty)
    five_values_shape_2x3 = bytes_field(5, np.ones(5, "<f4").tobytes()) + bytes_field(7, bytes_field(1, b"\x02\x03"))
    with pytest.raises(CaffeModelError, match="holds 5 values"):
        read_blob(memoryview(five_values_shape_2x3))


# ------------------------------------------------------------------- dimensions, through the importer's command line
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from eval.segmenters.protobuf_wire import varint  # noqa: E402

REPO = Path(__file__).resolve().parents[3]


def _blob_with_shape(dims, values: int) -> bytes:
    return bytes_field(5, np.ones(values, "<f4").tobytes()) + bytes_field(7, bytes_field(1, b"".join(varint(d) for d in dims)))


@pytest.mark.parametrize("dims, problem", [
    ((-1, 4), "blob has a negative dimension in its shape [-1, 4]"),
    ((2**32, 2**32), f"blob of shape ({2**32}, {2**32}) holds 4 values"),  # the product once wrapped around to 0
])
def test_blob_dimensions_negative_or_overflowing_are_one_line(tmp_path, dims, problem):
    model = tmp_path / "fcn.caffemodel"
    model.write_bytes(encode_layer("conv1_1", "Convolution", [_blob_with_shape(dims, 4)]))
    result = subprocess.run([sys.executable, "-m", "eval.import_segmenter", "fcn8s_caffe", str(model), "--out",
                             str(tmp_path / "out.pt")], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {model}: layer conv1_1: {problem}", result.stderr


def test_a_caffemodel_larger_than_the_cap_is_refused_before_it_is_read(tmp_path):
    from eval.segmenters.protobuf_wire import MAX_MESSAGE_BYTES
    model = tmp_path / "big.caffemodel"
    with open(model, "wb") as file:  # sparse: no disk used
        file.truncate(MAX_MESSAGE_BYTES + 1)
    with pytest.raises(CaffeModelError, match=f"{MAX_MESSAGE_BYTES + 1} bytes, more than the {MAX_MESSAGE_BYTES} read"):
        read_caffemodel(model)
