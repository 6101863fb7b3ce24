"""Pictures shared by the notebooks: mask overlays, scribbles, frame grids, score curves.

Everything here works on numpy arrays and matplotlib only (no torch), so notebooks and
widgets can use it freely.  Colours are the DAVIS palette everywhere: object 1 is red,
2 green, 3 yellow, ..., background is left uncoloured.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from .errors import BadInputError
from .palette import MAX_OBJECTS, davis_palette
from .scribbles import Scribbles

__all__ = ["mask_rgba", "overlay", "draw_scribbles", "show_frames", "plot_frame_scores"]

_PALETTE = davis_palette()


def mask_rgba(mask: np.ndarray, size: tuple[int, int] | None = None, opacity: float = 0.5) -> np.ndarray:
    """RGBA image ``(h, w, 4)`` uint8 of a label map in DAVIS colours.

    Objects are filled with ``opacity`` and outlined at twice that (so boundaries stay
    visible at low opacity); background is transparent.  With ``size=(h, w)`` the label map
    is resized with nearest neighbour first, so no mixed ids appear at boundaries.
    """
    labels = np.asarray(mask)
    if labels.ndim != 2:
        raise BadInputError(f"a mask must be 2-D (H, W); got shape {labels.shape}")
    if labels.max(initial=0) > MAX_OBJECTS or labels.min(initial=0) < 0:
        raise BadInputError(f"mask values must be object ids in 0..{MAX_OBJECTS}")
    labels = labels.astype(np.uint8)
    if size is not None and labels.shape != tuple(size):
        h, w = size
        labels = np.asarray(Image.fromarray(labels, mode="L").resize((w, h), Image.NEAREST))
    fill = int(round(float(np.clip(opacity, 0, 1)) * 255))
    lut = np.empty((256, 4), dtype=np.uint8)
    lut[:, :3] = _PALETTE
    lut[:, 3] = fill
    lut[0, 3] = 0
    rgba = lut[labels]
    # boundaries: a pixel whose right or lower neighbour has another id (and that neighbour)
    horizontal = labels[:, :-1] != labels[:, 1:]
    vertical = labels[:-1] != labels[1:]
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= horizontal
    edge[:, 1:] |= horizontal
    edge[:-1] |= vertical
    edge[1:] |= vertical
    edge &= labels > 0
    rgba[edge, 3] = min(255, 2 * fill)
    return rgba


def overlay(frame: np.ndarray, mask: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """The frame ``(H, W, 3)`` with the mask's objects blended in their DAVIS colours."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise BadInputError(f"a frame must have shape (H, W, 3); got {frame.shape}")
    mask = np.asarray(mask)
    if mask.shape != frame.shape[:2]:
        raise BadInputError(f"mask of shape {mask.shape} does not match the frame {frame.shape[:2]}")
    rgba = mask_rgba(mask, opacity=opacity).astype(np.float32)
    alpha = rgba[..., 3:] / 255.0
    return (frame * (1 - alpha) + rgba[..., :3] * alpha).astype(np.uint8)


def draw_scribbles(ax, scribbles: Scribbles, frame_idx: int, size: tuple[int, int], linewidth: float = 2.5):
    """Plot a frame's strokes on a matplotlib axis showing a ``size = (H, W)`` image."""
    height, width = size
    for stroke in scribbles.frames[frame_idx]:
        xy = stroke.pixel_path(height, width)
        colour = _PALETTE[stroke.object_id] / 255.0 if stroke.object_id else (1.0, 1.0, 1.0)
        ax.plot(xy[:, 0], xy[:, 1], "-", color="black", linewidth=linewidth + 1.5, solid_capstyle="round")
        ax.plot(xy[:, 0], xy[:, 1], "-", color=colour, linewidth=linewidth, solid_capstyle="round")


def show_frames(
    frames,
    masks=None,
    frame_indices: Sequence[int] | None = None,
    scribbles: Scribbles | None = None,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    width: float = 3.6,
    opacity: float = 0.5,
):
    """A grid of frames, with masks overlaid and scribbles drawn when given; returns the figure."""
    import matplotlib.pyplot as plt

    n_frames = len(frames)
    if frame_indices is None:
        frame_indices = np.linspace(0, n_frames - 1, min(ncols, n_frames)).round().astype(int).tolist()
    frame_indices = [int(i) for i in frame_indices]
    for i in frame_indices:
        if not 0 <= i < n_frames:
            raise BadInputError(f"frame_idx {i} is outside the video (0..{n_frames - 1})")
    ncols = min(ncols, len(frame_indices))
    nrows = -(-len(frame_indices) // ncols)
    first = np.asarray(frames[frame_indices[0]])
    aspect = first.shape[0] / first.shape[1]
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, width * aspect * nrows + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(frame_indices):
            continue
        t = frame_indices[k]
        image = np.asarray(frames[t])
        if masks is not None:
            image = overlay(image, np.asarray(masks[t]), opacity)
        ax.imshow(image)
        if scribbles is not None:
            draw_scribbles(ax, scribbles, t, image.shape[:2])
        ax.set_title(titles[k] if titles is not None else f"frame {t}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_frame_scores(values, label: str = "J&F", ax=None, annotated: Sequence[int] = (), **plot_kwargs):
    """Per-frame score curve (e.g. ``scores.per_frame``) with annotated frames marked."""
    import matplotlib.pyplot as plt

    values = np.asarray(values, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 2.6))
    ax.plot(np.arange(len(values)), values, label=label, **plot_kwargs)
    for t in annotated:
        ax.axvline(t, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("frame")
    ax.set_ylabel(label)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    return ax
