"""Cars, buses, trucks, bicycles and motorcycles with their riders, and the bonnet of the recording car."""
from __future__ import annotations

import numpy as np

from data.street.canvas import LABEL_ID
from data.street.layout import Scene
from data.street.people import paint_person
from data.street.textures import flat_shader, jitter, pick

CAR_COLORS = [(235, 235, 235), (20, 20, 24), (150, 152, 158), (90, 92, 98), (150, 20, 25), (25, 45, 110),
              (40, 70, 50), (190, 180, 160), (60, 30, 30), (200, 120, 30)]
TYRE = (25, 25, 28)


def paint_car(scene: Scene, X0, Z0, width=1.8, height=1.5) -> None:
    """A car from X0 to X0 + width with its rear at depth Z0: body with rear lights, glass cabin, wheels."""
    rng, cv, texture = scene.rng, scene.canvas, scene.street.tex_fine
    length = rng.uniform(3.8, 4.8)
    label_id = LABEL_ID["car"]
    body = jitter(rng, pick(rng, CAR_COLORS), 10)
    X1, Z1 = X0 + width, Z0 + length
    glass = np.array((35, 40, 50), np.float32)
    body_shade = flat_shader(texture, body, 0.04)

    def body_face(face, u, v, Z):
        col = body_shade(face, u, v, Z)
        if face == "front":  # rear lights
            lights = ((u - X0 < 0.3) | (X1 - u < 0.3)) & (v > 0.75) & (v < 0.95)
            col = np.where(lights[..., None], np.array((200, 30, 30), np.float32), col)
        return col

    # shadow on the ground under the car
    _ground_shadow(scene, X0 - 0.1, X1 + 0.1, Z0 - 0.2, Z1 + 0.2)
    cv.box(X0, X1, 0.3, height * 0.62, Z0, Z1, label_id, body_face)
    cv.box(X0 + 0.12, X1 - 0.12, height * 0.62, height, Z0 + length * 0.25, Z1 - length * 0.2, label_id,
           flat_shader(texture, glass * 1.2, 0.1, 0.9, 1.6))
    for wx in (X0, X1 - 0.25):  # wheels
        for wz in (Z0 + 0.5, Z1 - 1.0):
            cv.box(wx, wx + 0.25, 0.0, 0.62, wz, wz + 0.62, label_id, flat_shader(texture, TYRE, 0.1))


def paint_bus_or_truck(scene: Scene, X0, Z0) -> None:
    """A bus or a truck, 2.5 m wide from X0, its rear at depth Z0, drawn with even odds."""
    if scene.rng.random() < 0.5:
        _bus(scene, X0, Z0)
    else:
        _truck(scene, X0, Z0)


def _bus(scene: Scene, X0, Z0) -> None:
    """A 12 m box with a band of windows."""
    rng, cv, texture = scene.rng, scene.canvas, scene.street.tex_fine
    color = jitter(rng, pick(rng, [(220, 190, 40), (200, 40, 35), (230, 230, 225), (40, 90, 160)]), 10)
    shade = flat_shader(texture, color, 0.04)

    def face(f, u, v, Z):
        col = shade(f, u, v, Z)
        band = (v > 1.6) & (v < 2.7)
        return np.where(band[..., None], np.array((40, 45, 55), np.float32), col)

    _ground_shadow(scene, X0 - 0.1, X0 + 2.6, Z0 - 0.2, Z0 + 12.2)
    cv.box(X0, X0 + 2.5, 0.3, 3.2, Z0, Z0 + 12, LABEL_ID["bus"], face)
    for wz in (Z0 + 1.5, Z0 + 9.5):
        for wx in (X0, X0 + 2.2):
            cv.box(wx, wx + 0.3, 0.0, 0.9, wz, wz + 0.9, LABEL_ID["bus"], flat_shader(texture, TYRE))


def _truck(scene: Scene, X0, Z0) -> None:
    """A cargo box with the cab in front of it."""
    rng, cv, texture = scene.rng, scene.canvas, scene.street.tex_fine
    cargo = jitter(rng, pick(rng, [(230, 230, 230), (170, 170, 175), (60, 80, 120)]), 10)
    _ground_shadow(scene, X0 - 0.1, X0 + 2.6, Z0 - 0.2, Z0 + 8.2)
    cv.box(X0, X0 + 2.5, 0.8, 3.4, Z0, Z0 + 6.0, LABEL_ID["truck"], flat_shader(texture, cargo, 0.05))
    cv.box(X0 + 0.1, X0 + 2.4, 0.6, 2.6, Z0 + 6.0, Z0 + 8.0, LABEL_ID["truck"],
           flat_shader(texture, jitter(rng, pick(rng, CAR_COLORS)), 0.05))
    for wz in (Z0 + 0.5, Z0 + 6.5):
        for wx in (X0, X0 + 2.2):
            cv.box(wx, wx + 0.3, 0.0, 1.0, wz, wz + 1.0, LABEL_ID["truck"], flat_shader(texture, TYRE))


def paint_two_wheeler(scene: Scene, Xc, Z, motor: bool) -> None:
    """A bicycle or motorcycle seen from the side, with its rider."""
    rng = scene.rng
    r = 0.33 if not motor else 0.32
    gap = 0.55 if not motor else 0.7
    frame_color = jitter(rng, pick(rng, [(30, 30, 30), (160, 30, 30), (30, 60, 140), (200, 200, 200)]), 10)

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

    scene.canvas.billboard(Xc, Z, gap + r, 1.0, shape, LABEL_ID["motorcycle" if motor else "bicycle"], color)
    paint_person(scene, Xc - 0.1, Z - 0.05, label_id=LABEL_ID["rider"], Y_base=0.55, riding=True)


def _ground_shadow(scene: Scene, X0, X1, Z0, Z1) -> None:
    """Darken the ground already drawn under the rectangle X0..X1, Z0..Z1."""
    cv = scene.canvas
    win = cv.window([X0, X1], [0, 0], [Z0, Z1])
    if win is None:
        return
    dy = cv.dy[win]
    with np.errstate(divide="ignore"):
        Z = np.where(dy < 0, cv.cam.cam_height / -dy, np.inf)
    X = Z * cv.dx[win]
    under = (X >= X0) & (X <= X1) & (Z >= Z0) & (Z <= Z1) & (np.abs(cv.depth[win] - Z) < 1e-3 * Z + 1e-3)
    cv.color[win][under] *= 0.45


def paint_ego_vehicle(scene: Scene) -> None:
    """The bonnet of the recording car across the bottom of the frame (label 'ego vehicle', ignored)."""
    cv, rng = scene.canvas, scene.rng
    h, w = cv.cam.height, cv.cam.width
    top = h * rng.uniform(0.86, 0.93)
    xs = (np.arange(w, dtype=np.float32) + 0.5 - w / 2) / (w / 2)
    edge = top + h * 0.06 * xs**2
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
    mask = ys > edge[None, :]
    paint = jitter(rng, pick(rng, CAR_COLORS), 10) * 0.6
    color = paint * (1 + 0.3 * (1 - np.abs(xs))[None, :, None]) * np.ones((h, 1, 1), np.float32)
    cv.paint(cv.whole, mask, 0.01, LABEL_ID["ego vehicle"], color)
