"""The DAVIS colour palette and indexed-PNG masks.

DAVIS stores multi-object masks as palette ("P" mode) PNGs whose pixel values are object
ids; the palette is the PASCAL VOC one (0 black, 1 red, 2 green, 3 yellow, ...).  Writing
masks in that exact form lets the official tools read what simwidgets produces.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from . import checks
from .errors import BadInputError

__all__ = ["davis_palette", "object_colour", "save_indexed_png", "MAX_OBJECTS"]

#: object ids must fit the 256-entry palette of an indexed PNG
MAX_OBJECTS = checks.MAX_OBJECT_ID


def davis_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC / DAVIS palette as a ``(n, 3)`` uint8 array (bit-interleaving rule)."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for index in range(n):
        value, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette[index] = (r, g, b)
    return palette


_PALETTE = davis_palette()


def object_colour(object_id: int) -> tuple[int, int, int]:
    """RGB colour of an object id in the DAVIS palette (``2.0`` is object 2; ``2.5`` is no object)."""
    object_id = checks.whole_number(object_id, "object id")
    if not 0 <= object_id <= MAX_OBJECTS:
        raise BadInputError(f"object id {object_id} is outside the palette (0..{MAX_OBJECTS})")
    r, g, b = _PALETTE[object_id]
    return int(r), int(g), int(b)


def save_indexed_png(mask: np.ndarray, path: str | Path) -> None:
    """Write a ``(H, W)`` integer label map as a DAVIS-palette PNG."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise BadInputError(f"a mask must be 2-D (H, W); got shape {mask.shape}")
    if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool):
        # a float mask would be silently truncated to other ids by the uint8 cast
        raise BadInputError(f"mask values must be integer object ids; got dtype {mask.dtype}")
    if mask.size and (mask.min() < 0 or mask.max() > MAX_OBJECTS):
        raise BadInputError(
            f"mask values must be object ids in 0..{MAX_OBJECTS}; got {mask.min()}..{mask.max()}"
        )
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(_PALETTE.reshape(-1).tolist())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
