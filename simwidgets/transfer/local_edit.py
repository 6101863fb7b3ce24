"""A correction changes its own frame only where it reaches.

On the DAVIS protocol the robot draws a correction on the largest error of the worst
frame, and so does a person: the stroke says "this region is wrong", not "re-segment the
whole frame".  A whole new transfer of that frame also moves pixels far from the stroke
(the new references pull in look-alike cells elsewhere), and those moves are as likely to
be wrong as right, so the corrected frame itself could end worse than before.  Interactive
image tools keep such edits local; MiVOS's interaction module likewise edits the previous
mask of the frame that was scribbled on.

:func:`local_changes` keeps the frame the user saw and takes, from the new transfer, only
the connected regions of change that touch the correction's strokes.  Every stroke pixel
gets its label (the transfer clamps them, so they lie in a region of change that touches a
stroke), a region the stroke reaches grows or shrinks as the transfer says, and nothing
else on that frame moves.  Other frames keep the whole new transfer.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["local_changes"]

_EIGHT = np.ones((3, 3), bool)  # 8-connected regions


def local_changes(previous: np.ndarray, proposed: np.ndarray, strokes: np.ndarray, reach: int = 1) -> np.ndarray:
    """``previous`` with the connected regions of change that touch ``strokes`` taken from ``proposed``.

    Parameters
    ----------
    previous : ``(H, W)`` object ids of the frame as the user saw it before correcting it
    proposed : ``(H, W)`` object ids of the new transfer of that frame
    strokes : ``(H, W)`` bool, the pixels of the correction's strokes
    reach : pixels by which a stroke is widened before "touches" is tested (a region of
        change beside a stroke whose pixels already had the right label still counts)

    Returns
    -------
    ``(H, W)`` array of ``proposed``'s dtype.
    """
    previous, proposed, strokes = np.asarray(previous), np.asarray(proposed), np.asarray(strokes, bool)
    if not previous.shape == proposed.shape == strokes.shape:
        raise ValueError(f"shapes differ: {previous.shape}, {proposed.shape}, {strokes.shape}")
    changed = previous != proposed
    if not changed.any() or not strokes.any():
        return previous.astype(proposed.dtype, copy=True)
    regions, _ = ndimage.label(changed, _EIGHT)
    # "touches": a region with a pixel within ``reach`` of a stroke pixel (the widening is
    # done on the strokes' bounding box only: a whole-frame dilation costs more than the rest)
    rows, cols = np.nonzero(strokes)
    reach = max(0, int(reach))
    r0, r1 = max(rows.min() - reach, 0), rows.max() + reach + 1
    c0, c1 = max(cols.min() - reach, 0), cols.max() + reach + 1
    near = strokes[r0:r1, c0:c1]
    if reach:
        near = ndimage.maximum_filter(near, size=2 * reach + 1, mode="constant")
    reached = np.unique(regions[r0:r1, c0:c1][near])
    keep = np.isin(regions, reached[reached > 0])
    return np.where(keep, proposed, previous).astype(proposed.dtype)
