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
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence as SequenceT

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import BadInputError
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
    "synthetic_video",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def sample_root() -> Path:
    """The DAVIS-layout sample shipped in the repository's ``data/davis`` folder."""
    root = Path(__file__).resolve().parent.parent / "data" / "davis"
    if not root.is_dir():
        raise BadInputError(
            f"the shipped sample is missing: {root} does not exist "
            "(simwidgets must be installed from a checkout of the repository)"
        )
    return root


def read_image(path: str | Path) -> np.ndarray:
    """Decode one image file to ``(H, W, 3)`` uint8 RGB; corrupt files raise BadInputError."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise BadInputError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadInputError(f"cannot decode image {path}: corrupt or truncated ({error})") from None


def read_mask(path: str | Path) -> np.ndarray:
    """Decode a mask PNG to its raw ``(H, W)`` values (palette indices or grey levels)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("P", "L", "1", "I", "I;16"):
                return np.asarray(image).astype(np.int64)
            if image.mode in ("RGB", "RGBA", "LA"):
                # an RGB export of a binary mask: any non-black pixel is foreground
                array = np.asarray(image.convert("RGB"))
                return (array.max(axis=2) > 0).astype(np.int64) * 255
            raise BadInputError(f"mask {path} has unsupported image mode {image.mode!r}")
    except FileNotFoundError:
        raise BadInputError(f"mask file not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise BadInputError(f"cannot decode mask {path}: corrupt or truncated ({error})") from None


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
        shape = tuple(self.frames.shape)
        if len(shape) != 4 or shape[3] != 3:
            raise BadInputError(f"frames must have shape (T, H, W, 3); got {shape}")
        if isinstance(self.frames, np.ndarray) and self.frames.dtype != np.uint8:
            raise BadInputError(f"frames must be uint8; got {self.frames.dtype}")
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


def list_sequences(root: str | Path, resolution: str = "480p") -> list[str]:
    """Names of the sequences under ``ROOT/JPEGImages/<resolution>``."""
    folder = Path(root) / "JPEGImages" / resolution
    if not folder.is_dir():
        raise BadInputError(f"not a DAVIS root: {folder} does not exist")
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


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

    Binary annotations (only 0 and 255) become object 1; indexed annotations keep their ids.
    """
    root = Path(root)
    frame_dir = root / "JPEGImages" / resolution / name
    if not (root / "JPEGImages").is_dir():
        raise BadInputError(f"not a DAVIS root: {root / 'JPEGImages'} does not exist")
    if not frame_dir.is_dir():
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
    if load_masks and mask_dir.is_dir():
        mask_paths = sorted(mask_dir.glob("*.png"))
        if mask_paths:
            if len(mask_paths) != n:
                raise BadInputError(
                    f"frame-count mismatch in {name!r}: {n} frames but {len(mask_paths)} masks"
                )
            raw = []
            for path in mask_paths:
                values = read_mask(path)
                if values.shape != (h, w):
                    raise BadInputError(
                        f"mask {path} is {values.shape[1]}x{values.shape[0]}, "
                        f"the frames are {w}x{h}"
                    )
                raw.append(values)
            masks = np.stack(raw)
            present = np.unique(masks)
            if set(present.tolist()) <= {0, 255}:
                masks = (masks > 0).astype(np.uint8)

    scribbles = {}
    scribble_dir = root / "Scribbles" / name
    if scribble_dir.is_dir():
        for path in sorted(scribble_dir.glob("*.json")):
            scribbles[path.stem] = Scribbles.load(path, n_frames=n)
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
