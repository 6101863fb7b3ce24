"""Exact conversions between canvas, image and normalised (DAVIS) coordinates.

Three coordinate systems meet in the scribble widget:

* **canvas**: pixels of the displayed canvas, ``(x, y)`` in ``[0, canvas_width] x
  [0, canvas_height]``; the browser reports mouse positions in these units;
* **image**: continuous pixel coordinates of the video frame, ``(col, row)`` in
  ``[0, W] x [0, H]`` (pixel ``(r, c)`` covers ``[c, c + 1) x [r, r + 1)``);
* **normalised**: the DAVIS scribble convention, ``x = col / W``, ``y = row / H``, both in
  ``[0, 1]``.

The frame is drawn stretched to exactly ``canvas_width x canvas_height``, so each
conversion is a pure scaling per axis and the pairs below are exact inverses (up to
floating-point rounding).  Keeping them here, apart from any widget, lets them be tested
with hypothesis and reused by other widgets.
"""
from __future__ import annotations

import numpy as np

from ..errors import BadInputError

__all__ = [
    "canvas_size_for",
    "canvas_to_image_coordinates",
    "image_to_canvas_coordinates",
    "canvas_to_normalised",
    "normalised_to_canvas",
    "MAX_CANVAS_ASPECT",
]

#: a canvas is at most this many times taller than wide, or wider than tall
MAX_CANVAS_ASPECT = 4


def canvas_size_for(height: int, width: int, canvas_width: int) -> tuple[int, int]:
    """``(canvas_height, canvas_width)`` that shows a ``height x width`` frame at its aspect ratio.

    The canvas width is the caller's; the height is rounded to whole pixels and kept within
    ``canvas_width / 4 .. canvas_width * 4`` (rounded) (:data:`MAX_CANVAS_ASPECT`).  Every usual
    format (4:3, 16:9, 9:16 portrait, 32:9) keeps its exact aspect ratio; a frame beyond
    it (an 8x4000 strip) is shown stretched, since the conversions below scale each axis
    on its own and stay exact.  Unbounded, such a strip at 640 pixels would make a canvas
    of 640x320000 (four layers of 800 MB each) and a 1-pixel-high strip could not be
    painted on.
    """
    if int(height) < 1 or int(width) < 1:
        raise BadInputError(f"cannot display a {width}x{height} frame")
    if isinstance(canvas_width, bool) or int(canvas_width) != canvas_width or canvas_width < 16:
        raise BadInputError(f"width must be an integer of at least 16 pixels; got {canvas_width!r}")
    canvas_width = int(canvas_width)
    exact = int(round(canvas_width * int(height) / int(width)))
    lowest, highest = max(1, round(canvas_width / MAX_CANVAS_ASPECT)), canvas_width * MAX_CANVAS_ASPECT
    return min(max(exact, lowest), highest), canvas_width


def _as_points(points) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.shape[-1:] != (2,):
        raise BadInputError(f"points must be (x, y) pairs, shape (..., 2); got {array.shape}")
    return array


def canvas_to_image_coordinates(points, canvas_size: tuple[int, int], image_size: tuple[int, int]) -> np.ndarray:
    """Canvas ``(x, y)`` to image ``(col, row)``.

    Parameters
    ----------
    points : array-like ``(..., 2)`` of canvas ``(x, y)``
    canvas_size : ``(canvas_height, canvas_width)``
    image_size : ``(H, W)`` of the frame

    Returns
    -------
    ``(..., 2)`` float64 image ``(col, row)``
    """
    array = _as_points(points)
    (ch, cw), (h, w) = canvas_size, image_size
    return array * np.array([w / cw, h / ch])


def image_to_canvas_coordinates(points, canvas_size: tuple[int, int], image_size: tuple[int, int]) -> np.ndarray:
    """Image ``(col, row)`` to canvas ``(x, y)``; the inverse of :func:`canvas_to_image_coordinates`."""
    array = _as_points(points)
    (ch, cw), (h, w) = canvas_size, image_size
    return array * np.array([cw / w, ch / h])


def canvas_to_normalised(points, canvas_size: tuple[int, int]) -> np.ndarray:
    """Canvas ``(x, y)`` to DAVIS normalised ``(x / canvas_width, y / canvas_height)``, clipped to [0, 1].

    Clipping matters: the browser reports positions slightly outside the canvas when the
    mouse leaves it mid-stroke, and the DAVIS format only admits ``[0, 1]``.
    """
    array = _as_points(points)
    ch, cw = canvas_size
    return np.clip(array / np.array([cw, ch], dtype=np.float64), 0.0, 1.0)


def normalised_to_canvas(points, canvas_size: tuple[int, int]) -> np.ndarray:
    """DAVIS normalised ``(x, y)`` to canvas ``(x, y)``; the inverse of :func:`canvas_to_normalised`."""
    array = _as_points(points)
    ch, cw = canvas_size
    return array * np.array([cw, ch], dtype=np.float64)
