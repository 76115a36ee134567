"""FID and KID of generated images against real photos, by torch-fidelity's InceptionV3.

torch-fidelity (pinned in pyproject.toml) provides the TF-compatible InceptionV3 feature extractor and
both metrics; this module only feeds it our images and explains what goes wrong in one line.

* :func:`find_inception_weights` - the weights file: ``--inception-weights PATH``, else torch-fidelity's
  own file in the torch hub cache (``$TORCH_HOME/hub/checkpoints``), else downloaded there from its
  release page; ``None`` and the reason when none of these works (an offline machine);
* :class:`InceptionFeatures` - the 2048-dimensional pool features of uint8 images [N, 3, H, W],
  optionally kept in a :class:`FeatureCache` folder so that a set computed once (by another job, or an
  earlier evaluation) is read back instead of recomputed;
* :func:`fid` - the Fréchet distance of two feature sets (torch-fidelity's);
* :func:`kid` - the kernel inception distance (unbiased MMD², polynomial kernel of degree 3,
  gamma 1 / 2048, coef 1) averaged over random subsets, with its standard deviation over them.
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from common.checkpoint import CheckpointError, load_checkpoint
from common.files import file_sha256, write_atomic
from eval import EvalError

WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
               "weights-inception-2015-12-05-6726825d.pth")
WEIGHTS_FILE = WEIGHTS_URL.rsplit("/", 1)[1]
FEATURE_LAYER = "2048"
DOWNLOAD_TIMEOUT = 20  # seconds without an answer before an offline machine gives up
KID_SEED = 2020        # torch-fidelity's default rng_seed: which subsets KID draws


def cached_weights_path() -> Path:
    """Where torch-fidelity (torch.hub) keeps its InceptionV3 file: ``<torch hub dir>/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def download(url: str, path: Path, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Fetch ``url`` into ``path`` atomically; OSError (URLError, timeouts) when it cannot."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return write_atomic(path, lambda file: file.write(response.read()))


def find_inception_weights(given: str | os.PathLike | None, allow_download: bool = True) -> tuple[Path | None, str]:
    """(the weights file, where it came from) or (None, why there is none).

    A given path that is not a file is an EvalError; without one, the cache is used, else a download
    into the cache is tried (``allow_download``)."""
    if given is not None:
        path = Path(given)
        if not path.is_file():
            raise EvalError(f"--inception-weights {path}: file not found")
        return path, f"given with --inception-weights {path}"
    cached = cached_weights_path()
    if cached.is_file():
        return cached, f"cached at {cached}"
    if not allow_download:
        return None, f"not cached at {cached}"
    try:
        return download(WEIGHTS_URL, cached), f"downloaded to {cached}"
    except OSError as exc:
        reason = getattr(exc, "reason", None) or exc
        return None, f"not cached at {cached} and not downloadable ({reason})"


def skip_line(reason: str) -> str:
    """The one line evaluate.py prints when FID/KID cannot be computed for want of the weights."""
    return (f"skipping FID/KID: torch-fidelity's InceptionV3 weights are {reason}; to enable them, download "
            f"{WEIGHTS_URL} once and pass --inception-weights PATH (or put it at {cached_weights_path()})")


class FeatureCache:
    """Feature sets on disk, ``<folder>/<key>.npy``, one per image set.

    The key is a SHA-256 of everything the features depend on: the weights file's contents, the layer,
    the device type, the batch size, the thread count, the torch version and the exact pixels (and shape)
    of every image in order. So a hit is the same computation's result, and any change is a miss. A file
    that does not hold [N, 2048] float64 for the N images asked for is ignored and rewritten."""

    def __init__(self, folder: str | os.PathLike, weights: str | os.PathLike):
        self.folder = Path(folder)
        self.weights_sha256 = file_sha256(weights)

    def key(self, images: list[torch.Tensor], device: torch.device, batch_size: int) -> str:
        digest = hashlib.sha256(f"{self.weights_sha256} {FEATURE_LAYER} {device.type} {batch_size} "
                                f"{torch.get_num_threads()} {torch.__version__}".encode())
        for image in images:
            pixels = image.contiguous().numpy()
            digest.update(f"{pixels.dtype} {tuple(pixels.shape)}".encode())
            digest.update(pixels.tobytes())
        return digest.hexdigest()

    def load(self, key: str, count: int) -> np.ndarray | None:
        """The stored features of ``key`` when they are there and whole, else None."""
        path = self.folder / f"{key}.npy"
        try:
            features = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        ok = features.dtype == np.float64 and features.shape == (count, 2048) and np.isfinite(features).all()
        return features if ok else None

    def store(self, key: str, features: np.ndarray) -> None:
        write_atomic(self.folder / f"{key}.npy", lambda file: np.save(file, features, allow_pickle=False))


class InceptionFeatures:
    """torch-fidelity's InceptionV3 (``inception-v3-compat``) giving the 2048 pool features.

    The file is first read with ``torch.load(weights_only=True)`` and must hold exactly that network's
    tensors: anything else is one-line EvalError naming it. With ``cache`` (a folder) each image set's
    features are looked up in a :class:`FeatureCache` there first, and stored after computing."""

    def __init__(self, weights: str | os.PathLike, device: torch.device | str = "cpu", batch_size: int = 32,
                 cache: str | os.PathLike | None = None):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        weights = Path(weights)
        try:
            state = load_checkpoint(weights)
        except CheckpointError as error:
            raise EvalError(f"{weights}: not a PyTorch weights file ({str(error).partition(': ')[2]})") from None
        if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
            raise EvalError(f"{weights}: not torch-fidelity's InceptionV3 weights (no Mixed_7c layer; expected "
                            f"{WEIGHTS_FILE})")
        try:
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", [FEATURE_LAYER],
                                                   feature_extractor_weights_path=str(weights))
        except RuntimeError as exc:  # load_state_dict: its second line names the missing or odd keys
            lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
            detail = (lines[1] if len(lines) > 1 else lines[0])[:200]
            raise EvalError(f"{weights}: not torch-fidelity's InceptionV3 weights ({detail})") from None
        self.device = torch.device(device)
        self.net = self.net.to(self.device)
        self.batch_size = batch_size
        self.cache = None if cache is None else FeatureCache(cache, weights)
        self.cache_hits = 0

    def __call__(self, images: Iterable[torch.Tensor], bar=None) -> np.ndarray:
        """Features [N, 2048] (float64) of uint8 images [3, H, W], in order (from the cache when it has them)."""
        if self.cache is None:
            return self.compute(images, bar)
        images = list(images)
        key = self.cache.key(images, self.device, self.batch_size)
        features = self.cache.load(key, len(images))
        if features is not None:
            self.cache_hits += 1
            if bar is not None:
                bar.update(len(images))
            return features
        features = self.compute(images, bar)
        self.cache.store(key, features)
        return features

    @torch.no_grad()
    def compute(self, images: Iterable[torch.Tensor], bar=None) -> np.ndarray:
        """Features [N, 2048] (float64) of uint8 images [3, H, W], in order, by the network."""
        features, batch = [], []

        def flush():
            out = self.net(torch.stack(batch).to(self.device))[0]
            features.append(out.double().cpu().numpy())
            if bar is not None:
                bar.update(len(batch))
            batch.clear()

        for image in images:
            batch.append(image)
            if len(batch) == self.batch_size:
                flush()
        if batch:
            flush()
        return np.concatenate(features) if features else np.zeros((0, 2048))


def fid(features_1: np.ndarray, features_2: np.ndarray) -> float:
    """Fréchet inception distance between two feature sets (torch-fidelity's computation)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    stats = [fid_features_to_statistics(torch.from_numpy(np.asarray(f, dtype=np.float64)))
             for f in (features_1, features_2)]
    return float(fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"])


def check_kid_size(count: int, subset_size: int, what: str) -> None:
    """EvalError naming ``what`` (an image folder or set) when it has fewer images than a KID subset."""
    if count < subset_size:
        raise EvalError(f"{what}: {count} images, fewer than the KID subset size {subset_size}; pass "
                        f"--kid-subset-size {count} or less")


def kid(features_1: np.ndarray, features_2: np.ndarray, subsets: int = 100, subset_size: int = 100,
        seed: int = KID_SEED) -> dict:
    """KID (mean over ``subsets`` random subsets of ``subset_size`` of each set) and its std over them."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    for name, features in (("the first set", features_1), ("the second set", features_2)):
        check_kid_size(len(features), subset_size, name)
    out = kid_features_to_metric(torch.from_numpy(np.asarray(features_1, dtype=np.float64)),
                                 torch.from_numpy(np.asarray(features_2, dtype=np.float64)),
                                 kid_subsets=subsets, kid_subset_size=subset_size, kid_kernel="poly",
                                 kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1,
                                 rng_seed=seed, verbose=False)
    return {"kid": float(out[KEY_METRIC_KID_MEAN]), "kid_subset_std": float(out[KEY_METRIC_KID_STD])}
