"""The random layout of one street and the bundle every painter draws with."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.street.canvas import Canvas
from data.street.textures import Texture


@dataclass
class Street:
    """The street's cross-section (metres from the camera's line), its length, the light and the textures.

    Sides are -1 (left) and +1 (right). From the camera's line outwards: the road, the sidewalk, a
    strip of grass (often none), then the facades. One row of houses casts its shade onto the street.
    """

    tex_fine: Texture
    tex_coarse: Texture
    road_left: float
    road_right: float
    walk_left: float
    walk_right: float
    grass_left: float
    grass_right: float
    street_end: float  # depth of the buildings closing the street
    sun_left: bool  # which side the sun comes from
    sunny: float  # brightness factor in the sun
    shady: float  # ... and in the shade
    shadow_width: float  # band of the street in the shade of one row of houses

    @classmethod
    def draw(cls, rng: np.random.Generator) -> Street:
        return cls(tex_fine=Texture(rng, blur=0.8), tex_coarse=Texture(rng, blur=3.0),
                   road_left=rng.uniform(3.5, 7.0), road_right=rng.uniform(3.5, 7.0),
                   walk_left=rng.uniform(1.8, 4.5), walk_right=rng.uniform(1.8, 4.5),
                   grass_left=rng.choice([0.0, rng.uniform(1.0, 4.0)], p=[0.5, 0.5]),
                   grass_right=rng.choice([0.0, rng.uniform(1.0, 4.0)], p=[0.5, 0.5]),
                   street_end=rng.uniform(120, 300), sun_left=rng.random() < 0.5,
                   sunny=rng.uniform(0.9, 1.15), shady=rng.uniform(0.5, 0.7), shadow_width=rng.uniform(0.0, 8.0))

    def road_edge(self, side: int) -> float:
        return self.road_left if side < 0 else self.road_right

    def walk(self, side: int) -> float:
        return self.walk_left if side < 0 else self.walk_right

    def facade(self, side: int) -> float:
        """Distance of the facades on ``side`` from the camera's line."""
        if side < 0:
            return self.road_left + self.walk_left + self.grass_left
        return self.road_right + self.walk_right + self.grass_right

    def light(self, side: int) -> float:
        """Brightness of the facades on ``side``: the row facing the sun is lit."""
        return self.sunny if (side < 0) != self.sun_left else self.shady


@dataclass
class Scene:
    """What every painter draws with: the frame's random generator, canvas and street."""

    rng: np.random.Generator
    canvas: Canvas
    street: Street
