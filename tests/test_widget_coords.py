"""Coordinate conversions of the scribble widget: canvas <-> image <-> normalised (DAVIS)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from simwidgets.errors import BadInputError
from simwidgets.widgets.coords import (
    MAX_CANVAS_ASPECT,
    canvas_size_for,
    canvas_to_image_coordinates,
    canvas_to_normalised,
    image_to_canvas_coordinates,
    normalised_to_canvas,
)

sizes = st.tuples(st.integers(1, 2000), st.integers(1, 2000))  # (H, W)
canvas_widths = st.integers(16, 1600)
unit = st.floats(0, 1, allow_nan=False)


def test_davis_frame_at_640_keeps_its_aspect_ratio():
    assert canvas_size_for(480, 854, 640) == (360, 640)
    assert canvas_size_for(480, 854, 854) == (480, 854)


@given(sizes, canvas_widths)
def test_canvas_height_follows_the_aspect_ratio(size, width):
    h, w = size
    ch, cw = canvas_size_for(h, w, width)
    assert cw == width and ch >= 1
    # exact within 1:4 .. 4:1; beyond, the frame is stretched to the nearest bound
    bounded = min(max(width * h / w, width / MAX_CANVAS_ASPECT), width * MAX_CANVAS_ASPECT)
    assert abs(ch - bounded) <= 0.5 + 1e-9


@pytest.mark.parametrize("h, w", [(4000, 8), (8, 4000), (100000, 1)])
def test_the_canvas_of_an_extreme_strip_stays_bounded(h, w):
    ch, cw = canvas_size_for(h, w, 640)
    assert cw == 640 and 160 <= ch <= 2560  # not 640x320000 (four 800 MB layers) nor 1 row
    assert canvas_size_for(1920, 1080, 640) == (1138, 640), "a portrait phone video keeps its aspect"


@settings(max_examples=200)
@given(sizes, canvas_widths, unit, unit)
def test_canvas_image_round_trip_is_exact(size, width, fx, fy):
    canvas_size = canvas_size_for(*size, width)
    point = np.array([fx * canvas_size[1], fy * canvas_size[0]])
    image = canvas_to_image_coordinates(point, canvas_size, size)
    back = image_to_canvas_coordinates(image, canvas_size, size)
    np.testing.assert_allclose(back, point, rtol=1e-12, atol=1e-9)
    # the image point lies inside the frame, in the same relative place
    assert 0 <= image[0] <= size[1] + 1e-9 and 0 <= image[1] <= size[0] + 1e-9
    np.testing.assert_allclose(image / [size[1], size[0]], [fx, fy], atol=1e-12)


@settings(max_examples=200)
@given(sizes, canvas_widths, unit, unit)
def test_normalised_agrees_with_image_coordinates(size, width, fx, fy):
    """x = col / W and y = row / H: the DAVIS convention, whatever the canvas scale."""
    canvas_size = canvas_size_for(*size, width)
    point = np.array([fx * canvas_size[1], fy * canvas_size[0]])
    normalised = canvas_to_normalised(point, canvas_size)
    image = canvas_to_image_coordinates(point, canvas_size, size)
    np.testing.assert_allclose(normalised * [size[1], size[0]], image, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(normalised_to_canvas(normalised, canvas_size), point, rtol=1e-12, atol=1e-9)


@given(st.floats(-500, 2000, allow_nan=False), st.floats(-500, 2000, allow_nan=False))
def test_points_outside_the_canvas_clip_to_its_border(x, y):
    normalised = canvas_to_normalised([x, y], (360, 640))
    assert 0.0 <= normalised.min() and normalised.max() <= 1.0
    if 0 <= x <= 640 and 0 <= y <= 360:
        np.testing.assert_allclose(normalised, [x / 640, y / 360])


def test_corners_map_to_corners():
    canvas_size, image_size = (360, 640), (480, 854)
    corners = np.array([[0, 0], [640, 0], [0, 360], [640, 360]], dtype=float)
    np.testing.assert_allclose(
        canvas_to_image_coordinates(corners, canvas_size, image_size),
        [[0, 0], [854, 0], [0, 480], [854, 480]],
    )


def test_many_points_keep_their_shape():
    points = np.random.default_rng(0).uniform(0, 300, size=(5, 7, 2))
    assert canvas_to_image_coordinates(points, (300, 300), (600, 900)).shape == (5, 7, 2)


@pytest.mark.parametrize("width", [0, 8, 15.5, -640, True])
def test_bad_canvas_width(width):
    with pytest.raises(BadInputError, match="width"):
        canvas_size_for(480, 854, width)


def test_points_must_be_pairs():
    with pytest.raises(BadInputError, match="pairs"):
        canvas_to_normalised([1, 2, 3], (10, 10))
