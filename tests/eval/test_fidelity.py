"""FID and KID (eval/fidelity.py): torch-fidelity's InceptionV3 with a random-valued weights file in its
layout, the metrics against an independent numpy/scipy computation, and where the weights come from.
Nothing here touches the network: the torch hub cache points at an empty folder and downloads fail."""
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from eval import EvalError, fidelity
from tests.eval.inception_writer import write_random_inception


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """An empty torch hub cache, and a download that fails as on a machine without network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def no_network(url, path, timeout=None):
        raise OSError("network unreachable (test)")
    monkeypatch.setattr(fidelity, "download", no_network)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_random_inception(tmp_path_factory.mktemp("inception") / "random-inception.pth")


@pytest.fixture(scope="module")
def features(weights):
    """Inception features of two sets of random uint8 images (different brightness), 12 and 11 images."""
    g = torch.Generator().manual_seed(1)
    dark = torch.randint(0, 160, (12, 3, 32, 32), generator=g, dtype=torch.uint8)
    bright = torch.randint(90, 256, (11, 3, 32, 32), generator=g, dtype=torch.uint8)
    extract = fidelity.InceptionFeatures(weights, "cpu", batch_size=16)
    return extract(iter(dark)), extract(iter(bright))


def frechet_by_scipy(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||² + tr(S_a) + tr(S_b) - 2 tr(sqrtm(S_a S_b)), with S = C Cᵀ for the centred
    features C / sqrt(n - 1). With fewer images than features, S_a S_b = C_a (C_aᵀ C_b C_bᵀ) C_aᵀ has
    the nonzero eigenvalues of M = (C_aᵀ C_b)ᵀ (C_aᵀ C_b) (n_b x n_b), so tr(sqrtm(S_a S_b)) =
    tr(sqrtm(M)): scipy's sqrtm on a 22 x 22 matrix instead of a 2048 x 2048 one (minutes on a CPU)."""
    centred_a = (a - a.mean(0)) / np.sqrt(len(a) - 1)
    centred_b = (b - b.mean(0)) / np.sqrt(len(b) - 1)
    cross = centred_a @ centred_b.T
    with warnings.catch_warnings():  # M is singular too (rank n - 1): its square root still exists
        warnings.filterwarnings("ignore", "Matrix is singular")
        root = scipy.linalg.sqrtm(cross.T @ cross)
    traces = (centred_a ** 2).sum() + (centred_b ** 2).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + traces - 2 * np.trace(root).real)


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the polynomial kernel (x.y / d + 1)^3, written out term by term."""
    d, m = x.shape[1], len(x)
    k = lambda p, q: (p @ q.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / (m * m))


def test_features_are_2048_wide_and_depend_on_the_images(features):
    dark, bright = features
    assert dark.shape == (12, 2048) and bright.shape == (11, 2048)
    assert np.isfinite(dark).all() and not np.allclose(dark.mean(0), bright.mean(0))


def test_fid_equals_scipy_sqrtm_frechet_distance(features):
    dark, bright = features
    ours, reference = fidelity.fid(dark, bright), frechet_by_scipy(dark, bright)
    assert ours > 0
    assert ours == pytest.approx(reference, rel=1e-6)


def test_kid_equals_unbiased_polynomial_mmd_over_the_same_subsets(features):
    dark, bright = features
    out = fidelity.kid(dark, bright, subsets=7, subset_size=8, seed=5)
    rng = np.random.RandomState(5)  # the subsets torch-fidelity draws for this seed, in its order
    values = []
    for _ in range(7):
        x = dark[rng.choice(len(dark), 8, replace=False)]
        y = bright[rng.choice(len(bright), 8, replace=False)]
        values.append(mmd2_unbiased(x, y))
    assert out["kid"] == pytest.approx(np.mean(values), rel=1e-6)
    assert out["kid_subset_std"] == pytest.approx(np.std(values), rel=1e-6)
    whole = fidelity.kid(dark[:11], bright, subsets=1, subset_size=11)  # one subset: every image
    assert whole["kid"] == pytest.approx(mmd2_unbiased(dark[:11], bright), rel=1e-6)


def test_a_cached_set_is_read_back_and_any_change_is_a_miss(weights, features, tmp_path):
    g = torch.Generator().manual_seed(1)  # the "dark" set of the features fixture, made again
    dark = list(torch.randint(0, 160, (12, 3, 32, 32), generator=g, dtype=torch.uint8))
    extract = fidelity.InceptionFeatures(weights, "cpu", batch_size=16, cache=tmp_path / "cache")
    first = extract(iter(dark))
    np.testing.assert_array_equal(first, features[0])  # the cache changes nothing about the values
    stored = list((tmp_path / "cache").iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".npy" and extract.cache_hits == 0

    def no_network(images, bar=None):
        raise AssertionError("computed again")
    extract.compute = no_network
    np.testing.assert_array_equal(extract(iter(dark)), first)  # a hit: the network is not run
    assert extract.cache_hits == 1
    computed = []
    extract.compute = lambda images, bar=None: computed.append(len(list(images))) or np.zeros((12, 2048))
    changed = [image.clone() for image in dark]
    changed[7][1, 3, 5] += 1  # one value of one pixel
    extract(iter(changed))
    assert computed == [12] and len(list((tmp_path / "cache").iterdir())) == 2
    stored[0].write_bytes(stored[0].read_bytes()[:1000])  # a cut file is a miss, then rewritten
    extract(iter(dark))
    assert computed == [12, 12] and np.load(stored[0]).shape == (12, 2048)
    other_batch = fidelity.InceptionFeatures(weights, "cpu", batch_size=8, cache=tmp_path / "cache")
    assert other_batch.cache.key(dark, other_batch.device, 8) != extract.cache.key(dark, extract.device, 16)
    other_weights = write_random_inception(tmp_path / "other.pth", seed=1)
    assert fidelity.FeatureCache(tmp_path / "cache", other_weights).key(dark, extract.device, 16) != \
        extract.cache.key(dark, extract.device, 16)


def test_too_few_images_for_a_kid_subset_is_one_line(features):
    dark, bright = features
    with pytest.raises(EvalError, match=r"11 images, fewer than the KID subset size 12; pass --kid-subset-size 11"):
        fidelity.kid(dark, bright, subsets=2, subset_size=12)


def test_missing_file_and_another_network_are_one_line_errors(tmp_path):
    with pytest.raises(EvalError, match="--inception-weights .*nothing.pth: file not found"):
        fidelity.find_inception_weights(tmp_path / "nothing.pth")
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 512)}, other)
    with pytest.raises(EvalError, match="resnet.pth: not torch-fidelity's InceptionV3 weights"):
        fidelity.InceptionFeatures(other)
    truncated = tmp_path / "half.pth"
    state = torch.load(write_random_inception(tmp_path / "full.pth"), weights_only=True)
    torch.save({k: v for k, v in state.items() if not k.startswith("fc.")}, truncated)
    with pytest.raises(EvalError, match="half.pth: not torch-fidelity's InceptionV3 weights .*Missing key.*fc.weight"):
        fidelity.InceptionFeatures(truncated)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"no")
    with pytest.raises(EvalError, match="junk.pth: not a PyTorch weights file"):
        fidelity.InceptionFeatures(junk)


def test_weights_come_from_the_option_then_the_cache_else_a_skip_reason(weights, tmp_path):
    assert fidelity.find_inception_weights(weights) == (weights, f"given with --inception-weights {weights}")
    path, reason = fidelity.find_inception_weights(None)
    assert path is None and "not downloadable (network unreachable (test))" in reason
    line = fidelity.skip_line(reason)
    assert "\n" not in line and "--inception-weights PATH" in line and fidelity.WEIGHTS_URL in line
    cached = fidelity.cached_weights_path()
    assert str(cached).startswith(str(tmp_path / "torch_home"))
    cached.parent.mkdir(parents=True)
    cached.write_bytes(weights.read_bytes())
    assert fidelity.find_inception_weights(None) == (cached, f"cached at {cached}")
