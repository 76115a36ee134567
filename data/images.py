"""Reading image files, with one-line errors: a missing, non-image, truncated or too large file raises
``DataError`` naming it. PIL's decompression-bomb warning counts as the error it is for a dataset. Images
become 8-bit RGB by their mode (:func:`as_rgb`), never by a conversion that clips or drops what it cannot show."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from data import DataError

_TOO_LARGE = (Image.DecompressionBombError, Image.DecompressionBombWarning)


def _open(path: Path) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(path)


@contextmanager
def _opened(path: Path):
    """The open image file; errors in opening or in decoding inside the block become one-line DataErrors."""
    try:
        with _open(path) as image:
            yield image
    except _TOO_LARGE as error:
        detail = str(error).split(", could be")[0].rstrip(".")
        raise DataError(f"{path}: image too large to decode ({detail}; PIL's decompression-bomb limit)") from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise DataError(f"{path}: not an image file (or its header is corrupt)") from None
    except Exception as error:  # noqa: BLE001 - decoders raise OSError, SyntaxError, EOFError, zlib.error, ...
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path}: corrupt or truncated image ({detail})") from None


def image_header(path) -> tuple[int, int, str]:
    """(width, height, PIL mode) of an image file, from its header only."""
    with _opened(Path(path)) as image:
        return image.width, image.height, image.mode


def read_image(path) -> Image.Image:
    """Open and fully decode an image file."""
    with _opened(Path(path)) as image:
        image.load()
        return image


_WITH_ALPHA = ("RGBA", "LA", "PA")
_NO_RANGE = {"I": "32-bit integer pixels", "F": "floating-point pixels"}


def as_rgb(image: Image.Image, path) -> Image.Image:
    """``image`` (read from ``path``) as 8-bit RGB, by its mode; DataError naming the file and its mode otherwise.

    RGB as it is; bilevel (1), grayscale (L) and palette (P) converted; with alpha (RGBA, LA, PA, or a palette
    with a transparent colour) only if every pixel is opaque. 16-bit grayscale (I;16, I;16B, ...) is reduced
    to 8 bits by its high byte (v >> 8), not refused: its range is fixed, and Pillow itself reads 48/64-bit
    RGB(A) PNGs as RGB(A) by their high byte (it gives them no mode of their own), so every 16-bit file is
    reduced alike, exactly for an 8-bit image widened by v * 257 or v << 8. 32-bit integer (I) and float (F)
    pixels are refused: nothing says which values are black and white. Other modes (CMYK, YCbCr, ...) too.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _WITH_ALPHA or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"))
        if (alpha < 255).any():
            raise DataError(f"{path}: {int((alpha < 255).sum())} pixel(s) not fully opaque (mode {mode} with "
                            f"alpha); expected an opaque image")
        return rgba.convert("RGB")
    if mode in ("1", "L", "P"):
        return image.convert("RGB")
    if mode.startswith("I;16"):
        high = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
        return Image.fromarray(high, "L").convert("RGB")
    why = f"{_NO_RANGE[mode]} have no fixed range" if mode in _NO_RANGE else "not an RGB, grayscale or palette mode"
    raise DataError(f"{path}: image mode {mode} ({why}); expected 8-bit RGB, grayscale or palette, or 16-bit "
                    f"per channel")


def read_rgb(path) -> torch.Tensor:
    """An image file as RGB uint8 [3, H, W], converted by its mode as :func:`as_rgb` says."""
    array = np.asarray(as_rgb(read_image(path), path))
    return torch.from_numpy(array.copy()).permute(2, 0, 1)
