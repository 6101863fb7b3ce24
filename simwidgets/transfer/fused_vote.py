"""A frame's vote in one pass, in numba: union of candidates, softmax and label sum fused.

Once a frame's candidates are known (its global top-``k`` and its local top-``k`` inside
the window, both kept across rounds), what is left of a round is the vote: the top-``k``
of the union of the two lists, a softmax of their similarities and the weighted sum of
their labels.  In torch that is a concatenation, a ``topk``, a ``gather``, a decoding of
window positions into cell indices (:func:`~.knn.window_cells`), a label table built by
concatenation and a batched matmul: eight passes over memory and eight kernel launches
per frame, and in a correction round, where every candidate is already kept, it was half
of the time.  :func:`vote_candidates` does it in one pass per cell:

1. both lists are sorted descending, so their union's top-``k`` is a merge of the two
   (global first among equal similarities);
2. a local pick's window position is decoded to its context cell on the fly;
3. the weights ``exp((s - s_max) / T)`` and the label sum are accumulated in the same
   loop, and divided by the weights' sum at the end.

It returns what :func:`~.knn.vote_frame` returns for the same candidates, up to float32
rounding (the sums run in another order); tests compare the two.  A cell whose candidates
are all ``-inf`` gets zero votes, as in torch.  Without numba (see
:func:`~.fused.available`) :func:`vote_candidates` runs the torch kernels.
"""
from __future__ import annotations

import numpy as np
import torch

from . import knn
from .fused import available, numba

__all__ = ["vote_candidates"]

if numba is not None:
    from numba import njit, prange

    @njit(cache=True, parallel=True, boundscheck=False, fastmath={"contract"})
    def _vote_kernel(gv, gi, g_labels, lv, lpos, ctx_labels, w, window, tile, k, inv_t, out):
        """``out`` ``(C, N)``: the vote of each of the ``N = h * w`` cells (see module)."""
        n, kg = gv.shape
        kl = lv.shape[1]
        n_classes = out.shape[0]
        h = n // w
        size = tile + 2 * window
        area = size * size
        take = min(k, kg + kl)
        for i in prange(n):
            for c in range(n_classes):
                out[c, i] = 0.0
            top = -np.inf
            if kg > 0:
                top = gv[i, 0]
            if kl > 0 and lv[i, 0] > top:
                top = lv[i, 0]
            if top == -np.inf:
                continue
            base_r = (i // w) // tile * tile - window
            base_c = (i % w) // tile * tile - window
            total = 0.0
            a = 0
            b = 0
            for _ in range(take):
                if b >= kl or (a < kg and gv[i, a] >= lv[i, b]):
                    value = gv[i, a]
                    if value == -np.inf:
                        break
                    weight = np.exp((value - top) * inv_t)
                    row = gi[i, a]
                    for c in range(n_classes):
                        out[c, i] += weight * g_labels[row, c]
                    a += 1
                else:
                    value = lv[i, b]
                    if value == -np.inf:
                        break
                    weight = np.exp((value - top) * inv_t)
                    position = lpos[i, b]
                    ctx = position // area
                    rest = position - ctx * area
                    r = min(max(rest // size + base_r, 0), h - 1)
                    col = min(max(rest % size + base_c, 0), w - 1)
                    cell = r * w + col
                    for c in range(n_classes):
                        out[c, i] += weight * ctx_labels[ctx, c, cell]
                    b += 1
                total += weight
            for c in range(n_classes):
                out[c, i] /= total


def _numpy(x: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy(), dtype=dtype)


def vote_candidates(global_candidates, ref_labels, local_candidates, context_probs, grid, top_k: int,
                    temperature: float, window: int, tile: int = knn.TILE, use_numba: bool = True) -> torch.Tensor:
    """Probabilities ``(C, h, w)`` of one frame from its kept candidates.

    Parameters
    ----------
    global_candidates : ``(values (N, kg), index (N, kg))``, descending, rows of ``ref_labels``
    ref_labels : ``(R, C)`` label distributions of the references
    local_candidates : ``(values (N, kl), positions (N, kl))`` as :func:`~.knn.local_topk`
        returns them (window positions, not yet cell indices), or None without context
    context_probs : the ``(C, h, w)`` probabilities of the context frames, in the order
        the local match saw their embeddings
    grid : ``(h, w)``
    use_numba : False runs the torch kernels (:func:`~.knn.window_cells` and
        :func:`~.knn.vote_frame`) even where numba is installed, as tests compare them
    """
    h, w = grid
    n_classes = ref_labels.shape[1]
    g_values, g_index = global_candidates
    if not (use_numba and available()) or g_values.device.type != "cpu":
        context = [(None, p) for p in context_probs] if local_candidates is not None else []
        if local_candidates is not None:
            values, position = local_candidates
            local_candidates = values, knn.window_cells(position, h, w, window, tile)
        return knn.vote_frame(
            torch.empty((0, h, w)), None, ref_labels, context, top_k, temperature, window,
            global_candidates, local_candidates, tile,
        )
    if local_candidates is None or not len(context_probs):
        l_values = np.empty((h * w, 0), np.float32)
        l_positions = np.empty((h * w, 0), np.int32)
        ctx = np.empty((0, n_classes, h * w), np.float32)
    else:
        l_values = _numpy(local_candidates[0], np.float32)
        l_positions = _numpy(local_candidates[1], np.int32)
        ctx = np.stack([_numpy(p.reshape(n_classes, h * w), np.float32) for p in context_probs])
    out = np.empty((n_classes, h * w), np.float32)
    _vote_kernel(
        _numpy(g_values, np.float32), _numpy(g_index, np.int64), _numpy(ref_labels, np.float32),
        l_values, l_positions, ctx, w, int(window), int(tile), int(top_k), float(1.0 / temperature), out,
    )
    return torch.from_numpy(out).reshape(n_classes, h, w)
