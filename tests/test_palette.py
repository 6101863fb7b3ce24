"""The DAVIS palette and indexed-PNG masks."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from simwidgets.errors import BadInputError
from simwidgets.palette import MAX_OBJECTS, davis_palette, object_colour, save_indexed_png
from simwidgets.video import read_mask

# published PASCAL VOC / DAVIS colours
KNOWN = {
    0: (0, 0, 0),
    1: (128, 0, 0),
    2: (0, 128, 0),
    3: (128, 128, 0),
    4: (0, 0, 128),
    5: (128, 0, 128),
    6: (0, 128, 128),
    7: (128, 128, 128),
    8: (64, 0, 0),
    255: (224, 224, 192),
}


def test_first_davis_colours():
    palette = davis_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    for index, colour in KNOWN.items():
        assert tuple(palette[index].tolist()) == colour
        assert object_colour(index) == colour


def test_palette_colours_are_distinct_and_prefix_stable():
    palette = davis_palette()
    assert len({tuple(c) for c in palette.tolist()}) == 256
    np.testing.assert_array_equal(davis_palette(10), palette[:10])


def test_object_colour_outside_the_palette():
    with pytest.raises(BadInputError, match="object id 256 is outside the palette"):
        object_colour(MAX_OBJECTS + 1)
    with pytest.raises(BadInputError, match="object id -1 is outside the palette"):
        object_colour(-1)


def test_save_indexed_png_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 6, size=(17, 23))
    mask[0, 0] = 255
    path = tmp_path / "nested" / "00000.png"
    save_indexed_png(mask, path)
    with Image.open(path) as image:
        assert image.mode == "P"
        assert image.size == (23, 17)
        np.testing.assert_array_equal(np.asarray(image), mask)
        stored = np.asarray(image.getpalette(), dtype=np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(stored[:256], davis_palette())
    np.testing.assert_array_equal(read_mask(path), mask)
    # the colours a viewer shows are the DAVIS ones
    rgb = np.asarray(Image.open(path).convert("RGB"))
    np.testing.assert_array_equal(rgb, davis_palette()[mask])


def test_save_indexed_png_accepts_bool_and_small_ints(tmp_path):
    mask = np.zeros((4, 5), dtype=bool)
    mask[1:3, 2:4] = True
    save_indexed_png(mask, tmp_path / "b.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")), mask.astype(np.uint8))
    save_indexed_png(mask.astype(np.int8) * 3, tmp_path / "i.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "i.png")), mask * 3)


def test_object_colour_takes_whole_numbers_only():
    assert object_colour(2.0) == object_colour(2)
    with pytest.raises(BadInputError, match=r"object id must be an integer; got 2\.5"):
        object_colour(2.5)
    with pytest.raises(BadInputError, match=r"object id must be an integer; got 'red'"):
        object_colour("red")
