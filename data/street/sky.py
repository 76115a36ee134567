"""The sky: a clear or overcast gradient with clouds."""
from __future__ import annotations

import numpy as np

from data.street.canvas import LABEL_ID
from data.street.layout import Scene
from data.street.textures import smooth_noise


def paint_sky(scene: Scene) -> np.ndarray:
    """Fill the whole frame with sky; return the colour near the horizon, which distant things fade to."""
    cv, cam, rng = scene.canvas, scene.canvas.cam, scene.rng
    overcast = rng.random() < 0.35
    top = np.array((150, 160, 170) if overcast else (60, 110, 190), np.float32) + rng.uniform(-15, 15, 3)
    low = np.array((200, 205, 210) if overcast else (170, 200, 230), np.float32) + rng.uniform(-15, 15, 3)
    t = np.clip(np.linspace(0, 1, cam.height, dtype=np.float32) / max(cam.horizon / cam.height, 0.1), 0, 1)
    grad = top[None, :] * (1 - t[:, None]) + low[None, :] * t[:, None]
    clouds = np.clip(smooth_noise(rng, cam.height, cam.width, 4) * 1.4 + rng.uniform(-0.6, 0.3), 0, 1)
    color = grad[:, None, :] * (1 - 0.6 * clouds[..., None]) + 235 * 0.6 * clouds[..., None]
    cv.color[:] = color
    cv.label[:] = LABEL_ID["sky"]
    return low
