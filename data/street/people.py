"""Pedestrians, and the riders of bicycles and motorcycles."""
from __future__ import annotations

import numpy as np

from data.street.canvas import LABEL_ID
from data.street.layout import Scene
from data.street.textures import jitter, pick

CLOTH_COLORS = [(30, 30, 35), (60, 60, 70), (25, 35, 80), (120, 30, 30), (200, 200, 195), (90, 70, 50),
                (40, 80, 60), (150, 120, 90), (170, 60, 90)]
SKIN_COLORS = [(230, 190, 160), (200, 150, 120), (140, 95, 70), (90, 60, 45)]


def paint_person(scene: Scene, Xc, Z, label_id=None, Y_base=0.0, riding=False) -> None:
    """A person facing the camera at (Xc, Z) standing on ``Y_base``: legs, torso, head; a rider's legs are
    shorter (seen bent over the bicycle)."""
    rng = scene.rng
    label_id = label_id or LABEL_ID["person"]
    h = rng.uniform(1.55, 1.9)
    w = 0.3 * h
    shirt = jitter(rng, pick(rng, CLOTH_COLORS), 15)
    pants = jitter(rng, pick(rng, CLOTH_COLORS), 15)
    skin = jitter(rng, pick(rng, SKIN_COLORS), 10)
    hair = jitter(rng, (40, 30, 25), 15)
    leg_top = 0.47 * h if not riding else 0.15 * h
    head_y, head_r = 0.91 * h, 0.075 * h

    def shape(x, y):
        legs = (y >= 0) & (y < leg_top) & (np.abs(x) < 0.32 * w) & ~((np.abs(x) < 0.05 * w) & (y < leg_top * 0.9))
        torso = (y >= leg_top) & (y < 0.83 * h) & (np.abs(x) < 0.5 * w * (1 - 0.25 * (y - leg_top) / h))
        head = (x**2 + (y - head_y) ** 2) < head_r**2
        return legs | torso | head

    def color(x, y):
        col = np.where((y < leg_top)[..., None], pants, shirt)
        col = np.where((y > 0.83 * h)[..., None], np.where((y > head_y + 0.3 * head_r)[..., None], hair, skin), col)
        return col * (1 + 0.15 * np.clip(x / w, -1, 1))[..., None]

    scene.canvas.billboard(Xc, Z, w, h + 0.05, shape, label_id, color, Y_base=Y_base)
