"""The window match of the temporal context as one fused numba kernel (issue 14).

:func:`~simwidgets.transfer.knn.local_topk` compares each query cell with the context cells
inside its square window by tiles: one batched matmul against every key of the tile's
grown window, an additive mask for the keys outside the query's own window, then a top-k
over all of them.  At stride 8 (radius 6 cells, tiles of 8) a tile's window holds 400
keys per context frame where a query needs 169, the mask and the score tensor go through
memory twice, and the selection scans every score.  That was 1.9 s of a 4 s first round on
80 frames of bear (``benchmarks/bench_transfer.py --profile``).

Here each query walks its own window only: the dot product of each key inside it (the
exact ``(2r + 1)^2`` keys per context frame), then one comparison with the running
``k``-th best, and an insertion into the sorted top-``k`` in the rare case it wins.
Nothing the size of the scores is ever written.

The results are those of :func:`~simwidgets.transfer.knn.local_topk` (the tests compare
them): the same descending values up to fp32 rounding (the dot products are summed in
another order), and the same window positions, encoded relative to the query's tile as
there, so the vote, the kept candidates and :func:`~.knn.window_cells` read either alike.
Positions differ only among (near-)ties; exact ties go to the lower position.  When a
window holds fewer than ``k`` cells (a tiny ``window`` at a corner) the rest is ``-inf``
at position 0, which votes with weight 0 as the plain path's ``-inf`` picks do.
"""
from __future__ import annotations

import numpy as np
import torch

from . import fused

__all__ = ["window_topk"]

if fused.available():
    from numba import njit, prange

    @njit(cache=True, parallel=True, boundscheck=False, fastmath={"contract", "reassoc", "nsz"})
    def _window_kernel(q, keys, radius, tile, out_v, out_p):
        """``q`` ``(h, w, D)``, ``keys`` ``(C, h, w, D)``; top-``k`` of each query's window
        into ``out_v`` / ``out_p`` ``(h*w, k)``, descending."""
        h, w, dim = q.shape
        n_ctx = keys.shape[0]
        k = out_v.shape[1]
        size = tile + 2 * radius
        for y in prange(h):
            r0, r1 = max(0, y - radius), min(h, y + radius + 1)
            row0 = (y // tile) * tile - radius  # the tile's window origin, as local_topk counts
            for x in range(w):
                c0, c1 = max(0, x - radius), min(w, x + radius + 1)
                col0 = (x // tile) * tile - radius
                vals = out_v[y * w + x]
                pos = out_p[y * w + x]
                for j in range(k):
                    vals[j] = -np.inf
                    pos[j] = 0
                kth = -np.inf
                for c in range(n_ctx):
                    for r in range(r0, r1):
                        base = c * size * size + (r - row0) * size - col0
                        for cc in range(c0, c1):
                            s = np.float32(0.0)
                            for d in range(dim):
                                s += q[y, x, d] * keys[c, r, cc, d]
                            if s > kth:  # keys come in position order: an equal one stays behind
                                fused.insert_sorted(vals, pos, s, base + cc)
                                kth = vals[k - 1]


def window_topk(query: torch.Tensor, context, window: int, k: int, tile: int):
    """:func:`~simwidgets.transfer.knn.local_topk` by the fused kernel: ``query`` ``(D, h,
    w)``, ``context`` a list of ``(D, h, w)`` embeddings, on the CPU.  Returns ``values``
    ``(h*w, k')`` float32 and window positions ``(h*w, k')`` (int16 when they fit, as
    there), ``k' = min(k, n_ctx * (tile + 2 * window)^2)``."""
    if not fused.available():
        raise RuntimeError("the fused window kernel needs numba; use knn.local_topk")
    dim, h, w = query.shape
    n_ctx = len(context)
    size = tile + 2 * window
    n_keys = n_ctx * size * size
    k = min(int(k), n_keys)
    q = np.ascontiguousarray(query.detach().float().permute(1, 2, 0).numpy())
    keys = np.ascontiguousarray(torch.stack([c.detach().float() for c in context]).permute(0, 2, 3, 1).numpy())
    values = np.empty((h * w, k), np.float32)
    position = np.empty((h * w, k), np.int16 if n_keys <= 2**15 else np.int32)
    if h * w and k > 0:
        _window_kernel(q, keys, int(window), int(tile), values, position)
    return torch.from_numpy(values), torch.from_numpy(position)
