"""Video sequences: DAVIS-layout folders on disk and synthetic videos for tests and teaching.

Conventions used everywhere in simwidgets:

* frames are uint8 RGB, shape ``(T, H, W, 3)``;
* masks are integer label maps, shape ``(T, H, W)``, ``0`` = background, ``1..N`` objects;
* ``frame_idx`` names a frame index.

A DAVIS root looks like::

    ROOT/JPEGImages/480p/<sequence>/00000.jpg ...
    ROOT/Annotations/480p/<sequence>/00000.png ...   binary 0/255 or indexed ids
    ROOT/Scribbles/<sequence>/001.json ...            DAVIS interactive scribbles

Frames can be decoded lazily (``lazy=True``) so that long videos never sit in memory
as full-resolution RGB all at once.

File names are ordered as people number frames, not as text: ``9.png`` comes before
``10.png`` (digit runs compare as numbers; see :func:`natural_key`), and a mask belongs to
the frame with the same number (``Annotations/.../00003.png`` to ``JPEGImages/.../00003.jpg``),
never to "the fourth file".
"""
from __future__ import annotations

import errno
import os
import re
import stat
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence as SequenceT

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import checks
from .errors import BadInputError
from .resources import shipped_file
from .scribbles import Scribbles

__all__ = [
    "VideoSequence",
    "LazyFrames",
    "load_davis_sequence",
    "list_sequences",
    "sample_root",
    "load_sample",
    "read_image",
    "read_mask",
    "read_mask_folder",
    "resize_frame_and_mask",
    "natural_key",
    "synthetic_video",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: the grey level of "object" in a binary mask, by PIL mode: DAVIS 2016 masks are 0/255,
#: 16-bit exports 0/65535 (Pillow opens 16-bit PNGs as "I;16", older versions as "I")
_BINARY_WHITE = {"1": 1, "L": 255, "P": 255, "I;16": 65535, "I;16B": 65535, "I;16L": 65535, "I": 65535}


def sample_root() -> Path:
    """The DAVIS-layout sample shipped with simwidgets (``data/davis`` of the repository,
    inside the package when installed from a wheel; see :mod:`simwidgets.resources`)."""
    root = shipped_file("davis")
    if not root.is_dir():
        raise BadInputError(f"the shipped sample is missing: {root} does not exist; reinstall simwidgets")
    return root


def _unreadable(error: OSError, what: str, path: Path) -> BadInputError | None:
    """The message for a file that cannot be opened at all (as opposed to a corrupt one)."""
    if isinstance(error, FileNotFoundError):
        return BadInputError(f"{what} file not found: {path}")
    if isinstance(error, PermissionError):
        return BadInputError(f"cannot read {what} {path}: permission denied")
    if isinstance(error, IsADirectoryError):
        return BadInputError(f"cannot read {what} {path}: it is a folder")
    return None


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image file to ``(H, W, 3)`` uint8 RGB; corrupt files raise BadInputError."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        unreadable = _unreadable(error, "image", path) if isinstance(error, OSError) else None
        raise (unreadable or BadInputError(f"cannot decode image {path}: corrupt or truncated ({error})")) from None


def read_mask(path: str | Path) -> np.ndarray:
    """Decode a mask PNG to its raw ``(H, W)`` values (palette indices or grey levels)."""
    return _decode_mask(Path(path))[0]


def _decode_mask(path: Path) -> tuple[np.ndarray, int]:
    """``(values, white)``: the raw values as int64 and the grey level that a binary mask
    of this bit depth uses for "object" (255 for 8-bit, 65535 for 16-bit)."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in _BINARY_WHITE:
                return np.asarray(image).astype(np.int64), _BINARY_WHITE[image.mode]
            if image.mode in ("RGB", "RGBA", "LA"):
                # an RGB export of a binary mask: any non-black pixel is foreground
                array = np.asarray(image.convert("RGB"))
                return (array.max(axis=2) > 0).astype(np.int64) * 255, 255
            raise BadInputError(f"mask {path} has unsupported image mode {image.mode!r}")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        unreadable = _unreadable(error, "mask", path) if isinstance(error, OSError) else None
        raise (unreadable or BadInputError(f"cannot decode mask {path}: corrupt or truncated ({error})")) from None


class LazyFrames:
    """Array-like ``(T, H, W, 3)`` uint8 frames decoded on demand, with a small LRU cache.

    Indexing with an int returns one frame; with a slice or a list, a stacked array;
    ``np.asarray(frames)`` decodes everything.
    """

    def __init__(self, paths: SequenceT[Path], cache_size: int = 16):
        if not paths:
            raise BadInputError("a video needs at least one frame")
        self.paths = [Path(p) for p in paths]
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        first = self[0]
        self.shape = (len(self.paths),) + first.shape
        self.dtype = np.dtype(np.uint8)
        self.ndim = 4

    def __len__(self) -> int:
        return len(self.paths)

    def _frame(self, index: int) -> np.ndarray:
        if index < 0:
            index += len(self.paths)
        if not 0 <= index < len(self.paths):
            raise IndexError(f"frame_idx {index} is outside the video (0..{len(self.paths) - 1})")
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        frame = read_image(self.paths[index])
        if hasattr(self, "shape") and frame.shape != self.shape[1:]:
            raise BadInputError(
                f"frames of mixed sizes: {self.paths[index]} is {frame.shape[1]}x{frame.shape[0]}, "
                f"the first frame is {self.shape[2]}x{self.shape[1]}"
            )
        self._cache[index] = frame
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return frame

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self._frame(int(key))
        if isinstance(key, slice):
            return np.stack([self._frame(i) for i in range(*key.indices(len(self)))])
        if isinstance(key, (list, tuple, np.ndarray)):
            return np.stack([self._frame(int(i)) for i in key])
        raise TypeError(f"LazyFrames indices must be int, slice or list, not {type(key).__name__}")

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self._frame(i)

    def __array__(self, dtype=None, copy=None):
        array = np.stack([self._frame(i) for i in range(len(self))])
        return array if dtype is None else array.astype(dtype)


@dataclass
class VideoSequence:
    """One video: frames, optional ground-truth masks and any scribble files.

    Attributes
    ----------
    name : str
    frames : np.ndarray or LazyFrames, ``(T, H, W, 3)`` uint8
    masks : np.ndarray or None, ``(T, H, W)`` object ids (0 = background), uint8 when they fit
    scribbles : dict mapping a file stem (``"001"``) to :class:`Scribbles`
    """

    name: str
    frames: np.ndarray | LazyFrames
    masks: np.ndarray | None = None
    scribbles: dict[str, Scribbles] = field(default_factory=dict)

    def __post_init__(self):
        self.frames = checks.video_frames(self.frames)  # at least one frame; a list is stacked
        shape = tuple(self.frames.shape)
        if self.masks is not None:
            self.masks = validate_masks(self.masks, shape[:3])

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the frames."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    @property
    def object_ids(self) -> list[int]:
        """Object ids present in the ground truth (background excluded)."""
        if self.masks is None:
            return []
        return [int(i) for i in np.unique(self.masks) if i > 0]

    def clip(self, start: int, stop: int) -> "VideoSequence":
        """Frames ``start..stop-1`` with their masks and scribbles (re-indexed from 0)."""
        if not 0 <= start < stop <= self.n_frames:
            raise BadInputError(f"clip {start}:{stop} is not inside the video (0..{self.n_frames})")
        frames = self.frames[start:stop]
        masks = None if self.masks is None else self.masks[start:stop]
        scribbles = {k: s.clip(start, stop) for k, s in self.scribbles.items()}
        return VideoSequence(name=self.name, frames=np.asarray(frames), masks=masks, scribbles=scribbles)

    def __repr__(self) -> str:
        h, w = self.size
        return (
            f"VideoSequence({self.name!r}, {self.n_frames} frames {w}x{h}, "
            f"objects={self.object_ids}, scribbles={sorted(self.scribbles)})"
        )


def validate_masks(masks, expected_shape: tuple[int, ...], where: str = "masks",
                   palette_only: bool = False) -> np.ndarray:
    """Check label maps against the video's shape; return them as a new array.

    Returns uint8 when every id fits the DAVIS palette (0..255; always, in practice): a
    480p video of 80 frames then holds 33 MB of masks instead of 262 MB as int64.  Larger
    ids (16-bit label images) stay int64, unless ``palette_only`` (the overlays of the
    widgets, which can only draw palette colours) makes them an error.  Everything is
    checked before anything is converted, so a caller that stores the result only on
    success keeps its previous state on bad input.

    Parameters
    ----------
    masks : ``expected_shape`` array of object ids (any integer dtype, or bool)
    expected_shape : ``(T, H, W)`` of the video, or ``(H, W)`` for one frame
    where : how error messages name the array
    palette_only : reject ids outside 0..255 (instead of only negative ids)
    """
    masks = np.asarray(masks)
    if masks.shape != tuple(expected_shape):
        axes = "(T, H, W)" if len(expected_shape) == 3 else "(H, W)"
        raise BadInputError(
            f"{where} of shape {masks.shape} do not match the video {tuple(expected_shape)} {axes}"
        )
    if not np.issubdtype(masks.dtype, np.integer) and masks.dtype != bool:
        raise BadInputError(f"{where} must hold integer object ids; got dtype {masks.dtype}")
    if masks.size == 0 or masks.dtype in (np.dtype(bool), np.dtype(np.uint8)):
        return masks.astype(np.uint8)  # a copy; nothing outside 0..255 to check
    low, high = int(masks.min()), int(masks.max())
    if palette_only and (low < 0 or high > 255):
        bad = low if low < 0 else high
        raise BadInputError(f"{where}: object id {bad} is outside the palette (0..255; 0 = background)")
    if low < 0:
        raise BadInputError(f"{where} hold a negative object id ({low})")
    return masks.astype(np.uint8 if high <= 255 else np.int64)


def natural_key(name: str) -> tuple:
    """Sort key that orders file names as people number frames: ``9.png`` < ``10.png``.

    Digit runs compare as numbers, the text between them case-insensitively (then the
    exact name breaks ties, e.g. ``7.png`` and ``007.png``).  Names without digits come
    out in plain text order, and zero-padded DAVIS names (``00000.jpg``) in the same
    order as before.
    """
    pieces = re.split(r"(\d+)", name)
    return tuple(int(p) if i % 2 else p.casefold() for i, p in enumerate(pieces)), name


def _frame_number(path: Path) -> int | None:
    """The frame number a file name carries: its last run of digits (``00012.png`` -> 12)."""
    digits = re.findall(r"\d+", Path(path).stem)
    return int(digits[-1]) if digits else None


def _is_folder(path: Path, what: str) -> bool:
    """Whether ``path`` is a folder; False if nothing is there.

    What :meth:`Path.is_dir` would hide raises a BadInputError: a symlink loop (``is_dir``
    says False, and the sequence would be reported "unknown"), a symlink to nothing, a
    folder that may not be entered.
    """
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except PermissionError:
        raise BadInputError(f"cannot read {what} {path}: permission denied") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise BadInputError(f"{what} {path} is a symlink loop: it cannot be resolved") from None
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            if os.path.islink(path):
                raise BadInputError(
                    f"{what} {path} is a symlink to {os.readlink(path)}, which does not exist"
                ) from None
            return False
        raise BadInputError(f"cannot read {what} {path} ({error.strerror or error})") from None


def _list_folder(folder: Path, what: str) -> list[Path]:
    """The entries of ``folder``; a folder that cannot be read raises (never "empty")."""
    try:
        return list(folder.iterdir())
    except PermissionError:
        raise BadInputError(f"cannot read {what} {folder}: permission denied") from None
    except OSError as error:
        raise BadInputError(f"cannot read {what} {folder} ({error.strerror or error})") from None


def _files(folder: Path, suffixes: tuple[str, ...], what: str) -> list[Path]:
    """Files of ``folder`` with one of ``suffixes`` (any case), in :func:`natural_key` order."""
    paths = [p for p in _list_folder(folder, what) if p.suffix.lower() in suffixes]
    return sorted(paths, key=lambda p: natural_key(p.name))


def list_sequences(root: str | Path, resolution: str = "480p") -> list[str]:
    """Names of the sequences under ``ROOT/JPEGImages/<resolution>``."""
    folder = Path(root) / "JPEGImages" / resolution
    if not _is_folder(folder, "DAVIS folder"):
        raise BadInputError(f"not a DAVIS root: {folder} does not exist")
    return sorted(p.name for p in _list_folder(folder, "DAVIS folder") if os.path.isdir(p))


def _image_files(folder: Path) -> list[Path]:
    return _files(folder, IMAGE_SUFFIXES, "frame folder")


def _pair_masks(frame_paths: list[Path], mask_paths: list[Path], name: str, mask_dir: Path) -> list[Path]:
    """The mask of each frame, matched by frame number (by the whole stem for names without one).

    Masks must cover every frame: a sequence annotated on a few frames only (DAVIS
    semi-supervised sets have frame 0 alone) is an error that names the first frame
    without a mask, as is a mask whose number no frame has.  Pairing by position would
    silently put each mask on a neighbouring frame when the numbering differs.
    """
    def by_key(paths, what):
        keyed = {}
        for path in paths:
            number = _frame_number(path)
            key = path.stem if number is None else number
            if key in keyed:
                raise BadInputError(
                    f"{what} {keyed[key].name} and {path.name} of {name!r} have the same frame number {key}"
                )
            keyed[key] = path
        return keyed

    frames, masks = by_key(frame_paths, "frames"), by_key(mask_paths, "masks")
    if len(frames) != len(masks):
        problem = f"frame-count mismatch in {name!r}: {len(frames)} frames but {len(masks)} masks"
    else:
        problem = f"masks of {name!r} do not match its frames by number"
    missing = next((key for key in frames if key not in masks), None)
    if missing is not None:
        raise BadInputError(f"{problem}; frame {frames[missing].name} has no mask in {mask_dir}")
    orphan = next((key for key in masks if key not in frames), None)
    if orphan is not None:
        raise BadInputError(f"{problem}; mask {masks[orphan].name} has no frame of that number")
    return [masks[key] for key in frames]


def _load_masks(paths: list[Path], size: tuple[int, int]) -> np.ndarray:
    """Decode the masks of a sequence to ``(T, H, W)`` object ids.

    A sequence whose every mask holds only 0 and white (0/255 as in DAVIS 2016, or 0 and
    its bit depth's maximum, 0/65535 for a 16-bit PNG) is binary: white becomes object 1.  Otherwise the
    values are object ids (indexed DAVIS 2017 PNGs, 16-bit label images with small ids);
    an id above 255 cannot be drawn with the DAVIS palette nor saved as an indexed PNG,
    so it is an error naming the id and the file.
    """
    h, w = size
    raw, binary = [], True
    for path in paths:
        values, white = _decode_mask(path)
        if values.shape != (h, w):
            raise BadInputError(f"mask {path} is {values.shape[1]}x{values.shape[0]}, the frames are {w}x{h}")
        present = np.unique(values)
        binary = binary and (set(present.tolist()) <= {0, 255} or set(present.tolist()) <= {0, white})
        raw.append((path, values, present))
    if binary:
        return np.stack([values > 0 for _, values, _ in raw]).astype(np.uint8)
    for path, _, present in raw:
        if present[-1] > checks.MAX_OBJECT_ID:
            raise BadInputError(
                f"mask {path} holds object id {int(present[-1])}; ids must be 0..{checks.MAX_OBJECT_ID} "
                "(the DAVIS palette), or the mask binary (0 and 255, or 0 and 65535)"
            )
    return np.stack([values for _, values, _ in raw]).astype(np.uint8)


def resize_frame_and_mask(frame: np.ndarray, mask: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """One frame and its mask scaled by ``scale``: the frame bilinear, the mask nearest (ids
    stay ids), both to the same rounded size; returned as uint8."""
    frame, mask = np.asarray(frame), np.asarray(mask)
    if scale == 1.0:
        return frame, mask.astype(np.uint8)
    size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
    return (np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR)),
            np.asarray(Image.fromarray(mask.astype(np.uint8)).resize(size, Image.NEAREST)))


def read_mask_folder(folder: str | Path, n_frames: int | None = None,
                     size: tuple[int, int] | None = None) -> dict[int, np.ndarray]:
    """Masks of some frames, from a folder of PNGs named by frame number, as references.

    ``{frame_idx: (H, W) uint8 object ids}``: ``00040.png`` is frame 40 (the number in the
    name, as everywhere in simwidgets; a name without a number is an error).  The same
    rules as a sequence's Annotations: binary 0/255 (or 0/65535) masks become object 1,
    indexed masks keep their ids.  ``n_frames`` and ``size`` ``(H, W)``, when given, are
    checked (a mask for frame 90 of an 80-frame video is an error, not ignored).
    """
    folder = Path(folder)
    if not _is_folder(folder, "mask folder"):
        raise BadInputError(f"mask folder not found: {folder}")
    paths = _files(folder, (".png",), "mask folder")
    if not paths:
        raise BadInputError(f"no .png masks in {folder}")
    numbers = []
    for path in paths:
        number = _frame_number(path)
        if number is None:
            raise BadInputError(f"mask {path.name} in {folder} has no frame number in its name")
        if number in numbers:
            raise BadInputError(f"two masks of frame {number} in {folder}")
        if n_frames is not None and number >= n_frames:
            raise BadInputError(f"mask {path.name} is for frame {number}; the video has frames 0..{n_frames - 1}")
        numbers.append(number)
    if size is None:
        size = _decode_mask(paths[0])[0].shape
    masks = _load_masks(paths, tuple(size))
    return dict(zip(numbers, masks))


def _load_scribbles(folder: Path, n_frames: int) -> dict[str, Scribbles]:
    if not _is_folder(folder, "scribble folder"):
        return {}
    return {path.stem: Scribbles.load(path, n_frames=n_frames)
            for path in _files(folder, (".json",), "scribble folder")}


def load_davis_sequence(
    root: str | Path,
    name: str,
    resolution: str = "480p",
    lazy: bool = False,
    load_masks: bool = True,
) -> VideoSequence:
    """Load a DAVIS-layout sequence.

    Parameters
    ----------
    root : path of the DAVIS root (holding ``JPEGImages/``)
    name : sequence name, e.g. ``"bear"``
    lazy : decode frames on demand instead of all at once
    load_masks : read ``Annotations/`` when present

    Frames are in the order of the numbers in their names (``9.png`` before ``10.png``,
    see :func:`natural_key`).  Masks are paired with frames by that number and must cover
    every frame (see :func:`_pair_masks`).  Binary annotations (0/255, or 0/65535 for
    16-bit PNGs) become object 1; indexed annotations keep their ids (0..255).  A folder
    that exists but cannot be read (permissions, a symlink loop) raises BadInputError:
    a video is never loaded silently without its masks or scribbles.
    """
    root = Path(root)
    frame_dir = root / "JPEGImages" / resolution / name
    if not _is_folder(root / "JPEGImages", "DAVIS folder"):
        raise BadInputError(f"not a DAVIS root: {root / 'JPEGImages'} does not exist")
    if not _is_folder(frame_dir, "sequence folder"):
        known = ", ".join(list_sequences(root, resolution)) or "none"
        raise BadInputError(f"unknown sequence {name!r} in {root} (known: {known})")
    paths = _image_files(frame_dir)
    if not paths:
        raise BadInputError(f"sequence {name!r} has no frames in {frame_dir}")
    frames: np.ndarray | LazyFrames = LazyFrames(paths)
    if not lazy:
        frames = np.stack(list(frames))  # LazyFrames checks every frame's size
    n, h, w = frames.shape[:3]

    masks = None
    mask_dir = root / "Annotations" / resolution / name
    if load_masks and _is_folder(mask_dir, "mask folder"):
        mask_paths = _files(mask_dir, (".png",), "mask folder")
        if mask_paths:
            masks = _load_masks(_pair_masks(paths, mask_paths, name, mask_dir), (h, w))

    scribbles = _load_scribbles(root / "Scribbles" / name, n)
    return VideoSequence(name=name, frames=frames, masks=masks, scribbles=scribbles)


def load_sample(name: str = "bear", lazy: bool = False) -> VideoSequence:
    """Load one of the real DAVIS sequences shipped in ``data/davis`` (bear, tennis, dog-agility)."""
    return load_davis_sequence(sample_root(), name, lazy=lazy)


# --------------------------------------------------------------------------- synthetic

def _smooth_noise(rng: np.random.Generator, h: int, w: int, scale: int) -> np.ndarray:
    """Band-limited noise in [0, 1]: random values on a coarse grid, bilinearly upsampled."""
    gh, gw = max(2, h // scale + 2), max(2, w // scale + 2)
    grid = rng.random((gh, gw)).astype(np.float32)
    image = Image.fromarray(grid, mode="F").resize((w, h), Image.BILINEAR)
    return np.asarray(image, dtype=np.float32)


def synthetic_video(
    n_frames: int = 12,
    n_objects: int = 2,
    height: int = 96,
    width: int = 128,
    seed: int = 0,
    noise: float = 0.04,
) -> VideoSequence:
    """A textured video of ``n_objects`` moving shapes with exact masks.

    Each object is an ellipse or a rectangle with its own hue and texture, moving on a
    straight path that bounces off the borders; higher ids are drawn in front (so objects
    occlude each other).  The background is a textured gradient.  Deterministic for a seed.
    """
    if n_frames < 1 or n_objects < 0 or height < 8 or width < 8:
        raise BadInputError(
            f"synthetic_video needs n_frames >= 1, n_objects >= 0 and at least 8x8 pixels; "
            f"got n_frames={n_frames}, n_objects={n_objects}, {width}x{height}"
        )
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background_colour = rng.uniform(60, 200, size=3).astype(np.float32)
    texture = _smooth_noise(rng, height, width, scale=6)[..., None]
    gradient = (xx / width)[..., None] * 40.0
    background = background_colour + 60.0 * (texture - 0.5) + gradient

    objects = []
    hues = rng.permutation(np.linspace(0, 1, max(n_objects, 1), endpoint=False))
    for k in range(n_objects):
        ry = rng.uniform(0.12, 0.25) * height
        rx = rng.uniform(0.12, 0.25) * width
        cy = rng.uniform(ry, height - ry)
        cx = rng.uniform(rx, width - rx)
        speed = rng.uniform(0.5, 2.0) * max(height, width) / 100.0
        angle = rng.uniform(0, 2 * np.pi)
        hue = hues[k]
        colour = np.array(
            [np.cos(2 * np.pi * (hue + s)) * 0.5 + 0.5 for s in (0.0, 1 / 3, 2 / 3)],
            dtype=np.float32,
        ) * 200 + 30
        objects.append(
            dict(
                shape="ellipse" if k % 2 == 0 else "rectangle",
                ry=ry, rx=rx, cy=cy, cx=cx,
                vy=speed * np.sin(angle), vx=speed * np.cos(angle),
                colour=colour,
                texture=_smooth_noise(rng, height, width, scale=3)[..., None],
            )
        )

    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    masks = np.zeros((n_frames, height, width), dtype=np.uint8)
    for t in range(n_frames):
        image = background.copy()
        label = np.zeros((height, width), dtype=np.int64)
        for k, obj in enumerate(objects, start=1):
            if obj["shape"] == "ellipse":
                inside = ((yy - obj["cy"]) / obj["ry"]) ** 2 + ((xx - obj["cx"]) / obj["rx"]) ** 2 <= 1
            else:
                inside = (np.abs(yy - obj["cy"]) <= obj["ry"]) & (np.abs(xx - obj["cx"]) <= obj["rx"])
            shaded = obj["colour"] + 70.0 * (obj["texture"] - 0.5)
            image[inside] = shaded[inside]
            label[inside] = k
            # move, bouncing off the borders
            for pos, vel, radius, limit in (("cy", "vy", "ry", height), ("cx", "vx", "rx", width)):
                obj[pos] += obj[vel]
                if obj[pos] < obj[radius] or obj[pos] > limit - obj[radius]:
                    obj[vel] = -obj[vel]
                    obj[pos] = float(np.clip(obj[pos], obj[radius], limit - obj[radius]))
        image += rng.normal(0, noise * 255, size=image.shape).astype(np.float32)
        frames[t] = np.clip(image, 0, 255).astype(np.uint8)
        masks[t] = label
    return VideoSequence(name=f"synthetic-{seed}", frames=frames, masks=masks)
