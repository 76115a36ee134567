"""Things standing beside the road: poles with traffic signs or traffic lights, and trees."""
from __future__ import annotations

import numpy as np

from data.street.canvas import LABEL_ID
from data.street.layout import Scene
from data.street.textures import flat_shader, jitter, pick


def paint_pole(scene: Scene, Xc, Z, kind: str) -> None:
    """A pole at (Xc, Z); ``kind`` 'sign' or 'light' puts a traffic sign or light facing the camera on top."""
    rng, cv = scene.rng, scene.canvas
    height = rng.uniform(3.0, 4.0) if kind == "sign" else rng.uniform(4.5, 8.0)
    t = rng.uniform(0.12, 0.2)
    cv.box(Xc - t / 2, Xc + t / 2, 0, height, Z, Z + t, LABEL_ID["pole"],
           flat_shader(scene.street.tex_fine, jitter(rng, (120, 120, 118), 20), 0.05))
    if kind == "sign":
        _sign(scene, Xc, Z, height)
    elif kind == "light":
        _traffic_light(scene, Xc, Z, height)


def _sign(scene: Scene, Xc, Z, top) -> None:
    """A round or square traffic sign with a light border, its top at height ``top``."""
    rng = scene.rng
    size = rng.uniform(0.6, 0.9)
    sign = jitter(rng, pick(rng, [(30, 70, 170), (210, 40, 35), (235, 235, 230), (240, 200, 30)]), 10)
    border = np.array((235, 235, 235), np.float32)
    round_sign = rng.random() < 0.5

    def shape(x, y):
        if round_sign:
            return (x**2 + (y - size / 2) ** 2) < (size / 2) ** 2
        return (np.abs(x) < size / 2) & (y >= 0) & (y < size)

    def color(x, y):
        inner = (np.abs(x) < size * 0.3) & (np.abs(y - size / 2) < size * 0.3)
        return np.where(inner[..., None], sign, border * 0.9)

    scene.canvas.billboard(Xc, Z - 0.05, size / 2, size, shape, LABEL_ID["traffic sign"], color, Y_base=top - size)


def _traffic_light(scene: Scene, Xc, Z, top) -> None:
    """A dark traffic light with one lamp lit, 0.2 m below the pole's ``top``."""
    hw, hh = 0.18, 0.5
    lamp_index = scene.rng.integers(3)  # red on top, amber in the middle, green below
    lamp = np.array([(220, 40, 30), (230, 170, 30), (40, 210, 90)][lamp_index], np.float32)
    lamp_y = (0.83, 0.5, 0.17)[lamp_index] * 2 * hh

    def color(x, y):
        lit = (x**2 + (y - lamp_y) ** 2) < (0.7 * hw) ** 2
        return np.where(lit[..., None], lamp, np.array((30, 30, 32), np.float32))

    def shape(x, y):
        return (np.abs(x) < hw) & (y >= 0) & (y < 2 * hh)

    scene.canvas.billboard(Xc, Z - 0.1, hw, 2 * hh, shape, LABEL_ID["traffic light"], color,
                           Y_base=top - 2 * hh - 0.2)


def paint_tree(scene: Scene, Xc, Z) -> None:
    """A trunk and a round, wobbly crown of leaves."""
    rng, cv = scene.rng, scene.canvas
    texture = scene.street.tex_fine
    trunk_h = rng.uniform(2.0, 3.5)
    cv.box(Xc - 0.15, Xc + 0.15, 0, trunk_h + 1, Z, Z + 0.3, LABEL_ID["vegetation"],
           flat_shader(texture, jitter(rng, (80, 60, 45), 10), 0.15))
    rx, ry = rng.uniform(1.4, 2.8), rng.uniform(1.8, 3.2)
    leaves = jitter(rng, (75, 100, 40), 15)
    bumps = rng.uniform(0, 2 * np.pi, 3)

    def shape(x, y):
        angle = np.arctan2(y - ry, x)
        wobble = 1 + 0.08 * sum(np.sin((k + 3) * angle + b) for k, b in enumerate(bumps))
        return (x / rx) ** 2 + ((y - ry) / ry) ** 2 < wobble**2

    def color(x, y):
        light = 1 + 0.25 * np.clip((y - ry) / ry, -1, 1) + 0.3 * texture(x, y, 10.0)
        return leaves * light[..., None]

    cv.billboard(Xc, Z - 0.2, rx * 1.3, 2 * ry * 1.3, shape, LABEL_ID["vegetation"], color, Y_base=trunk_h)
