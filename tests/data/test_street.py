"""The street renderer draws exactly the scenes of GENERATOR_VERSION 2, from which the cached datasets and the
committed demo results were made."""
import hashlib

import numpy as np
import pytest

from data.street import render_scene
from data.synthetic import GENERATOR_VERSION, frame_rng

# (seed, split, S): per frame i, the first 16 hex digits of the sha256 of the photo's bytes and of the label
# ids' bytes of render_scene(frame_rng(seed, split, i), 2S, S). Taken with the original single-module
# renderer (data/synthetic.py at commit 18d43e4), before it was split into data/street/. Any change of
# what is drawn or of the order of the random draws changes them: then bump GENERATOR_VERSION (cached
# datasets are regenerated) and take new digests.
VERSION_2_SCENES = {
    (0, "train", 64): [
        ("7eb68f150234d45f", "5a2d2c9336660d03"), ("a2b860da64065b23", "8d30298c8e473c0c"),
        ("ff6ac1f37921086d", "f339a7ea6ae2f168"), ("3ddfa0ca2e2e552e", "dc892dceeab2762b"),
        ("d69754fba1b9c12e", "1b0cd1284e5eca85"), ("fa42ba732a527e8b", "25f0f06104aa63ec"),
        ("f5be87246eb99279", "52e93543aec77c1b"), ("1164d471544f286a", "47ce433f8d06713d"),
        ("9e97bbb6e11076e9", "0763adff33f58a39"), ("13726ebc5946cb1d", "ff1b88394f474104"),
        ("5701efb11853664b", "4dbd7e8a031b675e"), ("a0c5ca1c9363481d", "8e3451cc328438d5"),
    ],
    (0, "val", 256): [
        ("11356e35d49d60a5", "f46c817f90489983"), ("37b157f5c8b11ba5", "942f0694cea57711"),
        ("4f31a3fcb5257424", "fbf210212af1cac3"),
    ],
    (1, "train", 64): [
        ("5deaf55ff48f9d8c", "2fc1dca3311682f3"), ("2571cea346862777", "e4382e2d308cfb65"),
        ("9d04487b63545f39", "3e1a3adbd16a3857"), ("c7ee6289476d950b", "95684122c9c004b1"),
        ("927f9495be3ec02d", "f5752a4250f44fc2"), ("fed02108f3d1a7c8", "331d20cbc7eb1d22"),
        ("dc62c8ff35075df4", "6072a3d766f279ce"), ("9b9dc28be51f54e0", "f1c3a8ed938fbe96"),
        ("63a6105007d0375f", "6cedfb0daa544c8e"), ("f70cf64c398260b9", "c1dad37c79ce23fb"),
        ("141ab91201c06b7c", "63106601eb032273"), ("f45b2b9b15433067", "9397805acded5bc9"),
    ],
    (1, "val", 256): [
        ("25c48fd4bc30ab49", "65d73b638a26f918"), ("d788adb3bf0d67ff", "ec527a04e2c7e866"),
        ("780e434fc9480458", "175d2602a2f4a54c"),
    ],
}


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


@pytest.mark.parametrize("seed, split, size", list(VERSION_2_SCENES))
def test_scenes_are_bit_identical_to_generator_version_2(seed, split, size):
    assert GENERATOR_VERSION == 2
    for i, expected in enumerate(VERSION_2_SCENES[seed, split, size]):
        photo, label_ids = render_scene(frame_rng(seed, split, i), 2 * size, size)
        assert photo.shape == (size, 2 * size, 3) and photo.dtype == np.uint8 and label_ids.dtype == np.uint8
        assert (_digest(photo), _digest(label_ids)) == expected, f"frame {i}"
