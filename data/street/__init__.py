"""Procedural Cityscapes-like street scenes: the renderer behind the built-in synthetic city (``data.synthetic``).

Each frame is a street seen from a car: sky, a road and sidewalks in perspective, rows of buildings with
windows, trees, grass, walls and fences, poles with traffic signs and lights, parked and moving cars,
buses and trucks, pedestrians, cyclists. Everything is placed in a simple 3-D world and drawn with a
depth buffer, so the label map (official Cityscapes label ids) and the photo agree pixel for pixel.
The photo gets per-object colours, surface textures, sun and shade, cast shadows, haze with distance
and sensor noise, so that labels -> photo is a real learning task and a segmenter can learn photos.

Modules:
  scene       render_scene: the painting order, and the photograph (haze, exposure, noise)
  canvas      the camera, the depth-buffered canvas (boxes, billboards), the label ids
  textures    smooth noise, periodic textures, colour jitter, flat face shaders
  layout      the random street (cross-section, light, textures) and the Scene every painter draws with
  painters, one job each:
    sky         sky gradient and clouds
    facades     buildings, walls, fences, hedges and parks along both sides, the street's far end
    ground      road and markings, sidewalks, grass strips, the shade of one row of houses
    placement   where parked cars, poles, trees, pedestrians and traffic go
    vehicles    cars, buses, trucks, bicycles and motorcycles, the recording car's bonnet
    people      pedestrians and riders
    furniture   poles with traffic signs or lights, trees

The scenes are the cached built-in dataset's content: any change to what is drawn, or to the order
in which random numbers are drawn, must bump ``data.synthetic.GENERATOR_VERSION``
(tests/test_street.py holds digests of known scenes).
"""
from data.street.scene import render_scene

__all__ = ["render_scene"]
