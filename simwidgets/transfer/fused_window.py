"""The window match of the temporal context as one fused numba kernel (issue 14).

:func:`~simwidgets.transfer.knn.local_topk` compares each query cell with the context cells
inside its square window by tiles: one batched matmul against every key of the tile's
grown window, an additive mask for the keys outside the query's own window, then a top-k
over all of them.  At stride 8 (radius 6 cells, tiles of 8) a tile's window holds 400
keys per context frame where a query needs 169, the mask and the score tensor go through
memory twice, and the selection scans every score.  That was 1.9 s of a 4 s first round on
80 frames of bear (``benchmarks/bench_transfer.py --profile``).

Here each query walks its own window only: the dot products of the exact ``(2r + 1)^2``
keys per context frame, four keys at a time, into a row of scores that stays in cache, then
the top-``k`` of that row by :mod:`.fused`'s selection (a threshold from strided group
maxima, then ranking the few candidates above it), as the global match selects; a window
of at most :data:`SMALL_WINDOW` cells selects by insertion instead.  Nothing the size of
the tile's scores is ever written.  (A running top-``k`` with one comparison per key, the
first version, spent much of its time inserting: 19.5 against 11.8 ms per frame of bear
at stride 8 on 2 threads, 34 against 26 ms on one, idle AMD EPYC, the frame of
``benchmarks/bench_transfer.py``'s kernel part.)

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

#: a query whose window holds at most this many cells selects by insertion (the
#: threshold search of :func:`fused.select_topk` pays off only on longer score rows)
SMALL_WINDOW = 64

if fused.available():
    from numba import njit, prange

    @njit(cache=True, boundscheck=False, fastmath={"contract", "reassoc", "nsz"})
    def _window_scores(qrow, keys, r0, r1, c0, c1, codes0, size, scores, codes):
        """The scores of one query against every key of its window, in position order, into
        ``scores``, with their window positions into ``codes``; returns how many.  Four
        keys at a time, so that each query element is loaded once for four products."""
        dim = qrow.shape[0]
        n = c1 - c0
        m = 0
        for c in range(keys.shape[0]):
            for r in range(r0, r1):
                kr = keys[c, r]
                base = codes0 + c * size * size + r * size
                j = 0
                while j + 4 <= n:
                    k0, k1, k2, k3 = kr[c0 + j], kr[c0 + j + 1], kr[c0 + j + 2], kr[c0 + j + 3]
                    s0 = np.float32(0.0)
                    s1 = np.float32(0.0)
                    s2 = np.float32(0.0)
                    s3 = np.float32(0.0)
                    for d in range(dim):
                        qd = qrow[d]
                        s0 += qd * k0[d]
                        s1 += qd * k1[d]
                        s2 += qd * k2[d]
                        s3 += qd * k3[d]
                    scores[m], scores[m + 1], scores[m + 2], scores[m + 3] = s0, s1, s2, s3
                    j += 4
                    m += 4
                while j < n:
                    kj = kr[c0 + j]
                    s = np.float32(0.0)
                    for d in range(dim):
                        s += qrow[d] * kj[d]
                    scores[m] = s
                    j += 1
                    m += 1
                for j in range(n):
                    codes[m - n + j] = base + c0 + j
        return m

    @njit(cache=True, parallel=True, boundscheck=False)
    def _window_kernel(q, keys, radius, tile, out_v, out_p):
        """``q`` ``(h, w, D)``, ``keys`` ``(C, h, w, D)``; top-``k`` of each query's window
        into ``out_v`` / ``out_p`` ``(h*w, k)``, descending, ties to the lower position."""
        h, w, dim = q.shape
        k = out_v.shape[1]
        size = tile + 2 * radius
        most = keys.shape[0] * (2 * radius + 1) ** 2
        padded = -(-most // (fused.GROUP * 32)) * fused.GROUP * 32  # what select_topk reads
        for y in prange(h):
            scores = np.empty(padded, np.float32)
            codes = np.empty(padded, np.int64)
            group_max = np.empty(padded // fused.GROUP, np.float32)
            hits = np.empty(padded // fused.GROUP, np.int64)
            cand_v = np.empty(padded + 32, np.float32)
            cand_i = np.empty(padded, np.int64)
            top_v = np.empty(k, np.float32)
            top_i = np.empty(k, np.int64)
            r0, r1 = max(0, y - radius), min(h, y + radius + 1)
            row0 = (y // tile) * tile - radius  # the tile's window origin, as local_topk counts
            for x in range(w):
                c0, c1 = max(0, x - radius), min(w, x + radius + 1)
                col0 = (x // tile) * tile - radius
                m = _window_scores(q[y, x], keys, r0, r1, c0, c1, -row0 * size - col0, size, scores, codes)
                for j in range(k):
                    top_v[j] = -np.inf
                    top_i[j] = 0
                kk = min(k, m)
                if m <= SMALL_WINDOW:
                    for j in range(m):  # in position order: an equal one stays behind
                        if scores[j] > top_v[kk - 1]:
                            fused.insert_sorted(top_v[:kk], top_i[:kk], scores[j], j)
                else:
                    fused.select_topk(scores, m, kk, group_max, hits, cand_v, cand_i, top_v[:kk], top_i[:kk])
                vals = out_v[y * w + x]
                pos = out_p[y * w + x]
                for j in range(k):
                    vals[j] = top_v[j]
                    pos[j] = codes[top_i[j]] if j < kk else 0


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
