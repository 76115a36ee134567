"""The built-in synthetic city: the default data and the fixture of the tests, written to disk and cached.

Real Cityscapes needs a login to download, so the project carries its own city: procedural street
scenes drawn by ``data.street``. That renderer (and OpenCV) is imported only when frames are drawn,
so reusing a cached dataset does not load it. A frame depends only on (seed, split, index):
generating 4 frames gives the first 4 of 200.

``generate`` writes both layouts: the official one (``cityscapes/``, 2S x S) and, converted from it
exactly as ``data.prepare`` converts real Cityscapes, the pix2pix one (``pix2pix/``, S x S halves).
``default_dataset`` is the data used when no dataset is given: generated once into a cache folder.

Command line: ``python -m data.synthetic --out DIR --train-frames N --val-frames M --seed S --size 256``.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from common.command_line import add_former_spelling, option_parser, run_main
from data import DataError
from data.cityscapes import label_ids_to_color
from data.prepare import MAX_SIZE, MIN_SIZE, check_size, make_work_dir, prepare

# Bump when the scenes change (anything data.street draws, or the order of its random draws), so cached
# default datasets are regenerated.
GENERATOR_VERSION = 2

# Defaults of the built-in dataset, sized for a CPU demo (generation takes a few seconds).
DEFAULT_SIZE = 64
DEFAULT_TRAIN = 200
DEFAULT_VAL = 50
CACHE_ENV = "TRALGO_DATA_CACHE"

CITIES = {"train": ("alderbrook", "birchfield"), "val": ("cedarport",)}
_SPLIT_CODE = {"train": 1, "val": 2}


def frame_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator of one frame: depends only on (seed, split, index)."""
    return np.random.default_rng([seed, _SPLIT_CODE[split], index])


def frame_name(split: str, index: int) -> str:
    """Cityscapes-style ``<city>_<seq>_<frame>`` name of frame ``index`` of ``split``."""
    cities = CITIES[split]
    return f"{cities[index % len(cities)]}_{index // len(cities):06d}_000019"


# ----------------------------------------------------------------------------------------------
# Writing datasets


def write_cityscapes_layout(root, n_train: int, n_val: int, seed: int = 0, size: int = 256,
                            show_progress: bool = True) -> Path:
    """Write the official layout (photos 2*size x size, labelIds and colour labels) under ``root``."""
    from data.street import render_scene  # here, not at the top: reusing a cached dataset never draws

    root = Path(root)
    counts = {"train": n_train, "val": n_val}
    bar = tqdm(total=n_train + n_val, desc="synthetic city", unit="frame", disable=not show_progress)
    for split, count in counts.items():
        for i in range(count):
            name = frame_name(split, i)
            city = name.split("_")[0]
            photo, label_ids = render_scene(frame_rng(seed, split, i), 2 * size, size)
            image_dir = root / "leftImg8bit" / split / city
            label_dir = root / "gtFine" / split / city
            image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo).save(image_dir / f"{name}_leftImg8bit.png")
            Image.fromarray(label_ids).save(label_dir / f"{name}_gtFine_labelIds.png")
            Image.fromarray(label_ids_to_color(label_ids)).save(label_dir / f"{name}_gtFine_color.png")
            bar.update(1)
    bar.close()
    return root


def _recipe(n_train, n_val, seed, size) -> dict:
    return {"generator_version": GENERATOR_VERSION, "n_train": n_train, "n_val": n_val, "seed": seed, "size": size}


def generate(out_dir, n_train: int, n_val: int, seed: int = 0, size: int = 256, overwrite: bool = False,
             show_progress: bool = False) -> Path:
    """Write ``<out_dir>/cityscapes/`` (official layout, 2*size x size) and ``<out_dir>/pix2pix/``
    (pix2pix layout with size x size halves, exact trainId PNGs and index.json); return the pix2pix root.

    Both are built in a hidden temporary folder inside ``out_dir`` and moved into place at the end,
    so an interrupted run leaves nothing that looks complete. Calling it again with the same
    parameters finds the finished data and returns at once; different existing data is only
    replaced with ``overwrite=True``.
    """

    if n_train < 1 or n_val < 1:
        raise DataError(f"{out_dir}: need at least one train and one val frame (got train={n_train}, val={n_val})")
    check_size(size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    final_city, final_pix = out / "cityscapes", out / "pix2pix"
    recipe = _recipe(n_train, n_val, seed, size)
    if (final_pix / "index.json").is_file():
        try:
            existing = json.loads((final_pix / "index.json").read_text()).get("synthetic")
        except (OSError, ValueError):
            existing = None
        if existing == recipe and final_city.is_dir():
            return final_pix
    if (final_city.exists() or final_pix.exists()) and not overwrite:
        raise DataError(f"{out}: already holds cityscapes/ or pix2pix/ data different from "
                        f"train={n_train} val={n_val} seed={seed} size={size}; use --overwrite to replace it")

    work = make_work_dir(out, "synthetic.partial")
    try:
        write_cityscapes_layout(work / "cityscapes", n_train, n_val, seed, size, show_progress)
        prepare(work / "cityscapes", work / "pix2pix", size=size, show_progress=show_progress,
                extra_index={"synthetic": recipe}, summary=False)  # the work folder is gone when it is done
        for final in (final_pix, final_city):  # the pix2pix index marks completion: remove it first
            if final.exists():
                shutil.rmtree(final)
        os.replace(work / "cityscapes", final_city)
        os.replace(work / "pix2pix", final_pix)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final_pix


def cache_root() -> Path:
    """Folder of generated datasets: ``$TRALGO_DATA_CACHE``, default ``./datasets``."""
    return Path(os.environ.get(CACHE_ENV, "datasets"))


def default_dataset(size: int = DEFAULT_SIZE, n_train: int = DEFAULT_TRAIN, n_val: int = DEFAULT_VAL,
                    seed: int = 0, verbose: bool = True) -> Path:
    """The built-in dataset: generated once into the cache folder, then reused; returns its pix2pix root.

    Prints one line saying which folder is used (and whether it was generated now). Concurrent
    callers each build into their own temporary folder; the first to finish wins, the others reuse it.
    """
    name = f"synthetic_city_v{GENERATOR_VERSION}_s{size}_train{n_train}_val{n_val}_seed{seed}"
    final = cache_root() / name
    pix = final / "pix2pix"
    if (pix / "index.json").is_file():
        if verbose:
            print(f"no --dataroot given: using the built-in synthetic city at {pix.resolve()}", flush=True)
        return pix.resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    work = make_work_dir(final.parent, f"{name}.partial")
    try:
        generate(work, n_train, n_val, seed=seed, size=size, show_progress=verbose and sys.stderr.isatty())
        if final.exists() and not (pix / "index.json").is_file():
            shutil.rmtree(final)  # an incomplete folder from an older interrupted run
        try:
            os.rename(work, final)
        except OSError:
            if not (pix / "index.json").is_file():  # lost a race against a finished copy? else re-raise
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if verbose:
        print(f"no --dataroot given: generated the built-in synthetic city ({n_train} train / {n_val} val frames, "
              f"{size} px) in {time.monotonic() - start:.0f} s at {pix.resolve()}", flush=True)
    return pix.resolve()


COMMAND_LINE_HELP = ("Generate procedural Cityscapes-like street scenes in both the official Cityscapes layout "
                     "(OUT/cityscapes) and the pix2pix layout (OUT/pix2pix).")


def main(argv=None) -> int:
    parser = option_parser(COMMAND_LINE_HELP, prog="python -m data.synthetic")
    parser.add_argument("--out", required=True, help="output folder")
    add_former_spelling(parser, parser.add_argument("--train-frames", type=int, default=DEFAULT_TRAIN,
                                                    help="number of training frames"), "--train")
    add_former_spelling(parser, parser.add_argument("--val-frames", type=int, default=DEFAULT_VAL,
                                                    help="number of validation frames"), "--val")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same scenes)")
    parser.add_argument("--size", type=int, default=256,
                        help=f"side of the square pix2pix halves ({MIN_SIZE} to {MAX_SIZE}); official-layout "
                             f"images are 2*size x size")
    parser.add_argument("--overwrite", action="store_true", help="replace different data already in --out")
    args = parser.parse_args(argv)

    def work() -> str:
        if not 0 <= args.seed < 2**31:
            raise DataError(f"--seed must be in [0, 2^31), got {args.seed}")
        root = generate(args.out, args.train_frames, args.val_frames, seed=args.seed, size=args.size,
                        overwrite=args.overwrite, show_progress=True)
        return (f"wrote {args.train_frames} train / {args.val_frames} val synthetic frames to {root} (pix2pix layout) and "
                f"{Path(args.out) / 'cityscapes'} (official layout)")
    return run_main(work)


if __name__ == "__main__":
    sys.exit(main())
