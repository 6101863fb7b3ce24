"""One check per rule: the single source of every input message.

A frame index, an object id, a label map, a video, a positive number: each is checked by
one function here, so the same mistake reads the same wherever a user makes it (the
session, the transfer, the widgets, the CLI), and every message names the value and what
was expected.  Each function returns the value in its canonical form (``int``, a numpy
array) so callers keep what the check returned, not what they were given.

Everything raises :class:`~simwidgets.errors.BadInputError`; nothing here imports torch.
"""
from __future__ import annotations

import math
import numbers
from pathlib import Path

import numpy as np

from .errors import BadInputError

__all__ = [
    "whole_number",
    "positive_int",
    "non_negative_int",
    "positive_float",
    "finite_float",
    "boolean",
    "frame_index",
    "object_id",
    "label_map",
    "video_frames",
    "output_folder",
    "output_file",
    "UNKNOWN",
    "MAX_OBJECT_ID",
]

#: label of a pixel whose object is not known (scribble label maps)
UNKNOWN = -1
#: object ids fit the 256 entries of an indexed PNG's palette (DAVIS masks)
MAX_OBJECT_ID = 255


def whole_number(value, where: str) -> int:
    """``value`` as an ``int``: Python and numpy integers, and floats that are whole
    numbers (``3.0``, as JSON writers and sliders produce); never ``bool``, text or NaN."""
    if isinstance(value, (bool, np.bool_)):
        raise BadInputError(f"{where} must be an integer; got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value).is_integer():
        return int(value)
    raise BadInputError(f"{where} must be an integer; got {value!r}")


def positive_int(value, where: str) -> int:
    """A whole number >= 1 (``top_k``, a batch size, a number of steps)."""
    number = whole_number(value, where)
    if number < 1:
        raise BadInputError(f"{where} must be at least 1; got {number}")
    return number


def non_negative_int(value, where: str) -> int:
    """A whole number >= 0 (``window``, ``n_context``)."""
    number = whole_number(value, where)
    if number < 0:
        raise BadInputError(f"{where} must be 0 or more; got {number}")
    return number


def finite_float(value, where: str) -> float:
    """A real, finite number as ``float`` (not ``bool``, text, NaN or infinity)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise BadInputError(f"{where} must be a number; got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise BadInputError(f"{where} must be finite; got {number}")
    return number


def positive_float(value, where: str) -> float:
    """A finite number > 0 (a temperature, a brush width, a learning rate)."""
    number = finite_float(value, where)
    if number <= 0:
        raise BadInputError(f"{where} must be positive; got {number}")
    return number


def boolean(value, where: str) -> bool:
    """A real ``True``/``False`` (numpy's too): the text ``'no'`` is not read as true."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise BadInputError(f"{where} must be True or False; got {value!r}")


def frame_index(value, n_frames: int, where: str = "frame_idx") -> int:
    """An index into a video of ``n_frames`` frames (no negative indexing: a frame
    index names a frame, and ``-1`` more often means "none" than "the last")."""
    index = whole_number(value, where)
    if not 0 <= index < n_frames:
        raise BadInputError(f"{where} {index} is outside the video (0..{n_frames - 1})")
    return index


def object_id(value, where: str = "object_id") -> int:
    """An object id of the DAVIS palette: 0 (background) to 255."""
    number = whole_number(value, where)
    if not 0 <= number <= MAX_OBJECT_ID:
        raise BadInputError(f"{where} {number} is outside 0..{MAX_OBJECT_ID} (0 = background)")
    return number


def label_map(array, shape: tuple[int, ...], where: str = "label map", unknown: bool = True) -> np.ndarray:
    """Integer label maps of the given ``shape``: ids 0..255, and ``-1`` (unknown) when
    ``unknown``.  Returns an ``int16`` copy when -1 may occur, else ``uint8``; everything
    is checked before anything is converted, so a caller keeps its state on bad input."""
    array = np.asarray(array)
    shape = tuple(int(s) for s in shape)
    if array.shape != shape:
        axes = {2: "(H, W)", 3: "(T, H, W)"}.get(len(shape), "")
        raise BadInputError(f"{where} has shape {array.shape}; expected {shape} {axes}".rstrip())
    if array.dtype == bool:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise BadInputError(f"{where} must hold integer object ids; got dtype {array.dtype}")
    low_allowed = UNKNOWN if unknown else 0
    if array.size and array.dtype != np.uint8:
        low, high = int(array.min()), int(array.max())
        if low < low_allowed or high > MAX_OBJECT_ID:
            bad = low if low < low_allowed else high
            allowed = f"{low_allowed}..{MAX_OBJECT_ID}" + (" (-1 = unknown, 0 = background)" if unknown else
                                                           " (0 = background)")
            raise BadInputError(f"{where} holds id {bad}, outside {allowed}")
    return array.astype(np.int16 if unknown else np.uint8)


def video_frames(frames, where: str = "frames"):
    """A video as something indexable to ``(H, W, 3)`` uint8 frames, shape ``(T, H, W, 3)``.

    Arrays and array-likes with a ``shape`` (:class:`~simwidgets.video.LazyFrames`) are
    checked without being read; a list or tuple of ``(H, W, 3)`` frames of one size is
    stacked.  At least one frame of at least one pixel.
    """
    if isinstance(frames, (list, tuple)):
        if not frames:
            raise BadInputError(f"{where}: a video needs at least one frame; got an empty list")
        arrays = [np.asarray(f) for f in frames]
        first = arrays[0].shape
        odd = next((i for i, a in enumerate(arrays) if a.shape != first), None)
        if odd is not None:
            raise BadInputError(
                f"{where} of mixed sizes: frame 0 has shape {first}, frame {odd} has shape "
                f"{arrays[odd].shape}; resize them to one size first"
            )
        frames = np.stack(arrays)
    if not hasattr(frames, "shape") or not hasattr(frames, "__getitem__"):
        raise BadInputError(
            f"{where} must be a (T, H, W, 3) uint8 array or a list of (H, W, 3) frames; got {type(frames).__name__}"
        )
    shape = tuple(frames.shape)
    if len(shape) != 4 or shape[3] != 3:
        raise BadInputError(f"{where} must be RGB with shape (T, H, W, 3); got shape {shape}")
    if min(shape[:3]) < 1:
        raise BadInputError(f"{where} must hold at least one frame of at least one pixel; got shape {shape}")
    dtype = getattr(frames, "dtype", None)
    if dtype is not None and np.dtype(dtype) != np.uint8:
        raise BadInputError(f"{where} must be uint8 RGB (0..255); got dtype {dtype}")
    return frames


def _file_above(path: Path) -> Path | None:
    """The nearest existing path at or above ``path`` that is not a folder, if any."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return None if candidate.is_dir() else candidate
    return None


def output_folder(path, where: str = "output folder") -> Path:
    """A folder to write into: it may exist (as a folder) or not yet; an existing file
    in its place or above it is refused up front, before any long computation."""
    path = Path(path)
    blocker = _file_above(path)
    if blocker is not None:
        what = "is a file" if blocker == path else f"lies under {blocker}, which is a file"
        raise BadInputError(f"{where} {path} {what}; give a folder")
    return path


def output_file(path, where: str = "output file") -> Path:
    """A file to (over)write: not an existing folder, and not under an existing file."""
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{where} {path} is a folder; give a file name")
    blocker = _file_above(path.parent)
    if blocker is not None:
        raise BadInputError(f"{where} {path} lies under {blocker}, which is a file")
    return path
