"""How far a correction reaches: fusing a correction round with the result it corrects.

A correction stroke on frame ``t`` is drawn on what the user saw. Re-propagating the whole
video from all references lets the new strokes move frames far from ``t``, including
frames the user already corrected and accepted -- on breakdance-flare the first
correction fixed its own frame and lowered the video's mean. MiVOS (Cheng et al., 2021)
bounds a correction by the interactions before it: the new result is propagated from ``t``
only as far as the nearest earlier interacted frame on each side, and between ``t`` and
that frame it is blended with the previous result linearly in time, trusting the new
result fully at ``t`` and the old one fully at the earlier interaction.

Here, with ``changed`` the annotated frames whose references changed in this round and
``kept`` the annotated frames whose references did not, the weight of the new result is 1
on changed frames, 0 on kept ones, linear in between, and constant beyond the first and
last annotated frame (the value of that frame). Frames of weight 0 keep their previous
scores exactly, so a round needs to compute only :func:`correction_span`: from the kept
frame before the first changed one to the kept frame after the last (or the video's ends)
-- a correction between two earlier interactions costs the frames between them, not the
video.
"""
from __future__ import annotations

import numpy as np

__all__ = ["correction_weights", "correction_span", "fuse_reference"]


def _split(n_frames: int, changed, kept) -> tuple[list[int], list[int]]:
    changed = sorted({int(f) for f in changed})
    kept = sorted({int(f) for f in kept} - set(changed))
    if not changed:
        raise ValueError("a correction round needs at least one changed frame")
    for f in changed + kept:
        if not 0 <= f < n_frames:
            raise ValueError(f"frame {f} outside a video of {n_frames} frames")
    return changed, kept


def correction_weights(n_frames: int, changed, kept) -> np.ndarray:
    """``(T,)`` float64 weight of the new result per frame (1 - weight: the previous one).

    Linear interpolation of 1 (changed) / 0 (kept) between consecutive annotated frames,
    held constant beyond the first and the last.
    """
    changed, kept = _split(n_frames, changed, kept)
    anchors = sorted(changed + kept)
    values = [1.0 if a in set(changed) else 0.0 for a in anchors]
    return np.interp(np.arange(n_frames, dtype=np.float64), anchors, values)


def correction_span(n_frames: int, changed, kept) -> tuple[int, int]:
    """The frames ``lo..hi`` (inclusive) a correction round must compute: every frame of
    non-zero weight, plus the kept frames that bound them (where the sweeps start)."""
    changed, kept = _split(n_frames, changed, kept)
    below = [k for k in kept if k < changed[0]]
    above = [k for k in kept if k > changed[-1]]
    return (below[-1] if below else 0), (above[0] if above else n_frames - 1)


def fuse_reference(new: np.ndarray, old: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The plain fusion, frame by frame: ``w[t] * new[t] + (1 - w[t]) * old[t]``."""
    out = np.empty_like(new)
    for t in range(len(new)):
        out[t] = weights[t] * new[t] + (1.0 - weights[t]) * old[t]
    return out

