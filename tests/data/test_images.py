"""Reading image files by mode (data.images): what becomes 8-bit RGB and how, what is refused, in real files."""
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from data import DataError
from data.images import read_rgb

RNG = np.random.default_rng(0)
RGB8 = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)
GRAY8 = RGB8[..., 0]
WORDS16 = RNG.integers(0, 65536, (6, 7), dtype=np.uint16)  # 16-bit values that are no widened 8-bit image


def _read(path) -> np.ndarray:
    return read_rgb(path).permute(1, 2, 0).numpy()


def _gray(values: np.ndarray) -> np.ndarray:
    return np.repeat(values[..., None], 3, axis=2)


def _with_alpha(alpha: int, mode: str) -> Image.Image:
    image = Image.fromarray(RGB8).convert(mode)
    image.putpixel((2, 3), (*image.getpixel((2, 3))[:-1], alpha))
    return image


def _palette(transparent_index: int) -> Image.Image:
    image = Image.fromarray((GRAY8 % 4).astype(np.uint8), "P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    image.info["transparency"] = transparent_index
    return image


def _palette_rgb() -> np.ndarray:
    return np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)[GRAY8 % 4]


# (file name, how it is written, the RGB it reads as); cv2 writes BGR(A), 16 bits per channel from uint16 arrays
READ = {
    "rgb.png": (lambda p: Image.fromarray(RGB8).save(p), RGB8),
    "gray.png": (lambda p: Image.fromarray(GRAY8).save(p), _gray(GRAY8)),
    "bilevel.png": (lambda p: Image.fromarray(GRAY8 > 127).save(p), _gray(np.where(GRAY8 > 127, 255, 0))),
    "palette.png": (lambda p: _palette(255).save(p), _palette_rgb()),  # its transparent index is never used
    "opaque_rgba.png": (lambda p: _with_alpha(255, "RGBA").save(p), RGB8),
    "gray16_widened.png": (lambda p: Image.fromarray(GRAY8.astype(np.uint16) * 257).save(p), _gray(GRAY8)),
    "gray16_shifted.png": (lambda p: Image.fromarray(GRAY8.astype(np.uint16) << 8).save(p), _gray(GRAY8)),
    "gray16.png": (lambda p: Image.fromarray(WORDS16).save(p), _gray((WORDS16 >> 8).astype(np.uint8))),
    "gray16_cv2.png": (lambda p: cv2.imwrite(str(p), WORDS16), _gray((WORDS16 >> 8).astype(np.uint8))),
    "gray16_big_endian.tif": (lambda p: Image.fromarray(WORDS16.astype(">u2")).save(p),
                              _gray((WORDS16 >> 8).astype(np.uint8))),
    "rgb48_widened.png": (lambda p: cv2.imwrite(str(p), RGB8[..., ::-1].astype(np.uint16) * 257), RGB8),
    "rgb48.png": (lambda p: cv2.imwrite(str(p), np.stack([WORDS16, WORDS16 ^ 0x5555, ~WORDS16], 2)[..., ::-1]),
                  (np.stack([WORDS16, WORDS16 ^ 0x5555, ~WORDS16], 2) >> 8).astype(np.uint8)),
    "rgba64_opaque.png": (lambda p: cv2.imwrite(str(p), np.dstack([RGB8[..., ::-1].astype(np.uint16) * 257,
                                                                   np.full((6, 7), 65535, np.uint16)])), RGB8),
}
REFUSED = {
    "rgba.png": (lambda p: _with_alpha(254, "RGBA").save(p), "1 pixel(s) not fully opaque (mode RGBA with alpha)"),
    "gray_alpha.png": (lambda p: _with_alpha(0, "LA").save(p), "1 pixel(s) not fully opaque (mode LA with alpha)"),
    "palette_transparent.png": (lambda p: _palette(1).save(p), "not fully opaque (mode P with alpha)"),
    "rgba64.png": (lambda p: cv2.imwrite(str(p), np.dstack([RGB8.astype(np.uint16) * 257, WORDS16])),
                   "not fully opaque (mode RGBA with alpha)"),
    "int32.tif": (lambda p: Image.fromarray(WORDS16.astype(np.int32)).save(p),
                  "image mode I (32-bit integer pixels have no fixed range)"),
    "float.tif": (lambda p: Image.fromarray(WORDS16.astype(np.float32) / 65535).save(p),
                  "image mode F (floating-point pixels have no fixed range)"),
    "cmyk.jpg": (lambda p: Image.fromarray(RGB8).convert("CMYK").save(p),
                 "image mode CMYK (not an RGB, grayscale or palette mode)"),
}


@pytest.mark.parametrize("name", READ)
def test_each_mode_reads_as_its_8_bit_rgb(tmp_path, name):
    write, expected = READ[name]
    write(tmp_path / name)
    rgb = _read(tmp_path / name)
    assert rgb.dtype == np.uint8 and np.array_equal(rgb, expected)


@pytest.mark.parametrize("name", REFUSED)
def test_modes_without_an_exact_8_bit_rgb_are_refused_in_one_line_naming_the_file(tmp_path, name):
    write, problem = REFUSED[name]
    write(tmp_path / name)
    with pytest.raises(DataError) as info:
        read_rgb(tmp_path / name)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / name}: ") and problem in message, message


def test_16_bit_pngs_given_to_evaluate_score_as_the_same_images_in_8_bits(synthetic_root, tmp_path, capsys):
    """evaluate.py --images on 48-bit RGB and 16-bit grayscale PNGs of the val photos: the scores of their
    8-bit PNGs; a folder with a transparent PNG is refused with exit 2 and one line."""
    import evaluate
    from tests.test_evaluate import make_segmenter

    make_segmenter(tmp_path / "checkpoints" / "segmenters", "fcn8s", synthetic_root)
    index = json.loads((synthetic_root / "index.json").read_text())["val"]
    folders = {name: tmp_path / name for name in ("rgb8", "rgb48", "gray8", "gray16", "transparent")}
    for folder in folders.values():
        folder.mkdir()
    for file, frame in index.items():
        photo = np.asarray(Image.open(synthetic_root / "val" / file).convert("RGB"))[:, :64]
        gray = np.asarray(Image.fromarray(photo).convert("L"))
        Image.fromarray(photo).save(folders["rgb8"] / f"{frame}.png")
        cv2.imwrite(str(folders["rgb48"] / f"{frame}.png"), photo[..., ::-1].astype(np.uint16) * 257)
        Image.fromarray(gray).save(folders["gray8"] / f"{frame}.png")
        Image.fromarray(gray.astype(np.uint16) * 257).save(folders["gray16"] / f"{frame}.png")
        Image.fromarray(np.dstack([photo, np.full((64, 64), 128, np.uint8)])).save(folders["transparent"] /
                                                                                    f"{frame}.png")
    common = ["--checkpoints-dir", str(tmp_path / "checkpoints"), "--segmenters", "fcn8s", "--device", "cpu",
              "--dataroot", str(synthetic_root)]
    images = [arg for name in ("rgb8", "rgb48", "gray8", "gray16") for arg in ("--images", str(folders[name]))]
    assert evaluate.main(common + images + ["--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "results.json").read_text())["segmenters"][0]["image_sets"]
    scores = {entry["label"]: entry["scores"] for entry in report}
    assert scores["rgb48"] == scores["rgb8"] and scores["gray16"] == scores["gray8"]
    assert scores["gray8"] != scores["rgb8"]  # grayscale scores differently: the equalities say something

    capsys.readouterr()
    assert evaluate.main(common + ["--images", str(folders["transparent"]), "--out", str(tmp_path / "out2")]) == 2
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and line.startswith(f"error: {folders['transparent']}/"), line
    assert line.endswith(".png: 4096 pixel(s) not fully opaque (mode RGBA with alpha); expected an opaque image"), line
