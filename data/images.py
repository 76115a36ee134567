"""Reading image files, with one-line errors: a missing, non-image, truncated or too large file raises
``DataError`` naming it. PIL's decompression-bomb warning counts as the error it is for a dataset."""
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


def read_rgb(path) -> torch.Tensor:
    """An image file as RGB uint8 [3, H, W]."""
    array = np.asarray(read_image(path).convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1)
