"""The validation frames a generator is scored on, under a protocol (:class:`EvalSet`), and folders of
generated images checked against them.

* protocol ``256`` (default, as the TRAlgo paper): images and labels at the dataset's resolution
  (256x256 for Cityscapes), labels nearest-resized;
* protocol ``fullres`` (pix2pix's original protocol): every S x S image is upsampled to the size of the
  official ``gtFine`` label map (2048x1024) with PIL's bilinear resize on uint8, as the reference
  script's ``scipy.misc.imresize`` did, segmented at that size and scored against the full-resolution
  labelIds converted to trainIds. It needs the official layout (``cityscapes_root`` in index.json).

:func:`check_image_folder` checks a folder of generated PNGs for missing frames and wrong sizes before
anything is computed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data.images import image_header
from eval import EvalError
from eval.segmenters.base import to_uint8

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
            from data.cityscapes import label_ids_to_train_ids
            from data.images import read_image as read_label
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
