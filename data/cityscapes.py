"""Cityscapes label tables, conversions between label ids / trainIds / colours, and the official layout.

Every table comes from ``cityscapesscripts.helpers.labels`` (the official definitions):

* ``NUM_CLASSES`` (19) evaluation classes, numbered by their trainId 0..18; everything else is
  ``IGNORE_INDEX`` (255).
* ``CLASS_NAMES[t]`` and ``PALETTE[t]`` (RGB) for trainId ``t``.

Conversions:

* ``label_ids_to_train_ids``: official label ids (``*_gtFine_labelIds.png``) -> trainIds.
* ``label_ids_to_color``: label ids -> the official colour image (``*_gtFine_color.png``).
* ``train_ids_to_color``: trainIds -> colours (ignore -> black).
* ``color_to_train_ids``: a colour label image -> trainIds by nearest official colour. The pix2pix
  data stores labels as colours that were bicubic-resized and JPEG-compressed, so colours are
  matched to the nearest of all official label colours (the 19 train classes, black and the other
  void colours such as parking or ground, which map to 255) with a lookup table.

The official layout reader ``find_frames`` pairs ``leftImg8bit`` photos with their ``gtFine`` labels by
their ``<city>_<seq>_<frame>`` name.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import labels as _OFFICIAL_LABELS

from data import DataError

NUM_CLASSES = 19
IGNORE_INDEX = 255

# The official labels with a real id (license plate has id -1 and never appears in label images).
_LABELS = [label for label in _OFFICIAL_LABELS if label.id >= 0]
_TRAIN_LABELS = sorted((label for label in _LABELS if 0 <= label.trainId < NUM_CLASSES), key=lambda l: l.trainId)
assert [label.trainId for label in _TRAIN_LABELS] == list(range(NUM_CLASSES))

CLASS_NAMES: tuple[str, ...] = tuple(label.name for label in _TRAIN_LABELS)
PALETTE: np.ndarray = np.array([label.color for label in _TRAIN_LABELS], dtype=np.uint8)  # [19, 3]
PALETTE.setflags(write=False)

# label id -> trainId and label id -> colour, as 256-entry lookup tables (unknown ids -> ignore / black).
_ID_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)
_ID_TO_COLOR = np.zeros((256, 3), dtype=np.uint8)
for _label in _LABELS:
    _ID_TO_TRAIN_ID[_label.id] = _label.trainId if 0 <= _label.trainId < NUM_CLASSES else IGNORE_INDEX
    _ID_TO_COLOR[_label.id] = _label.color

# trainId -> colour (255 and anything unknown -> black).
_TRAIN_ID_TO_COLOR = np.zeros((256, 3), dtype=np.uint8)
_TRAIN_ID_TO_COLOR[:NUM_CLASSES] = PALETTE

# A colour label image is read back by nearest colour among every official colour. A colour shared
# by a train class and a void class (pole / polegroup) means the train class.
_MATCH_COLORS: dict[tuple[int, int, int], int] = {}
for _label in sorted(_LABELS, key=lambda l: 0 if 0 <= l.trainId < NUM_CLASSES else 1):
    _MATCH_COLORS.setdefault(tuple(_label.color), int(_ID_TO_TRAIN_ID[_label.id]))

# Colours are quantised to 2**_LUT_BITS levels per channel for the nearest-colour lookup table.
_LUT_BITS = 6
# A pixel is "far" from the palette beyond this RGB distance; a label image with more than
# MAX_FAR_FRACTION of such pixels is not a Cityscapes colour label (e.g. a photo or the wrong half).
# Resized colour labels have far pixels only on class boundaries (under 20% even at 32x32, about
# 3% at 256x256), photos have more than half of their pixels far.
FAR_DISTANCE = 20.0
MAX_FAR_FRACTION = 0.4


def label_ids_to_train_ids(ids: np.ndarray) -> np.ndarray:
    """Official label ids (any integer array) -> trainIds as uint8 (0..18, 255 for ignore)."""
    ids = np.asarray(ids)
    if ids.dtype == np.uint8:
        return _ID_TO_TRAIN_ID[ids]
    out = np.full(ids.shape, IGNORE_INDEX, dtype=np.uint8)
    valid = (ids >= 0) & (ids < 256)
    out[valid] = _ID_TO_TRAIN_ID[ids[valid]]
    return out


def label_ids_to_color(ids: np.ndarray) -> np.ndarray:
    """Official label ids HxW -> the official colour image HxWx3 uint8 (as in ``*_gtFine_color.png``)."""
    ids = np.asarray(ids)
    return _ID_TO_COLOR[np.clip(ids, 0, 255).astype(np.uint8)]


def train_ids_to_color(train_ids: np.ndarray) -> np.ndarray:
    """trainIds HxW -> colours HxWx3 uint8 (``PALETTE``; 255 and unknown values -> black)."""
    train_ids = np.asarray(train_ids)
    return _TRAIN_ID_TO_COLOR[np.clip(train_ids, 0, 255).astype(np.uint8)]


_MATCH_RGB = np.array(list(_MATCH_COLORS.keys()), dtype=np.int32)  # [K, 3]
_MATCH_TRAIN_IDS = np.array(list(_MATCH_COLORS.values()), dtype=np.uint8)  # [K]


@functools.lru_cache(maxsize=1)
def _nearest_color_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lookup tables over colours quantised to 4x4x4 cubes (built once, about 50 ms).

    For each cube: the trainId of the official colour nearest to its centre, whether the centre is
    far from every colour, and whether the cube is ambiguous (the nearest colour could change inside
    it: the two nearest distances differ by less than the cube's diagonal). Pixels in ambiguous
    cubes are resolved exactly, so the result equals a brute-force nearest-colour search.
    """
    levels = 1 << _LUT_BITS
    step = 256 // levels
    centres = np.arange(levels, dtype=np.float32) * step + (step - 1) / 2.0
    r, g, b = np.meshgrid(centres, centres, centres, indexing="ij")
    cells = np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1)  # [levels^3, 3]
    colors = _MATCH_RGB.astype(np.float32)
    # squared distances |x - c|^2 = |x|^2 - 2 x.c + |c|^2, one matrix product
    d2 = (cells**2).sum(1, keepdims=True) - 2.0 * cells @ colors.T + (colors**2).sum(1)
    distance = np.sqrt(np.maximum(d2, 0.0))
    two_nearest = np.partition(distance, 1, axis=1)[:, :2]
    nearest_train_id = _MATCH_TRAIN_IDS[distance.argmin(1)]
    far = two_nearest[:, 0] > FAR_DISTANCE
    ambiguous = (two_nearest[:, 1] - two_nearest[:, 0]) <= np.sqrt(3.0) * (step - 1) + 1e-3
    return nearest_train_id, far, ambiguous


def _nearest_exact(pixels: np.ndarray) -> np.ndarray:
    """trainIds of the nearest official colours of N x 3 pixels, by explicit integer distances."""
    d2 = ((pixels[:, None, :].astype(np.int32) - _MATCH_RGB[None]) ** 2).sum(-1)
    return _MATCH_TRAIN_IDS[d2.argmin(1)]


def color_to_train_ids(rgb: np.ndarray, path=None) -> np.ndarray:
    """Colour label image HxWx3 uint8 -> trainIds HxW uint8 by nearest official colour.

    Robust to the bicubic resize and JPEG blur of the pix2pix data (only pixels on class boundaries
    can change class). Raises ``DataError`` naming ``path`` when more than ``MAX_FAR_FRACTION`` of
    the pixels are farther than ``FAR_DISTANCE`` from every official colour.
    """
    rgb = np.asarray(rgb)
    where = path if path is not None else "label image"
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"{where}: expected an RGB colour label image (HxWx3), got shape {tuple(rgb.shape)}")
    if rgb.dtype != np.uint8:
        raise DataError(f"{where}: expected uint8 colours, got {rgb.dtype}")
    nearest_train_id, far, ambiguous = _nearest_color_tables()
    shift = 8 - _LUT_BITS
    q = (rgb >> shift).astype(np.int32)
    cell = (q[..., 0] << (2 * _LUT_BITS)) | (q[..., 1] << _LUT_BITS) | q[..., 2]
    far_fraction = float(far[cell].mean()) if cell.size else 0.0
    if far_fraction > MAX_FAR_FRACTION:
        raise DataError(
            f"{where}: not a Cityscapes colour label image ({far_fraction:.0%} of pixels are far from every "
            f"label colour; is it a photo or the wrong half?)"
        )
    train_ids = nearest_train_id[cell]
    unsure = ambiguous[cell]
    if unsure.any():
        train_ids[unsure] = _nearest_exact(rgb[unsure])
    return train_ids


# ----------------------------------------------------------------------------------------------
# The official layout: leftImg8bit/<split>/<city>/<name>_leftImg8bit.png and
# gtFine/<split>/<city>/<name>_gtFine_labelIds.png (+ _gtFine_color.png).

_IMAGE_SUFFIX = "_leftImg8bit.png"
_LABEL_IDS_SUFFIX = "_gtFine_labelIds.png"
_COLOR_SUFFIX = "_gtFine_color.png"
_NAME_PATTERN = re.compile(r"^[^_/]+_\d+_\d+$")


@dataclass(frozen=True)
class Frame:
    """One official Cityscapes frame: its ``<city>_<seq>_<frame>`` name and its files."""

    name: str
    image: Path  # leftImg8bit png
    label_ids: Path  # gtFine labelIds png
    color: Path | None  # gtFine color png, if present


def _files_by_name(folder: Path, suffix: str) -> dict[str, Path]:
    """Map frame name -> path for every ``<city>/<name><suffix>`` under ``folder``."""
    found = {}
    for path in sorted(folder.glob(f"*/*{suffix}")):
        name = path.name[: -len(suffix)]
        if not _NAME_PATTERN.match(name):
            raise DataError(f"{path}: file name is not <city>_<seq>_<frame>{suffix}")
        found[name] = path
    return found


def find_frames(cityscapes_root, split: str) -> list[Frame]:
    """The frames of one split of the official layout, paired by name, sorted by photo path.

    Raises ``DataError`` for a missing folder, a split without photos, or a photo or label file
    without its partner (naming the first unpaired file and how many there are).
    """
    root = Path(cityscapes_root)
    if not root.is_dir():
        raise DataError(f"{root}: Cityscapes folder not found")
    image_dir = root / "leftImg8bit" / split
    label_dir = root / "gtFine" / split
    for folder in (image_dir, label_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found (expected the official Cityscapes layout "
                            f"leftImg8bit/<split>/<city>/ and gtFine/<split>/<city>/)")
    images = _files_by_name(image_dir, _IMAGE_SUFFIX)
    if not images:
        raise DataError(f"{image_dir}: no <city>/*{_IMAGE_SUFFIX} files")
    label_ids = _files_by_name(label_dir, _LABEL_IDS_SUFFIX)
    colors = _files_by_name(label_dir, _COLOR_SUFFIX)

    photos_alone = sorted(set(images) - set(label_ids))
    labels_alone = sorted(set(label_ids) - set(images))
    if photos_alone or labels_alone:
        count = len(photos_alone) + len(labels_alone)
        if photos_alone:
            first = photos_alone[0]
            message = (f"{images[first]}: unpaired frame, no label file "
                       f"{label_dir / images[first].parent.name / (first + _LABEL_IDS_SUFFIX)}")
        else:
            first = labels_alone[0]
            message = (f"{label_ids[first]}: unpaired frame, no photo "
                       f"{image_dir / label_ids[first].parent.name / (first + _IMAGE_SUFFIX)}")
        if count > 1:
            message += f" ({count} unpaired files in {split})"
        raise DataError(message)

    frames = [Frame(name, images[name], label_ids[name], colors.get(name)) for name in images]
    return sorted(frames, key=lambda frame: str(frame.image))
