"""Official Cityscapes -> the pix2pix layout, as the reference preparation script makes it, plus exact labels.

For each split (train, val) the frames are taken in sorted path order and frame ``i`` becomes:

* ``<out>/<split>/<i>.jpg``: ``2S x S`` JPEG (quality 100, no chroma subsampling), the photo on the left
  and the colour label on the right, each bicubic-resized to ``S x S`` (S = 256 by default, 32 to 4096);
* ``<out>/<split>_trainids/<i>.png``: the exact trainId map (uint8, 255 = ignore), nearest-resized
  from ``*_gtFine_labelIds.png``, for scoring without reading colours back;
* ``<out>/index.json``: ``{"train": {"<i>.jpg": "<city>_<seq>_<frame>", ...}, "val": {...},
  "cityscapes_root": <the official folder relative to out>, "size": S, "format_version": 1,
  "sources": <fingerprint of the input files: names, sizes and modification times>}``.

The output follows :mod:`common.outputs`: ``out`` never overlaps the input folders (``leftImg8bit/`` and
``gtFine/``); everything is written into a hidden ``.<out>.partial-*`` folder beside ``out`` (``index.json``
last) and renamed into place when complete, so an interrupted run leaves nothing that looks finished and
a previous output is deleted only after its successor is in place; the next run deletes unfinished work
a killed one left behind and puts back, or names, a previous output it had set aside. Running again on the same, unchanged input files with the same
size does nothing; when input files changed (same frames) the output is prepared again; an output of
other frames or another size is only replaced with ``--overwrite``.

Command line: ``python -m data.prepare --cityscapes DIR --out DIR``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from common.command_line import option_parser, run_main
from common.outputs import make_partial, prepare_output, replace_folder
from data import DataError
from data.aligned import read_index
from data.cityscapes import Frame, color_to_train_ids, find_frames, label_ids_to_color, label_ids_to_train_ids
from data.fingerprint import files_fingerprint
from data.images import read_image

FORMAT_VERSION = 1
SPLITS = ("train", "val")
_MAX_LABEL_ID = 33
# A 2S x S RGB frame and its resized halves take about 20 S^2 bytes while it is converted: 335 MB at 4096
# (16 times Cityscapes' 2048 x 1024 photos), 200 GB at 100000.
MAX_SIZE = 4096
# Below this side the bicubic-resized colour labels blend classes on so many pixels that they no longer read as
# label images (data.cityscapes.MAX_FAR_FRACTION, 40%): in the synthetic city resized from 1024 x 512, up to 43%
# of a frame's pixels at 16, 32% at 24, 26% at 32. 32 is also the input of the smallest U-Net, unet_32.
MIN_SIZE = 32


def _read_label_ids(path: Path) -> np.ndarray:
    """A ``*_gtFine_labelIds.png`` as an array of official label ids."""
    image = read_image(path)
    if image.mode not in ("L", "P", "I", "I;16"):
        raise DataError(f"{path}: expected a single-channel label id image, got mode {image.mode}")
    ids = np.asarray(image)
    if ids.size and int(ids.max()) > _MAX_LABEL_ID:
        raise DataError(f"{path}: holds value {int(ids.max())}, not an official Cityscapes label id (0..{_MAX_LABEL_ID})")
    return ids.astype(np.uint8)


def convert_frame(frame: Frame, size: int = 256) -> tuple[Image.Image, np.ndarray]:
    """One official frame -> (the ``2*size x size`` side-by-side RGB image, the ``size x size`` trainIds)."""
    photo = read_image(frame.image)
    if photo.mode not in ("RGB", "RGBA"):
        raise DataError(f"{frame.image}: expected an RGB photo, got mode {photo.mode} (grayscale?)")
    photo = photo.convert("RGB")
    label_ids = _read_label_ids(frame.label_ids)
    if label_ids.shape != (photo.height, photo.width):
        raise DataError(f"{frame.label_ids}: size {label_ids.shape[1]}x{label_ids.shape[0]} differs from its "
                        f"photo's {photo.width}x{photo.height}")
    if frame.color is not None:
        color = read_image(frame.color)
        if color.mode == "L":
            raise DataError(f"{frame.color}: expected an RGB colour label image, got grayscale")
        color = color.convert("RGB")
        if color.size != photo.size:
            raise DataError(f"{frame.color}: size {color.width}x{color.height} differs from its photo's "
                            f"{photo.width}x{photo.height}")
    else:  # no colour file: draw it from the label ids, as the official scripts do
        color = Image.fromarray(label_ids_to_color(label_ids))

    photo_small = photo.resize((size, size), Image.Resampling.BICUBIC)
    color_small = color.resize((size, size), Image.Resampling.BICUBIC)
    color_to_train_ids(np.asarray(color_small), path=frame.color)  # rejects a file that is not a colour label
    pair = Image.new("RGB", (2 * size, size))
    pair.paste(photo_small, (0, 0))
    pair.paste(color_small, (size, 0))
    train_ids = Image.fromarray(label_ids_to_train_ids(label_ids)).resize((size, size), Image.Resampling.NEAREST)
    return pair, np.asarray(train_ids)


def make_work_dir(parent: Path, prefix: str) -> Path:
    """A new hidden folder ``.<prefix>-<pid>-<token>`` in ``parent`` to build output in before renaming it
    (``prefix`` is ``<name>.partial``: :func:`common.outputs.make_partial` of ``parent / <name>``)."""
    if not prefix.endswith(".partial"):
        raise ValueError(f"work folder prefix {prefix!r} must end with .partial")
    return make_partial(parent / prefix.removesuffix(".partial"))


def sources_fingerprint(root: Path, frames: dict[str, list[Frame]]) -> str:
    """Fingerprint of the input files of ``frames`` (names, sizes and modification times)."""
    files = [path for split in SPLITS for frame in frames[split]
             for path in (frame.image, frame.label_ids, frame.color) if path is not None]
    return files_fingerprint(files, root, with_mtime=True)


def _existing_matches(out: Path, names: dict[str, list[str]], size: int) -> bool:
    """Whether ``out`` already holds a complete preparation of exactly these frames at this size."""
    try:
        index = read_index(out / "index.json")
    except DataError:
        return False
    if index.get("size") != size or index.get("format_version") != FORMAT_VERSION:
        return False
    for split in SPLITS:
        written = index.get(split, {})
        if [written.get(f"{i}.jpg") for i in range(len(written))] != names[split]:
            return False
        if not all((out / split / f"{i}.jpg").is_file() for i in range(len(written))):
            return False
    return True


def _existing_sources(out: Path) -> str | None:
    try:
        return read_index(out / "index.json").get("sources")
    except DataError:
        return None


def check_size(size: int) -> None:
    """DataError unless ``size`` (``--size``, the side of each half) is in [MIN_SIZE, MAX_SIZE], saying why."""
    if size < MIN_SIZE:
        raise DataError(f"--size must be >= {MIN_SIZE} (smaller halves blend the resized colour labels' classes on "
                        f"so many pixels that they no longer read as label images), got {size}")
    if size > MAX_SIZE:
        raise DataError(f"--size must be <= {MAX_SIZE} (a frame of side S takes about 20 S^2 bytes while it is "
                        f"converted), got {size}")


def prepare(cityscapes_root, out_dir, size: int = 256, overwrite: bool = False, show_progress: bool = True,
            extra_index: dict | None = None, summary: bool = True) -> Path:
    """Convert the official layout at ``cityscapes_root`` into the pix2pix layout at ``out_dir``; return it.

    ``extra_index`` adds keys to index.json (the synthetic generator records its parameters there).
    With ``show_progress`` it prints a progress bar and what it did: notes and, with ``summary``, a last
    line naming ``out_dir`` (a caller that moves the output elsewhere names it itself).
    """
    root = Path(cityscapes_root)
    out = Path(out_dir)
    check_size(size)
    for note in prepare_output({"--out": out}, {root / "leftImg8bit": "--cityscapes", root / "gtFine": "--cityscapes"}):
        print(note, flush=True)
    frames = {split: find_frames(root, split) for split in SPLITS}
    names = {split: [frame.name for frame in frames[split]] for split in SPLITS}
    sources = sources_fingerprint(root, frames)
    if out.exists() and _already_prepared(out, names, size, sources, overwrite, show_progress):
        return out

    work = make_partial(out)
    try:
        try:
            relative_root = os.path.relpath(root.resolve(), out.resolve())
        except ValueError:  # different drives
            relative_root = str(root.resolve())
        index = _convert_frames(frames, size, work, show_progress)
        index.update(cityscapes_root=relative_root, size=size, format_version=FORMAT_VERSION, sources=sources,
                     **(extra_index or {}))
        (work / "index.json").write_text(json.dumps(index, indent=1))
        replace_folder(work, out)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    if show_progress and summary:
        print(f"wrote {len(index['train'])} train / {len(index['val'])} val frames (pix2pix layout) to {out}")
    return out


def _already_prepared(out: Path, names: dict[str, list[str]], size: int, sources: str, overwrite: bool,
                      show_progress: bool) -> bool:
    """Whether the existing ``out`` is this very preparation, from unchanged input files (nothing to do).

    The same frames from changed files are prepared again; other data is only replaced with ``overwrite``.
    """
    if not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    same_frames = _existing_matches(out, names, size)
    if same_frames and _existing_sources(out) == sources and not overwrite:
        if show_progress:
            print(f"{out}: already prepared from the same {len(names['train'])} train / "
                  f"{len(names['val'])} val frames, nothing to do")
        return True
    if same_frames and not overwrite:
        if show_progress:
            print(f"{out}: input files changed since it was prepared; preparing again")
    elif any(out.iterdir()) and not overwrite:
        raise DataError(f"{out}: exists and holds different data; use --overwrite to replace it")
    return False


def _convert_frames(frames: dict[str, list[Frame]], size: int, work: Path, show_progress: bool) -> dict:
    """Write every frame's pair JPEG and exact trainId PNG into ``work``; return the index of frame names."""
    index = {split: {} for split in SPLITS}
    # closed on an error too, so that the error starts a line of its own
    with tqdm(total=sum(len(f) for f in frames.values()), desc="prepare", unit="frame",
              disable=not show_progress) as bar:
        for split in SPLITS:
            (work / split).mkdir()
            (work / f"{split}_trainids").mkdir()
            for i, frame in enumerate(frames[split]):
                pair, train_ids = convert_frame(frame, size)
                pair.save(work / split / f"{i}.jpg", format="JPEG", quality=100, subsampling=0)
                Image.fromarray(train_ids).save(work / f"{split}_trainids" / f"{i}.png")
                index[split][f"{i}.jpg"] = frame.name
                bar.update(1)
    return index


COMMAND_LINE_HELP = ("Convert the official Cityscapes layout (leftImg8bit/ + gtFine/) into the pix2pix layout: "
                     "side-by-side photo|colour-label JPEGs, exact trainId PNGs and an index of frame names.")


def main(argv=None) -> int:
    parser = option_parser(COMMAND_LINE_HELP, prog="python -m data.prepare")
    parser.add_argument("--cityscapes", required=True, help="folder holding leftImg8bit/ and gtFine/")
    parser.add_argument("--out", required=True, help="output folder (pix2pix layout)")
    parser.add_argument("--size", type=int, default=256, help=f"side of each square half ({MIN_SIZE} to {MAX_SIZE})")
    parser.add_argument("--overwrite", action="store_true", help="replace a different existing output")
    args = parser.parse_args(argv)

    def work() -> None:  # prepare() reports what it wrote
        prepare(args.cityscapes, args.out, size=args.size, overwrite=args.overwrite)
    return run_main(work)


if __name__ == "__main__":
    sys.exit(main())
