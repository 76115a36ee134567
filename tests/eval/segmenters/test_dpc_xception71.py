"""DeepLab's DPC Xception-71 in PyTorch: layout against DeepLab's graph, the frozen-graph loader, the
exported graph's preprocessing, one-line errors, and evaluate.py scoring Table 3 with it.

No TensorFlow here: frozen graphs are written by ``tests/graphdef_writer.py`` with the real variable
names (width-scaled, so they stay small). ``tests/data/dpc_xception71_variables.txt`` lists the 812
variables (name, shape) of the graph DeepLab's own code builds (written by ``make verify-dpc``, which
compares the whole network with TensorFlow's).
"""
import functools
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import evaluate
from common.files import write_png
from data.images import read_rgb
from eval import EvalError, import_segmenter
from eval.eval_sets import open_eval_set
from eval.segmenters.dpc_xception71 import DPCXception71, DPCXception71Config, import_model_zoo, resize_align_corners
from eval.segmenters.files import load_segmenter, save_segmenter
from eval.segmenters.frozen_graph import read_frozen_graph
from tests.eval.segmenters import graphdef_writer as gw

VARIABLES = Path(__file__).parent / "dpc_xception71_variables.txt"
TINY = 1 / 32                 # widths 32 -> 1, 728 -> 23, 2048 -> 64, 256 -> 8
SMALL_CROP = (65, 129)        # logits (17, 33)
SPACE_TO_BATCH = {16: 7, 8: 59}


def deeplab_variables() -> dict[str, list[int]]:
    rows = (line.split() for line in VARIABLES.read_text().splitlines())
    return {name: [int(s) for s in shape.split(",")] for name, shape in rows}


def tf_shape(name: str, tensor: torch.Tensor) -> list[int]:
    """TensorFlow's shape of one of our tensors: conv [kh, kw, in, out], depthwise [kh, kw, in, 1]."""
    if tensor.dim() != 4:
        return list(tensor.shape)
    out, inp, kh, kw = tensor.shape
    return [kh, kw, out, 1] if name.endswith("depthwise_weights") else [kh, kw, inp, out]


def to_torch_layout(name: str, array: np.ndarray) -> np.ndarray:
    if array.ndim != 4:
        return array
    return array.transpose(2, 3, 0, 1) if name.endswith("depthwise_weights") else array.transpose(3, 2, 0, 1)


def meta_net(output_stride=16, crop=(1025, 2049), width=1.0) -> DPCXception71:
    with torch.device("meta"):
        return DPCXception71(19, DPCXception71Config(output_stride, crop, width))


@functools.lru_cache(maxsize=None)
def tiny_variables(output_stride: int, seed: int) -> dict[str, np.ndarray]:
    """Random values (TensorFlow layouts) for every variable of the width-scaled network (read-only).

    The batch-norm statistics are those the layers see on a random image (one pass in training mode
    with momentum 1), so activations neither vanish nor explode and predictions vary from pixel to pixel.
    """
    torch.manual_seed(seed)
    net = DPCXception71(19, DPCXception71Config(output_stride, SMALL_CROP, TINY))
    with torch.no_grad():
        for name, tensor in net.tf_variables().items():
            if name.endswith("gamma"):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith(("beta", "biases")):
                tensor.normal_(0, 0.2)
            elif tensor.dim() == 4:
                tensor.normal_(0, 1.0 if name.startswith("logits") else 0.3)
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = 1.0
        net.train()
        net.logits(net.preprocess(torch.rand(1, 3, *SMALL_CROP) * 2 - 1))
    arrays = {}
    for name, tensor in net.tf_variables().items():
        value = tensor.detach().numpy()
        if value.ndim == 4:
            value = value.transpose(2, 3, 0, 1) if name.endswith("depthwise_weights") else value.transpose(2, 3, 1, 0)
        arrays[name] = np.ascontiguousarray(value, dtype=np.float32)
        arrays[name].flags.writeable = False
    return arrays


def tiny_graph(output_stride=16, seed=0, crop=SMALL_CROP, drop=(), extra=(), ops=()) -> tuple[bytes, dict]:
    """A frozen graph of the width-scaled network: every variable (but ``drop``, plus ``extra``) as a
    Const, the output stride's SpaceToBatchND ops (plus ``ops``), the logits node with its recorded
    shape for ``crop``."""
    arrays = tiny_variables(output_stride, seed)
    nodes = [gw.node("ImageTensor", "Placeholder")]
    nodes += [gw.const(name, gw.float_tensor(value)) for name, value in arrays.items() if name not in drop]
    nodes += [gw.const(name, gw.float_tensor(np.zeros(3))) for name in extra]
    nodes += [gw.node(f"SpaceToBatchND_{i}", "SpaceToBatchND") for i in range(SPACE_TO_BATCH[output_stride])]
    nodes += [gw.node(f"extra_op_{i}", op) for i, op in enumerate(ops)]
    logits = [1, (crop[0] - 1) // 4 + 1, (crop[1] - 1) // 4 + 1, 19]
    nodes.append(gw.node("logits/semantic/BiasAdd", "BiasAdd", ["logits/semantic/Conv2D"],
                         {"_output_shapes": gw.attr_output_shapes(logits)}))
    return gw.graph_def(nodes), arrays


def write_tarball(folder: Path, graph: bytes) -> Path:
    """The model-zoo layout: train_fine/frozen_inference_graph.pb (+ a checkpoint file) in a .tar.gz."""
    inner = folder / "train_fine"
    inner.mkdir(parents=True)
    (inner / "frozen_inference_graph.pb").write_bytes(graph)
    (inner / "model.ckpt.index").write_bytes(b"not read")
    tarball = folder / "deeplab_cityscapes_xception71_trainfine_2018_09_08.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(inner, arcname="train_fine")
    return tarball


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dpc")
    graph, arrays = tiny_graph()
    tarball = write_tarball(folder, graph)
    model, meta = import_model_zoo(tarball, width_mult=TINY)
    return {"tarball": tarball, "folder": folder, "arrays": arrays, "model": model, "meta": meta}


# ------------------------------------------------------------------------------ numpy references
def np_conv(x, w, stride=1, rate=(1, 1), depthwise=False):
    """TensorFlow's convolution on NHWC / HWIO arrays: "SAME" padding at stride 1, DeepLab's fixed
    padding + "VALID" at stride 2 (both pad (k_eff - 1) // 2 before, the rest after)."""
    kh, kw = w.shape[:2]
    eff = ((kh - 1) * rate[0] + 1, (kw - 1) * rate[1] + 1)
    pads = [((e - 1) // 2, e - 1 - (e - 1) // 2) for e in eff]
    x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    out_h = (x.shape[1] - eff[0]) // stride + 1
    out_w = (x.shape[2] - eff[1]) // stride + 1
    out = 0
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i * rate[0]: i * rate[0] + stride * (out_h - 1) + 1: stride,
                      j * rate[1]: j * rate[1] + stride * (out_w - 1) + 1: stride]
            out = out + (patch * w[i, j, :, 0] if depthwise else patch @ w[i, j])
    return out


def np_bn(x, arrays, scope, eps):
    g, b, m, v = (arrays[f"{scope}/BatchNorm/{k}"] for k in ("gamma", "beta", "moving_mean", "moving_variance"))
    return (x - m) / np.sqrt(v + eps) * g + b


def np_separable(x, arrays, scope, stride=1, rate=(1, 1), relu=False, eps=1e-3):
    relu_fn = (lambda t: np.maximum(t, 0)) if relu else (lambda t: t)
    x = relu_fn(np_bn(np_conv(x, arrays[f"{scope}_depthwise/depthwise_weights"], stride, rate, True),
                      arrays, f"{scope}_depthwise", eps))
    return relu_fn(np_bn(np_conv(x, arrays[f"{scope}_pointwise/weights"]), arrays, f"{scope}_pointwise", eps))


def np_resize_align_corners(x, size):
    """TensorFlow's ResizeBilinear(align_corners=True) on [H, W, C] float32, its own arithmetic."""
    def taps(n_in, n_out):
        scale = np.float32(n_in - 1) / np.float32(n_out - 1)
        where = np.arange(n_out, dtype=np.float32) * scale
        low = np.floor(where).astype(int)
        return low, np.minimum(np.ceil(where).astype(int), n_in - 1), (where - low).astype(np.float32)
    (top, bottom, ly), (left, right, lx) = taps(x.shape[0], size[0]), taps(x.shape[1], size[1])
    tl, tr, bl, br = x[top][:, left], x[top][:, right], x[bottom][:, left], x[bottom][:, right]
    lx = lx[None, :, None]
    upper, lower = tl + (tr - tl) * lx, bl + (br - bl) * lx
    return upper + (lower - upper) * ly[:, None, None]


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()


# ------------------------------------------------------------------------------------- layout
@pytest.mark.parametrize("output_stride", [16, 8])
def test_full_network_has_exactly_deeplabs_variables(output_stride):
    net = meta_net(output_stride)
    ours = {name: tf_shape(name, tensor) for name, tensor in net.tf_variables().items()}
    assert ours == deeplab_variables()           # all 812 names, in TensorFlow's shapes
    assert sum(int(np.prod(s)) for s in ours.values()) == 41_818_955
    filled = {id(t) for t in net.tf_variables().values()}
    left = [k for k, t in net.state_dict(keep_vars=True).items()
            if id(t) not in filled and not k.endswith("num_batches_tracked")]
    assert left == []                            # every weight of ours comes from the graph


@pytest.mark.parametrize("output_stride, features", [(16, (65, 129)), (8, (129, 257))])
def test_sizes_at_the_cityscapes_crop(output_stride, features):
    net = meta_net(output_stride)
    sizes = {}
    net.dpc.register_forward_hook(lambda m, i, o: sizes.update(features=tuple(i[0].shape[-2:])))
    net.feature_projection.register_forward_hook(lambda m, i, o: sizes.update(low_level=tuple(i[0].shape[-2:])))
    logits = net.logits(torch.empty(1, 3, 1025, 2049, device="meta"))
    assert sizes == {"features": features, "low_level": (257, 513)}
    assert logits.shape == (1, 19, 257, 513)     # logits/semantic of the exported graph
    assert net(torch.empty(2, 3, 1024, 2048, device="meta")).shape == (2, 19, 1024, 2048)


def _unit_geometry(net):
    units = {}
    for unit in net.backbone.units:
        depthwise = [conv.depthwise.conv for conv in unit.convs]
        units[unit.scope.split("/", 1)[1].rsplit("/", 1)[0]] = (
            depthwise[2].stride[0], depthwise[0].dilation[0], unit.relu_inside, unit.shortcut_type)
    return units


@pytest.mark.parametrize("output_stride", [16, 8])
def test_strides_and_dilations_follow_deeplabs_output_stride_rule(output_stride):
    # DeepLab: once the output stride is reached, a unit's stride becomes 1 and later units dilate by
    # the product of the skipped strides (exit_flow/block1 at OS 16; entry_flow/block5 at OS 8).
    net = meta_net(output_stride)
    units = _unit_geometry(net)
    entry = {f"entry_flow/block{b}/unit_1": s for b, s in zip(range(1, 6), (2, 1, 2, 1, 2))}
    if output_stride == 8:
        entry["entry_flow/block5/unit_1"] = 1
    for name, stride in entry.items():
        assert units[name] == (stride, 1, False, "conv")
    middle_rate = 1 if output_stride == 16 else 2
    for u in range(1, 17):
        assert units[f"middle_flow/block1/unit_{u}"] == (1, middle_rate, False, "sum")
    assert units["exit_flow/block1/unit_1"] == (1, middle_rate, False, "conv")
    assert units["exit_flow/block2/unit_1"] == (1, 2 * middle_rate, True, "none")
    assert len(units) == 5 + 16 + 2
    multiplier = 16 // output_stride
    rates = [branch.depthwise.conv.dilation for branch in net.dpc.branches]
    assert rates == [(multiplier * h, multiplier * w) for h, w in ((1, 6), (18, 15), (6, 3), (1, 1), (6, 21))]
    # TensorFlow runs each dilated convolution as SpaceToBatchND: 7 at OS 16, 59 at OS 8 in DeepLab's graph
    dilated = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.dilation != (1, 1)]
    assert len(dilated) == SPACE_TO_BATCH[output_stride]


# ------------------------------------------------------------------------------------- loader
def test_import_reads_every_variable_in_its_tensorflow_layout(tiny):
    model, meta, arrays = tiny["model"], tiny["meta"], tiny["arrays"]
    assert meta["config"] == {"output_stride": 16, "crop_size": SMALL_CROP, "width_mult": TINY}
    for name, tensor in model.net.tf_variables().items():
        np.testing.assert_array_equal(tensor.detach().numpy(), to_torch_layout(name, arrays[name]), err_msg=name)
    # the unpacked folder and the bare .pb give the same network
    for source in (tiny["folder"] / "train_fine", tiny["folder"] / "train_fine" / "frozen_inference_graph.pb"):
        again, _ = import_model_zoo(source, width_mult=TINY)
        for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
            assert torch.equal(a, b), k


def test_reader_expands_float_val_as_tensorflow_does():
    graph = gw.graph_def([gw.const("a", gw.float_tensor([2.5], as_float_val=True, shape=[4])),
                          gw.const("b", gw.float_tensor([1.0, 3.0], as_float_val=True, shape=[2, 2])),
                          gw.const("c", gw.float_tensor(np.arange(6).reshape(2, 3))),
                          gw.node("i", "Const", attrs={"value": gw.attr_tensor(gw.int32_tensor([1, 2]))})])
    parsed = read_frozen_graph(graph)
    np.testing.assert_array_equal(parsed.constants["a"], np.full(4, 2.5))
    np.testing.assert_array_equal(parsed.constants["b"], [[1.0, 3.0], [3.0, 3.0]])   # the last value repeats
    np.testing.assert_array_equal(parsed.constants["c"], np.arange(6).reshape(2, 3))
    assert "i" not in parsed.constants and parsed.op_counts["Const"] == 4


def test_output_stride_8_is_read_from_the_graph(tmp_path):
    graph, arrays = tiny_graph(output_stride=8)
    (tmp_path / "frozen_inference_graph.pb").write_bytes(graph)
    model, meta = import_model_zoo(tmp_path, width_mult=TINY)
    assert meta["config"]["output_stride"] == 8 and meta["source"]["space_to_batch_ops"] == 59
    assert model.net.dpc.branches[4].depthwise.conv.dilation == (12, 42)


def test_convolutions_and_units_compute_what_tensorflow_computes(tiny):
    """Layer by layer against numpy with TensorFlow's layouts and padding rules, on the loaded weights."""
    net, a = tiny["model"].net.double(), {k: v.astype(np.float64) for k, v in tiny["arrays"].items()}
    rng = np.random.default_rng(2)

    def check(module, x, expected):
        with torch.no_grad():
            out = module(torch.from_numpy(x.transpose(0, 3, 1, 2)).contiguous())
        out = out[0] if isinstance(out, tuple) else out
        np.testing.assert_allclose(out.numpy().transpose(0, 2, 3, 1), expected, rtol=1e-9, atol=1e-9)

    try:
        x = rng.normal(size=(1, 10, 13, 3))                   # root conv: stride 2, explicit padding
        root = "xception_71/entry_flow/conv1_1"
        check(net.backbone.conv1_1, x, np.maximum(np_bn(np_conv(x, a[f"{root}/weights"], 2), a, root, 1e-3), 0))

        unit = "xception_71/entry_flow/block1/unit_1/xception_module"   # ReLU before each conv, conv shortcut
        x = rng.normal(size=(1, 9, 12, 2))
        r = x
        for i in range(3):
            r = np_separable(np.maximum(r, 0), a, f"{unit}/separable_conv{i + 1}", stride=2 if i == 2 else 1)
        short = np_bn(np_conv(x, a[f"{unit}/shortcut/weights"], 2), a, f"{unit}/shortcut", 1e-3)
        check(net.backbone.units[0], x, r + short)

        unit = "xception_71/middle_flow/block1/unit_3/xception_module"  # identity shortcut
        x = rng.normal(size=(1, 7, 9, 23))
        r = x
        for i in range(3):
            r = np_separable(np.maximum(r, 0), a, f"{unit}/separable_conv{i + 1}")
        check(next(u for u in net.backbone.units if u.scope == unit), x, r + x)

        unit = "xception_71/exit_flow/block2/unit_1/xception_module"    # ReLU after each BN, dilation 2, no shortcut
        x = rng.normal(size=(1, 7, 9, 32))
        r = x
        for i in range(3):
            r = np_separable(r, a, f"{unit}/separable_conv{i + 1}", rate=(2, 2), relu=True)
        check(net.backbone.units[-1], x, r)

        x = rng.normal(size=(1, 8, 15, 64))                   # DPC branch 0: dilation (1, 6), epsilon 1e-5
        check(net.dpc.branches[0], x, np_separable(x, a, "meta_architecture/branch0", rate=(1, 6), relu=True, eps=1e-5))
    finally:
        net.float()


# ------------------------------------------------------------------------------ input handling
def test_preprocessing_is_the_exported_graphs():
    net = DPCXception71(19, DPCXception71Config(crop_size=SMALL_CROP, width_mult=TINY))
    images = torch.rand(2, 3, 40, 100) * 2.2 - 1.1            # includes values outside [-1, 1]
    x = images.numpy().transpose(0, 2, 3, 1)
    pixels = np.round((np.clip(x, -1, 1) + 1) * 127.5)         # as our PNGs are written
    padded = np.full((2, 65, 129, 3), 127.5, np.float32)        # mean pixel, bottom and right
    padded[:, :40, :100] = pixels
    expected = padded * np.float32(2.0 / 255.0) - np.float32(1.0)
    out = net.preprocess(images).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(out, expected)
    assert not out[:, 40:].any() and not out[:, :, 100:].any()  # the padding is exactly 0


def test_resize_is_tensorflows_align_corners_bilinear():
    rng = np.random.default_rng(3)
    for (h, w), size in (((17, 33), (65, 129)), ((65, 129), (257, 513)), ((5, 7), (11, 4))):
        x = rng.normal(size=(h, w, 6)).astype(np.float32)
        ours = resize_align_corners(nchw(x[None]), size)[0].numpy().transpose(1, 2, 0)
        np.testing.assert_allclose(ours, np_resize_align_corners(x, size), rtol=0, atol=2e-6)


def test_forward_upsamples_the_logits_to_the_crop_and_keeps_the_image(tiny):
    model = tiny["model"]
    net = model.net
    images = torch.rand(2, 3, 40, 100) * 2 - 1
    with torch.no_grad():
        scores = model(images)
        for i in range(2):
            logits = net.logits(net.preprocess(images[i:i + 1]))[0].numpy().transpose(1, 2, 0)
            expected = np_resize_align_corners(logits, SMALL_CROP)[:40, :100]
            np.testing.assert_allclose(scores[i].numpy().transpose(1, 2, 0), expected, rtol=0, atol=1e-4)
        pred = model.predict(images)
    assert torch.equal(pred, scores.argmax(1)) and len(pred.unique()) > 1


def test_saved_segmenter_predicts_the_same(tiny, tmp_path):
    model, meta = tiny["model"], tiny["meta"]
    save_segmenter(tmp_path / "dpc.pt", model, meta)
    loaded, meta2 = load_segmenter(tmp_path / "dpc.pt", "dpc_xception71")
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    assert torch.equal(loaded.predict(images), model.predict(images))
    assert meta2["display_name"] == "DPC Xception-71 (DeepLab, output stride 16, width x0.03125)"
    assert meta2["num_classes"] == 19 and len(meta2["class_names"]) == 19 and meta2["train_resolution"] is None
    assert meta2["source"]["file"] == tiny["tarball"].name and len(meta2["source"]["sha256"]) == 64
    assert "127.5" in meta2["normalization"]["note"]


# ---------------------------------------------------------------------------------- bad input
def _import_error(argv, capsys) -> str:
    assert import_segmenter.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    out = ["--out", str(tmp_path / "out.pt")]
    assert "not found" in _import_error(["dpc_xception71", str(tmp_path / "missing.tar.gz")] + out, capsys)

    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    assert "expected one frozen_inference_graph.pb in the archive, found 0" in _import_error(
        ["dpc_xception71", str(empty)] + out, capsys)

    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\xff\xff\xff not a graph")
    assert "junk.pb: not a TensorFlow GraphDef" in _import_error(["dpc_xception71", str(junk)] + out, capsys)

    def graph_file(name, **kwargs):
        path = tmp_path / name / "frozen_inference_graph.pb"
        path.parent.mkdir()
        path.write_bytes(tiny_graph(**kwargs)[0])
        return str(path)

    err = _import_error(["dpc_xception71", graph_file("missing_var", drop=["xception_71/entry_flow/conv1_1/weights"])]
                        + out, capsys)
    assert "variable xception_71/entry_flow/conv1_1/weights not found" in err
    err = _import_error(["dpc_xception71", graph_file("tiny")] + out, capsys)   # a width-scaled graph is not the zoo's
    assert "variable xception_71/entry_flow/conv1_1/weights has shape [3, 3, 3, 1], expected [3, 3, 3, 32]" in err
    err = _import_error(["dpc_xception71", graph_file("relu6", ops=["Relu6"])] + out, capsys)
    assert "unsupported op Relu6" in err
    err = _import_error(["dpc_xception71", graph_file("os4", ops=["SpaceToBatchND"])] + out, capsys)
    assert "8 SpaceToBatchND ops" in err
    assert not (tmp_path / "out.pt").exists()

    path = graph_file("extra", extra=["xception_71/entry_flow/block9/unit_1/xception_module/shortcut/weights"])
    with pytest.raises(EvalError, match="unsupported variable xception_71/entry_flow/block9"):
        import_model_zoo(Path(path), width_mult=TINY)


def test_images_larger_than_the_crop_are_refused(tiny):
    with pytest.raises(EvalError, match="image of 66x64 is larger than the 65x129 crop"):
        tiny["model"].predict(torch.zeros(1, 3, 66, 64))


# ------------------------------------------------------------------------------- evaluate.py
@pytest.mark.parametrize("protocol", ["256", "fullres"])
def test_evaluate_scores_table_3_with_it(tiny, synthetic_root, tmp_path, protocol):
    segmenters = tmp_path / "segmenters"
    save_segmenter(segmenters / "dpc_xception71.pt", tiny["model"], tiny["meta"])
    evalset = open_eval_set(synthetic_root, protocol=protocol)
    images = tmp_path / "images"
    for i, name in enumerate(evalset.names):       # score the real photos as an image folder
        write_png(images / f"{name}.png", evalset.real_photo(i).permute(1, 2, 0).numpy())
    out = tmp_path / "results"
    assert evaluate.main(["--images", str(images), "--dataroot", str(synthetic_root), "--segmenters", "dpc_xception71",
                          "--segmenter-dir", str(segmenters), "--protocol", protocol, "--out", str(out),
                          "--device", "cpu", "--checkpoints-dir", str(tmp_path / "none")]) == 0
    entry = json.loads((out / "results.json").read_text())["segmenters"][0]
    assert entry["table"] == "Table 3" and entry["arch"] == "dpc_xception71"
    assert "DPC Xception-71 (DeepLab" in entry["title"] and "DeepLab's model-zoo network" in entry["title"]
    model, _ = load_segmenter(segmenters / "dpc_xception71.pt")
    hist = np.zeros((19, 19), dtype=np.int64)
    for i, name in enumerate(evalset.names):
        label = evalset.label(i).numpy()
        image = read_rgb(images / f"{name}.png").float()[None] / 127.5 - 1
        if protocol == "fullres":  # the pix2pix protocol: PIL's bilinear resize on uint8, as scipy.misc.imresize
            with Image.open(images / f"{name}.png") as png:
                up = np.asarray(png.convert("RGB").resize(label.shape[::-1], Image.BILINEAR))
            image = torch.from_numpy(up.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
        pred = model.predict(image, out_size=label.shape)[0].numpy()
        keep = label != 255
        np.add.at(hist, (label[keep].astype(np.int64), pred[keep]), 1)
    assert entry["image_sets"][0]["scores"]["confusion"] == hist.tolist()


def test_amp_leaves_the_imported_graph_in_fp32(tiny):
    """evaluate.py --amp (bf16 autocast) must not change what DeepLab's graph predicts: logits, their
    upsampling and the argmax are the float32 ones, bit for bit."""
    from common.amp import autocast
    model = tiny["model"]
    images = torch.rand(1, 3, 40, 100, generator=torch.Generator().manual_seed(4)) * 2 - 1
    with torch.no_grad():
        scores, pred, resized = model(images), model.predict(images), model.predict(images, out_size=(80, 200))
        with autocast(torch.device("cpu")):
            amp_scores, amp_pred = model(images), model.predict(images)
            amp_resized = model.predict(images, out_size=(80, 200))
    assert amp_scores.dtype == torch.float32 and torch.equal(amp_scores, scores)
    assert torch.equal(amp_pred, pred) and torch.equal(amp_resized, resized)
