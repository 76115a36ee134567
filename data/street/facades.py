"""What lines the street: rows of buildings with windows and shops, walls, fences, hedges and parks on both
sides, and the buildings closing its far end."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from data.street.canvas import LABEL_ID
from data.street.layout import Scene
from data.street.textures import jitter, pick

FACADE_COLORS = [(200, 190, 170), (170, 160, 150), (140, 80, 60), (220, 215, 200), (120, 115, 110),
                 (185, 150, 110), (160, 170, 175), (100, 90, 85)]


@dataclass
class Segment:
    """One stretch of one side of the street, from depth ``start`` to ``end``."""

    start: float
    end: float
    kind: str  # building, trees, wall or fence
    height: float  # of the building, or of the wall / fence in front of the trees
    behind: float  # height of the trees behind a wall or fence, or of a park (0 for a building)
    color: np.ndarray
    win_dz: float  # window spacing along the street and between floors
    win_dy: float
    win_w: float  # window width and height, as fractions of the spacing
    win_h: float
    glass: np.ndarray
    shop: bool  # shop windows on the ground floor


class _Plane(NamedTuple):
    """The facade plane of one side as seen through every pixel: depth, height and textures there."""

    Z: np.ndarray  # depth along the street (0 where the pixel does not look at this side)
    Y: np.ndarray  # height above the ground
    fine: np.ndarray
    coarse: np.ndarray
    tree_top: np.ndarray  # wobble of the tree line


def paint_facades(scene: Scene) -> None:
    for side in (-1, 1):
        _paint_side(scene, side)


def _segments(scene: Scene) -> list[Segment]:
    """Rows of buildings, parks, walls and fences along one side of the street."""
    rng = scene.rng
    segments, z = [], rng.uniform(-10, 0)
    while z < scene.street.street_end:
        length = rng.uniform(8, 30)
        kind = rng.choice(["building", "trees", "wall", "fence"], p=[0.7, 0.12, 0.1, 0.08])
        segments.append(Segment(start=z, end=z + length, kind=kind,
                                height=rng.uniform(8, 28) if kind == "building" else rng.uniform(1.0, 2.2),
                                behind=rng.uniform(4, 12) if kind != "building" else 0.0,
                                color=jitter(rng, pick(rng, FACADE_COLORS), 15),
                                win_dz=rng.uniform(2.5, 4.0), win_dy=rng.uniform(2.8, 3.6),
                                win_w=rng.uniform(0.35, 0.6), win_h=rng.uniform(0.4, 0.6),
                                glass=jitter(rng, (55, 65, 80), 20), shop=rng.random() < 0.5))
        z += length
    return segments


def _paint_side(scene: Scene, side: int) -> None:
    """The segments of one side on the vertical plane at the facades' distance, lit by the sun or not."""
    cv, street = scene.canvas, scene.street
    facing = side * cv.dx > 1e-4
    with np.errstate(divide="ignore"):
        Z = np.where(facing, street.facade(side) / np.abs(cv.dx), np.inf).astype(np.float32)
    Y = cv.cam.cam_height + np.where(facing, Z, 0) * cv.dy
    segments = _segments(scene)
    starts = np.array([s.start for s in segments], np.float32)
    index = np.clip(np.searchsorted(starts, np.where(facing, Z, 0), side="right") - 1, 0, len(segments) - 1)
    Zf = np.where(facing, Z, 0.0)
    plane = _Plane(Zf, Y, fine=street.tex_fine(Zf, Y, 5.0), coarse=street.tex_coarse(Zf, Y, 0.8),
                   tree_top=street.tex_coarse(Zf, np.zeros_like(Zf), 1.5))
    label = np.zeros(Z.shape, np.uint8)
    color = np.zeros(Z.shape + (3,), np.float32)
    visible = np.zeros(Z.shape, bool)
    for k, s in enumerate(segments):
        on = facing & (index == k) & (Y >= 0) & (Z < street.street_end)
        if not on.any():
            continue
        layers = _building(s, on, plane) if s.kind == "building" else _low_segment(scene.rng, s, on, plane)
        for mask, label_id, colors in layers:
            label[mask], color[mask] = label_id, colors[mask]
            visible |= mask
    cv.paint(cv.whole, visible, Z, label, color * street.light(side))


def _building(s: Segment, on: np.ndarray, plane: _Plane) -> list[tuple]:
    """(mask, label id, colours) of a building: a wall with rows of windows, shop windows, a cornice."""
    Zf, Y, fine, coarse = plane.Z, plane.Y, plane.fine, plane.coarse
    part = on & (Y <= s.height)
    fz = (Zf - s.start) / s.win_dz % 1.0
    fy = Y / s.win_dy % 1.0
    window = (fz < s.win_w) & (fy > 0.3) & (fy < 0.3 + s.win_h) & (Y > 3.5)
    window &= Y < s.height - 1.0
    shop = s.shop & (Y > 0.4) & (Y < 3.0) & ((Zf - s.start) % 6.0 < 4.5)
    glass = s.glass * (1 + 0.25 * coarse[..., None]) + 40 * (fy[..., None] > 0.3 + s.win_h * 0.6)
    wall = s.color * (1 + 0.05 * coarse[..., None] + 0.05 * fine[..., None])
    wall = wall * (0.8 + 0.2 * np.clip(Y / 10, 0, 1))[..., None]
    cornice = (Y > s.height - 0.5)[..., None]
    wall = np.where(cornice, wall * 1.15, wall)
    return [(part, LABEL_ID["building"], np.where((window | shop)[..., None], glass, wall))]


def _low_segment(rng: np.random.Generator, s: Segment, on: np.ndarray, plane: _Plane) -> list[tuple]:
    """(mask, label id, colours) layers of a park, or of a wall or fence with trees behind it."""
    Zf, Y, fine, coarse = plane.Z, plane.Y, plane.fine, plane.coarse
    low = on & (Y <= s.height)
    high = on & ~low & (Y <= s.behind + 1.5 * plane.tree_top)
    if s.kind == "trees":
        low, high = on & (Y <= s.behind + 1.5 * plane.tree_top), np.zeros_like(on)
    leaves = np.array((70, 95, 40), np.float32) * (1 + 0.3 * fine[..., None] + 0.15 * coarse[..., None])
    if s.kind == "wall":
        low_color = jitter(rng, (150, 145, 135), 20) * (1 + 0.08 * coarse[..., None] + 0.04 * fine[..., None])
        low_id = LABEL_ID["wall"]
    elif s.kind == "fence":
        bars = ((Zf % 0.25) < 0.08) | (np.abs(Y - s.height + 0.1) < 0.1)
        low_color = np.where(bars[..., None], jitter(rng, (120, 115, 110), 30), leaves * 0.6)
        low_id = LABEL_ID["fence"]
    else:
        low_color, low_id = leaves, LABEL_ID["vegetation"]
    return [(low, low_id, low_color), (high, LABEL_ID["vegetation"], leaves)]


def paint_street_end(scene: Scene) -> None:
    """The buildings closing the far end of the street."""
    cv, rng, street = scene.canvas, scene.rng, scene.street
    Z = street.street_end
    X = Z * cv.dx
    Y = cv.cam.cam_height + Z * cv.dy
    steps = np.cumsum(rng.uniform(6, 20, size=64)) - 200
    heights = rng.uniform(8, 35, size=64)
    h = heights[np.clip(np.searchsorted(steps, X), 0, 63)]
    mask = (Y >= 0) & (Y <= h)
    color = jitter(rng, (150, 145, 140), 20) * (1 + 0.1 * street.tex_coarse(X, Y, 0.5)[..., None])
    cv.paint(cv.whole, mask, Z, LABEL_ID["building"], color)
