"""Scribbles in the DAVIS interactive JSON format, and their rasterisation to label maps.

The format (used by the DAVIS 2018 interactive challenge and its ``davisinteractive``
package)::

    {"sequence": "bear",
     "scribbles": [                      # one list per frame
        [{"path": [[x, y], ...],          # x = col / W, y = row / H, both in [0, 1]
          "object_id": 1,                 # 0 = background
          "start_time": 0, "end_time": 2.3}, ...],
        [], ...]}

:class:`Scribbles` reads and writes that form without changing a value (paths are kept
as float64, times as they were), merges interaction rounds, and turns a frame's strokes
into an integer label map (object ids, ``0`` background, ``-1`` unknown) that the label
transfer uses as reference pixels.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from . import checks
from .checks import UNKNOWN  # label of pixels that no scribble covers
from .errors import BadInputError

__all__ = ["Stroke", "Scribbles", "UNKNOWN", "atomic_write_text", "TEMP_SUFFIX"]

#: what every temporary file of :func:`atomic_write_text` ends with (after a random part)
TEMP_SUFFIX = ".simwidgets-partial.tmp"
#: a temporary file older than this (seconds) belongs to a write that was killed
STALE_TEMP_AGE = 60.0

_STROKE_KEYS = {"path", "object_id", "start_time", "end_time"}
_TOP_KEYS = {"scribbles", "sequence"}


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temporary file + rename in the same folder).

    A crash mid-write leaves either the old file or the new one, never half of one.

    * The temporary file is ``.<name>.<random>.simwidgets-partial.tmp`` beside the target,
      so a leftover of a killed write says whose it is; the next write of the same target
      removes such leftovers older than :data:`STALE_TEMP_AGE` seconds (younger ones may
      be another process writing the same file right now).
    * The file gets the mode an ordinary ``open(path, "w")`` would give a new file,
      ``0o666 & ~umask`` (``tempfile.mkstemp`` would make every saved file ``0o600``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temp_files(path)
    fd, tmp = _create_temp_file(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def _create_temp_file(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path``, created with mode 0o666 so the umask applies."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = str(path.with_name(f"{_temp_prefix(path)}{secrets.token_hex(4)}{TEMP_SUFFIX}"))
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # 1 in 4 billion: draw another name
            continue


def _remove_stale_temp_files(path: Path, max_age: float = STALE_TEMP_AGE) -> None:
    """Delete temporary files of ``path`` left by writes killed more than ``max_age`` s ago."""
    prefix, now = _temp_prefix(path), time.time()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return  # the write itself reports an unusable folder
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(TEMP_SUFFIX)):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > max_age:
                os.unlink(entry.path)
        except OSError:
            pass  # gone already, or not ours to remove: never block a save on it


@dataclass
class Stroke:
    """One scribble stroke.

    Attributes
    ----------
    path : ``(N, 2)`` float64 array of normalised ``(x, y)``, x = col / W, y = row / H
    object_id : int, 0 = background
    start_time, end_time : seconds (or whatever the source used), optional: a finite
        number or ``None`` (JSON has no NaN; integers stay integers, as they were written)
    """

    path: np.ndarray
    object_id: int
    start_time: float | int | None = None
    end_time: float | int | None = None

    def __post_init__(self):
        self.path = _validate_path(self.path, where="stroke")
        self.object_id = checks.object_id(self.object_id, "stroke: object_id")
        self.start_time = _validate_time(self.start_time, "stroke: start_time")
        self.end_time = _validate_time(self.end_time, "stroke: end_time")

    def to_dict(self) -> dict:
        return {
            "path": self.path.tolist(),
            "object_id": self.object_id,
            "start_time": self.start_time,
            "end_time": self.end_time,
        }

    def pixel_path(self, height: int, width: int) -> np.ndarray:
        """``(N, 2)`` float pixel coordinates ``(col, row)`` for a ``height x width`` frame."""
        return self.path * np.array([width, height], dtype=np.float64)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Stroke):
            return NotImplemented
        return (
            self.object_id == other.object_id
            and self.start_time == other.start_time
            and self.end_time == other.end_time
            and self.path.shape == other.path.shape
            and bool(np.all(self.path == other.path))
        )


def _validate_path(path, where: str) -> np.ndarray:
    try:
        array = np.asarray(path, dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInputError(f"{where}: path must be a list of [x, y] numbers") from None
    if array.size == 0:
        raise BadInputError(f"{where}: empty path (a stroke needs at least one point)")
    if array.ndim != 2 or array.shape[1] != 2:
        raise BadInputError(f"{where}: path must be a list of [x, y] pairs; got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise BadInputError(f"{where}: path holds NaN or infinite coordinates")
    if array.min() < 0.0 or array.max() > 1.0:
        raise BadInputError(
            f"{where}: coordinates must be normalised to [0, 1] (x = col / W, y = row / H); "
            f"got values in [{array.min():.4g}, {array.max():.4g}] (a scribble outside the frame?)"
        )
    return array


def _validate_time(value, where: str) -> int | float | None:
    """A stroke time: ``None``, or a finite number kept as it was (an ``int`` stays one).

    NaN would be written as the non-standard JSON token ``NaN``, which the DAVIS tools
    and strict JSON readers reject; text or a list is not a time.
    """
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    return checks.finite_float(value, where)


class Scribbles:
    """Per-frame stroke lists of one video, in the DAVIS interactive format.

    Parameters
    ----------
    n_frames : number of frames of the video
    sequence : sequence name written to the JSON
    """

    def __init__(self, n_frames: int, sequence: str = ""):
        if int(n_frames) < 1:
            raise BadInputError(f"Scribbles needs n_frames >= 1; got {n_frames}")
        self.n_frames = int(n_frames)
        self.sequence = str(sequence)
        self.frames: list[list[Stroke]] = [[] for _ in range(self.n_frames)]

    # ------------------------------------------------------------------ building
    def add_stroke(
        self,
        frame_idx: int,
        path,
        object_id: int,
        start_time: float | None = None,
        end_time: float | None = None,
    ) -> Stroke:
        """Append a stroke (normalised path) to a frame and return it."""
        frame_idx = self._check_frame(frame_idx)
        stroke = Stroke(path, object_id, start_time, end_time)
        self.frames[frame_idx].append(stroke)
        return stroke

    def add_pixel_stroke(
        self, frame_idx: int, points, object_id: int, height: int, width: int, **times
    ) -> Stroke:
        """Append a stroke given in pixel ``(col, row)`` coordinates of a ``height x width`` frame."""
        pixels = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(pixels) and (
            pixels[:, 0].min() < 0 or pixels[:, 0].max() > width
            or pixels[:, 1].min() < 0 or pixels[:, 1].max() > height
        ):
            raise BadInputError(
                f"frame {frame_idx}: stroke leaves the {width}x{height} frame "
                f"(cols {pixels[:, 0].min():.1f}..{pixels[:, 0].max():.1f}, "
                f"rows {pixels[:, 1].min():.1f}..{pixels[:, 1].max():.1f})"
            )
        return self.add_stroke(frame_idx, pixels / np.array([width, height]), object_id, **times)

    def pop_stroke(self, frame_idx: int) -> Stroke:
        """Remove and return the last stroke of a frame."""
        frame_idx = self._check_frame(frame_idx)
        if not self.frames[frame_idx]:
            raise BadInputError(f"frame {frame_idx} has no stroke to remove")
        return self.frames[frame_idx].pop()

    def clear_frame(self, frame_idx: int) -> list[Stroke]:
        """Remove all strokes of a frame and return them."""
        frame_idx = self._check_frame(frame_idx)
        removed, self.frames[frame_idx] = self.frames[frame_idx], []
        return removed

    def copy(self) -> "Scribbles":
        return Scribbles.from_dict(self.to_dict(), n_frames=self.n_frames)

    def merge(self, other: "Scribbles") -> "Scribbles":
        """A new Scribbles with ``other``'s strokes appended after this one's, frame by frame.

        This is how interaction rounds accumulate: later strokes are drawn over earlier ones.
        """
        if not isinstance(other, Scribbles):
            raise BadInputError(f"can only merge Scribbles; got {type(other).__name__}")
        if other.n_frames != self.n_frames:
            raise BadInputError(
                f"frame-count mismatch: cannot merge scribbles of {other.n_frames} frames "
                f"into {self.n_frames} frames"
            )
        merged = self.copy()
        if not merged.sequence:
            merged.sequence = other.sequence
        for frame_idx, strokes in enumerate(other.frames):
            merged.frames[frame_idx].extend(
                Stroke(s.path.copy(), s.object_id, s.start_time, s.end_time) for s in strokes
            )
        return merged

    __add__ = merge

    def clip(self, start: int, stop: int) -> "Scribbles":
        """The strokes of frames ``start..stop-1``, re-indexed from 0 (for a clip of the video)."""
        if not 0 <= start < stop <= self.n_frames:
            raise BadInputError(f"clip {start}:{stop} is not inside the video (0..{self.n_frames})")
        clipped = Scribbles(stop - start, self.sequence)
        clipped.frames = [list(strokes) for strokes in self.frames[start:stop]]
        return clipped

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        """Total number of strokes."""
        return sum(len(strokes) for strokes in self.frames)

    def __iter__(self) -> Iterator[tuple[int, Stroke]]:
        for frame_idx, strokes in enumerate(self.frames):
            for stroke in strokes:
                yield frame_idx, stroke

    def __eq__(self, other) -> bool:
        if not isinstance(other, Scribbles):
            return NotImplemented
        return self.n_frames == other.n_frames and self.frames == other.frames

    def __repr__(self) -> str:
        return (
            f"Scribbles({self.sequence!r}, {self.n_frames} frames, {len(self)} strokes "
            f"on frames {self.annotated_frames}, objects {self.object_ids})"
        )

    @property
    def annotated_frames(self) -> list[int]:
        """Indices of frames that carry at least one stroke."""
        return [i for i, strokes in enumerate(self.frames) if strokes]

    @property
    def object_ids(self) -> list[int]:
        """Sorted object ids that appear in any stroke (0 included when present)."""
        return sorted({stroke.object_id for _, stroke in self})

    def _check_frame(self, frame_idx) -> int:
        """``frame_idx`` as an ``int`` index of this video (``2.0`` is frame 2)."""
        return checks.frame_index(frame_idx, self.n_frames)

    def check_object_ids(self, allowed: Iterable[int]) -> None:
        """Raise if a stroke uses an object id not in ``allowed`` (background 0 is always allowed)."""
        allowed = set(int(a) for a in allowed) | {0}
        for frame_idx, stroke in self:
            if stroke.object_id not in allowed:
                raise BadInputError(
                    f"frame {frame_idx}: unknown object id {stroke.object_id} "
                    f"(this video has objects {sorted(allowed - {0})})"
                )

    # ------------------------------------------------------------------ rasterising
    def rasterize(self, frame_idx: int, height: int, width: int, brush_width: float = 3) -> np.ndarray:
        """Label map ``(height, width)`` int64 of one frame's strokes.

        Pixels under a stroke (the pixel of each of its points, and every pixel whose centre
        is within ``brush_width / 2`` of the line through them) get the stroke's object id,
        later strokes over earlier ones; all other pixels are :data:`UNKNOWN` (-1).
        """
        frame_idx = self._check_frame(frame_idx)
        return rasterize_strokes(self.frames[frame_idx], height, width, brush_width)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {
            "scribbles": [[stroke.to_dict() for stroke in strokes] for strokes in self.frames],
            "sequence": self.sequence,
        }

    def to_json(self, indent: int | None = None) -> str:
        """Standard JSON (``allow_nan=False``: a NaN never reaches the file as a ``NaN`` token)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data, n_frames: int | None = None) -> "Scribbles":
        """Build from the DAVIS dict form; ``n_frames`` (if given) must match its frame count."""
        if not isinstance(data, dict):
            raise BadInputError(f"scribbles must be a JSON object; got {type(data).__name__}")
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise BadInputError(f"scribbles: unknown keys {sorted(unknown)} (expected 'scribbles', 'sequence')")
        if "scribbles" not in data:
            raise BadInputError("scribbles: missing the 'scribbles' list")
        frames = data["scribbles"]
        if not isinstance(frames, list) or not all(isinstance(f, list) for f in frames):
            raise BadInputError("scribbles: 'scribbles' must be a list with one list of strokes per frame")
        if n_frames is not None and len(frames) != n_frames:
            raise BadInputError(
                f"frame-count mismatch: the scribbles describe {len(frames)} frames, the video has {n_frames}"
            )
        if not frames:
            raise BadInputError("scribbles: the 'scribbles' list is empty (no frames)")
        sequence = data.get("sequence", "")
        if not isinstance(sequence, str):
            raise BadInputError(f"scribbles: 'sequence' must be a name (text); got {type(sequence).__name__}")
        result = cls(len(frames), sequence)
        for frame_idx, strokes in enumerate(frames):
            for k, stroke in enumerate(strokes):
                where = f"frame {frame_idx}, stroke {k}"
                if not isinstance(stroke, dict):
                    raise BadInputError(f"{where}: a stroke must be a JSON object")
                extra = set(stroke) - _STROKE_KEYS
                if extra:
                    raise BadInputError(f"{where}: unknown keys {sorted(extra)}")
                for key in ("path", "object_id"):
                    if key not in stroke:
                        raise BadInputError(f"{where}: missing {key!r}")
                path = _validate_path(stroke["path"], where)
                object_id = checks.object_id(stroke["object_id"], f"{where}: object_id")
                times = (_validate_time(stroke.get(key), f"{where}: {key}") for key in ("start_time", "end_time"))
                result.frames[frame_idx].append(Stroke(path, object_id, *times))
        return result

    @classmethod
    def from_json(cls, text: str, n_frames: int | None = None) -> "Scribbles":
        """Parse DAVIS JSON text; invalid or absurdly nested JSON raises BadInputError."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise BadInputError(f"scribbles: not valid JSON ({error})") from None
        except RecursionError:  # "[[[[...": no scribble file nests more than four deep
            raise BadInputError("scribbles: JSON nested too deeply to be DAVIS scribbles") from None
        return cls.from_dict(data, n_frames=n_frames)

    @classmethod
    def load(cls, path: str | Path, n_frames: int | None = None) -> "Scribbles":
        """Read a DAVIS scribble file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise BadInputError(f"scribble file not found: {path}") from None
        except UnicodeDecodeError:
            raise BadInputError(f"scribble file {path} is not UTF-8 text") from None
        except PermissionError:
            raise BadInputError(f"cannot read scribble file {path}: permission denied") from None
        except OSError as error:  # a folder, ...
            raise BadInputError(f"cannot read scribble file {path} ({error.strerror or error})") from None
        try:
            return cls.from_json(text, n_frames=n_frames)
        except BadInputError as error:
            raise BadInputError(f"{path}: {error}") from None

    def save(self, path: str | Path, indent: int | None = None) -> None:
        """Write the DAVIS JSON atomically."""
        atomic_write_text(path, self.to_json(indent=indent))


def rasterize_strokes(strokes: Iterable[Stroke], height: int, width: int, brush_width: float = 3) -> np.ndarray:
    """Label map of strokes drawn in order (see :meth:`Scribbles.rasterize`).

    A stroke covers (a) the pixel that contains each of its points and (b) every pixel
    whose centre lies within ``brush_width / 2`` of the polyline through its points.
    Computing the coverage from exact distances (rather than with a drawing library's
    line rules) guarantees what the label transfer relies on: no point of a scribble is
    ever lost, and a wider brush covers a superset of a narrower one.
    """
    if height < 1 or width < 1:
        raise BadInputError(f"cannot rasterise into a {width}x{height} frame")
    if not brush_width > 0:
        raise BadInputError(f"brush_width must be positive; got {brush_width}")
    labels = np.full((height, width), UNKNOWN, dtype=np.int64)
    for stroke in strokes:
        labels[_stroke_coverage(stroke.pixel_path(height, width), height, width, brush_width / 2.0)] = (
            stroke.object_id
        )
    return labels


def _stroke_coverage(points: np.ndarray, height: int, width: int, radius: float) -> np.ndarray:
    """Boolean ``(height, width)`` coverage of a polyline of continuous ``(col, row)`` points."""
    covered = np.zeros((height, width), dtype=bool)
    cols = np.clip(np.floor(points[:, 0]).astype(np.int64), 0, width - 1)
    rows = np.clip(np.floor(points[:, 1]).astype(np.int64), 0, height - 1)
    covered[rows, cols] = True
    starts = points[:-1] if len(points) > 1 else points
    ends = points[1:] if len(points) > 1 else points
    for (ax, ay), (bx, by) in zip(starts.tolist(), ends.tolist()):
        # pixels whose centre (c + 0.5, r + 0.5) may lie within `radius` of the segment
        c0 = max(int(math.floor(min(ax, bx) - radius - 0.5)), 0)
        c1 = min(int(math.ceil(max(ax, bx) + radius + 0.5)), width)
        r0 = max(int(math.floor(min(ay, by) - radius - 0.5)), 0)
        r1 = min(int(math.ceil(max(ay, by) + radius + 0.5)), height)
        if c0 >= c1 or r0 >= r1:
            continue
        xs = np.arange(c0, c1, dtype=np.float64)[None, :] + 0.5 - ax
        ys = np.arange(r0, r1, dtype=np.float64)[:, None] + 0.5 - ay
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        t = np.clip((xs * dx + ys * dy) / length2, 0.0, 1.0) if length2 > 0 else 0.0
        distance2 = (xs - t * dx) ** 2 + (ys - t * dy) ** 2
        covered[r0:r1, c0:c1] |= distance2 <= radius * radius
    return covered
