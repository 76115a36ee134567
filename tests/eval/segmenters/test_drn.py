"""DRN-D-105 (eval/scorers/drn.py) and its import: the published file's keys and shapes, the command,
and the network against fyu/drn's own definition.

The comparison with the original needs fyu/drn's ``drn.py`` and ``segment.py`` (not part of this
project): they are read from ``$DRN_SOURCES`` (default ``../shared/third_party/drn`` beside the
repository) and the tests that need them skip where they are absent. The 1024x2048 comparison takes a
few minutes on a CPU and runs only with ``DRN_FULL_SIZE=1``.
"""
import hashlib
import importlib.util
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from eval.import_segmenter import main as import_main
from eval.segmenters import drn
from eval.segmenters.files import load_segmenter
from eval.segmenters.registry import REGISTRY

REPO = Path(__file__).resolve().parents[3]
DRN_SOURCES = Path(os.environ.get("DRN_SOURCES", REPO.parent / "shared" / "third_party" / "drn"))


def random_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values for every entry of DRN-D-105, batch-norm statistics included, in the file's layout."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in drn.expected_shapes().items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("running_mean"):
            state[key] = torch.randn(shape, generator=g) * 0.1
        elif key.endswith(".bias"):
            state[key] = torch.randn(shape, generator=g) * 0.1
        elif key == "up.weight":
            state[key] = drn.bilinear_kernel(16).expand(shape).clone()
        elif len(shape) == 1:  # batch-norm scale
            state[key] = torch.rand(shape, generator=g) * 0.5 + 0.5
        else:  # convolutions: He-scaled so 105 layers keep their activations finite
            fan_in = math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
    return state


# ------------------------------------------------------------------------------- file layout
def test_published_file_layout_has_651_entries_and_54410415_values():
    shapes = drn.expected_shapes()
    assert len(shapes) == drn.EXPECTED_ENTRIES == 651
    assert sum(math.prod(s) for s in shapes.values()) == drn.EXPECTED_VALUES == 54_410_415
    # spot checks of DRNSeg('drn_d_105', 19)'s names: base.<stage>[.<block>].<layer>, seg, up
    assert shapes["base.0.0.weight"] == (16, 3, 7, 7)
    assert shapes["base.2.0.weight"] == (32, 16, 3, 3)
    assert shapes["base.3.0.downsample.0.weight"] == (256, 32, 1, 1)
    assert shapes["base.5.22.conv3.weight"] == (1024, 256, 1, 1)
    assert shapes["base.6.0.downsample.1.running_var"] == (2048,)
    assert shapes["base.7.0.weight"] == (512, 2048, 3, 3)
    assert shapes["base.8.1.num_batches_tracked"] == ()
    assert shapes["seg.weight"] == (19, 512, 1, 1) and shapes["seg.bias"] == (19,)
    assert shapes["up.weight"] == (19, 1, 16, 16)
    assert not any(key.startswith(("base.9", "fc", "avgpool")) for key in shapes)


def test_dilations_and_strides_keep_output_stride_8():
    net = drn.DRNSeg().eval()
    assert net.base[5][0].conv2.dilation == (2, 2) and net.base[5][22].conv2.dilation == (2, 2)
    assert net.base[6][2].conv2.dilation == (4, 4) and net.base[7][0].dilation == (2, 2)
    strides = [m.stride[0] for m in net.base.modules() if isinstance(m, torch.nn.Conv2d) and m.stride[0] > 1]
    assert strides == [2] * 5  # base.2, and the 3x3 and shortcut of the first blocks of base.3 and base.4
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 64, 96))
    assert out.shape == (1, 19, 64, 96)
    assert torch.allclose(out.exp().sum(1), torch.ones(1, 64, 96), atol=1e-5)  # log-softmax


def test_up_weights_are_the_bilinear_x8_kernel():
    # hand value: factor 8, centre 7.5/8; tap i weighs 1 - |i/8 - 0.9375|
    tent = torch.tensor([1 - abs(i / 8 - 0.9375) for i in range(16)])
    assert torch.allclose(drn.bilinear_kernel(16), torch.outer(tent, tent))
    up = drn.DRNSeg().up
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 19, 8, 8)
    out = up(ramp)[0, 0, 16:-16, 16:-16]  # away from the borders: a linear ramp stays linear
    assert torch.allclose(out[:, 1:] - out[:, :-1], torch.full_like(out[:, 1:], 1 / 8), atol=1e-5)


# ----------------------------------------------------------------------------------- import
@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("drn") / drn.FILE_NAME
    torch.save(random_state(), path)
    return path


def test_import_command_writes_a_segmenter_with_size_and_sha256(users_file, tmp_path):
    out = tmp_path / "drn_d_105.pt"
    assert import_main(["drn_d_105", str(users_file), "--out", str(out)]) == 0
    model, meta = load_segmenter(out, "drn_d_105")
    data = users_file.read_bytes()
    assert meta["source"] == {"file": drn.FILE_NAME, "bytes": len(data),
                              "sha256": hashlib.sha256(data).hexdigest(),
                              "format": meta["source"]["format"]}
    saved = torch.load(users_file, weights_only=True)
    for key, value in model.net.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert "drn_d_105" in REGISTRY and REGISTRY["drn_d_105"].make_command(Path("checkpoints/segmenters/drn_d_105.pt")) \
        == drn.IMPORT_COMMAND


def test_dataparallel_prefix_and_wrapper_are_accepted(users_file, tmp_path):
    saved = torch.load(users_file, weights_only=True)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in saved.items()}}, wrapped)
    model, _ = drn.import_drn(wrapped)
    assert torch.equal(model.net.seg.weight, saved["seg.weight"])


def _bad_files(users_file, tmp_path):
    saved = torch.load(users_file, weights_only=True)
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 512)}, other)
    fewer = tmp_path / "fewer_classes.pth"
    torch.save({**saved, "seg.weight": torch.zeros(20, 512, 1, 1)}, fewer)
    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in saved.items() if k != "base.5.3.bn2.running_var"}, missing)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    return {other: "not a DRNSeg", fewer: "seg.weight has shape (20, 512, 1, 1)",
            missing: "base.5.3.bn2.running_var", junk: "not a PyTorch state_dict"}


def test_file_of_another_network_is_one_line_and_exit_2(users_file, tmp_path, capsys):
    bad = _bad_files(users_file, tmp_path)
    other = next(iter(bad))
    out = tmp_path / "out.pt"
    proc = subprocess.run([sys.executable, "-m", "eval.import_segmenter", "drn_d_105", str(other),
                           "--out", str(out)], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert str(other) in proc.stderr and bad[other] in proc.stderr, proc.stderr
    for path, words in bad.items():
        assert import_main(["drn_d_105", str(path), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and words in err, err
        assert not out.exists()


# ------------------------------------------------------------------- against fyu/drn's code
def original_drnseg():
    """fyu/drn's DRNSeg class, loaded from DRN_SOURCES (segment.py with ``async=True`` read as
    ``non_blocking=True``, which Python 3.7+ needs); skips where the sources are absent."""
    if not (DRN_SOURCES / "drn.py").is_file() or not (DRN_SOURCES / "segment.py").is_file():
        pytest.skip(f"fyu/drn's drn.py and segment.py not found in {DRN_SOURCES}; set DRN_SOURCES to a "
                    f"checkout of https://github.com/fyu/drn to compare with the original")
    saved_path, saved_modules = list(sys.path), dict(sys.modules)
    sys.path.insert(0, str(DRN_SOURCES))
    try:
        source = (DRN_SOURCES / "segment.py").read_text().replace("async=True", "non_blocking=True")
        spec = importlib.util.spec_from_loader("fyu_drn_segment", loader=None)
        module = importlib.util.module_from_spec(spec)
        module.__file__ = str(DRN_SOURCES / "segment.py")
        exec(compile(source, module.__file__, "exec"), module.__dict__)
        return module.DRNSeg
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - set(saved_modules):  # drn, data_transforms: not ours to keep
            del sys.modules[name]


@pytest.fixture(scope="module")
def both_networks(users_file, tmp_path_factory):
    """(original DRNSeg with the file's weights, ours imported by the command), in eval mode."""
    DRNSeg = original_drnseg()
    original = DRNSeg("drn_d_105", 19, pretrained_model=None, pretrained=False)
    original.load_state_dict(torch.load(users_file, weights_only=True))
    out = tmp_path_factory.mktemp("imported") / "drn_d_105.pt"
    assert import_main(["drn_d_105", str(users_file), "--out", str(out)]) == 0
    ours, _ = load_segmenter(out, "drn_d_105")
    return original.eval(), ours.eval()


def compare(both_networks, height: int, width: int) -> dict:
    original, ours = both_networks
    g = torch.Generator().manual_seed(height + width)
    images = torch.rand(1, 3, height, width, generator=g) * 2 - 1
    mean, std = torch.tensor(drn.MEAN).view(1, 3, 1, 1), torch.tensor(drn.STD).view(1, 3, 1, 1)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Implicit dimension choice")  # the original's nn.LogSoftmax()
        start = time.perf_counter()
        theirs = original(((images + 1) / 2 - mean) / std)[0]  # its own normalisation, done by hand
        middle = time.perf_counter()
        mine = ours(images)
        end = time.perf_counter()
    assert mine.shape == theirs.shape == (1, 19, height, width)
    agreement = (mine.argmax(1) == theirs.argmax(1)).float().mean().item()
    row = {"size": f"{height}x{width}", "agreement": agreement, "max_logit_diff": (mine - theirs).abs().max().item(),
           "seconds_original": middle - start, "seconds_ours": end - middle}
    print(f"\nDRN-D-105 vs fyu/drn {row}")
    return row


@pytest.mark.parametrize("height, width", [(256, 256), (256, 512)])
def test_same_scores_as_fyu_drn(both_networks, height, width):
    row = compare(both_networks, height, width)
    assert row["agreement"] >= 0.9999, row
    assert row["max_logit_diff"] < 1e-3, row


@pytest.mark.slow
def test_same_scores_as_fyu_drn_at_1024x2048(both_networks):
    if os.environ.get("DRN_FULL_SIZE") != "1":
        pytest.skip("the 1024x2048 comparison takes minutes on a CPU; run it with DRN_FULL_SIZE=1")
    row = compare(both_networks, 1024, 2048)
    assert row["agreement"] >= 0.9999, row
    assert row["max_logit_diff"] < 1e-3, row


def test_non_finite_weights_are_refused_at_import_and_nothing_is_written(users_file, tmp_path, capsys):
    state = torch.load(users_file, weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point() and k.startswith("seg"))
    state[name].view(-1)[0] = float("nan")
    bad = tmp_path / drn.FILE_NAME
    torch.save(state, bad)
    out = tmp_path / "drn_d_105.pt"
    assert import_main(["drn_d_105", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {bad}: holds NaN or infinite weights (net.{name}); it is no usable scorer, and nothing was written\n"
    assert not out.exists()


def test_a_pickle_of_code_is_refused_without_torchs_advice_to_turn_the_safety_off(tmp_path, capsys):
    import pickle
    bad = tmp_path / drn.FILE_NAME
    bad.write_bytes(pickle.dumps({"f": print}, protocol=4))
    assert import_main(["drn_d_105", str(bad), "--out", str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refused" in err and "weights_only" not in err and "succeed" not in err
