"""Export: masks and overlays in the formats other tools read.

One writer per format, shared by the command line and the app: DAVIS palette PNGs (what
the DAVIS tools and most VOS code read) and an animated GIF overlay to show a result.
Output paths are checked before anything is written (:mod:`simwidgets.checks`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .checks import output_file, output_folder
from .errors import BadInputError
from .palette import save_indexed_png
from .viz import overlay

__all__ = ["write_masks", "overlay_animation"]


def write_masks(masks, folder: str | Path) -> list[Path]:
    """Write ``(T, H, W)`` object ids as DAVIS palette PNGs ``folder/00000.png ...``.

    The one mask writer of the CLI and the app: the folder is created; an existing file
    in its place (or above it) is an error that names it, not a traceback.  Returns the
    paths written.
    """
    masks = np.asarray(masks) if not hasattr(masks, "shape") else masks
    if len(masks.shape) != 3:
        raise BadInputError(f"masks must be (T, H, W) object ids; got shape {tuple(masks.shape)}")
    folder = output_folder(folder, "mask folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadInputError(f"cannot create the mask folder {folder} ({error.strerror or error})") from None
    paths = []
    for frame_idx, mask in enumerate(masks):
        path = folder / f"{frame_idx:05d}.png"
        save_indexed_png(mask, path)
        paths.append(path)
    return paths


def overlay_animation(frames, masks, path, fps: float = 10.0, width: int | None = 480, opacity: float = 0.5) -> Path:
    """An animated GIF of the masks blended over the frames (DAVIS colours).

    Parameters
    ----------
    frames : ``(T, H, W, 3)`` uint8 (array or LazyFrames)
    masks : ``(T, H, W)`` object ids
    path : output file (``.gif``)
    fps : frames per second
    width : width of the animation in pixels (height follows); None keeps the video's
    opacity : of the object colours
    """
    masks = np.asarray(masks)
    if len(frames) != len(masks):
        raise BadInputError(f"{len(frames)} frames but {len(masks)} masks")
    if not fps > 0:
        raise BadInputError(f"fps must be positive; got {fps}")
    path = output_file(path, "animation")
    if path.suffix.lower() != ".gif":
        raise BadInputError(f"the animation is written as a GIF: give a .gif path; got {path.name}")
    images = []
    for frame_idx in range(len(masks)):
        image = Image.fromarray(overlay(np.asarray(frames[frame_idx]), masks[frame_idx], opacity))
        if width is not None and image.width != width:
            image = image.resize((int(width), max(1, round(image.height * width / image.width))), Image.BILINEAR)
        images.append(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000 / fps)), loop=0)
    return path
