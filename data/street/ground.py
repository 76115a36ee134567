"""The ground: the road with its markings, sidewalks, grass strips and the shade of one row of houses."""
from __future__ import annotations

import numpy as np

from data.street.canvas import LABEL_ID
from data.street.layout import Scene
from data.street.textures import jitter


def paint_ground(scene: Scene) -> None:
    """Everything below the horizon, seen on the ground plane Y = 0."""
    cv, street = scene.canvas, scene.street
    below = cv.dy < -1e-4
    with np.errstate(divide="ignore"):
        Z = np.where(below, cv.cam.cam_height / -cv.dy, np.inf).astype(np.float32)
    X = Z * cv.dx
    X = np.where(below, X, 0.0)
    Zs = np.where(below, Z, 0.0)
    coarse = street.tex_coarse(X, Zs, 0.7)
    fine = street.tex_fine(X, Zs, 6.0)
    label = np.full(Z.shape, LABEL_ID["road"], np.uint8)
    color = _road(scene, X, Zs, coarse, fine)
    for side in (-1, 1):
        _sidewalk_and_grass(scene, side, X, Zs, coarse, fine, label, color)
    # the shade of one row of houses falls on the street next to it
    shade_side = -1 if street.sun_left else 1
    shaded = shade_side * X > street.facade(shade_side) - street.shadow_width
    color = np.where(shaded[..., None], color * street.shady, color * street.sunny)
    cv.paint(cv.whole, below, Z, label, color)


def _road(scene: Scene, X, Zs, coarse, fine) -> np.ndarray:
    """Colours of the asphalt with a dashed centre line, solid edge lines and sometimes a zebra crossing."""
    rng, street = scene.rng, scene.street
    road = np.array((82, 80, 88), np.float32) + rng.uniform(-12, 12)
    color = road[None, None, :] * (1 + 0.06 * coarse[..., None] + 0.05 * fine[..., None])
    centre = rng.uniform(-1.0, 1.0) + (street.road_right - street.road_left) / 2
    dashes = (np.abs(X - centre) < 0.08) & ((Zs % 9.0) < 3.5)
    edges = (np.abs(X + street.road_left - 0.3) < 0.07) | (np.abs(X - street.road_right + 0.3) < 0.07)
    paint = dashes | (edges & (rng.random() < 0.6))
    if rng.random() < 0.3:  # a zebra crossing
        z0 = rng.uniform(6, 25)
        paint |= (Zs > z0) & (Zs < z0 + 3.0) & ((X % 1.0) < 0.5) & (X > -street.road_left) & (X < street.road_right)
    color[paint] = np.array((205, 205, 200), np.float32) * (1 + 0.05 * fine[paint, None])
    return color


def _sidewalk_and_grass(scene: Scene, side: int, X, Zs, coarse, fine, label, color) -> None:
    """Tiled sidewalk with a kerb beyond the road on ``side``, then grass up to the facades (in place)."""
    rng, street = scene.rng, scene.street
    road_edge, walk = street.road_edge(side), street.walk(side)
    d = side * X  # distance from the camera line towards this side
    is_walk = (d >= road_edge) & (d < road_edge + walk)
    is_grass = d >= road_edge + walk  # up to the facades, which hide the ground beyond
    base = jitter(rng, (150, 140, 135), 15)
    tiles = ((X % 0.7) < 0.05) | ((Zs % 0.7) < 0.05)
    walk_color = base[None, None, :] * (1 + 0.05 * coarse[..., None] + 0.04 * fine[..., None])
    walk_color = np.where(tiles[..., None], walk_color * 0.85, walk_color)
    curb = is_walk & (d < road_edge + 0.2)
    walk_color = np.where(curb[..., None], walk_color * 1.15, walk_color)
    grass_color = jitter(rng, (95, 120, 55), 12)[None, None, :] * (
        1 + 0.15 * coarse[..., None] + 0.15 * fine[..., None])
    label[is_walk] = LABEL_ID["sidewalk"]
    label[is_grass] = LABEL_ID["terrain"]
    color[is_walk] = walk_color[is_walk]
    color[is_grass] = grass_color[is_grass]
