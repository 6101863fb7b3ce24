"""How far a correction stroke reaches, measured along the frame rather than straight.

A correction's change on its own frame is bounded by distance from the stroke
(``local_depth``, :mod:`.local_edit`).  Straight-line distance ignores what lies between:
a background stroke drawn through the gap inside a motorbike's rear wheel lies 33 pixels
inside the mask the user saw, so a disc of that radius around it also took the tyre and
the engine beside the gap (motorbike, fold-3 model, interaction 7: 5,170 true object
pixels removed, the frame's J&F 0.779 -> 0.696).  The region a stroke corrects ends where
the image changes: measured along the frame, a step between two neighbouring pixels costs
its length times ``1 + edge_cost * max(colour difference - edge_free, 0)`` (CIE L*a*b*,
Delta E 1976), so crossing the wheel's dark rim from the grey road behind it costs dozens of
pixels of reach, while the flat or finely textured inside of an error costs no more than
straight-line distance.  Geodesic distances of this kind bound interactive edits in image
segmentation tools (Criminisi, Sharp and Blake, "GeoS", ECCV 2008; Bai and Sapiro,
"Geodesic matting", IJCV 2009).

:func:`geodesic_distance` is the fast path: the 8-connected pixel graph of the window the
budget can reach, as one sparse matrix, and scipy's Dijkstra from all stroke pixels at once,
stopped at the budget.  :func:`geodesic_distance_reference` is the plain priority-queue walk
over the whole frame that the tests compare it with.
"""
from __future__ import annotations

import heapq
import math

import numpy as np
import torch
from scipy import ndimage, sparse
from scipy.sparse.csgraph import dijkstra

from ..models.baseline import rgb_to_lab

__all__ = ["EDGE_FREE", "lab_image", "geodesic_distance", "geodesic_distance_reference", "within_reach"]

#: colour difference (Delta E 1976) a step may cross at no extra cost: about twice the just
#: noticeable difference, so camera noise and fine texture do not shorten a stroke's reach
EDGE_FREE = 5.0

# the four forward neighbours of the 8-connected grid; each edge is stored once (undirected)
_STEPS = ((0, 1), (1, 0), (1, 1), (1, -1))


def lab_image(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 sRGB -> float32 CIE L*a*b* (the colour space the models use)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div_(255.0)
    return rgb_to_lab(x)[0].permute(1, 2, 0).numpy()


def _step_weights(lab: np.ndarray, dy: int, dx: int, edge_cost: float, edge_free: float):
    """``(first, second, weight)`` of every step ``(dy, dx)`` inside ``lab`` (flat indices)."""
    h, w = lab.shape[:2]
    index = np.arange(h * w).reshape(h, w)
    cols = slice(max(0, -dx), w - max(0, dx))
    cols_to = slice(max(0, dx), w + min(0, dx))
    first, second = index[: h - dy, cols], index[dy:, cols_to]
    difference = np.linalg.norm(lab[: h - dy, cols] - lab[dy:, cols_to], axis=-1)
    weight = math.hypot(dy, dx) * (1.0 + edge_cost * np.maximum(difference - edge_free, 0.0))
    return first.ravel(), second.ravel(), weight.ravel()


def geodesic_distance(image: np.ndarray, sources: np.ndarray, limit: float, edge_cost: float,
                      edge_free: float = EDGE_FREE) -> np.ndarray:
    """``(H, W)`` float: each pixel's edge-weighted distance from the nearest ``True`` pixel of
    ``sources`` along the 8-connected pixel grid of ``image`` (``(H, W, 3)`` uint8 RGB),
    ``inf`` beyond ``limit``.  Only the window ``limit`` can reach around the sources is
    searched (every step costs at least its length), and only it is converted to L*a*b*."""
    sources = np.asarray(sources, bool)
    height, width = sources.shape
    distance = np.full((height, width), np.inf)
    rows, cols = np.nonzero(sources)
    if rows.size == 0:
        return distance
    margin = int(math.ceil(limit)) + 1
    r0, r1 = max(rows.min() - margin, 0), min(rows.max() + margin + 1, height)
    c0, c1 = max(cols.min() - margin, 0), min(cols.max() + margin + 1, width)
    window = lab_image(image[r0:r1, c0:c1])
    h, w = window.shape[:2]
    parts = [_step_weights(window, dy, dx, edge_cost, edge_free) for dy, dx in _STEPS]
    first, second, weight = (np.concatenate(p) for p in zip(*parts))
    # a zero weight would vanish from the sparse matrix; every step costs >= 1 here
    graph = sparse.csr_matrix((weight, (first, second)), shape=(h * w, h * w))
    start = (rows - r0) * w + (cols - c0)
    reached = dijkstra(graph, directed=False, indices=start, min_only=True, limit=limit)
    distance[r0:r1, c0:c1] = reached.reshape(h, w)
    return distance


def geodesic_distance_reference(image: np.ndarray, sources: np.ndarray, edge_cost: float,
                                edge_free: float = EDGE_FREE) -> np.ndarray:
    """:func:`geodesic_distance` the plain way: a priority-queue walk over the whole frame,
    each step's cost computed as it is taken, no window and no limit."""
    lab = lab_image(image).astype(np.float64)
    height, width = lab.shape[:2]
    distance = np.full((height, width), np.inf)
    queue = []
    for r, c in zip(*np.nonzero(sources)):
        distance[r, c] = 0.0
        queue.append((0.0, int(r), int(c)))
    heapq.heapify(queue)
    neighbours = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx]
    while queue:
        d, r, c = heapq.heappop(queue)
        if d > distance[r, c]:
            continue
        for dy, dx in neighbours:
            rr, cc = r + dy, c + dx
            if 0 <= rr < height and 0 <= cc < width:
                difference = float(np.linalg.norm(lab[r, c] - lab[rr, cc]))
                step = math.hypot(dy, dx) * (1.0 + edge_cost * max(difference - edge_free, 0.0))
                if d + step < distance[rr, cc]:
                    distance[rr, cc] = d + step
                    heapq.heappush(queue, (d + step, rr, cc))
    return distance


def within_reach(image: np.ndarray | None, sources: np.ndarray, budget: float, edge_cost: float | None,
                 edge_free: float = EDGE_FREE) -> np.ndarray:
    """``(H, W)`` bool: pixels no farther than ``budget`` from ``sources``: along the frame
    when ``image`` (uint8 RGB) and ``edge_cost`` are given, in a straight line otherwise."""
    if image is None or not edge_cost:
        return ndimage.distance_transform_edt(~np.asarray(sources, bool)) <= budget
    return geodesic_distance(image, sources, budget, edge_cost, edge_free) <= budget
