"""Procedural Cityscapes-like street scenes: the built-in default data and the fixture of the tests.

Real Cityscapes needs a login to download, so the project carries its own city. Each frame is a
street seen from a car: sky, a road and sidewalks in perspective, rows of buildings with windows,
trees, grass, walls and fences, poles with traffic signs and lights, parked and moving cars, buses
and trucks, pedestrians, cyclists. Everything is placed in a simple 3-D world and drawn with a
depth buffer, so the label map (official Cityscapes label ids) and the photo agree pixel for pixel.
The photo gets per-object colours, surface textures, sun and shade, cast shadows, haze with distance
and sensor noise, so that labels -> photo is a real learning task and a segmenter can learn photos.

A frame depends only on (seed, split, index): generating 4 frames gives the first 4 of 200.

``generate`` writes both layouts: the official one (``cityscapes/``, 2S x S) and, converted from it
exactly as ``data.prepare`` converts real Cityscapes, the pix2pix one (``pix2pix/``, S x S halves).
``default_dataset`` is the data used when no dataset is given: generated once into a cache folder.

Command line: ``python -m data.synthetic --out DIR --train N --val M --seed S --size 256``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from cityscapesscripts.helpers.labels import name2label
from PIL import Image

from common.command_line import run_main
from data import DataError
from data.cityscapes import label_ids_to_color
from data.prepare import make_work_dir, prepare

# Bump when the scenes change, so cached default datasets are regenerated.
GENERATOR_VERSION = 2

# Defaults of the built-in dataset, sized for a CPU demo (generation takes a few seconds).
DEFAULT_SIZE = 64
DEFAULT_TRAIN = 200
DEFAULT_VAL = 50
CACHE_ENV = "TRALGO_DATA_CACHE"

CITIES = {"train": ("alderbrook", "birchfield"), "val": ("cedarport",)}
_SPLIT_CODE = {"train": 1, "val": 2}

_ID = {name: name2label[name].id for name in (
    "ego vehicle", "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus",
    "motorcycle", "bicycle")}


# ----------------------------------------------------------------------------------------------
# Texture helpers


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a coarse random grid upsampled with bicubic interpolation."""
    grid_h = max(2, cells)
    grid_w = max(2, int(round(cells * width / max(height, 1))))
    grid = rng.uniform(-1.0, 1.0, size=(grid_h, grid_w)).astype(np.float32)
    return cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)


class _Texture:
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


def _jitter(rng: np.random.Generator, color, amount: float = 12.0) -> np.ndarray:
    return np.clip(np.asarray(color, np.float32) + rng.uniform(-amount, amount, 3), 0, 255).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Camera and depth-buffered canvas


@dataclass
class _Camera:
    """Pinhole camera at height ``cam_height`` looking along +Z; image y grows downwards.

    A ray through pixel (x, y) meets depth Z at X = Z*dx, Y = cam_height + Z*dy.
    """

    width: int
    height: int
    focal: float
    center_x: float  # the vanishing point of the street
    horizon: float
    cam_height: float

    def to_screen(self, X, Y, Z):
        return self.center_x + self.focal * X / Z, self.horizon - self.focal * (Y - self.cam_height) / Z


class _Canvas:
    """Label ids, colours and depths of the frame being drawn; nearer surfaces win."""

    def __init__(self, camera: _Camera):
        self.cam = camera
        h, w = camera.height, camera.width
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
        self.dx = (xs - camera.center_x) / camera.focal
        self.dy = (camera.horizon - ys) / camera.focal
        self.label = np.full((h, w), _ID["sky"], dtype=np.uint8)
        self.color = np.zeros((h, w, 3), dtype=np.float32)
        self.depth = np.full((h, w), np.inf, dtype=np.float32)

    def window(self, X, Y, Z):
        """Image-space bounding box (slices) of 3-D points, or None when off-screen or too near."""
        X, Y, Z = (np.asarray(a, np.float32) for a in (X, Y, Z))
        if np.any(Z < 0.3):
            return None
        sx, sy = self.cam.to_screen(X, Y, Z)
        x0, x1 = int(max(np.floor(sx.min()), 0)), int(min(np.ceil(sx.max()) + 1, self.cam.width))
        y0, y1 = int(max(np.floor(sy.min()), 0)), int(min(np.ceil(sy.max()) + 1, self.cam.height))
        if x0 >= x1 or y0 >= y1:
            return None
        return slice(y0, y1), slice(x0, x1)

    def paint(self, win, mask, depth, label_id, color):
        """Draw ``color`` and ``label_id`` (each one value or window-shaped) where ``mask`` is nearer than
        what is there."""
        depth = np.broadcast_to(np.asarray(depth, np.float32), mask.shape)
        current = self.depth[win]
        hit = mask & (depth < current)
        if not hit.any():
            return
        current[hit] = depth[hit]
        label_id = np.asarray(label_id)
        self.label[win][hit] = label_id[hit] if label_id.ndim == 2 else label_id
        color = np.asarray(color, np.float32)
        self.color[win][hit] = color[hit] if color.ndim == 3 else color

    def box(self, X0, X1, Y0, Y1, Z0, Z1, label_id, shade_face):
        """An axis-aligned box; ``shade_face(face, u, v, Z) -> window colours`` for face 'front', 'side', 'top'.

        (u, v) are the face's own coordinates in metres: (X, Y) on the front, (Z, Y) on the side,
        (X, Z) on top. Only the faces that can face the camera are drawn.
        """
        c = self.cam.cam_height
        corners = np.array([(x, y, z) for x in (X0, X1) for y in (Y0, Y1) for z in (Z0, Z1)], np.float32)
        win = self.window(*corners.T)
        if win is None:
            return
        dx, dy = self.dx[win], self.dy[win]
        with np.errstate(divide="ignore", invalid="ignore"):
            X, Y = Z0 * dx, c + Z0 * dy  # front face Z = Z0
            mask = (X >= X0) & (X <= X1) & (Y >= Y0) & (Y <= Y1)
            if mask.any():
                self.paint(win, mask, Z0, label_id, shade_face("front", X, Y, np.full_like(X, Z0)))
            side_x = X1 if X1 < 0 else (X0 if X0 > 0 else None)
            if side_x is not None:  # the side facing the street centre
                Z = side_x / dx
                Y = c + Z * dy
                mask = (Z >= Z0) & (Z <= Z1) & (Y >= Y0) & (Y <= Y1)
                if mask.any():
                    self.paint(win, mask, Z, label_id, shade_face("side", Z, Y, Z))
            if Y1 < c:  # top face, seen from above
                Z = (Y1 - c) / dy
                X = Z * dx
                mask = (dy < 0) & (Z >= Z0) & (Z <= Z1) & (X >= X0) & (X <= X1)
                if mask.any():
                    self.paint(win, mask, Z, label_id, shade_face("top", X, Z, Z))

    def billboard(self, Xc, Z, half_width, height, shape, label_id, color_fn, Y_base=0.0):
        """A flat shape standing at depth Z facing the camera; ``shape(x, y)`` and ``color_fn(x, y)``
        take metres relative to (Xc, Y_base)."""
        win = self.window([Xc - half_width, Xc + half_width], [Y_base, Y_base + height], [Z, Z])
        if win is None:
            return
        x = Z * self.dx[win] - Xc
        y = self.cam.cam_height + Z * self.dy[win] - Y_base
        mask = shape(x, y)
        if mask.any():
            self.paint(win, mask, Z, label_id, color_fn(x, y))


# ----------------------------------------------------------------------------------------------
# The scene


_CAR_COLORS = [(235, 235, 235), (20, 20, 24), (150, 152, 158), (90, 92, 98), (150, 20, 25), (25, 45, 110),
               (40, 70, 50), (190, 180, 160), (60, 30, 30), (200, 120, 30)]
_FACADE_COLORS = [(200, 190, 170), (170, 160, 150), (140, 80, 60), (220, 215, 200), (120, 115, 110),
                  (185, 150, 110), (160, 170, 175), (100, 90, 85)]
_CLOTH_COLORS = [(30, 30, 35), (60, 60, 70), (25, 35, 80), (120, 30, 30), (200, 200, 195), (90, 70, 50),
                 (40, 80, 60), (150, 120, 90), (170, 60, 90)]
_SKIN_COLORS = [(230, 190, 160), (200, 150, 120), (140, 95, 70), (90, 60, 45)]


class _Street:
    """One random street scene; ``render()`` returns (photo float HxWx3, label ids HxW uint8)."""

    def __init__(self, rng: np.random.Generator, width: int, height: int):
        self.rng = rng
        self.cam = _Camera(width, height, focal=width * rng.uniform(0.55, 0.7),
                           center_x=width * rng.uniform(0.42, 0.58), horizon=height * rng.uniform(0.38, 0.48),
                           cam_height=rng.uniform(1.3, 1.7))
        self.canvas = _Canvas(self.cam)
        self.tex_fine = _Texture(rng, blur=0.8)
        self.tex_coarse = _Texture(rng, blur=3.0)
        # street cross-section (metres from the camera's line): road, sidewalk, grass strip, facades
        self.road_left, self.road_right = rng.uniform(3.5, 7.0), rng.uniform(3.5, 7.0)
        self.walk_left, self.walk_right = rng.uniform(1.8, 4.5), rng.uniform(1.8, 4.5)
        self.grass_left = rng.choice([0.0, rng.uniform(1.0, 4.0)], p=[0.5, 0.5])
        self.grass_right = rng.choice([0.0, rng.uniform(1.0, 4.0)], p=[0.5, 0.5])
        self.facade_left = self.road_left + self.walk_left + self.grass_left
        self.facade_right = self.road_right + self.walk_right + self.grass_right
        self.street_end = rng.uniform(120, 300)
        self.sun_left = rng.random() < 0.5  # which side the sun comes from
        self.sunny = rng.uniform(0.9, 1.15)
        self.shady = rng.uniform(0.5, 0.7)
        self.shadow_width = rng.uniform(0.0, 8.0)  # band of the street in the shade of one row of houses

    # --- static background ---------------------------------------------------------------------

    def sky(self):
        cv, cam, rng = self.canvas, self.cam, self.rng
        overcast = rng.random() < 0.35
        top = np.array((150, 160, 170) if overcast else (60, 110, 190), np.float32) + rng.uniform(-15, 15, 3)
        low = np.array((200, 205, 210) if overcast else (170, 200, 230), np.float32) + rng.uniform(-15, 15, 3)
        t = np.clip(np.linspace(0, 1, cam.height, dtype=np.float32) / max(cam.horizon / cam.height, 0.1), 0, 1)
        grad = top[None, :] * (1 - t[:, None]) + low[None, :] * t[:, None]
        clouds = np.clip(_smooth_noise(rng, cam.height, cam.width, 4) * 1.4 + rng.uniform(-0.6, 0.3), 0, 1)
        color = grad[:, None, :] * (1 - 0.6 * clouds[..., None]) + 235 * 0.6 * clouds[..., None]
        self.haze_color = low
        cv.color[:] = color
        cv.label[:] = _ID["sky"]

    def ground(self):
        cv, cam, rng = self.canvas, self.cam, self.rng
        win = (slice(0, cam.height), slice(0, cam.width))
        below = cv.dy < -1e-4
        with np.errstate(divide="ignore"):
            Z = np.where(below, cam.cam_height / -cv.dy, np.inf).astype(np.float32)
        X = Z * cv.dx
        X = np.where(below, X, 0.0)
        Zs = np.where(below, Z, 0.0)
        coarse = self.tex_coarse(X, Zs, 0.7)
        fine = self.tex_fine(X, Zs, 6.0)

        label = np.full(Z.shape, _ID["road"], np.uint8)
        road = np.array((82, 80, 88), np.float32) + rng.uniform(-12, 12)
        color = road[None, None, :] * (1 + 0.06 * coarse[..., None] + 0.05 * fine[..., None])
        # lane markings: dashed centre line and solid edge lines
        centre = rng.uniform(-1.0, 1.0) + (self.road_right - self.road_left) / 2
        dashes = (np.abs(X - centre) < 0.08) & ((Zs % 9.0) < 3.5)
        edges = (np.abs(X + self.road_left - 0.3) < 0.07) | (np.abs(X - self.road_right + 0.3) < 0.07)
        paint = dashes | (edges & (rng.random() < 0.6))
        if rng.random() < 0.3:  # a zebra crossing
            z0 = rng.uniform(6, 25)
            paint |= (Zs > z0) & (Zs < z0 + 3.0) & ((X % 1.0) < 0.5) & (X > -self.road_left) & (X < self.road_right)
        color[paint] = np.array((205, 205, 200), np.float32) * (1 + 0.05 * fine[paint, None])

        for side in (-1, 1):
            road_edge = self.road_left if side < 0 else self.road_right
            walk = self.walk_left if side < 0 else self.walk_right
            d = side * X  # distance from the camera line towards this side
            is_walk = (d >= road_edge) & (d < road_edge + walk)
            is_grass = d >= road_edge + walk  # up to the facades, which hide the ground beyond
            base = _jitter(rng, (150, 140, 135), 15)
            tiles = ((X % 0.7) < 0.05) | ((Zs % 0.7) < 0.05)
            walk_color = base[None, None, :] * (1 + 0.05 * coarse[..., None] + 0.04 * fine[..., None])
            walk_color = np.where(tiles[..., None], walk_color * 0.85, walk_color)
            curb = is_walk & (d < road_edge + 0.2)
            walk_color = np.where(curb[..., None], walk_color * 1.15, walk_color)
            grass_color = _jitter(rng, (95, 120, 55), 12)[None, None, :] * (
                1 + 0.15 * coarse[..., None] + 0.15 * fine[..., None])
            label[is_walk] = _ID["sidewalk"]
            label[is_grass] = _ID["terrain"]
            color[is_walk] = walk_color[is_walk]
            color[is_grass] = grass_color[is_grass]
        # the shade of one row of houses falls on the street next to it
        shade_side = -1 if self.sun_left else 1
        shade_edge = self.facade_left if shade_side < 0 else self.facade_right
        shaded = shade_side * X > shade_edge - self.shadow_width
        color = np.where(shaded[..., None], color * self.shady, color * self.sunny)
        cv.paint(win, below, Z, label, color)

    def _segments(self):
        """Rows of buildings, parks, walls and fences along one side of the street."""
        rng = self.rng
        segments, z = [], rng.uniform(-10, 0)
        while z < self.street_end:
            length = rng.uniform(8, 30)
            kind = rng.choice(["building", "trees", "wall", "fence"], p=[0.7, 0.12, 0.1, 0.08])
            segments.append(dict(start=z, end=z + length, kind=kind,
                                 height=rng.uniform(8, 28) if kind == "building" else rng.uniform(1.0, 2.2),
                                 behind=rng.uniform(4, 12) if kind != "building" else 0.0,
                                 color=_jitter(rng, _FACADE_COLORS[rng.integers(len(_FACADE_COLORS))], 15),
                                 win_dz=rng.uniform(2.5, 4.0), win_dy=rng.uniform(2.8, 3.6),
                                 win_w=rng.uniform(0.35, 0.6), win_h=rng.uniform(0.4, 0.6),
                                 glass=_jitter(rng, (55, 65, 80), 20), shop=rng.random() < 0.5))
            z += length
        return segments

    def facades(self):
        cv, cam, rng = self.canvas, self.cam, self.rng
        c = cam.cam_height
        for side in (-1, 1):
            offset = self.facade_left if side < 0 else self.facade_right
            facing = side * cv.dx > 1e-4
            with np.errstate(divide="ignore"):
                Z = np.where(facing, offset / np.abs(cv.dx), np.inf).astype(np.float32)
            Y = c + np.where(facing, Z, 0) * cv.dy
            segments = self._segments()
            starts = np.array([s["start"] for s in segments], np.float32)
            index = np.clip(np.searchsorted(starts, np.where(facing, Z, 0), side="right") - 1, 0, len(segments) - 1)
            Zf = np.where(facing, Z, 0.0)
            fine = self.tex_fine(Zf, Y, 5.0)
            coarse = self.tex_coarse(Zf, Y, 0.8)
            tree_top = self.tex_coarse(Zf, np.zeros_like(Zf), 1.5)
            sun = self.sunny if (side < 0) != self.sun_left else self.shady
            label = np.zeros(Z.shape, np.uint8)
            color = np.zeros(Z.shape + (3,), np.float32)
            visible = np.zeros(Z.shape, bool)
            for k, s in enumerate(segments):
                on = facing & (index == k) & (Y >= 0) & (Z < self.street_end)
                if not on.any():
                    continue
                if s["kind"] == "building":
                    part = on & (Y <= s["height"])
                    fz = (Zf - s["start"]) / s["win_dz"] % 1.0
                    fy = Y / s["win_dy"] % 1.0
                    window = (fz < s["win_w"]) & (fy > 0.3) & (fy < 0.3 + s["win_h"]) & (Y > 3.5)
                    window &= Y < s["height"] - 1.0
                    shop = s["shop"] & (Y > 0.4) & (Y < 3.0) & ((Zf - s["start"]) % 6.0 < 4.5)
                    glass = s["glass"] * (1 + 0.25 * coarse[..., None]) + 40 * (fy[..., None] > 0.3 + s["win_h"] * 0.6)
                    wall = s["color"] * (1 + 0.05 * coarse[..., None] + 0.05 * fine[..., None])
                    wall = wall * (0.8 + 0.2 * np.clip(Y / 10, 0, 1))[..., None]
                    cornice = (Y > s["height"] - 0.5)[..., None]
                    wall = np.where(cornice, wall * 1.15, wall)
                    col = np.where((window | shop)[..., None], glass, wall)
                    label[part] = _ID["building"]
                    color[part] = col[part]
                    visible |= part
                else:
                    low = on & (Y <= s["height"])
                    high = on & ~low & (Y <= s["behind"] + 1.5 * tree_top)
                    if s["kind"] == "trees":
                        low, high = on & (Y <= s["behind"] + 1.5 * tree_top), np.zeros_like(on)
                    leaves = np.array((70, 95, 40), np.float32) * (1 + 0.3 * fine[..., None] + 0.15 * coarse[..., None])
                    if s["kind"] == "wall":
                        low_color = _jitter(rng, (150, 145, 135), 20) * (1 + 0.08 * coarse[..., None] + 0.04 * fine[..., None])
                        low_id = _ID["wall"]
                    elif s["kind"] == "fence":
                        bars = ((Zf % 0.25) < 0.08) | (np.abs(Y - s["height"] + 0.1) < 0.1)
                        low_color = np.where(bars[..., None], _jitter(rng, (120, 115, 110), 30), leaves * 0.6)
                        low_id = _ID["fence"]
                    else:
                        low_color, low_id = leaves, _ID["vegetation"]
                    label[low], color[low] = low_id, low_color[low]
                    label[high], color[high] = _ID["vegetation"], leaves[high]
                    visible |= low | high
            win = (slice(0, cam.height), slice(0, cam.width))
            cv.paint(win, visible, Z, label, color * sun)

    def street_end_wall(self):
        """The buildings closing the far end of the street."""
        cv, cam, rng = self.canvas, self.cam, self.rng
        Z = self.street_end
        X = Z * cv.dx
        Y = cam.cam_height + Z * cv.dy
        steps = np.cumsum(rng.uniform(6, 20, size=64)) - 200
        heights = rng.uniform(8, 35, size=64)
        h = heights[np.clip(np.searchsorted(steps, X), 0, 63)]
        mask = (Y >= 0) & (Y <= h)
        color = _jitter(rng, (150, 145, 140), 20) * (1 + 0.1 * self.tex_coarse(X, Y, 0.5)[..., None])
        cv.paint((slice(0, cam.height), slice(0, cam.width)), mask, Z, _ID["building"], color)

    # --- objects -------------------------------------------------------------------------------

    def _flat(self, color, texture=0.06, sides=0.8, top=1.1):
        """A face shader: one colour, a little texture, the side and top faces lit differently."""
        base = np.asarray(color, np.float32)

        def shade(face, u, v, Z):
            factor = {"front": 1.0, "side": sides, "top": top}[face]
            return base * factor * (1 + texture * self.tex_fine(u, v, 8.0))[..., None]

        return shade

    def car(self, X0, Z0, length=None, color=None, label_id=None, width=1.8, height=1.5):
        rng, cv = self.rng, self.canvas
        length = length or rng.uniform(3.8, 4.8)
        label_id = label_id or _ID["car"]
        body = _jitter(rng, color if color is not None else _CAR_COLORS[rng.integers(len(_CAR_COLORS))], 10)
        X1, Z1 = X0 + width, Z0 + length
        glass = np.array((35, 40, 50), np.float32)
        body_shade = self._flat(body, 0.04)

        def body_face(face, u, v, Z):
            col = body_shade(face, u, v, Z)
            if face == "front":  # rear lights
                lights = ((u - X0 < 0.3) | (X1 - u < 0.3)) & (v > 0.75) & (v < 0.95)
                col = np.where(lights[..., None], np.array((200, 30, 30), np.float32), col)
            return col

        # shadow on the ground under the car
        self._ground_shadow(X0 - 0.1, X1 + 0.1, Z0 - 0.2, Z1 + 0.2)
        cv.box(X0, X1, 0.3, height * 0.62, Z0, Z1, label_id, body_face)
        cv.box(X0 + 0.12, X1 - 0.12, height * 0.62, height, Z0 + length * 0.25, Z1 - length * 0.2, label_id,
               self._flat(glass * 1.2, 0.1, 0.9, 1.6))
        for wx in (X0, X1 - 0.25):  # wheels
            for wz in (Z0 + 0.5, Z1 - 1.0):
                cv.box(wx, wx + 0.25, 0.0, 0.62, wz, wz + 0.62, label_id, self._flat((25, 25, 28), 0.1))

    def bus_or_truck(self, X0, Z0):
        rng, cv = self.rng, self.canvas
        if rng.random() < 0.5:  # bus: long box with a band of windows
            color = _jitter(rng, [(220, 190, 40), (200, 40, 35), (230, 230, 225), (40, 90, 160)][rng.integers(4)], 10)
            shade = self._flat(color, 0.04)

            def face(f, u, v, Z):
                col = shade(f, u, v, Z)
                band = (v > 1.6) & (v < 2.7)
                return np.where(band[..., None], np.array((40, 45, 55), np.float32), col)

            self._ground_shadow(X0 - 0.1, X0 + 2.6, Z0 - 0.2, Z0 + 12.2)
            cv.box(X0, X0 + 2.5, 0.3, 3.2, Z0, Z0 + 12, _ID["bus"], face)
            for wz in (Z0 + 1.5, Z0 + 9.5):
                for wx in (X0, X0 + 2.2):
                    cv.box(wx, wx + 0.3, 0.0, 0.9, wz, wz + 0.9, _ID["bus"], self._flat((25, 25, 28)))
        else:  # truck: a cab and a cargo box
            cargo = _jitter(rng, [(230, 230, 230), (170, 170, 175), (60, 80, 120)][rng.integers(3)], 10)
            self._ground_shadow(X0 - 0.1, X0 + 2.6, Z0 - 0.2, Z0 + 8.2)
            cv.box(X0, X0 + 2.5, 0.8, 3.4, Z0, Z0 + 6.0, _ID["truck"], self._flat(cargo, 0.05))
            cv.box(X0 + 0.1, X0 + 2.4, 0.6, 2.6, Z0 + 6.0, Z0 + 8.0, _ID["truck"],
                   self._flat(_jitter(rng, _CAR_COLORS[rng.integers(len(_CAR_COLORS))]), 0.05))
            for wz in (Z0 + 0.5, Z0 + 6.5):
                for wx in (X0, X0 + 2.2):
                    cv.box(wx, wx + 0.3, 0.0, 1.0, wz, wz + 1.0, _ID["truck"], self._flat((25, 25, 28)))

    def _ground_shadow(self, X0, X1, Z0, Z1):
        cv, cam = self.canvas, self.cam
        win = cv.window([X0, X1], [0, 0], [Z0, Z1])
        if win is None:
            return
        dy = cv.dy[win]
        with np.errstate(divide="ignore"):
            Z = np.where(dy < 0, cam.cam_height / -dy, np.inf)
        X = Z * cv.dx[win]
        under = (X >= X0) & (X <= X1) & (Z >= Z0) & (Z <= Z1) & (np.abs(cv.depth[win] - Z) < 1e-3 * Z + 1e-3)
        cv.color[win][under] *= 0.45

    def person(self, Xc, Z, label_id=None, Y_base=0.0, riding=False):
        rng, cv = self.rng, self.canvas
        label_id = label_id or _ID["person"]
        h = rng.uniform(1.55, 1.9)
        w = 0.3 * h
        shirt = _jitter(rng, _CLOTH_COLORS[rng.integers(len(_CLOTH_COLORS))], 15)
        pants = _jitter(rng, _CLOTH_COLORS[rng.integers(len(_CLOTH_COLORS))], 15)
        skin = _jitter(rng, _SKIN_COLORS[rng.integers(len(_SKIN_COLORS))], 10)
        hair = _jitter(rng, (40, 30, 25), 15)
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

        cv.billboard(Xc, Z, w, h + 0.05, shape, label_id, color, Y_base=Y_base)

    def two_wheeler(self, Xc, Z, motor: bool):
        """A bicycle or motorcycle seen from the side, with its rider."""
        rng, cv = self.rng, self.canvas
        r = 0.33 if not motor else 0.32
        gap = 0.55 if not motor else 0.7
        frame_color = _jitter(rng, [(30, 30, 30), (160, 30, 30), (30, 60, 140), (200, 200, 200)][rng.integers(4)], 10)

        def shape(x, y):
            ring = np.zeros_like(x, dtype=bool)
            for cx in (-gap, gap):
                d = np.sqrt((x - cx) ** 2 + (y - r) ** 2)
                ring |= (d < r) & ((d > r - 0.09) | motor)
            frame = (np.abs(y - 0.6) < 0.06) & (np.abs(x) < gap) | ((np.abs(x) < 0.06 + 0.3 * motor) & (y > r) & (y < 0.9))
            body = motor & (np.abs(x) < 0.5) & (y > 0.4) & (y < 0.85)
            return ring | frame | body

        def color(x, y):
            tyre = np.array((25, 25, 25), np.float32)
            return np.where((y < 0.2)[..., None] | (np.abs(y - r) > 0.2)[..., None], frame_color, tyre)

        cv.billboard(Xc, Z, gap + r, 1.0, shape, _ID["motorcycle" if motor else "bicycle"], color)
        self.person(Xc - 0.1, Z - 0.05, label_id=_ID["rider"], Y_base=0.55, riding=True)

    def pole(self, Xc, Z, kind):
        """A pole, optionally carrying a traffic sign or a traffic light facing the camera."""
        rng, cv = self.rng, self.canvas
        height = rng.uniform(3.0, 4.0) if kind == "sign" else rng.uniform(4.5, 8.0)
        t = rng.uniform(0.12, 0.2)
        cv.box(Xc - t / 2, Xc + t / 2, 0, height, Z, Z + t, _ID["pole"], self._flat(_jitter(rng, (120, 120, 118), 20), 0.05))
        if kind == "sign":
            size = rng.uniform(0.6, 0.9)
            sign = _jitter(rng, [(30, 70, 170), (210, 40, 35), (235, 235, 230), (240, 200, 30)][rng.integers(4)], 10)
            border = np.array((235, 235, 235), np.float32)
            round_sign = rng.random() < 0.5

            def shape(x, y):
                if round_sign:
                    return (x**2 + (y - size / 2) ** 2) < (size / 2) ** 2
                return (np.abs(x) < size / 2) & (y >= 0) & (y < size)

            def color(x, y):
                inner = (np.abs(x) < size * 0.3) & (np.abs(y - size / 2) < size * 0.3)
                return np.where(inner[..., None], sign, border * 0.9)

            cv.billboard(Xc, Z - 0.05, size / 2, size, shape, _ID["traffic sign"], color, Y_base=height - size)
        elif kind == "light":
            hw, hh = 0.18, 0.5
            lamp_index = rng.integers(3)  # red on top, amber in the middle, green below
            lamp = np.array([(220, 40, 30), (230, 170, 30), (40, 210, 90)][lamp_index], np.float32)
            lamp_y = (0.83, 0.5, 0.17)[lamp_index] * 2 * hh

            def color(x, y):
                lit = (x**2 + (y - lamp_y) ** 2) < (0.7 * hw) ** 2
                return np.where(lit[..., None], lamp, np.array((30, 30, 32), np.float32))

            def shape(x, y):
                return (np.abs(x) < hw) & (y >= 0) & (y < 2 * hh)

            cv.billboard(Xc, Z - 0.1, hw, 2 * hh, shape, _ID["traffic light"], color, Y_base=height - 2 * hh - 0.2)

    def tree(self, Xc, Z):
        rng, cv = self.rng, self.canvas
        trunk_h = rng.uniform(2.0, 3.5)
        cv.box(Xc - 0.15, Xc + 0.15, 0, trunk_h + 1, Z, Z + 0.3, _ID["vegetation"], self._flat(_jitter(rng, (80, 60, 45), 10), 0.15))
        rx, ry = rng.uniform(1.4, 2.8), rng.uniform(1.8, 3.2)
        leaves = _jitter(rng, (75, 100, 40), 15)
        bumps = rng.uniform(0, 2 * np.pi, 3)

        def shape(x, y):
            angle = np.arctan2(y - ry, x)
            wobble = 1 + 0.08 * sum(np.sin((k + 3) * angle + b) for k, b in enumerate(bumps))
            return (x / rx) ** 2 + ((y - ry) / ry) ** 2 < wobble**2

        def color(x, y):
            light = 1 + 0.25 * np.clip((y - ry) / ry, -1, 1) + 0.3 * self.tex_fine(x, y, 10.0)
            return leaves * light[..., None]

        cv.billboard(Xc, Z - 0.2, rx * 1.3, 2 * ry * 1.3, shape, _ID["vegetation"], color, Y_base=trunk_h)

    def ego_vehicle(self):
        """The bonnet of the recording car across the bottom of the frame (label 'ego vehicle', ignored)."""
        cv, cam, rng = self.canvas, self.cam, self.rng
        h, w = cam.height, cam.width
        top = h * rng.uniform(0.86, 0.93)
        xs = (np.arange(w, dtype=np.float32) + 0.5 - w / 2) / (w / 2)
        edge = top + h * 0.06 * xs**2
        ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
        mask = ys > edge[None, :]
        paint = _jitter(rng, _CAR_COLORS[rng.integers(len(_CAR_COLORS))], 10) * 0.6
        color = paint * (1 + 0.3 * (1 - np.abs(xs))[None, :, None]) * np.ones((h, 1, 1), np.float32)
        cv.paint((slice(0, h), slice(0, w)), mask, 0.01, _ID["ego vehicle"], color)

    # --- composition ---------------------------------------------------------------------------

    def objects(self):
        rng = self.rng
        free_lane = {}  # per side: width of the moving lane between the centre line and the parked cars
        for side in (-1, 1):
            road_edge = self.road_left if side < 0 else self.road_right
            walk = self.walk_left if side < 0 else self.walk_right
            # parked cars along the kerb
            parked = rng.random() < 0.6
            if parked:
                z = rng.uniform(4, 20)
                while z < 80:
                    x_in = road_edge - 0.3
                    X0 = -x_in if side < 0 else x_in - 1.8
                    self.car(X0, z)
                    z += rng.uniform(4.3, 5.0) + rng.exponential(6.0)
            free_lane[side] = road_edge - (2.3 if parked else 0.0)
            # poles with signs and lights near the kerb, trees further in
            z = rng.uniform(3, 15)
            while z < 90:
                kind = rng.choice(["plain", "sign", "light"], p=[0.4, 0.35, 0.25])
                self.pole(side * (road_edge + 0.5), z, kind)
                z += rng.uniform(10, 30)
            if rng.random() < 0.6:
                z = rng.uniform(3, 12)
                while z < 100:
                    self.tree(side * (road_edge + walk - 0.6), z)
                    z += rng.uniform(7, 14)
            # pedestrians on the sidewalk
            for _ in range(rng.integers(0, 7)):
                self.person(side * (road_edge + rng.uniform(0.4, walk - 0.3)), rng.uniform(3, 45))

        # traffic: one lane each way, one vehicle after the other
        nearest_vehicle = 40.0
        for side in (-1, 1):
            if free_lane[side] < 2.2:
                continue
            centre = side * free_lane[side] / 2
            z = rng.uniform(5, 25)
            while z < 80 and rng.random() < 0.65:
                nearest_vehicle = min(nearest_vehicle, z)
                kind = rng.choice(["car", "large", "two-wheeler"], p=[0.75, 0.12, 0.13])
                if kind == "large" and free_lane[side] >= 2.7:
                    self.bus_or_truck(centre - 1.25, z)
                    length = 12.0
                elif kind == "two-wheeler":
                    self.two_wheeler(centre, z, motor=rng.random() < 0.3)
                    length = 2.0
                else:
                    self.car(centre - 0.9, z)
                    length = 4.8
                z += length + rng.uniform(4, 25)
        if rng.random() < 0.2 and nearest_vehicle > 5:  # someone crossing the road in front of the traffic
            self.person(rng.uniform(-free_lane[-1], free_lane[1]), rng.uniform(3, nearest_vehicle - 1.5))

    def finish(self) -> np.ndarray:
        """Haze with distance, exposure, colour cast, vignetting and sensor noise."""
        cv, cam, rng = self.canvas, self.cam, self.rng
        color = cv.color
        finite = np.isfinite(cv.depth)
        fog = rng.uniform(120, 400)
        haze = np.where(finite, 1 - np.exp(-np.where(finite, cv.depth, 0) / fog), 0.0)[..., None] * rng.uniform(0.4, 0.9)
        color = color * (1 - haze) + self.haze_color * haze
        color = color * rng.uniform(0.8, 1.15) * (1 + rng.uniform(-0.06, 0.06, 3))
        ys, xs = np.mgrid[0:cam.height, 0:cam.width].astype(np.float32)
        r2 = ((xs - cam.width / 2) / cam.width) ** 2 + ((ys - cam.height / 2) / cam.height) ** 2
        color = color * (1 - 0.35 * r2)[..., None]
        color = color * (1 + 0.06 * _smooth_noise(rng, cam.height, cam.width, 3))[..., None]
        color = color + rng.normal(0, rng.uniform(2, 5), color.shape)
        return np.clip(color + 0.5, 0, 255).astype(np.uint8)

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        self.sky()
        self.street_end_wall()
        self.facades()
        self.ground()
        self.objects()
        if self.rng.random() < 0.5:
            self.ego_vehicle()
        return self.finish(), self.canvas.label.copy()


def render_scene(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """One street scene: (photo HxWx3 uint8, official label ids HxW uint8)."""
    return _Street(rng, width, height).render()


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
    from tqdm import tqdm

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

    if n_train < 1 or n_val < 1 or size < 8:
        raise DataError(f"{out_dir}: need at least one train and one val frame and size >= 8 "
                        f"(got train={n_train}, val={n_val}, size={size})")
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
                extra_index={"synthetic": recipe})
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data.synthetic", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Generate procedural Cityscapes-like street scenes in both the official Cityscapes layout "
                    "(OUT/cityscapes) and the pix2pix layout (OUT/pix2pix).")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--train", type=int, default=DEFAULT_TRAIN, help="number of training frames")
    parser.add_argument("--val", type=int, default=DEFAULT_VAL, help="number of validation frames")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same scenes)")
    parser.add_argument("--size", type=int, default=256,
                        help="side of the square pix2pix halves; official-layout images are 2*size x size")
    parser.add_argument("--overwrite", action="store_true", help="replace different data already in --out")
    args = parser.parse_args(argv)
    def work() -> str:
        root = generate(args.out, args.train, args.val, seed=args.seed, size=args.size, overwrite=args.overwrite,
                        show_progress=True)
        return (f"wrote {args.train} train / {args.val} val synthetic frames to {root} (pix2pix layout) and "
                f"{Path(args.out) / 'cityscapes'} (official layout)")
    return run_main(work)


if __name__ == "__main__":
    sys.exit(main())
