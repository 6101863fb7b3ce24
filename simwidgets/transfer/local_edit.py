"""A correction changes its own frame only where it reaches.

On the DAVIS protocol the robot draws a correction on the largest error of the worst
frame, and so does a person: the stroke says "this region is wrong", not "re-segment the
whole frame".  A whole new transfer of that frame also moves pixels far from the stroke
(the new references pull in look-alike cells elsewhere), and those moves are as likely to
be wrong as right, so the corrected frame itself could end worse than before.  Interactive
image tools keep such edits local; MiVOS's interaction module likewise edits the previous
mask of the frame that was scribbled on.

:func:`local_changes` keeps the frame the user saw and takes from the new transfer only what
each stroke asks for, where it reaches: the connected regions that the new transfer gives
*to the stroke's label* and that touch a stroke of that label.  An object stroke can only
add pixels to its object, a background stroke can only take pixels away from the objects,
and nothing else on that frame moves (the new transfer may also have changed look-alike
regions far away, or the other way round next to the stroke; those stay as they were).
Every stroke pixel gets its label: the transfer clamps them, so each lies in such a region.
Other frames keep the whole new transfer.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["local_changes"]

_EIGHT = np.ones((3, 3), bool)  # 8-connected regions


def local_changes(previous: np.ndarray, proposed: np.ndarray, strokes: np.ndarray, reach: int = 1) -> np.ndarray:
    """``previous``, with the regions ``proposed`` gives to a stroke's label where they touch such a stroke.

    Parameters
    ----------
    previous : ``(H, W)`` object ids of the frame as the user saw it before correcting it
    proposed : ``(H, W)`` object ids of the new transfer of that frame
    strokes : ``(H, W)`` int, the correction's stroke labels (object id, 0 for background),
        ``-1`` where no stroke is
    reach : pixels by which a stroke is widened before "touches" is tested (a region beside
        a stroke whose own pixels already had the right label still counts)

    Returns
    -------
    ``(H, W)`` array of ``proposed``'s dtype.
    """
    previous, proposed, strokes = np.asarray(previous), np.asarray(proposed), np.asarray(strokes)
    if not previous.shape == proposed.shape == strokes.shape:
        raise ValueError(f"shapes differ: {previous.shape}, {proposed.shape}, {strokes.shape}")
    out = previous.astype(proposed.dtype, copy=True)
    reach = max(0, int(reach))
    for label in np.unique(strokes[strokes >= 0]):
        gained = (proposed == label) & (previous != label)
        if not gained.any():
            continue
        regions, _ = ndimage.label(gained, _EIGHT)
        # "touches": a pixel within ``reach`` of a stroke of this label (widened on the
        # strokes' bounding box only: a whole-frame dilation costs more than the rest)
        drawn = strokes == label
        rows, cols = np.nonzero(drawn)
        r0, r1 = max(rows.min() - reach, 0), rows.max() + reach + 1
        c0, c1 = max(cols.min() - reach, 0), cols.max() + reach + 1
        near = drawn[r0:r1, c0:c1]
        if reach:
            near = ndimage.maximum_filter(near, size=2 * reach + 1, mode="constant")
        reached = np.unique(regions[r0:r1, c0:c1][near])
        out[np.isin(regions, reached[reached > 0])] = label
    return out
