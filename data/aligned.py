"""The pix2pix aligned dataset: ``<root>/<phase>/*.jpg`` files holding A|B side by side.

Each file is split at the middle into A (left, the photo in the Cityscapes data) and B (right, the
colour label). ``direction="BtoA"`` (labels -> photo) makes B the input and A the target.

Training jitter, as in the reference trainer: both halves are resized to ``load_size`` (bicubic),
the same random ``crop_size`` crop and the same random horizontal flip are applied to both, and
values are scaled to [-1, 1]. Without training (``train=False``) both halves are only resized to
``crop_size``. The trainId label map follows the same geometry with nearest-neighbour resizing; it
comes from ``<root>/<phase>_trainids/<file stem>.png`` when the folder has it (written by
``data.prepare`` and ``data.synthetic``), else from the colour half B by nearest label colour.

Randomness: the crop position and the flip are drawn with ``torch.randint`` from the generator
passed to :meth:`AlignedDataset.sample` (train.py gives each sample its own, see data.sampling), or
from torch's global generator through ``dataset[index]``. With ``num_workers=0`` the latter follow
``torch.manual_seed``; in DataLoader workers torch seeds each worker from the loader's base seed
(itself drawn from the main process's generator or the loader's ``generator``), so a seeded run is
reproducible for a fixed number of workers.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data import DataError
from data.cityscapes import IGNORE_INDEX, NUM_CLASSES, color_to_train_ids
from data.fingerprint import DIGEST_CACHE, files_content_digest, files_fingerprint
from data.images import as_rgb, image_header, read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
_GRAYSCALE_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class LoaderDataError(DataError):
    """A DataError raised while reading an item, that stays one line when re-raised from a DataLoader worker.

    The DataLoader re-raises a worker's exception as ``type(text)`` where ``text`` holds the worker's
    whole traceback; this class keeps only the original message, the traceback's last line.
    """

    def __init__(self, message: str):
        if message.startswith("Caught ") and "Original Traceback" in message:
            last_line = message.rstrip().splitlines()[-1]  # "data.aligned.LoaderDataError: <message>"
            message = last_line.split(": ", 1)[1] if ": " in last_line else last_line
        super().__init__(message)


def _to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> FloatTensor [3, H, W] in [-1, 1] (ToTensor then Normalize(0.5, 0.5)).

    Computed in NumPy: torch's multi-threaded element-wise kernels are slower on such small
    images, especially when other processes compete for the cores.
    """
    channels_first = np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))
    array = channels_first.astype(np.float32)
    array /= 127.5
    array -= 1.0
    return torch.from_numpy(array)


class AlignedDataset(torch.utils.data.Dataset):
    """Pairs from ``<root>/<phase>/``, sorted by path as the reference trainer sorts them.

    Items are dicts: ``input`` and ``target`` (FloatTensor [3, H, W] in [-1, 1]), ``label``
    (LongTensor [H, W] of trainIds, 255 = ignore), ``name`` (the Cityscapes frame name from
    ``index.json``, else the file stem) and ``index``. Phase ``"val"`` falls back to a ``test/``
    folder (older copies of the data call it that).
    """

    def __init__(self, root, phase: str = "train", direction: str = "BtoA", load_size: int = 286,
                 crop_size: int = 256, flip: bool = True, train: bool = True):
        if direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be 'AtoB' or 'BtoA', got {direction!r}")
        if train and load_size < crop_size:
            raise ValueError(f"load_size ({load_size}) must be at least crop_size ({crop_size})")
        self.root = Path(root)
        self.direction, self.load_size, self.crop_size = direction, load_size, crop_size
        self.flip, self.train = flip, train

        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found")
        folder = self.root / phase
        if phase == "val" and not folder.is_dir() and (self.root / "test").is_dir():
            folder = self.root / "test"
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found (expected <root>/{phase}/ with A|B images)")
        self.folder = folder
        named_images = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        not_files = [p for p in named_images if not p.is_file()]
        if not_files:
            raise DataError(f"{not_files[0]}: named like an image but not a file (a folder?); move it out of {folder}")
        self.paths = sorted(named_images)
        if not self.paths:
            raise DataError(f"{folder}: no image files")
        for path in self.paths:  # header-only checks: cheap, and they catch the common mistakes early
            self._check_header(path)

        self.names = {}
        index_path = self.root / "index.json"
        if index_path.is_file():
            split_key = "val" if phase in ("val", "test") else phase
            self.names = read_index(index_path).get(split_key, {})
        label_dir = self.root / f"{folder.name}_trainids"
        if not label_dir.is_dir() and folder.name == "test":
            label_dir = self.root / "val_trainids"
        self.label_dir = label_dir if label_dir.is_dir() else None

    @staticmethod
    def _check_header(path: Path) -> None:
        _check_pair_shape(path, *image_header(path))

    def __len__(self) -> int:
        return len(self.paths)

    def _label(self, path: Path, color_half: Image.Image) -> np.ndarray:
        if self.label_dir is not None:
            label_path = self.label_dir / f"{path.stem}.png"
            if not label_path.is_file():
                raise DataError(f"{label_path}: label file missing for {path}")
            label = read_image(label_path)
            if label.mode not in ("L", "P"):
                raise DataError(f"{label_path}: expected a single-channel trainId PNG, got mode {label.mode}")
            return check_train_ids(np.asarray(label, dtype=np.uint8), label_path)
        return color_to_train_ids(np.asarray(color_half), path=path)

    def __getitem__(self, index: int) -> dict:
        return self.sample(index)

    def sample(self, index: int, generator: torch.Generator | None = None) -> dict:
        """Item ``index`` with its crop and flip drawn from ``generator`` (None: torch's global one)."""
        path = self.paths[index]
        try:
            pair = read_image(path)
            _check_pair_shape(path, pair.width, pair.height, pair.mode)
            pair = as_rgb(pair, path)
            half = pair.width // 2
            a = pair.crop((0, 0, half, pair.height))
            b = pair.crop((half, 0, pair.width, pair.height))
            label = Image.fromarray(self._label(path, b))
        except DataError as error:
            raise LoaderDataError(str(error)) from None

        if self.train:
            size = self.load_size
            x = int(torch.randint(0, size - self.crop_size + 1, (), generator=generator).item())
            y = int(torch.randint(0, size - self.crop_size + 1, (), generator=generator).item())
            flip = self.flip and bool(torch.rand((), generator=generator) < 0.5)
        else:
            size, x, y, flip = self.crop_size, 0, 0, False
        box = (x, y, x + self.crop_size, y + self.crop_size)

        def geometry(image: Image.Image, resample) -> Image.Image:
            image = image.resize((size, size), resample).crop(box)
            return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else image

        a = _to_tensor(geometry(a, Image.Resampling.BICUBIC))
        b = _to_tensor(geometry(b, Image.Resampling.BICUBIC))
        label = torch.from_numpy(np.asarray(geometry(label, Image.Resampling.NEAREST)).astype(np.int64))
        source, target = (b, a) if self.direction == "BtoA" else (a, b)
        return {"input": source, "target": target, "label": label,
                "name": self.names.get(path.name, path.stem), "index": index}


def check_train_ids(label: np.ndarray, path: Path) -> np.ndarray:
    """``label`` if every value is a trainId (0..18) or 255 (ignore), else DataError naming ``path``, the
    value and where it is."""
    bad = (label >= NUM_CLASSES) & (label != IGNORE_INDEX)
    if bad.any():
        y, x = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{path}: value {int(label[y, x])} at x={x}, y={y} ({int(bad.sum())} pixel(s)) is not a "
                        f"trainId (0..{NUM_CLASSES - 1}, or {IGNORE_INDEX} for ignore)")
    return label


MAX_INDEX_BYTES = 64 << 20  # index.json of a million frames is about 50 MB


def read_index(path: Path) -> dict:
    """``index.json`` (written by data.prepare and data.synthetic) checked field by field: a JSON object whose
    ``train`` and ``val`` entries, where present, map image file names to frame names (strings). Raises
    DataError naming the file and the field."""
    try:
        if path.stat().st_size > MAX_INDEX_BYTES:
            raise DataError(f"{path}: {path.stat().st_size} bytes, more than an index holds ({MAX_INDEX_BYTES})")
        index = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: unreadable index ({error})") from None
    if not isinstance(index, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(index).__name__}")
    for split in ("train", "val"):
        names = index.get(split)
        if names is None:
            continue
        if not isinstance(names, dict):
            raise DataError(f"{path}: \"{split}\": expected an object of image file -> frame name, found "
                            f"{type(names).__name__}")
        bad = next((k for k, v in names.items() if not isinstance(v, str)), None)
        if bad is not None:
            raise DataError(f"{path}: \"{split}\".\"{bad}\": expected a frame name (a string), found {names[bad]!r}")
    return index


def _check_pair_shape(path: Path, width: int, height: int, mode: str) -> None:
    if mode in _GRAYSCALE_MODES:
        raise DataError(f"{path}: grayscale image (mode {mode}); expected an RGB photo|label pair")
    if width != 2 * height:
        raise DataError(f"{path}: size {width}x{height}, expected width = 2 x height (A|B side by side)")


def dataset_fingerprint(root) -> dict:
    """What identifies a prepared dataset wherever it lies: its train and val frame counts, ``digest`` (of the
    names and sizes of its images, trainId maps and index.json) and ``content`` (of those files' bytes; the
    SHA-256 of each file is cached in ``<root>/.content_digests.json``, see data.fingerprint)."""
    root = Path(root)
    counts, files = {}, []
    for folder in ("train", "val", "test", "train_trainids", "val_trainids", "test_trainids"):
        if (root / folder).is_dir():
            found = [p for p in (root / folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
            counts[folder] = len(found)
            files += found
    if (root / "index.json").is_file():
        files.append(root / "index.json")
    return {"train_frames": counts.get("train", 0), "val_frames": counts.get("val", counts.get("test", 0)),
            "digest": files_fingerprint(files, root),
            "content": files_content_digest(files, root, cache=root / DIGEST_CACHE)}


def check_same_dataset(root, fingerprint: dict, saved: dict, saved_root) -> None:
    """Raise DataError unless ``fingerprint`` (of the dataset at ``root``) is ``saved``, the fingerprint of the
    dataset a run was trained on (at ``saved_root`` then): a resumed run must see the same data. The files'
    contents are compared when ``saved`` holds their digest (a checkpoint of an older version has only
    names and sizes)."""
    counts = (fingerprint["train_frames"], fingerprint["val_frames"])
    if counts != (saved["train_frames"], saved["val_frames"]):
        raise DataError(f"--dataroot {root}: {counts[0]} train / {counts[1]} val frames, but the run was trained "
                        f"on {saved['train_frames']} / {saved['val_frames']}")
    if fingerprint["digest"] != saved["digest"]:
        raise DataError(f"--dataroot {root}: not the dataset the run was trained on (file names or sizes differ "
                        f"from those of {saved_root})")
    if "content" in saved and fingerprint["content"] != saved["content"]:
        raise DataError(f"--dataroot {root}: not the dataset the run was trained on (same file names and sizes, "
                        f"but the files' contents differ from those of {saved_root})")
