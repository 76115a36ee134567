"""The camera and the depth-buffered canvas every painter draws on, and the label ids it writes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cityscapesscripts.helpers.labels import name2label

# Official Cityscapes label ids of everything the street holds.
LABEL_ID = {name: name2label[name].id for name in (
    "ego vehicle", "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
    "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus",
    "motorcycle", "bicycle")}


@dataclass
class Camera:
    """Pinhole camera at height ``cam_height`` looking along +Z; image y grows downwards.

    A ray through pixel (x, y) meets depth Z at X = Z*dx, Y = cam_height + Z*dy.
    """

    width: int
    height: int
    focal: float
    center_x: float  # the vanishing point of the street
    horizon: float
    cam_height: float

    @classmethod
    def draw(cls, rng: np.random.Generator, width: int, height: int) -> Camera:
        """A random camera: focal length, vanishing point, horizon and height vary from frame to frame."""
        return cls(width, height, focal=width * rng.uniform(0.55, 0.7), center_x=width * rng.uniform(0.42, 0.58),
                   horizon=height * rng.uniform(0.38, 0.48), cam_height=rng.uniform(1.3, 1.7))

    def to_screen(self, X, Y, Z):
        return self.center_x + self.focal * X / Z, self.horizon - self.focal * (Y - self.cam_height) / Z


class Canvas:
    """Label ids, colours and depths of the frame being drawn; nearer surfaces win."""

    def __init__(self, camera: Camera):
        self.cam = camera
        h, w = camera.height, camera.width
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
        self.dx = (xs - camera.center_x) / camera.focal
        self.dy = (camera.horizon - ys) / camera.focal
        self.label = np.full((h, w), LABEL_ID["sky"], dtype=np.uint8)
        self.color = np.zeros((h, w, 3), dtype=np.float32)
        self.depth = np.full((h, w), np.inf, dtype=np.float32)

    @property
    def whole(self) -> tuple[slice, slice]:
        """The window covering the whole frame."""
        return slice(0, self.cam.height), slice(0, self.cam.width)

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

