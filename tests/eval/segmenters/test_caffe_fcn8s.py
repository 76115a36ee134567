"""pix2pix's Caffe FCN-8s: a caffemodel written here (random weights, the deploy net's layer names) imports
and predicts what a forward pass written from deploy.prototxt predicts; every file form loads the same;
bad files end the import command with one line and exit status 2."""
import hashlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eval import EvalError
from eval.import_segmenter import main as import_main
from eval.segmenters.caffe_fcn8s import import_caffemodel
from eval.segmenters.files import load_segmenter
from eval.segmenters.registry import build_segmenter
from tests.eval.segmenters.caffemodel_writer import caffemodel_bytes, fcn8s_weights, write_caffemodel

REPO = Path(__file__).resolve().parents[3]
NARROW = {"block_widths": (4, 8, 8, 16, 16), "fc_width": 32}  # the deploy net's layers, fewer channels
MEAN_BGR = np.array([72.78044, 83.21195, 73.45286], dtype=np.float32)


# ------------------------------------------------------- the deploy net, written out from the prototxt
def prototxt_forward(weights: dict, images_uint8: np.ndarray) -> torch.Tensor:
    """Scores [N, 20, H, W] of deploy.prototxt on uint8 RGB images [N, H, W, 3], preprocessed as the
    reference script does (float32, RGB -> BGR, minus the mean, HWC -> CHW)."""
    x = images_uint8.astype(np.float32)[..., ::-1] - MEAN_BGR
    data = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def conv(x, name, pad=0, relu=True):
        w, b = (torch.from_numpy(a) for a in weights[name])
        y = F.conv2d(F.pad(x, (pad, pad, pad, pad)), w, b)
        return y.clamp_min(0) if relu else y

    def pool(x):  # MAX 2x2 stride 2, Caffe's output size: the window may hang over the bottom/right edge
        h, w = x.shape[-2:]
        out_h, out_w = math.ceil((h - 2) / 2) + 1, math.ceil((w - 2) / 2) + 1
        x = F.pad(x, (0, 2 * out_w - w, 0, 2 * out_h - h), value=float("-inf"))
        return F.max_pool2d(x, 2, 2)

    def deconv(x, name, stride):  # Deconvolution: zeros between the inputs, full padding, flipped kernel
        w = torch.from_numpy(weights[name][0])  # (C_in, C_out, k, k)
        k = w.shape[-1]
        n, c, h, wd = x.shape
        spread = x.new_zeros(n, c, (h - 1) * stride + 1, (wd - 1) * stride + 1)
        spread[..., ::stride, ::stride] = x
        return F.conv2d(F.pad(spread, (k - 1,) * 4), w.flip(-1, -2).transpose(0, 1))

    def crop(x, offset, like):
        return x[..., offset:offset + like.shape[-2], offset:offset + like.shape[-1]]

    x = conv(data, "conv1_1", pad=100)
    x = pool(conv(x, "conv1_2", 1))
    x = pool(conv(conv(x, "conv2_1", 1), "conv2_2", 1))
    pool3 = pool(conv(conv(conv(x, "conv3_1", 1), "conv3_2", 1), "conv3_3", 1))
    pool4 = pool(conv(conv(conv(pool3, "conv4_1", 1), "conv4_2", 1), "conv4_3", 1))
    pool5 = pool(conv(conv(conv(pool4, "conv5_1", 1), "conv5_2", 1), "conv5_3", 1))
    fc7 = conv(conv(pool5, "fc6_cs"), "fc7_cs")
    upscore2 = deconv(conv(fc7, "score_fr", relu=False), "upscore2", 2)
    fuse_pool4 = upscore2 + crop(conv(pool4, "score_pool4", relu=False), 5, upscore2)
    upscore_pool4 = deconv(fuse_pool4, "upscore_pool4", 2)
    fuse_pool3 = upscore_pool4 + crop(conv(pool3, "score_pool3", relu=False), 9, upscore_pool4)
    return crop(deconv(fuse_pool3, "upscore8", 8), 31, data)


def random_images(n: int, h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def to_model_input(images_uint8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 127.5 - 1


def assert_same_classes(model, weights, images_uint8):
    """Our import's predictions equal the prototxt forward's argmax wherever its top two scores are not
    within float32 noise of each other; scores agree and come out at the input size."""
    expected = prototxt_forward(weights, images_uint8)
    with torch.no_grad():
        scores = model(to_model_input(images_uint8))
    pred = model.predict(to_model_input(images_uint8))
    n, h, w = images_uint8.shape[:3]
    assert scores.shape == expected.shape == (n, 20, h, w) and pred.shape == (n, h, w)
    error = float((scores - expected).abs().max())
    assert error <= 1e-4 * float(expected.abs().max())
    top2 = expected.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 2 * error  # no score moved enough to change these argmaxes
    assert clear.float().mean() > 0.99
    assert torch.equal(pred[clear], expected.argmax(1)[clear])
    return pred


@pytest.fixture(scope="module")
def narrow(tmp_path_factory):
    weights = fcn8s_weights(**NARROW, seed=3)
    path = write_caffemodel(tmp_path_factory.mktemp("caffe") / "fcn-8s-narrow.caffemodel", weights)
    return weights, path


@pytest.mark.parametrize("size", [(1, 3), (32, 32), (37, 53), (64, 128)])
def test_import_predicts_what_the_deploy_net_predicts(narrow, size):
    weights, path = narrow
    model, meta = import_caffemodel(path)
    images = random_images(2 if size == (37, 53) else 1, *size, seed=size[0])
    pred = assert_same_classes(model, weights, images)
    if len(images) > 1:  # the CPU goes frame by frame; a GPU takes the batch in one pass: same scores
        x = to_model_input(images)
        with torch.no_grad():
            batched, per_frame = model.net.scores(x), model.net(x)
        torch.testing.assert_close(batched, per_frame, rtol=0, atol=1e-5 * float(per_frame.abs().max()))
    if size == (64, 128):
        assert len(pred.unique()) >= 15 and bool((pred == 19).any())  # varied, the 20th channel included
    assert meta["config"] == {"block_widths": NARROW["block_widths"], "fc_width": NARROW["fc_width"]}


def test_legacy_and_shapeless_and_unpacked_forms_load_identically(narrow, tmp_path):
    weights, path = narrow
    reference = import_caffemodel(path)[0].state_dict()
    for i, form in enumerate([{"legacy": True}, {"shape_form": "legacy"}, {"packed": False},
                              {"legacy": True, "shape_form": "legacy", "packed": False}]):
        other = import_caffemodel(write_caffemodel(tmp_path / f"form{i}.caffemodel", weights, **form))[0].state_dict()
        assert other.keys() == reference.keys()
        assert all(torch.equal(other[k], reference[k]) for k in reference), form


def test_full_size_caffemodel_imports_with_the_deploy_shapes(tmp_path):
    """The real file's shapes (about 538 MB, fc6_cs alone 411 MB): the one full-size check. Every blob
    lands in the module named after its layer; the forward itself is checked on the narrow net."""
    weights = fcn8s_weights(seed=5)
    path = write_caffemodel(tmp_path / "fcn-8s-cityscapes.caffemodel", weights)
    model, meta = import_caffemodel(path)
    assert meta["display_name"] == "FCN-8s (pix2pix Caffe)" and meta["config"] == {
        "block_widths": (64, 128, 256, 512, 512), "fc_width": 4096}
    state = model.net.state_dict()
    assert len(state) == sum(len(blobs) for blobs in weights.values())
    for name, blobs in weights.items():
        for key, blob in zip(("weight", "bias"), blobs):
            assert np.array_equal(state[f"{name}.{key}"].numpy(), blob), f"{name}.{key}"


def test_saved_segmenter_loads_back_with_its_metadata(narrow, tmp_path):
    weights, path = narrow
    out = tmp_path / "fcn8s_caffe.pt"
    assert import_main(["fcn8s_caffe", str(path), "--out", str(out)]) == 0
    model, meta = load_segmenter(out, "fcn8s_caffe")
    for key in ("arch", "display_name", "config", "num_classes", "class_names", "normalization", "train_resolution"):
        assert key in meta
    assert meta["num_classes"] == 20 and len(meta["class_names"]) == 20 and meta["train_resolution"] is None
    assert meta["source"] == {"file": path.name, "bytes": path.stat().st_size, "format": meta["source"]["format"],
                              "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert_same_classes(model, weights, random_images(2, 40, 24, seed=7))
    assert import_main(["fcn8s_caffe", str(path), "--out", str(out)]) == 2  # no silent overwrite


def test_registry_builds_the_20_channel_net_only():
    net = build_segmenter("fcn8s_caffe", NARROW, num_classes=20).net
    assert net.score_fr.out_channels == 20 and net.conv1_1.padding == (100, 100)
    assert net.upscore8.bias is None and net.upscore8.stride == (8, 8)
    with pytest.raises(EvalError, match="20 output channels"):
        build_segmenter("fcn8s_caffe", NARROW)


def broken_files(weights, folder: Path) -> dict[str, tuple[Path, str]]:
    """file -> what its one-line error must name."""
    missing = {k: v for k, v in weights.items() if k != "score_pool3"}
    wrong = dict(weights, conv3_2=[weights["conv3_2"][0][:, :-1], weights["conv3_2"][1]])
    biased = dict(weights, upscore2=weights["upscore2"] + [np.zeros(20, np.float32)])
    text = folder / "deploy.prototxt"
    text.write_text('layer {\n  name: "data"\n  type: "Input"\n}\n')
    cut = folder / "cut.caffemodel"
    cut.write_bytes(caffemodel_bytes(weights)[:5000])
    return {"missing": (write_caffemodel(folder / "missing.caffemodel", missing), "layer score_pool3"),
            "wrong": (write_caffemodel(folder / "wrong.caffemodel", wrong), "layer conv3_2"),
            "biased": (write_caffemodel(folder / "biased.caffemodel", biased), "layer upscore2"),
            "text": (text, "not a caffemodel"), "cut": (cut, "not a readable caffemodel")}


def test_bad_files_end_the_command_with_one_line_and_exit_2(narrow, tmp_path, capsys):
    weights, _ = narrow
    files = broken_files(weights, tmp_path)
    path, names = files["wrong"]  # through the real command line
    proc = subprocess.run([sys.executable, "-m", "eval.import_segmenter", "fcn8s_caffe", str(path),
                           "--out", str(tmp_path / "out.pt")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and str(path) in proc.stderr and names in proc.stderr, proc.stderr
    for name in ("missing", "biased", "text", "cut"):  # the same main() in this process
        path, names = files[name]
        assert import_main(["fcn8s_caffe", str(path), "--out", str(tmp_path / "out.pt")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and names in err, err
    assert not (tmp_path / "out.pt").exists()


def test_amp_leaves_the_imported_scorer_in_fp32(narrow):
    """evaluate.py --amp (bf16 autocast) must not change what the original network predicts: scores,
    resizing and argmax are the float32 ones, bit for bit, and so is the confusion matrix."""
    from common.amp import autocast
    from eval.fcn_score import score_batches
    model, _ = import_caffemodel(narrow[1])
    x = to_model_input(random_images(1, 48, 96, seed=9))
    labels = torch.randint(0, 19, (1, 64, 128), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        scores, pred, resized = model(x), model.predict(x), model.predict(x, out_size=(64, 128))
        with autocast(torch.device("cpu")):
            amp_scores, amp_pred, amp_resized = model(x), model.predict(x), model.predict(x, out_size=(64, 128))
    assert amp_scores.dtype == torch.float32 and torch.equal(amp_scores, scores)
    assert torch.equal(amp_pred, pred) and torch.equal(amp_resized, resized)
    cpu = torch.device("cpu")
    assert torch.equal(score_batches(model, [(x, labels)], cpu, amp=True), score_batches(model, [(x, labels)], cpu))


def test_a_caffemodel_with_non_finite_weights_is_refused_at_import(tmp_path, capsys):
    weights = fcn8s_weights(block_widths=(4, 4, 8, 8, 8), fc_width=8)
    weights["fc7_cs"][0][0, 0, 0, 0] = float("inf")
    path = write_caffemodel(tmp_path / "fcn-8s-cityscapes.caffemodel", weights)
    out = tmp_path / "fcn8s_caffe.pt"
    assert import_main(["fcn8s_caffe", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: holds NaN or infinite weights (") and err.count("\n") == 1
    assert not out.exists()
