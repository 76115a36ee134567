"""Where things stand: parked cars, poles, trees and pedestrians along each kerb, traffic in the lanes."""
from __future__ import annotations

import math

from data.street.furniture import paint_pole, paint_tree
from data.street.layout import Scene
from data.street.people import paint_person
from data.street.vehicles import paint_bus_or_truck, paint_car, paint_two_wheeler

PARKING_WIDTH = 2.3  # of the row of parked cars along a kerb


def place_objects(scene: Scene) -> None:
    """Both kerbs, then one lane of traffic each way, then sometimes someone crossing in front of it."""
    rng = scene.rng
    free_lane = {}  # per side: width of the moving lane between the centre line and the parked cars
    for side in (-1, 1):
        parked = _parked_cars(scene, side)
        free_lane[side] = scene.street.road_edge(side) - (PARKING_WIDTH if parked else 0.0)
        _poles(scene, side)
        _trees(scene, side)
        _pedestrians(scene, side)
    nearest_vehicle = min(40.0, *(_traffic(scene, side, free_lane[side]) for side in (-1, 1)))
    if rng.random() < 0.2 and nearest_vehicle > 5:  # someone crossing the road in front of the traffic
        paint_person(scene, rng.uniform(-free_lane[-1], free_lane[1]), rng.uniform(3, nearest_vehicle - 1.5))


def _parked_cars(scene: Scene, side: int) -> bool:
    """A row of cars along the kerb of ``side`` (or none); whether there is one."""
    rng = scene.rng
    parked = rng.random() < 0.6
    if parked:
        road_edge = scene.street.road_edge(side)
        z = rng.uniform(4, 20)
        while z < 80:
            x_in = road_edge - 0.3
            X0 = -x_in if side < 0 else x_in - 1.8
            paint_car(scene, X0, z)
            z += rng.uniform(4.3, 5.0) + rng.exponential(6.0)
    return parked


def _poles(scene: Scene, side: int) -> None:
    """Plain poles and poles with signs or lights, just beyond the kerb."""
    rng, road_edge = scene.rng, scene.street.road_edge(side)
    z = rng.uniform(3, 15)
    while z < 90:
        kind = rng.choice(["plain", "sign", "light"], p=[0.4, 0.35, 0.25])
        paint_pole(scene, side * (road_edge + 0.5), z, kind)
        z += rng.uniform(10, 30)


def _trees(scene: Scene, side: int) -> None:
    """Sometimes a row of trees at the far edge of the sidewalk."""
    rng, street = scene.rng, scene.street
    if rng.random() < 0.6:
        z = rng.uniform(3, 12)
        while z < 100:
            paint_tree(scene, side * (street.road_edge(side) + street.walk(side) - 0.6), z)
            z += rng.uniform(7, 14)


def _pedestrians(scene: Scene, side: int) -> None:
    """Up to six people on the sidewalk."""
    rng, road_edge, walk = scene.rng, scene.street.road_edge(side), scene.street.walk(side)
    for _ in range(rng.integers(0, 7)):
        paint_person(scene, side * (road_edge + rng.uniform(0.4, walk - 0.3)), rng.uniform(3, 45))


def _traffic(scene: Scene, side: int, lane_width: float) -> float:
    """Vehicles one after the other in the lane of ``side`` (none when it is too narrow); the depth of
    the nearest one (inf when none)."""
    rng = scene.rng
    if lane_width < 2.2:
        return math.inf
    centre = side * lane_width / 2
    nearest = math.inf
    z = rng.uniform(5, 25)
    while z < 80 and rng.random() < 0.65:
        nearest = min(nearest, z)
        kind = rng.choice(["car", "large", "two-wheeler"], p=[0.75, 0.12, 0.13])
        if kind == "large" and lane_width >= 2.7:
            paint_bus_or_truck(scene, centre - 1.25, z)
            length = 12.0
        elif kind == "two-wheeler":
            paint_two_wheeler(scene, centre, z, motor=rng.random() < 0.3)
            length = 2.0
        else:
            paint_car(scene, centre - 0.9, z)
            length = 4.8
        z += length + rng.uniform(4, 25)
    return nearest
