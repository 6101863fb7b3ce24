"""Fused similarity-and-selection kernels for the global match (issue 14), in numba.

:func:`topk_dot` returns what :func:`simwidgets.transfer.knn.topk_global` returns (the
``k`` largest dot products of each query with the keys, descending, and their key rows)
without ever handing a score matrix to ``torch.topk``: each block of queries computes its
scores into a small buffer that stays in cache and selects from it at once.

The selection never sorts or heaps all ``N`` scores of a query:

1. the scores of a query are cut into ``G = N / GROUP`` strided groups (group ``g`` holds
   refs ``g, g + G, g + 2G, ...``), and the group maxima are taken by an elementwise
   (vectorised) maximum;
2. a threshold ``t`` is found by bisection such that at least ``k`` group maxima are
   ``>= t``: then at least ``k`` scores are ``>= t``, so every top-``k`` score is too;
3. only the groups whose maximum is ``>= t`` are scanned, and their scores ``>= t``
   (typically ``k`` to ``2k`` of them) gathered;
4. each candidate's rank is counted against the others (branch-free, vectorised), and the
   candidate lands at its rank if that is below ``k``.

Results: the same values as the torch path up to fp32 rounding (the dot products are
summed in another order); indices equal except among (near-)ties.  Exact ties are broken
by the lower key index, so the output is deterministic.  Scores must not be NaN.

numba is optional: :func:`available` says whether it imported; without it
:func:`topk_dot` and :func:`merge_topk_dot` fall back to the torch kernels of
:mod:`~simwidgets.transfer.knn`.  The first call in a process compiles the kernels
(several seconds); ``cache=True`` stores the machine code beside this file in
``__pycache__`` (or, where that is not writable, in numba's user-wide cache directory,
``NUMBA_CACHE_DIR`` when set), so later processes load it instead.
"""
from __future__ import annotations

import numpy as np
import torch

try:  # numba is an optional accelerator
    import numba
    from numba import njit, prange
except Exception:  # pragma: no cover - exercised only where numba is missing
    numba = None

__all__ = ["available", "topk_dot", "merge_topk_dot", "prepare_keys", "insert_sorted", "select_topk", "QUERY_BLOCK", "REF_BLOCK", "GROUP"]

#: queries whose scores are computed together (each key load serves them all)
QUERY_BLOCK = 4
#: dims per pass of the score loop (the loop is written out for this many)
DIM_STEP = 4
#: refs per chunk of the score loop; keys are padded to a multiple of it
REF_BLOCK = 256
#: scores per selection group
GROUP = 8
#: queries per parallel task (buffers are allocated once per task)
TASK = 64
#: most candidates ranked by counting; more (a weak threshold) go through insertion
MAX_RANKED = 256
#: the threshold search stops once at most ``k + SLACK`` group maxima reach it
SLACK = 4
#: float flags of the selection: reassociation lets the float32 counts vectorise; no
#: ``nnan`` / ``ninf`` (the padding is ``-inf``)
_SELECT_MATH = {"reassoc", "nsz", "contract"}


def available() -> bool:
    """Whether numba imported, i.e. whether the fused kernels run (else the torch path)."""
    return numba is not None


if numba is not None:

    @njit(cache=True, boundscheck=False)
    def insert_sorted(values, index, value, row):
        """Insert ``value`` (> ``values[-1]``) into the descending ``values`` (and its
        ``row`` into ``index``), dropping the last; after any equal values already there.
        (The running top-``k`` of every fused kernel, :mod:`.fused_window`'s too.)"""
        p = len(values) - 1
        while p > 0 and value > values[p - 1]:
            values[p] = values[p - 1]
            index[p] = index[p - 1]
            p -= 1
        values[p] = value
        index[p] = row

    @njit(cache=True, fastmath={"contract"}, boundscheck=False)
    def _scores(qb, kT, buf):
        """``buf[r, j] = qb[r] . kT[:, j]`` for a block of 4 queries (``kT`` ``(Dp, Np)``,
        ``Dp`` a multiple of 4 and ``Np`` of ``REF_BLOCK``)."""
        dp, np_ = kT.shape
        for j0 in range(0, np_, REF_BLOCK):
            j1 = j0 + REF_BLOCK
            o0, o1, o2, o3 = buf[0, j0:j1], buf[1, j0:j1], buf[2, j0:j1], buf[3, j0:j1]
            for d0 in range(0, dp, DIM_STEP):
                a00, a01, a02, a03 = qb[0, d0], qb[0, d0 + 1], qb[0, d0 + 2], qb[0, d0 + 3]
                a10, a11, a12, a13 = qb[1, d0], qb[1, d0 + 1], qb[1, d0 + 2], qb[1, d0 + 3]
                a20, a21, a22, a23 = qb[2, d0], qb[2, d0 + 1], qb[2, d0 + 2], qb[2, d0 + 3]
                a30, a31, a32, a33 = qb[3, d0], qb[3, d0 + 1], qb[3, d0 + 2], qb[3, d0 + 3]
                k0, k1, k2, k3 = kT[d0, j0:j1], kT[d0 + 1, j0:j1], kT[d0 + 2, j0:j1], kT[d0 + 3, j0:j1]
                if d0 == 0:
                    for j in range(REF_BLOCK):
                        x0, x1, x2, x3 = k0[j], k1[j], k2[j], k3[j]
                        o0[j] = a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3
                        o1[j] = a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3
                        o2[j] = a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3
                        o3[j] = a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3
                else:
                    for j in range(REF_BLOCK):
                        x0, x1, x2, x3 = k0[j], k1[j], k2[j], k3[j]
                        o0[j] += a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3
                        o1[j] += a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3
                        o2[j] += a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3
                        o3[j] += a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3

    @njit(cache=True, fastmath=_SELECT_MATH, boundscheck=False)
    def select_topk(row, n, k, gm, hits, cv, ci, out_v, out_i):
        """Top-``k`` of ``row[:n]`` (``row`` padded to a multiple of ``GROUP * 32``; the
        padding is overwritten) into ``out_v`` / ``out_i``, descending, ties by index.
        (The selection of the global match, and of :mod:`.fused_window`'s window rows.)"""
        np_ = row.shape[0]
        g_n = np_ // GROUP
        one = np.float32(1.0)
        for j in range(n, np_):
            row[j] = -np.inf
        # 1. maxima of the strided groups
        for g in range(g_n):
            gm[g] = row[g]
        for v in range(1, GROUP):
            base = v * g_n
            for g in range(g_n):
                x = row[base + g]
                gm[g] = x if x > gm[g] else gm[g]
        # 2. threshold: at least k group maxima >= t (else every real score is a candidate)
        t = -np.inf
        real = min(n, g_n)  # groups holding a real score (group g holds score g)
        # the bisection runs over the finite maxima (a window match masks scores to -inf)
        hi = -np.inf
        finite = 0
        for g in range(real):
            x = gm[g]
            hi = x if x > hi else hi
            finite += x > -np.inf
        if finite >= k:
            lo = hi
            for g in range(real):
                x = gm[g]
                lo = x if (x < lo and x > -np.inf) else lo
            kf = np.float32(k)
            for _ in range(16):  # invariant: count(gm >= lo) >= k
                mid = np.float32(0.5) * (lo + hi)
                if not (lo < mid < hi):
                    break
                c = np.float32(0.0)  # counts in float32: exact, and the loop vectorises
                for g in range(g_n):
                    c += one if gm[g] >= mid else np.float32(0.0)
                if c >= kf:
                    lo = mid
                    if c <= kf + np.float32(SLACK):
                        break
                else:
                    hi = mid
            t = lo
        # 3. candidates: scores >= t of the groups whose maximum reaches t, in index order
        n_hit = 0
        for g in range(g_n):
            hits[n_hit] = g
            n_hit += gm[g] >= t
        m = 0
        for v in range(GROUP):
            base = v * g_n
            for h in range(n_hit):
                j = base + hits[h]
                x = row[j]
                cv[m] = x
                ci[m] = j
                m += (x >= t) & (j < n)
        # 4. rank of each candidate: the greater ones, and the equal ones before it; the
        # counts run over a multiple of 32 (padding -inf) so that they stay vectorised
        if m <= MAX_RANKED:
            m_pad = (m + 31) // 32 * 32
            for b in range(m, m_pad):
                cv[b] = -np.inf
            for a in range(m):
                va = cv[a]
                rank = np.float32(0.0)
                same = np.float32(0.0)
                for b in range(m_pad):
                    rank += one if cv[b] > va else np.float32(0.0)
                    same += one if cv[b] == va else np.float32(0.0)
                r = int(rank)
                if same > one:  # exact ties (rare): the earlier ones rank first
                    for b in range(a):
                        r += cv[b] == va
                if r < k:
                    out_v[r] = va
                    out_i[r] = ci[a]
        else:  # weak threshold (many near-equal scores): insertion into a sorted top-k
            for i in range(k):
                out_v[i] = -np.inf
                out_i[i] = np_
            for a in range(m):
                va, ia = cv[a], ci[a]
                if va > out_v[k - 1]:  # candidates come in index order: equal ones stay behind
                    insert_sorted(out_v, out_i, va, ia)

    @njit(cache=True, boundscheck=False)
    def _block_scores(q, q0, kT, qb, buf):
        """Scores of the (up to) ``QUERY_BLOCK`` queries from row ``q0`` into ``buf``
        (through the zero-padded block ``qb``); returns how many queries there were."""
        nq = min(q.shape[0], q0 + QUERY_BLOCK) - q0
        for r in range(nq):
            for d in range(q.shape[1]):
                qb[r, d] = q[q0 + r, d]
        _scores(qb, kT, buf)
        return nq

    @njit(cache=True, parallel=True, boundscheck=False)
    def _topk_kernel(q, kT, n, k, out_v, out_i):
        n_q, dim = q.shape
        dp, np_ = kT.shape
        for task in prange((n_q + TASK - 1) // TASK):
            buf = np.empty((QUERY_BLOCK, np_), np.float32)
            gm = np.empty(np_ // GROUP, np.float32)
            hits = np.empty(np_ // GROUP, np.int64)
            cv = np.empty(np_ + 32, np.float32)
            ci = np.empty(np_, np.int64)
            qb = np.zeros((QUERY_BLOCK, dp), np.float32)
            for q0 in range(task * TASK, min(n_q, (task + 1) * TASK), QUERY_BLOCK):
                nq = _block_scores(q, q0, kT, qb, buf)
                for r in range(nq):
                    select_topk(buf[r], n, k, gm, hits, cv, ci, out_v[q0 + r], out_i[q0 + r])

    @njit(cache=True, parallel=True, boundscheck=False)
    def _insert_kernel(q, kT, n_new, new_rows, values, index):
        """Scores of each query with the new keys, each one above the query's kept
        ``k``-th inserted into its sorted top-``k`` in place (kept entries win ties).

        A correction adds a few hundred keys; most of their scores fall below the kept
        ``k``-th, so one comparison per score is the whole cost beyond the dot products."""
        n_q, dim = q.shape
        dp, np_ = kT.shape
        k = values.shape[1]
        for task in prange((n_q + TASK - 1) // TASK):
            buf = np.empty((QUERY_BLOCK, np_), np.float32)
            qb = np.zeros((QUERY_BLOCK, dp), np.float32)
            for q0 in range(task * TASK, min(n_q, (task + 1) * TASK), QUERY_BLOCK):
                nq = _block_scores(q, q0, kT, qb, buf)
                for r in range(nq):
                    vr = values[q0 + r]
                    ir = index[q0 + r]
                    kth = vr[k - 1]
                    for j in range(n_new):
                        x = buf[r, j]
                        if x > kth:
                            insert_sorted(vr, ir, x, new_rows[j])
                            kth = vr[k - 1]

    @njit(cache=True, parallel=True, boundscheck=False)
    def _merge_kernel(kept_v, kept_i, new_v, new_i, out_v, out_i):
        """Merge two descending lists per row (kept first among equal values)."""
        n_q, k = out_v.shape
        a_n, b_n = kept_v.shape[1], new_v.shape[1]
        for r in prange(n_q):
            a = 0
            b = 0
            for p in range(k):
                if b >= b_n or (a < a_n and kept_v[r, a] >= new_v[r, b]):
                    out_v[r, p] = kept_v[r, a]
                    out_i[r, p] = kept_i[r, a]
                    a += 1
                else:
                    out_v[r, p] = new_v[r, b]
                    out_i[r, p] = new_i[r, b]
                    b += 1


def prepare_keys(keys) -> np.ndarray:
    """``(N, D)`` keys -> the kernel's ``(Dp, Np)`` zero-padded, transposed float32 layout
    (reuse it across calls with the same keys: pass it as ``keys`` with ``n=N``)."""
    keys = np.asarray(keys.detach().cpu() if isinstance(keys, torch.Tensor) else keys, dtype=np.float32)
    n, dim = keys.shape
    dp = -(-dim // DIM_STEP) * DIM_STEP
    np_ = max(1, -(-n // REF_BLOCK)) * REF_BLOCK
    kT = np.zeros((dp, np_), np.float32)
    kT[:dim, :n] = keys.T
    return kT


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def topk_dot(queries, keys, k: int, *, prepared=None):
    """Top-``k`` dot products ``(Q, k)`` (descending) and key indices ``(Q, k)`` int64 of
    ``(Q, D)`` queries with ``(N, D)`` keys; ``k`` is capped at ``N`` (as
    :func:`~simwidgets.transfer.knn.topk_global` does).

    Takes torch tensors (returns torch tensors) or numpy arrays (returns numpy arrays).
    ``prepared``: :func:`prepare_keys` of ``keys``, to skip the transposition when the
    same keys serve several calls.  Without numba this is ``knn.topk_global``.
    """
    is_torch = isinstance(queries, torch.Tensor)
    n_keys = keys.shape[0]
    k = min(int(k), n_keys)
    if not available():
        from . import knn

        q = queries if is_torch else torch.from_numpy(np.asarray(queries, np.float32))
        kk = keys if isinstance(keys, torch.Tensor) else torch.from_numpy(np.asarray(keys, np.float32))
        values, index = knn.topk_global(q, kk, k)
        return (values, index) if is_torch else (values.numpy(), index.numpy())
    q = _as_numpy(queries)
    n_q = q.shape[0]
    values = np.empty((n_q, k), np.float32)
    index = np.empty((n_q, k), np.int64)
    if n_q and k > 0:
        kT = prepare_keys(keys) if prepared is None else prepared
        _topk_kernel(q, kT, n_keys, k, values, index)
    if is_torch:
        return torch.from_numpy(values), torch.from_numpy(index)
    return values, index


def merge_topk_dot(queries, new_keys, new_rows, values, index, k: int):
    """:func:`~simwidgets.transfer.knn.merge_topk` with the fused kernel: the top-``k`` of
    the new keys (rows ``new_rows`` of the full table) merged with the kept ``values`` /
    ``index`` ``(Q, k')``.  Returns new ``(Q, min(k, k' + M))`` tensors (kept entries win
    exact ties).  Without numba this is ``knn.merge_topk``."""
    if not available():
        from . import knn

        return knn.merge_topk(queries, new_keys, new_rows, values, index, k)
    if values.shape[1] == k and len(new_rows) and len(queries):
        # a full kept top-k (the usual case): insert the few new scores above its k-th
        out_v = np.array(_as_numpy(values), copy=True)
        out_i = np.array(torch.as_tensor(index).numpy(), dtype=np.int64, copy=True)
        rows = np.ascontiguousarray(torch.as_tensor(new_rows, dtype=torch.long).numpy())
        _insert_kernel(_as_numpy(queries), prepare_keys(new_keys), len(rows), rows, out_v, out_i)
        return torch.from_numpy(out_v), torch.from_numpy(out_i)
    new_v, new_i = topk_dot(queries, new_keys, k)
    rows = torch.as_tensor(new_rows, dtype=torch.long).numpy()
    new_i = rows[np.asarray(new_i)]
    kept_v = _as_numpy(values)
    kept_i = np.ascontiguousarray(torch.as_tensor(index).numpy(), dtype=np.int64)
    width = min(k, kept_v.shape[1] + new_i.shape[1])
    out_v = np.empty((kept_v.shape[0], width), np.float32)
    out_i = np.empty((kept_v.shape[0], width), np.int64)
    _merge_kernel(kept_v, kept_i, np.ascontiguousarray(new_v, dtype=np.float32), np.ascontiguousarray(new_i), out_v, out_i)
    return torch.from_numpy(out_v), torch.from_numpy(out_i)
