"""Segmentation quality as the DAVIS benchmark measures it: J, F, J&F, AUC and J&F@60s.

Definitions (Perazzi et al., CVPR 2016; Caelles et al., arXiv:1803.00557):

* **J** (region similarity) is the Jaccard index ``|P & G| / |P | G|`` of one object's
  predicted and true masks in one frame.  A frame where both are empty scores 1: the
  method correctly said "the object is not here".
* **F** (contour accuracy) is the F-measure of boundary precision and recall.  Each
  mask is reduced to a one-pixel-wide boundary map; a boundary pixel counts as matched
  when the other mask's boundary passes within ``ceil(bound_th * diagonal)`` pixels
  (Euclidean, i.e. dilation by a disk), with ``bound_th = 0.008`` of the image diagonal
  (8 pixels at 854x480).  Matching within a tolerance rather than exactly is what makes
  F measure *where* the outline is, forgiving a pixel or two of annotation noise.
* **J&F** is their mean.
* For interactive segmentation the benchmark records a curve of J&F against the time
  spent; it reports the area under that curve divided by its time span (**AUC**) and
  the curve's value at 60 seconds (**J&F@60s**).

Everything here is numpy/scipy and agrees with the benchmark's own implementation
(``davisinteractive.metrics``) to 1e-6 on the real DAVIS masks (tests/test_metrics.py),
including its conventions for empty masks and its boundary-map rule at the image
border.  J is computed for all frames at once; boundary maps too, and boundary matching
uses a k-d tree over boundary pixels, so F on 80 frames of 480p takes a fraction of a
second instead of 160 full-image dilations.

Typical use::

    scores = evaluate_masks(pred_masks, video.masks)
    print(scores.jf_mean, scores.per_object)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy.spatial import cKDTree

from ..errors import BadInputError

__all__ = [
    "jaccard",
    "f_measure",
    "boundary_map",
    "boundary_radius",
    "evaluate_masks",
    "MaskScores",
    "auc",
    "metric_at",
    "BOUND_TH",
]

BOUND_TH = 0.008
"""The DAVIS boundary tolerance, as a fraction of the image diagonal."""


# --------------------------------------------------------------------------- validation

def _binary_stack(mask, name: str) -> np.ndarray:
    """``(H, W)`` or ``(T, H, W)`` bool/integer mask -> bool array (nonzero = object)."""
    array = np.asarray(mask)
    if array.ndim not in (2, 3):
        raise BadInputError(f"{name} must be an (H, W) or (T, H, W) mask; got shape {array.shape}")
    if array.dtype != bool and not np.issubdtype(array.dtype, np.integer):
        raise BadInputError(
            f"{name} must be a boolean or integer mask; got dtype {array.dtype} "
            "(threshold probabilities before measuring)"
        )
    return array if array.dtype == bool else array != 0


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred_b, gt_b = _binary_stack(pred, "pred"), _binary_stack(gt, "gt")
    if pred_b.shape != gt_b.shape:
        raise BadInputError(f"pred has shape {pred_b.shape} but gt has shape {gt_b.shape}")
    return pred_b, gt_b


def _label_stack(masks, name: str) -> np.ndarray:
    array = np.asarray(masks)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise BadInputError(f"{name} must be a (T, H, W) label array; got shape {array.shape}")
    if array.size == 0:
        raise BadInputError(f"{name} has no pixels to score (shape {array.shape}): a score needs at least one frame")
    if array.dtype == bool:
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise BadInputError(f"{name} must hold integer object ids; got dtype {array.dtype}")
    if array.size and array.min() < 0:
        raise BadInputError(f"{name} holds a negative object id ({int(array.min())})")
    return array


def _present_ids(labels: np.ndarray) -> list[int]:
    """Sorted ids > 0 present in a non-negative label array (bincount: 10x faster than unique)."""
    if labels.size == 0:
        return []
    top = int(labels.max())
    if top < 1 << 16:
        counts = np.bincount(labels.ravel(), minlength=top + 1)
        return [int(i) for i in np.flatnonzero(counts) if i > 0]
    return [int(i) for i in np.unique(labels) if i > 0]


# --------------------------------------------------------------------------- J

def jaccard(pred, gt) -> float | np.ndarray:
    """Region similarity J of one object: intersection over union, 1 when both are empty.

    Parameters
    ----------
    pred, gt : bool or integer arrays, ``(H, W)`` or ``(T, H, W)``
        Masks of one object (nonzero = object), e.g. ``labels == obj_id``.

    Returns
    -------
    float for one frame, ``(T,)`` float array for a stack.
    """
    pred_b, gt_b = _pair(pred, gt)
    axes = (-2, -1)
    inter = np.count_nonzero(pred_b & gt_b, axis=axes)
    union = np.count_nonzero(pred_b | gt_b, axis=axes)
    score = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return float(score) if pred_b.ndim == 2 else score.astype(np.float64)


# --------------------------------------------------------------------------- F

def boundary_map(mask) -> np.ndarray:
    """One-pixel-wide boundary of a binary mask, as the DAVIS benchmark draws it.

    A pixel is a boundary pixel when it differs from its right, lower or lower-right
    neighbour (pixels beyond the right and bottom edges count as background).  On the
    bottom row only the right neighbour is compared, on the rightmost column only the
    lower one, and the bottom-right pixel is never a boundary: this is the benchmark's
    rule (Martin's ``seg2bmap``), kept exactly so that F agrees with it at the borders.

    Parameters
    ----------
    mask : bool or integer array, ``(H, W)`` or ``(T, H, W)``

    Returns
    -------
    bool array of the same shape.
    """
    seg = _binary_stack(mask, "mask")
    # neighbours to the right, below and below-right, with background beyond the edges
    padded = np.zeros(seg.shape[:-2] + (seg.shape[-2] + 1, seg.shape[-1] + 1), dtype=bool)
    padded[..., :-1, :-1] = seg
    right = padded[..., :-1, 1:]
    below = padded[..., 1:, :-1]
    diagonal = padded[..., 1:, 1:]
    edges = (seg != right) | (seg != below) | (seg != diagonal)
    edges[..., -1, :] = seg[..., -1, :] != right[..., -1, :]
    edges[..., :, -1] = seg[..., :, -1] != below[..., :, -1]
    edges[..., -1, -1] = False
    return edges


def boundary_radius(shape: tuple[int, int], bound_th: float = BOUND_TH) -> float:
    """Matching tolerance in pixels: ``ceil(bound_th * diagonal)``, or ``bound_th`` itself if >= 1.

    ``shape`` is ``(H, W)``.  As in DAVIS, a ``bound_th`` of 1 or more is read as a
    radius in pixels (it must then be a whole number).
    """
    if not np.isfinite(bound_th) or bound_th < 0:
        raise BadInputError(f"bound_th must be a finite number >= 0; got {bound_th}")
    if bound_th >= 1:
        if bound_th != int(bound_th):
            raise BadInputError(
                f"bound_th >= 1 is a radius in pixels and must be a whole number; got {bound_th}"
            )
        return float(bound_th)
    height, width = shape
    return float(np.ceil(bound_th * np.hypot(height, width)))


def _matched(points: np.ndarray, targets: np.ndarray, radius: float) -> int:
    """How many ``points`` (N, 2) lie within ``radius`` (Euclidean) of some ``targets`` (M, 2).

    Distances between integer pixels are square roots of integers and are correctly
    rounded, so ``d <= radius`` is exactly the DAVIS test "inside the dilation by a disk
    of that radius".
    """
    if len(points) == 0 or len(targets) == 0:
        return 0
    distance, _ = cKDTree(targets).query(points, k=1, distance_upper_bound=radius + 0.5)
    return int(np.count_nonzero(distance <= radius))


def _f_from_counts(n_pred, n_gt, pred_matched, gt_matched) -> float:
    # DAVIS conventions: no predicted boundary -> precision 1; no true boundary -> recall 1
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0 or n_gt == 0:
        return 0.0
    precision = pred_matched / n_pred
    recall = gt_matched / n_gt
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def f_measure(pred, gt, bound_th: float = BOUND_TH) -> float | np.ndarray:
    """Contour accuracy F of one object: boundary F-measure within a distance tolerance.

    Parameters
    ----------
    pred, gt : bool or integer arrays, ``(H, W)`` or ``(T, H, W)``
        Masks of one object (nonzero = object).
    bound_th : float
        Tolerance as a fraction of the image diagonal (DAVIS: 0.008), or a whole number
        of pixels if >= 1.

    Returns
    -------
    float for one frame, ``(T,)`` float array for a stack.  Both masks empty gives 1;
    exactly one empty gives 0.
    """
    pred_b, gt_b = _pair(pred, gt)
    radius = boundary_radius(pred_b.shape[-2:], bound_th)
    single = pred_b.ndim == 2
    pred_edges = boundary_map(pred_b[None] if single else pred_b)
    gt_edges = boundary_map(gt_b[None] if single else gt_b)
    scores = np.empty(len(pred_edges), dtype=np.float64)
    for frame_idx, (p_edge, g_edge) in enumerate(zip(pred_edges, gt_edges)):
        p_points, g_points = np.argwhere(p_edge), np.argwhere(g_edge)
        scores[frame_idx] = _f_from_counts(
            len(p_points),
            len(g_points),
            _matched(p_points, g_points, radius),
            _matched(g_points, p_points, radius),
        )
    return float(scores[0]) if single else scores


# --------------------------------------------------------------------------- sequences

@dataclass(frozen=True)
class MaskScores:
    """J and F of every object in every frame of one video.

    Attributes
    ----------
    j, f : ``(T, K)`` float arrays, one column per object in ``object_ids``
    object_ids : tuple of the K object ids, in column order
    """

    j: np.ndarray
    f: np.ndarray
    object_ids: tuple[int, ...]

    @property
    def jf(self) -> np.ndarray:
        """``(T, K)`` J&F: the mean of J and F per frame and object."""
        return 0.5 * (self.j + self.f)

    @property
    def j_mean(self) -> float:
        """J averaged over frames and objects."""
        return float(self.j.mean())

    @property
    def f_mean(self) -> float:
        """F averaged over frames and objects."""
        return float(self.f.mean())

    @property
    def jf_mean(self) -> float:
        """The headline J&F: ``(mean J + mean F) / 2``."""
        return 0.5 * (self.j_mean + self.f_mean)

    @property
    def per_frame(self) -> np.ndarray:
        """``(T,)`` J&F averaged over objects: what the interactive robot ranks frames by."""
        return self.jf.mean(axis=1)

    @property
    def per_object(self) -> dict[int, dict[str, float]]:
        """``{object_id: {"J": ..., "F": ..., "J&F": ...}}``, each averaged over frames."""
        return {
            obj_id: {
                "J": float(self.j[:, k].mean()),
                "F": float(self.f[:, k].mean()),
                "J&F": float(self.jf[:, k].mean()),
            }
            for k, obj_id in enumerate(self.object_ids)
        }

    def summary(self) -> dict:
        """Plain-Python dict (JSON-ready) of the means and the per-object means."""
        return {
            "J": self.j_mean,
            "F": self.f_mean,
            "J&F": self.jf_mean,
            "per_object": {str(k): v for k, v in self.per_object.items()},
            "n_frames": int(self.j.shape[0]),
        }


def evaluate_masks(pred, gt, object_ids: Iterable[int] | None = None, bound_th: float = BOUND_TH) -> MaskScores:
    """J and F per frame and per object for a predicted label video.

    Parameters
    ----------
    pred, gt : ``(T, H, W)`` integer label arrays (0 = background); an ``(H, W)`` pair
        is treated as one frame.
    object_ids : ids to score; default: every id > 0 present anywhere in ``gt``.  An id
        absent from a frame of both masks scores J = F = 1 there, as in DAVIS.
    bound_th : boundary tolerance for F (see :func:`f_measure`).

    Returns
    -------
    MaskScores with ``(T, K)`` arrays ``.j`` and ``.f``.

    Notes
    -----
    Means are over every frame given.  The semi-supervised DAVIS benchmark leaves out
    the frames whose masks were given to the method; slice them off before calling.
    Unlike ``davisinteractive``, id 255 is an ordinary object id here (simwidgets maps
    binary 0/255 annotations to id 1 when loading).
    """
    pred_l, gt_l = _label_stack(pred, "pred"), _label_stack(gt, "gt")
    if pred_l.shape != gt_l.shape:
        raise BadInputError(
            f"pred has shape {pred_l.shape} but gt has shape {gt_l.shape} (T, H, W)"
        )
    if object_ids is None:
        ids = _present_ids(gt_l)
        if not ids:
            raise BadInputError("gt holds no object (only background); pass object_ids to score anyway")
    else:
        ids = []
        for obj_id in object_ids:
            if isinstance(obj_id, (bool, np.bool_)) or not isinstance(obj_id, (int, np.integer)):
                raise BadInputError(f"object ids must be integers; got {obj_id!r}")
            if obj_id <= 0:
                raise BadInputError(f"object ids must be > 0 (0 is background); got {obj_id}")
            ids.append(int(obj_id))
        if not ids:
            raise BadInputError("object_ids is empty")
        if len(set(ids)) != len(ids):
            raise BadInputError(f"object_ids has duplicates: {ids}")
    n_frames = len(gt_l)
    j = np.empty((n_frames, len(ids)))
    f = np.empty((n_frames, len(ids)))
    for k, obj_id in enumerate(ids):
        pred_obj, gt_obj = pred_l == obj_id, gt_l == obj_id
        j[:, k] = jaccard(pred_obj, gt_obj)
        f[:, k] = f_measure(pred_obj, gt_obj, bound_th=bound_th)
    return MaskScores(j=j, f=f, object_ids=tuple(ids))


# --------------------------------------------------------------------------- curves

def _curve(times, values) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.ndim != 1 or v.ndim != 1:
        raise BadInputError(f"times and values must be 1-D; got shapes {t.shape} and {v.shape}")
    if len(t) != len(v):
        raise BadInputError(f"times has {len(t)} entries but values has {len(v)}")
    if len(t) == 0:
        raise BadInputError("an interaction curve needs at least one point")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(v))):
        raise BadInputError("times and values must be finite (found NaN or inf)")
    if np.any(np.diff(t) < 0):
        raise BadInputError("times must be non-decreasing (cumulative seconds)")
    return t, v


def auc(times, values) -> float:
    """Area under a metric-versus-time curve, normalised by its time span.

    ``trapezoid(values, times) / max(times)`` as the DAVIS interactive summary computes
    it (0 when every time is 0).  The benchmark's curve starts at (0, 0) and is extended
    flat to the time budget, so AUC rewards methods that are good *early*.

    Parameters
    ----------
    times : ``(N,)`` non-decreasing cumulative seconds
    values : ``(N,)`` metric (e.g. J&F) after each interaction
    """
    t, v = _curve(times, values)
    if t.max() == 0:
        return 0.0
    area = float(np.sum(np.diff(t) * (v[1:] + v[:-1]) / 2.0))
    return area / float(t.max())


def metric_at(times, values, t: float = 60.0) -> float:
    """The curve's value at time ``t`` (DAVIS: J&F@60s), by linear interpolation.

    Before the first point the first value is used, after the last point the last value.
    """
    times_arr, values_arr = _curve(times, values)
    if not np.isfinite(t):
        raise BadInputError(f"t must be a finite number of seconds; got {t}")
    return float(np.interp(t, times_arr, values_arr))
