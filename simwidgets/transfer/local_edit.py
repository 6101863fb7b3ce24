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
Other frames keep the whole new transfer, whose temporal sweeps pass on the edited frame, not
its raw transfer (``corrected_context``, :meth:`~.engine.LabelTransfer._accepted_scores`).

A correction with strokes of several labels on one frame (the robot draws background
strokes on the false positives and object strokes on the misses of the same frame) also
says where each label ends: with ``nearest_stroke`` a pixel may take a stroke's label only
if no stroke of another label is nearer to it.  Without that rule a background stroke on a
false positive joined to the object removed the whole object, next to the object strokes
of the same correction (scooter-gray, fold-0 model, interaction 6: 12,868 true object
pixels removed, the frame's J&F 0.607 -> 0.210; ``benchmarks/results/interactive_kfold.md``).

How far a stroke reaches (``depth``) is measured along the frame when its colours are given
(``image`` and ``edge_cost``, :mod:`.geodesic`): the region a stroke corrects ends where the
image changes, so a stroke through a gap inside the object fixes the gap, not the object
around it.  That bound depends on the frame, the mask shown and the strokes, not on the
new transfer, so a caller that edits the same correction again (every round, and twice
more in the temporal sweeps) passes a ``memo`` and computes it once.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .geodesic import within_reach

__all__ = ["local_changes", "edge_distance"]

_EIGHT = np.ones((3, 3), bool)  # 8-connected regions


def local_changes(previous: np.ndarray, proposed: np.ndarray, strokes: np.ndarray, reach: int = 1,
                  nearest_stroke: bool = True, depth: float | None = None, image: np.ndarray | None = None,
                  edge_cost: float | None = None, memo: dict | None = None) -> np.ndarray:
    """``previous``, with the regions ``proposed`` gives to a stroke's label where they touch such a stroke.

    Parameters
    ----------
    previous : ``(H, W)`` object ids of the frame as the user saw it before correcting it
    proposed : ``(H, W)`` object ids of the new transfer of that frame
    strokes : ``(H, W)`` int, the correction's stroke labels (object id, 0 for background),
        ``-1`` where no stroke is
    reach : pixels by which a stroke is widened before "touches" is tested (a region beside
        a stroke whose own pixels already had the right label still counts)
    nearest_stroke : where strokes of several labels are drawn, a pixel takes a label only
        where a stroke of that label is its nearest stroke (Euclidean distance; ties allow)
    depth : a stroke's change reaches at most ``depth`` times as far from the stroke as the
        stroke lies inside the region it corrects (its pixels' largest distance to a pixel
        the user saw with the stroke's label), plus ``reach``: a stroke drawn along a thin
        error at an object's edge fixes that edge, not the object behind it; one drawn
        along the middle of a large error reaches all of it.  None: no bound
    image, edge_cost : the frame (``(H, W, 3)`` uint8 RGB) and the cost of crossing its
        colour edges: ``depth``'s distance is then measured along the frame
        (:mod:`.geodesic`).  Either None: in a straight line
    memo : a dict kept between calls on the same correction (same ``previous``,
        ``strokes``, ``depth``, ``reach``, ``image`` and ``edge_cost``): the depth bound of
        each label is computed once

    Returns
    -------
    ``(H, W)`` array of ``proposed``'s dtype.
    """
    previous, proposed, strokes = np.asarray(previous), np.asarray(proposed), np.asarray(strokes)
    if not previous.shape == proposed.shape == strokes.shape:
        raise ValueError(f"shapes differ: {previous.shape}, {proposed.shape}, {strokes.shape}")
    out = previous.astype(proposed.dtype, copy=True)
    reach = max(0, int(reach))
    labels = np.unique(strokes[strokes >= 0])
    nearest = _nearest_label_masks(strokes, labels) if nearest_stroke and len(labels) > 1 else None
    for label in labels:
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
        taken = np.isin(regions, reached[reached > 0])
        if nearest is not None:
            taken &= nearest[label]
        if depth is not None and taken.any():
            key = ("depth", int(label))
            bound = memo.get(key) if memo is not None else None
            if bound is None:
                bound = _within_depth(previous, drawn, label, depth, reach, image, edge_cost)
                if memo is not None:
                    memo[key] = bound
            taken &= bound
        out[taken] = label
    return out


def edge_distance(previous: np.ndarray, strokes: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32: each stroke pixel's distance to the edge of the region the user saw
    with the stroke's label (from outside it for a pixel that corrects, from inside for one
    that confirms; inf where nothing was shown with that label, and where no stroke is).

    A stroke pixel closer than a grid cell to that edge lies in a cell that straddles it:
    the cell's embedding is partly of the other side (``reference_depth``)."""
    previous, strokes = np.asarray(previous), np.asarray(strokes)
    distance = np.full(strokes.shape, np.inf, np.float32)
    for label in np.unique(strokes[strokes >= 0]):
        shown = previous == label
        if shown.any():
            drawn = strokes == label
            to_edge = np.where(shown, ndimage.distance_transform_edt(shown), ndimage.distance_transform_edt(~shown))
            distance[drawn] = to_edge[drawn]
    return distance


def _within_depth(previous, drawn, label, depth: float, reach: int, image=None, edge_cost=None) -> np.ndarray:
    """Pixels within ``depth`` times its stroke's depth (plus ``reach``) of some stroke of
    ``label``, each connected stroke bounded by its own depth (along the frame with ``image``
    and ``edge_cost``); everywhere when nothing was shown with that label (no region to be
    inside)."""
    shown = previous == label
    if not shown.any():
        return np.ones(previous.shape, bool)
    inside = ndimage.distance_transform_edt(~shown)  # distance to the nearest pixel shown as label
    strokes, n = ndimage.label(drawn, _EIGHT)
    deepest = ndimage.maximum(inside, strokes, index=np.arange(1, n + 1))
    allowed = np.zeros(previous.shape, bool)
    for component, stroke_depth in enumerate(np.atleast_1d(deepest), start=1):
        allowed |= within_reach(image, strokes == component, depth * float(stroke_depth) + reach, edge_cost)
    return allowed


def _nearest_label_masks(strokes: np.ndarray, labels) -> dict:
    """``{label: (H, W) bool}``: where a stroke of ``label`` is at least as near as every
    stroke of another label."""
    distance = {int(label): ndimage.distance_transform_edt(strokes != label) for label in labels}
    masks = {}
    for label, own in distance.items():
        others = np.min([d for other, d in distance.items() if other != label], axis=0)
        masks[label] = own <= others
    return masks
