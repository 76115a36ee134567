"""One street scene, painted back to front, then photographed."""
from __future__ import annotations

import numpy as np

from data.street.canvas import Camera, Canvas
from data.street.facades import paint_facades, paint_street_end
from data.street.ground import paint_ground
from data.street.layout import Scene, Street
from data.street.placement import place_objects
from data.street.sky import paint_sky
from data.street.textures import smooth_noise
from data.street.vehicles import paint_ego_vehicle


def render_scene(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """One street scene: (photo HxWx3 uint8, official label ids HxW uint8).

    Every random number comes from ``rng``, drawn in a fixed order (camera, street, then each painter
    in turn): the same generator state gives the same scene.
    """
    canvas = Canvas(Camera.draw(rng, width, height))
    scene = Scene(rng, canvas, Street.draw(rng))
    haze_color = paint_sky(scene)
    paint_street_end(scene)
    paint_facades(scene)
    paint_ground(scene)
    place_objects(scene)
    if rng.random() < 0.5:
        paint_ego_vehicle(scene)
    return photograph(canvas, haze_color, rng), canvas.label.copy()


def photograph(canvas: Canvas, haze_color: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The canvas's colours as a camera records them: haze with distance, exposure, colour cast,
    vignetting and sensor noise; uint8."""
    cam = canvas.cam
    color = canvas.color
    finite = np.isfinite(canvas.depth)
    fog = rng.uniform(120, 400)
    haze = np.where(finite, 1 - np.exp(-np.where(finite, canvas.depth, 0) / fog), 0.0)[..., None] * rng.uniform(0.4, 0.9)
    color = color * (1 - haze) + haze_color * haze
    color = color * rng.uniform(0.8, 1.15) * (1 + rng.uniform(-0.06, 0.06, 3))
    ys, xs = np.mgrid[0:cam.height, 0:cam.width].astype(np.float32)
    r2 = ((xs - cam.width / 2) / cam.width) ** 2 + ((ys - cam.height / 2) / cam.height) ** 2
    color = color * (1 - 0.35 * r2)[..., None]
    color = color * (1 + 0.06 * smooth_noise(rng, cam.height, cam.width, 3))[..., None]
    color = color + rng.normal(0, rng.uniform(2, 5), color.shape)
    return np.clip(color + 0.5, 0, 255).astype(np.uint8)
