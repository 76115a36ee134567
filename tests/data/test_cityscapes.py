"""Label tables, conversions and the official-layout reader of data.cityscapes."""
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from data import DataError
from data import cityscapes as cs

# The 19 evaluation classes and a few of their colours, as published with Cityscapes.
PUBLISHED_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                   "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                   "motorcycle", "bicycle")
PUBLISHED_COLORS = {0: (128, 64, 128), 1: (244, 35, 232), 2: (70, 70, 70), 8: (107, 142, 35),
                    10: (70, 130, 180), 11: (220, 20, 60), 13: (0, 0, 142), 18: (119, 11, 32)}


def test_tables_match_the_published_definitions():
    assert cs.NUM_CLASSES == 19 and cs.IGNORE_INDEX == 255
    assert cs.CLASS_NAMES == PUBLISHED_NAMES
    assert cs.PALETTE.shape == (19, 3) and cs.PALETTE.dtype == np.uint8
    for train_id, color in PUBLISHED_COLORS.items():
        assert tuple(cs.PALETTE[train_id]) == color
    assert len({tuple(c) for c in cs.PALETTE}) == 19


def test_label_ids_to_train_ids():
    # (label id, trainId): road, sidewalk, building, car, bicycle, and void classes
    pairs = [(7, 0), (8, 1), (11, 2), (26, 13), (33, 18), (0, 255), (1, 255), (9, 255), (18, 255), (29, 255)]
    ids = np.array([[i for i, _ in pairs]], dtype=np.uint8)
    assert cs.label_ids_to_train_ids(ids).tolist() == [[t for _, t in pairs]]
    assert cs.label_ids_to_train_ids(np.array([-1, 7, 300])).tolist() == [255, 0, 255]
    assert cs.label_ids_to_train_ids(ids).dtype == np.uint8


def test_train_ids_to_color_and_back_exactly():
    train_ids = np.array([list(range(19)) + [255]], dtype=np.uint8)
    rgb = cs.train_ids_to_color(train_ids)
    assert rgb.shape == (1, 20, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 10]) == (70, 130, 180) and tuple(rgb[0, 19]) == (0, 0, 0)
    assert cs.color_to_train_ids(rgb).tolist() == train_ids.tolist()


def test_void_colours_and_shared_colours():
    colors = np.array([[(250, 170, 160), (81, 0, 81), (153, 153, 153), (0, 0, 0), (111, 74, 0)]], dtype=np.uint8)
    # parking and ground are ignored; pole and polegroup share a colour, which means pole (5)
    assert cs.color_to_train_ids(colors).tolist() == [[255, 255, 5, 255, 255]]


def test_label_ids_to_color_matches_official_colours():
    ids = np.array([[7, 26, 23, 0]], dtype=np.uint8)
    assert cs.label_ids_to_color(ids).tolist() == [[[128, 64, 128], [0, 0, 142], [70, 130, 180], [0, 0, 0]]]


def _nearest_to_train_ids_bruteforce(rgb):
    """Independent reference: nearest of all official colours by explicit distances (train class wins ties)."""
    from cityscapesscripts.helpers.labels import labels

    table = sorted((l for l in labels if l.id >= 0), key=lambda l: 0 if 0 <= l.trainId < 19 else 1)
    colors = np.array([l.color for l in table], np.float64)
    train = np.array([l.trainId if 0 <= l.trainId < 19 else 255 for l in table])
    d = ((rgb.reshape(-1, 1, 3).astype(np.float64) - colors[None]) ** 2).sum(-1)
    return train[d.argmin(1)].reshape(rgb.shape[:2])


def test_lookup_table_agrees_with_bruteforce_nearest_colour():
    rng = np.random.default_rng(0)
    # colours near the palette (where the answer matters), as a label image would have
    base = cs.PALETTE[rng.integers(0, 19, size=(64, 64))].astype(int)
    rgb = np.clip(base + rng.integers(-12, 13, size=base.shape), 0, 255).astype(np.uint8)
    assert np.array_equal(cs.color_to_train_ids(rgb), _nearest_to_train_ids_bruteforce(rgb))


def _blocky_train_ids(rng, size):
    """Rectangles and discs of random classes (with ignore regions), the hard case of thin parts included."""
    ids = np.full((size, size), 2, np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(40):
        cls = rng.choice(list(range(19)) + [255])
        y, x = rng.integers(0, size, 2)
        h, w = rng.integers(size // 64 + 2, size // 4, 2)
        if rng.random() < 0.5:
            ids[y:y + h, x:x + w] = cls
        else:
            ids[(yy - y) ** 2 + (xx - x) ** 2 < (h // 2) ** 2] = cls
    return ids


def _non_boundary(ids, margin):
    """Pixels whose (2*margin+1)^2 neighbourhood has one class."""
    padded = np.pad(ids, margin, mode="edge")
    same = np.ones(ids.shape, bool)
    h, w = ids.shape
    for dy in range(2 * margin + 1):
        for dx in range(2 * margin + 1):
            same &= padded[dy:dy + h, dx:dx + w] == ids
    return same


def _jpeg_roundtrip(image: Image.Image) -> np.ndarray:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=100, subsampling=0)  # as the pix2pix data is written
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


@pytest.mark.parametrize("seed", [0, 1])
def test_colours_survive_resize_and_jpeg_like_the_pix2pix_data(seed):
    """Colour labels drawn at 512, bicubic-downscaled 2x (or down and up again), JPEG q100: >= 99% right."""
    rng = np.random.default_rng(seed)
    big = _blocky_train_ids(rng, 512)
    colour = Image.fromarray(cs.train_ids_to_color(big))
    truth = np.asarray(Image.fromarray(big).resize((256, 256), Image.Resampling.NEAREST))
    mask = _non_boundary(truth, 1)
    assert mask.mean() > 0.5  # the test keeps most of the image

    down = colour.resize((256, 256), Image.Resampling.BICUBIC)
    got = cs.color_to_train_ids(_jpeg_roundtrip(down))
    assert (got[mask] == truth[mask]).mean() >= 0.99

    down_up = colour.resize((256, 256), Image.Resampling.BICUBIC).resize((128, 128), Image.Resampling.BICUBIC)
    down_up = down_up.resize((256, 256), Image.Resampling.BICUBIC)
    got = cs.color_to_train_ids(_jpeg_roundtrip(down_up))
    mask2 = _non_boundary(truth, 2)
    assert (got[mask2] == truth[mask2]).mean() >= 0.99


def test_photo_is_rejected_as_a_label_image(synthetic_root):
    pair = np.asarray(Image.open(synthetic_root / "train" / "0.jpg").convert("RGB"))
    half = pair.shape[1] // 2
    cs.color_to_train_ids(pair[:, half:], path="x/0.jpg")  # the colour half is fine
    with pytest.raises(DataError) as info:
        cs.color_to_train_ids(pair[:, :half], path="x/0.jpg")  # the photo half is not
    message = str(info.value)
    assert message.startswith("x/0.jpg: ") and "\n" not in message


def test_find_frames_pairs_by_name(synthetic_root):
    root = synthetic_root.parent / "cityscapes"
    frames = cs.find_frames(root, "train")
    assert [f.name for f in frames] == ["alderbrook_000000_000019", "alderbrook_000001_000019",
                                       "birchfield_000000_000019", "birchfield_000001_000019"]
    for frame in frames:
        assert frame.image.name == f"{frame.name}_leftImg8bit.png" and frame.image.is_file()
        assert frame.label_ids.name == f"{frame.name}_gtFine_labelIds.png" and frame.label_ids.is_file()
        assert frame.color.name == f"{frame.name}_gtFine_color.png"
    assert len(cs.find_frames(root, "val")) == 3


def test_find_frames_errors(synthetic_root, tmp_path):
    root = tmp_path / "cs"
    shutil.copytree(synthetic_root.parent / "cityscapes", root)
    with pytest.raises(DataError, match="not found"):
        cs.find_frames(tmp_path / "nowhere", "train")
    with pytest.raises(DataError, match="test: folder not found"):
        cs.find_frames(root, "test")

    label = root / "gtFine/train/birchfield/birchfield_000001_000019_gtFine_labelIds.png"
    label.unlink()
    with pytest.raises(DataError) as info:
        cs.find_frames(root, "train")
    message = str(info.value)
    assert "birchfield_000001_000019_leftImg8bit.png" in message and "unpaired" in message and "\n" not in message

    photo = root / "leftImg8bit/val/cedarport/cedarport_000002_000019_leftImg8bit.png"
    photo.unlink()
    with pytest.raises(DataError, match="cedarport_000002_000019_gtFine_labelIds.png: unpaired"):
        cs.find_frames(root, "val")

    for path in (root / "leftImg8bit/val/cedarport").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="no <city>"):
        cs.find_frames(root, "val")
