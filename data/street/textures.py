"""Surface detail: smooth noise, periodic textures looked up in metres, colour jitter, flat face shaders."""
from __future__ import annotations

import cv2
import numpy as np


def smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a coarse random grid upsampled with bicubic interpolation."""
    grid_h = max(2, cells)
    grid_w = max(2, int(round(cells * width / max(height, 1))))
    grid = rng.uniform(-1.0, 1.0, size=(grid_h, grid_w)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


class Texture:
    """A periodic random texture looked up at surface coordinates (metres), so it follows perspective."""

    def __init__(self, rng: np.random.Generator, size: int = 64, blur: float = 1.5):
        tile = rng.normal(size=(size, size)).astype(np.float32)
        freq = np.fft.fftfreq(size)
        kernel = np.exp(-0.5 * (2 * np.pi * blur) ** 2 * (freq[:, None] ** 2 + freq[None, :] ** 2))
        tile = np.real(np.fft.ifft2(np.fft.fft2(tile) * kernel)).astype(np.float32)
        self.tile = tile / (tile.std() + 1e-6)
        self.size = size

    def __call__(self, u: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
        """Bilinear lookup at (u, v) * scale texels."""
        fu, fv = u * scale, v * scale
        i0, j0 = np.floor(fv), np.floor(fu)
        wv, wu = (fv - i0).astype(np.float32), (fu - j0).astype(np.float32)
        i0, j0 = i0.astype(np.int64) % self.size, j0.astype(np.int64) % self.size
        i1, j1 = (i0 + 1) % self.size, (j0 + 1) % self.size
        t = self.tile
        top = t[i0, j0] * (1 - wu) + t[i0, j1] * wu
        bottom = t[i1, j0] * (1 - wu) + t[i1, j1] * wu
        return top * (1 - wv) + bottom * wv


def jitter(rng: np.random.Generator, color, amount: float = 12.0) -> np.ndarray:
    """``color`` with each channel moved by up to ``amount``, clipped to [0, 255]."""
    return np.clip(np.asarray(color, np.float32) + rng.uniform(-amount, amount, 3), 0, 255).astype(np.float32)


def pick(rng: np.random.Generator, palette) -> tuple:
    """One colour of ``palette``, drawn uniformly."""
    return palette[rng.integers(len(palette))]


def flat_shader(texture: Texture, color, amount: float = 0.06, sides: float = 0.8, top: float = 1.1):
    """A face shader for ``Canvas.box``: one colour with a little ``texture``, side and top faces lit
    ``sides`` and ``top`` times the front."""
    base = np.asarray(color, np.float32)

    def shade(face, u, v, Z):
        factor = {"front": 1.0, "side": sides, "top": top}[face]
        return base * factor * (1 + amount * texture(u, v, 8.0))[..., None]

    return shade
