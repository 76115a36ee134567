"""Generate -> segment -> score: the FCN-score of one set of images under one segmenter.

Pieces, each usable alone:

* :class:`EvalSet` - the validation frames of a prepared dataset under a protocol: the generator's
  inputs, the real photos and the labels to score against.

  - protocol ``256`` (default, as the TRAlgo paper): images and labels at the dataset's resolution
    (256x256 for Cityscapes), labels nearest-resized;
  - protocol ``fullres`` (pix2pix's original protocol): every S x S image is upsampled to the size of
    the official ``gtFine`` label map (2048x1024) with PIL's bilinear resize on uint8, as the reference
    script's ``scipy.misc.imresize`` did, segmented at that size and scored against the full-resolution
    labelIds converted to trainIds. It needs the official layout (``cityscapes_root`` in index.json).

* :func:`generate_images` - run a generator over the val inputs at batch size 1 and save one PNG per
  frame, ``<frame name>.png``. The pix2pix test protocol (default) keeps the generator in training
  mode: dropout on and batch norm on each image's own statistics; seeded, so reruns are identical on
  the CPU. ``test_protocol=False`` uses running statistics and no dropout.
* :func:`check_image_folder` - a folder of generated PNGs, checked for missing
  frames and wrong sizes before anything is computed.
* :func:`score_batches` - segment batches and accumulate the confusion matrix on the device
  (:func:`new_meter`: ours, or the reference script's ``fast_hist`` with its quirks).
* :func:`score_images` / :func:`score_real_photos` - the two above for an :class:`EvalSet`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image

from common.files import write_png
from data.cityscapes import NUM_CLASSES
from data.images import image_header, read_rgb
from eval import EvalError
from eval.metrics import ConfusionMeter, FastHistMeter, fcn_scores
from eval.scorers.base import Segmenter, from_uint8, to_uint8
from common.amp import autocast

PROTOCOLS = ("256", "fullres")


@dataclass
class EvalSet:
    """The validation frames of one prepared dataset under one protocol (see module docstring)."""

    dataroot: Path
    protocol: str
    size: int
    dataset: object                       # data.aligned.AlignedDataset(val, BtoA, no jitter)
    names: list[str]                      # frame names, in dataset order
    full_label_paths: dict[str, Path] = field(default_factory=dict)  # fullres: name -> labelIds png
    _labels: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    def generator_input(self, i: int) -> torch.Tensor:
        """The colour label map given to the generator, [3, S, S] in [-1, 1]."""
        return self.dataset[i]["input"]

    def real_photo(self, i: int) -> torch.Tensor:
        """The real photo at S x S as uint8 [3, S, S] (the ground-truth row's image)."""
        return to_uint8(self.dataset[i]["target"])

    def label(self, i: int) -> torch.Tensor:
        """trainIds (uint8, 255 ignore) to score frame ``i`` against: S x S, or full size for fullres."""
        if i in self._labels:
            return self._labels[i]
        if self.protocol == "fullres":
            from data.images import read_image as read_label
            from data.cityscapes import label_ids_to_train_ids
            path = self.full_label_paths[self.names[i]]
            ids = np.asarray(read_label(path))
            if ids.ndim != 2:
                raise EvalError(f"{path}: expected a single-channel labelIds image, got shape {ids.shape}")
            return torch.from_numpy(label_ids_to_train_ids(ids))
        label = self.dataset[i]["label"].to(torch.uint8)
        self._labels[i] = label  # S x S labels are small: keep them for the next image set
        return label


def dataset_image_size(dataset) -> int:
    """S of a pix2pix-layout dataset whose files are 2S x S (read from the first file's header)."""
    path = dataset.paths[0]
    with Image.open(path) as im:
        width, height = im.size
    if width != 2 * height:
        raise EvalError(f"{path}: expected a 2S x S image (photo | label), got {width}x{height}")
    return height


def open_eval_set(dataroot, protocol: str = "256", size: int | None = None,
                  max_frames: int | None = None) -> EvalSet:
    """The val frames of ``dataroot`` (pix2pix layout) under ``protocol`` at ``size`` (default: S)."""
    from data.aligned import AlignedDataset
    if protocol not in PROTOCOLS:
        raise EvalError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
    dataroot = Path(dataroot)
    probe = AlignedDataset(dataroot, "val", direction="BtoA", train=False, flip=False)
    if len(probe) == 0:
        raise EvalError(f"{dataroot}: no validation images")
    size = size or dataset_image_size(probe)
    dataset = AlignedDataset(dataroot, "val", direction="BtoA", load_size=size, crop_size=size,
                             flip=False, train=False)
    count = len(dataset) if max_frames is None else min(max_frames, len(dataset))
    names = [_frame_name(dataset, i) for i in range(count)]
    if len(set(names)) != len(names):
        raise EvalError(f"{dataroot}: several val images share a frame name")
    evalset = EvalSet(dataroot, protocol, size, dataset, names)
    if protocol == "fullres":
        evalset.full_label_paths = _official_label_paths(dataroot, names)
    return evalset


def _frame_name(dataset, i: int) -> str:
    """Frame name of item ``i`` without decoding the images (index.json, else the file stem)."""
    path = dataset.paths[i]
    return dataset.names.get(path.name, path.stem)


def _official_label_paths(dataroot: Path, names: list[str]) -> dict[str, Path]:
    """name -> full-resolution ``gtFine_labelIds.png`` of the official layout named in index.json."""
    from data.cityscapes import find_frames
    index_path = dataroot / "index.json"
    if not index_path.is_file():
        raise EvalError(f"{index_path}: missing; protocol fullres needs index.json pointing to the official layout")
    try:
        official = json.loads(index_path.read_text()).get("cityscapes_root")
    except (json.JSONDecodeError, AttributeError) as exc:
        raise EvalError(f"{index_path}: not a valid index ({exc})") from None
    if not official:
        raise EvalError(f"{index_path}: cityscapes_root is null; protocol fullres needs the official Cityscapes "
                        f"layout (prepare the data with data/prepare.py)")
    root = (dataroot / official).resolve()
    frames = {frame.name: frame.label_ids for frame in find_frames(root, "val")}
    missing = [name for name in names if name not in frames]
    if missing:
        raise EvalError(f"{root}: {len(missing)} val frame(s) have no gtFine labelIds file (first: {missing[0]})")
    return {name: frames[name] for name in names}


# ----------------------------------------------------------------------------------- generation
@torch.no_grad()
def generate_images(generator: torch.nn.Module, evalset: EvalSet, out_dir, device: torch.device,
                    test_protocol: bool = True, seed: int = 0, amp: bool = False,
                    bar: Callable | None = None) -> Path:
    """Write ``<out_dir>/<frame>.png`` for every val frame; returns ``out_dir``.

    Batch size 1, so with ``test_protocol`` each image is normalised by its own batch statistics
    (dropout on, as pix2pix tests). The dropout noise is seeded by ``seed``.
    """
    out_dir = Path(out_dir)
    generator = generator.to(device)
    generator.train(test_protocol)
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)
    for i, name in enumerate(evalset.names):
        x = evalset.generator_input(i).unsqueeze(0).to(device)
        with autocast(device, amp):
            fake = generator(x)
        image = to_uint8(fake[0]).permute(1, 2, 0).cpu().numpy()
        write_png(out_dir / f"{name}.png", image)
        if bar is not None:
            bar.update(1)
    return out_dir


# --------------------------------------------------------------------------------- image folders
def check_image_folder(folder, evalset: EvalSet) -> list[Path]:
    """The PNG of every val frame in ``folder`` (``<frame>.png``), in frame order.

    Raises EvalError naming the folder and the missing frames, or the first image whose size is not
    ``size x size``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise EvalError(f"{folder}: image folder not found")
    paths = [folder / f"{name}.png" for name in evalset.names]
    missing = [p.stem for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise EvalError(f"{folder}: {len(missing)} of {len(paths)} val frames have no <frame>.png ({shown})")
    for path in paths:
        width, height, _ = image_header(path)
        if (height, width) != (evalset.size, evalset.size):
            raise EvalError(f"{path}: image is {width}x{height}, expected {evalset.size}x{evalset.size}")
    return paths


# -------------------------------------------------------------------------------------- scoring
def new_meter(segmenter: Segmenter, device: torch.device, fast_hist: bool = False):
    """The accumulator for scoring ``segmenter`` on the 19 classes.

    Ours: a 19 x P confusion matrix, P = the segmenter's output channels (at least 19), so predictions
    of an extra channel (the Caffe FCN-8s's 20th) are errors for the pixel's true class. With
    ``fast_hist``: the reference script's histogram, quirks and dropped frames included.
    """
    if fast_hist:
        return FastHistMeter(NUM_CLASSES, device=device)
    return ConfusionMeter(NUM_CLASSES, device=device, predicted_classes=max(NUM_CLASSES, segmenter.num_classes))


@torch.no_grad()
def score_batches(segmenter: Segmenter, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                  device: torch.device, amp: bool = False, bar=None, meter=None) -> torch.Tensor:
    """Confusion matrix of ``segmenter`` over (images in [-1, 1] [N,3,H,W], labels [N,h,w]) batches.

    Predictions are made at the label size (class scores resized bilinearly when the sizes differ)
    and accumulated on ``device`` into ``meter`` (default: :func:`new_meter`), whose matrix is returned.
    """
    segmenter = segmenter.to(device).eval()
    meter = meter if meter is not None else new_meter(segmenter, device)
    for images, labels in batches:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with autocast(device, amp):
            pred = segmenter.predict(images, out_size=tuple(labels.shape[-2:]))
        meter.update(pred, labels)
        if bar is not None:
            bar.update(images.shape[0])
    return meter.matrix


def upsample_like_imresize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [3, h, w] -> uint8 [3, H, W] by PIL's bilinear resize, as ``scipy.misc.imresize(im, (H, W))``
    did in the reference script (it handed uint8 images to PIL unchanged)."""
    array = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    resized = Image.fromarray(array).resize((size[1], size[0]), Image.BILINEAR)
    return torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1)


def _evalset_batches(evalset: EvalSet, image_of: Callable[[int], torch.Tensor], batch_size: int):
    """Batches of (images in [-1, 1], labels). Under fullres each image is first upsampled to its
    label's size (:func:`upsample_like_imresize`); a batch then holds consecutive frames of one size."""
    if evalset.protocol != "fullres":
        for start in range(0, len(evalset), batch_size):
            indices = range(start, min(len(evalset), start + batch_size))
            images = torch.stack([image_of(i) for i in indices])
            yield from_uint8(images), torch.stack([evalset.label(i) for i in indices])
        return
    images, labels = [], []
    for i in range(len(evalset)):
        label = evalset.label(i)
        if labels and (len(labels) == batch_size or label.shape != labels[0].shape):
            yield from_uint8(torch.stack(images)), torch.stack(labels)
            images, labels = [], []
        images.append(upsample_like_imresize(image_of(i), tuple(label.shape)))
        labels.append(label)
    if labels:
        yield from_uint8(torch.stack(images)), torch.stack(labels)


def score_images(segmenter: Segmenter, evalset: EvalSet, image_of: Callable[[int], torch.Tensor],
                 device: torch.device, batch_size: int = 8, amp: bool = False, bar=None, meter=None) -> torch.Tensor:
    """Confusion matrix of ``segmenter`` on the images ``image_of(i)`` (uint8 [3, S, S]) of ``evalset``."""
    return score_batches(segmenter, _evalset_batches(evalset, image_of, batch_size), device, amp, bar, meter)


def score_folder(segmenter: Segmenter, evalset: EvalSet, folder, device: torch.device, batch_size: int = 8,
                 amp: bool = False, bar=None, meter=None) -> torch.Tensor:
    """Confusion matrix of ``segmenter`` on the ``<frame>.png`` images of ``folder``."""
    paths = check_image_folder(folder, evalset)
    return score_images(segmenter, evalset, lambda i: read_rgb(paths[i]), device, batch_size, amp, bar, meter)


def score_real_photos(segmenter: Segmenter, evalset: EvalSet, device: torch.device, batch_size: int = 8,
                      amp: bool = False, bar=None, meter=None) -> torch.Tensor:
    """Confusion matrix of ``segmenter`` on the real val photos at S x S (the ground-truth row)."""
    return score_images(segmenter, evalset, evalset.real_photo, device, batch_size, amp, bar, meter)


def scores_of(scored) -> dict:
    """FCN-scores plus the confusion matrix itself (as nested lists, for results.json) of a meter
    (its own ``scores()``: the reference's with ``fast_hist``) or of a confusion matrix."""
    if isinstance(scored, torch.Tensor):
        scores, matrix = fcn_scores(scored), scored
    else:
        scores, matrix = scored.scores(), scored.matrix
    scores["confusion"] = matrix.cpu().tolist()
    return scores
