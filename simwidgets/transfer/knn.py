"""The nearest-neighbour kernels of the transfer: pure functions of tensors, no state.

A query cell's label is the softmax-weighted vote of its ``k`` most similar references,
global (the user's reference cells, any frame) or local (cells of the previous frames
inside a square window around the query).  Each fast kernel here has a plain reference
implementation beside it, written for reading rather than speed (whole score matrices,
no blocks, tiles or index arithmetic), which the tests compare it against:

=========================  ===================================
fast kernel                reference
=========================  ===================================
:func:`topk_global`        :func:`topk_global_reference`
:func:`merge_topk`         :func:`merge_topk_reference`
:func:`local_topk`         :func:`local_topk_reference`
:func:`vote_frame`         :func:`vote_frame_reference`
=========================  ===================================

Similarities are dot products of unit vectors (cosines).  Every kernel works in bounded
memory: queries in blocks, window tiles in chunks of a byte budget.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "GLOBAL_BLOCK",
    "TILE",
    "LOCAL_CHUNK_BYTES",
    "NearestVotes",
    "topk_global",
    "topk_global_reference",
    "merge_topk",
    "merge_topk_reference",
    "local_topk",
    "window_cells",
    "local_topk_reference",
    "union_topk",
    "vote",
    "vote_frame",
    "vote_frame_reference",
    "nearest_votes",
]

#: queries per block of the global matmul: large enough for an efficient matmul, small
#: enough that the ``(block, N_refs)`` scores stay in cache
GLOBAL_BLOCK = 1024
#: side, in grid cells, of the query tiles of the local window match
TILE = 8
#: score bytes per chunk of tiles in the local match (bounds memory whatever the frame size)
LOCAL_CHUNK_BYTES = 32 * 2**20


# --------------------------------------------------------------------------- global
def topk_global(queries: torch.Tensor, keys: torch.Tensor, k: int, block: int = GLOBAL_BLOCK):
    """Top-``k`` similarities ``(N, k)`` and key indices of ``(N, D)`` queries to ``(M, D)`` keys.

    Queries go in blocks into one reused ``(block, M)`` score buffer, so memory stays
    bounded whatever the number of queries, and ``topk`` writes straight into the result
    (no per-block tensors to concatenate).  ``k`` is capped at ``M``.
    """
    n = queries.shape[0]
    k = min(k, keys.shape[0])
    values = queries.new_empty((n, k))
    index = torch.empty((n, k), dtype=torch.long, device=queries.device)
    keys_t = keys.T.contiguous()
    scores = None
    for start in range(0, n, block):
        stop = min(n, start + block)
        if scores is None or scores.shape[0] != stop - start:
            scores = queries.new_empty((stop - start, keys_t.shape[1]))
        torch.mm(queries[start:stop], keys_t, out=scores)
        torch.topk(scores, k, dim=1, out=(values[start:stop], index[start:stop]))
    return values, index


def topk_global_reference(queries: torch.Tensor, keys: torch.Tensor, k: int):
    """:func:`topk_global` in one line: every score at once."""
    return (queries @ keys.T).topk(min(k, keys.shape[0]), dim=1)


def merge_topk(queries, new_keys, new_rows, values, index, k: int, block: int = GLOBAL_BLOCK):
    """Merge the matches of new keys into a kept top-``k``.

    ``new_keys`` ``(M, D)`` are rows ``new_rows`` ``(M,)`` of the full key table; ``values``
    / ``index`` ``(N, k)`` the kept top-``k`` over the other rows (updated in place when
    ``k`` were kept, widened when fewer were).  The top-``k`` of a union is the top-``k``
    of the parts' top-``k``, so the result equals a fresh :func:`topk_global` over all rows.

    Only new similarities above a query's kept ``k``-th can enter its top-``k``; there are
    few when the new keys look like the old ones, so they are picked out of each block of
    scores by a comparison and merged with the kept ``k`` by a top-``k`` over ``k + P``
    columns (``P`` the most any query in the block has), not over all ``M``.
    """
    if values.shape[1] < k:  # fewer keys than k before: everything is merged
        new_values, new_index = topk_global(queries, new_keys, k, block)
        merged, pick = torch.cat([values, new_values], 1).topk(k, dim=1)
        return merged, torch.gather(torch.cat([index, new_rows[new_index]], 1), 1, pick)
    keys = new_keys.T.contiguous()
    scores = None
    for start in range(0, queries.shape[0], block):
        stop = min(queries.shape[0], start + block)
        n = stop - start
        if scores is None or scores.shape[0] != n:
            scores = queries.new_empty((n, keys.shape[1]))
        torch.mm(queries[start:stop], keys, out=scores)
        rows, cols = (scores > values[start:stop, -1:]).nonzero(as_tuple=True)
        if len(rows) == 0:
            continue
        # scatter each query's few winners into a (n, P) block padded with -inf
        counts = torch.bincount(rows, minlength=n)
        slot = torch.arange(len(rows), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
        width = int(counts.max())
        padded_values = scores.new_full((n, width), float("-inf"))
        padded_index = index.new_zeros((n, width))
        padded_values[rows, slot] = scores[rows, cols]
        padded_index[rows, slot] = new_rows[cols]
        merged, pick = torch.cat([values[start:stop], padded_values], 1).topk(k, dim=1)
        index[start:stop] = torch.gather(torch.cat([index[start:stop], padded_index], 1), 1, pick)
        values[start:stop] = merged
    return values, index


def merge_topk_reference(queries, new_keys, new_rows, values, index, k: int):
    """:func:`merge_topk` the plain way: all new scores beside the kept ones, one top-``k``."""
    merged, pick = torch.cat([values, queries @ new_keys.T], 1).topk(k, dim=1)
    rows = torch.cat([index, new_rows.expand(len(queries), -1)], 1)
    return merged, torch.gather(rows, 1, pick)


# --------------------------------------------------------------------------- local
def local_topk(query, context, window: int, k: int, tile: int = TILE, chunk_bytes: int = LOCAL_CHUNK_BYTES):
    """Top-``k`` context cells inside the square window of radius ``window`` of each cell.

    ``query`` ``(D, h, w)``; ``context`` a list of ``(D, h, w)`` embeddings of the context
    frames.  Returns ``values`` ``(h*w, k)`` and compact window positions ``(h*w, k)``
    (int16 when they fit: kept across rounds, so small), which :func:`window_cells` turns
    into cell indices.

    The grid is cut into square tiles of ``tile`` cells; each tile's queries are compared
    (one batched matmul per chunk of tiles) with the context cells of the tile grown by
    ``window`` on every side.  Cells outside a query's own window get ``-inf`` from an
    additive mask; cells outside the frame get ``-inf`` through an extra channel (``1`` in
    the queries, ``0`` or ``-inf`` in the keys), so no boolean mask of the score size is
    ever built.  On a CPU with numba the engine runs :func:`~.fused_window.window_topk`
    instead, which gives the same candidates from one fused kernel.
    """
    dim, h, w = query.shape
    n_ctx = len(context)
    radius = window
    size = tile + 2 * radius
    nty, ntx = -(-h // tile), -(-w // tile)
    hp, wp = nty * tile, ntx * tile
    device, channels = query.device, dim + 1
    # keys, channels last, padded by `radius` (and up to whole tiles), validity channel last
    keys = query.new_zeros((n_ctx, hp + 2 * radius, wp + 2 * radius, channels))
    keys[..., dim] = float("-inf")
    for i, emb in enumerate(context):
        keys[i, radius : radius + h, radius : radius + w, :dim] = emb.permute(1, 2, 0)
        keys[i, radius : radius + h, radius : radius + w, dim] = 0.0
    s_ctx, s_row, s_col, _ = keys.stride()
    # (nty, ntx, n_ctx, size, size, channels): the window of every tile, a view
    windows = keys.as_strided(
        (nty, ntx, n_ctx, size, size, channels), (tile * s_row, tile * s_col, s_ctx, s_row, s_col, 1)
    )
    queries = query.new_zeros((hp, wp, channels))
    queries[:h, :w, :dim] = query.permute(1, 2, 0)
    queries[..., dim] = 1.0
    queries = queries.view(nty, tile, ntx, tile, channels).transpose(1, 2).reshape(nty * ntx, tile * tile, channels)
    # additive mask of each query's exact square window inside its tile
    offs = torch.arange(tile, device=device)
    key_pos = torch.arange(size, device=device) - radius
    near_r = (key_pos[None, :] - offs[:, None]).abs() <= radius  # (tile, size)
    near = (near_r[:, None, :, None] & near_r[None, :, None, :]).reshape(tile * tile, size * size)
    bias = torch.zeros(near.shape, device=device).masked_fill_(~near, float("-inf")).repeat(1, n_ctx)
    n_keys = n_ctx * size * size
    k = min(k, n_keys)
    n_tiles = nty * ntx
    values = query.new_empty((n_tiles, tile * tile, k))
    index = torch.empty((n_tiles, tile * tile, k), dtype=torch.long, device=device)
    per_chunk = max(1, chunk_bytes // (tile * tile * n_keys * 4))
    row_step, col_step = (per_chunk // ntx, ntx) if per_chunk >= ntx else (1, per_chunk)
    for ty0 in range(0, nty, row_step):
        ty1 = min(nty, ty0 + row_step)
        for tx0 in range(0, ntx, col_step):
            tx1 = min(ntx, tx0 + col_step)
            start, stop = ty0 * ntx + tx0, (ty1 - 1) * ntx + tx1  # tiles in order
            block = windows[ty0:ty1, tx0:tx1].reshape(stop - start, n_keys, channels)
            scores = torch.bmm(queries[start:stop], block.transpose(1, 2))
            scores += bias
            torch.topk(scores, k, dim=-1, out=(values[start:stop], index[start:stop]))
    position = index.to(torch.int16 if n_keys <= 2**15 else torch.int32)

    def untile(x):
        x = x.view(nty, ntx, tile, tile, -1).transpose(1, 2).reshape(hp, wp, -1)
        return x[:h, :w].reshape(h * w, -1)

    return untile(values).contiguous(), untile(position).contiguous()


def window_cells(position: torch.Tensor, h: int, w: int, window: int, tile: int = TILE) -> torch.Tensor:
    """Window positions of :func:`local_topk` -> ``(h*w, k)`` indices into the context cells
    stacked as ``(n_ctx * h * w)``.

    A pick outside the frame has ``-inf`` similarity (zero weight), so its index is only
    clamped into the frame: any valid index will do.
    """
    size = tile + 2 * window
    # window position (ctx, r, c) of a cell's tile -> cell ctx*h*w + row*w + col
    position = position.long()
    ctx_i, rest = position // (size * size), position % (size * size)
    rows = torch.arange(h, device=position.device) // tile * tile - window
    cols = torch.arange(w, device=position.device) // tile * tile - window
    row = rest // size + rows.repeat_interleave(w)[:, None]
    col = rest % size + cols.repeat(h)[:, None]
    return ctx_i * (h * w) + row.clamp(0, h - 1) * w + col.clamp(0, w - 1)


def _window_mask(h: int, w: int, window: int, device=None) -> torch.Tensor:
    """``(h*w, h*w)`` bool: cell ``j`` lies inside the square window of cell ``i``."""
    rows, cols = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    return ((rows[:, None] - rows[None, :]).abs() <= window) & ((cols[:, None] - cols[None, :]).abs() <= window)


def local_topk_reference(query, context, window: int, k: int):
    """:func:`local_topk` + :func:`window_cells` the plain way: the whole score matrix
    against every context cell, the window as an explicit distance mask."""
    dim, h, w = query.shape
    q = query.reshape(dim, -1).T
    inside = _window_mask(h, w, window, query.device)
    scores = torch.cat([(q @ emb.reshape(dim, -1)).masked_fill(~inside, float("-inf")) for emb in context], 1)
    return scores.topk(min(k, scores.shape[1]), dim=1)


# --------------------------------------------------------------------------- votes
def union_topk(global_values, global_index, local_values, local_index, n_global: int, k: int):
    """Top-``k`` of global and local candidates together; local indices come after the
    ``n_global`` global rows of the label table."""
    values = torch.cat([global_values, local_values], dim=1)
    index = torch.cat([global_index, local_index + n_global], dim=1)
    values, pick = values.topk(min(k, values.shape[1]), dim=1)
    return values, torch.gather(index, 1, pick)


def vote(values: torch.Tensor, index: torch.Tensor, table: torch.Tensor, temperature: float) -> torch.Tensor:
    """``(N, C)``: each query's label distributions ``table[index]`` weighted by
    ``softmax(values / temperature)``.  A query whose candidates are all ``-inf`` (none
    in reach) gets zero votes, not NaN."""
    weights = torch.softmax(values / temperature, dim=1)  # values may be kept views: no in-place
    weights = torch.nan_to_num_(weights, nan=0.0)
    return torch.bmm(weights[:, None, :], table[index])[:, 0]


def vote_frame(
    query, ref_embeddings, ref_labels, context, top_k: int, temperature: float, window: int,
    global_candidates=None, local_candidates=None, tile: int = TILE, chunk_bytes: int = LOCAL_CHUNK_BYTES,
) -> torch.Tensor:
    """Probabilities ``(C, h, w)`` of one frame from global references and context frames.

    ``query`` ``(D, h, w)``; references ``(N, D)`` embeddings and ``(N, C)`` labels; each
    context entry is ``(embedding (D, h, w), probabilities (C, h, w))``.  The ``top_k``
    votes are taken over the union of the references and the context cells inside each
    query's window; labels are gathered once, for the winners only.  Candidates already
    known (``(values, index)``: global indices into the references, local ones from
    :func:`window_cells`) skip their match.
    """
    dim, h, w = query.shape
    n_classes = ref_labels.shape[1]
    if global_candidates is None:
        global_candidates = topk_global(query.reshape(dim, -1).T, ref_embeddings, top_k)
    values, index = global_candidates
    table = ref_labels
    if context:
        if local_candidates is None:
            local_values, position = local_topk(query, [e for e, _ in context], window, top_k, tile, chunk_bytes)
            local_candidates = local_values, window_cells(position, h, w, window, tile)
        values, index = union_topk(values, index, *local_candidates, len(ref_labels), top_k)
        context_labels = torch.stack([probs for _, probs in context]).permute(0, 2, 3, 1)
        table = torch.cat([ref_labels, context_labels.reshape(-1, n_classes)])
    return vote(values, index, table, temperature).T.reshape(n_classes, h, w)


def vote_frame_reference(query, ref_embeddings, ref_labels, context, top_k: int, temperature: float, window: int,
                         global_offsets=None):
    """:func:`vote_frame` the plain way (the label propagation of self-supervised
    correspondence learning): every score in one matrix, window as a mask, one softmax.

    ``global_offsets`` ``(R,)`` (if given) are added to the scores of each query's
    ``top_k`` most similar references, and the other references are left out: the fade of
    :mod:`.reach` as the engine applies it, to the kept global candidates."""
    dim, h, w = query.shape
    q = query.reshape(dim, -1).T
    inside = _window_mask(h, w, window, query.device)
    global_scores = q @ ref_embeddings.T
    if global_offsets is not None:
        values, index = global_scores.topk(min(top_k, len(ref_embeddings)), dim=1)
        global_scores = torch.full_like(global_scores, float("-inf")).scatter_(1, index, values + global_offsets[index])
    scores, labels = [global_scores], [ref_labels]
    for emb, probs in context:
        scores.append((q @ emb.reshape(dim, -1)).masked_fill(~inside, float("-inf")))
        labels.append(probs.reshape(probs.shape[0], -1).T)
    scores, labels = torch.cat(scores, 1), torch.cat(labels)
    values, index = scores.topk(min(top_k, scores.shape[1]), dim=1)
    weights = torch.nan_to_num(torch.softmax(values / temperature, 1), nan=0.0)
    return (weights[..., None] * labels[index]).sum(1).T.reshape(-1, h, w)


# --------------------------------------------------------------------------- one query
@dataclass
class NearestVotes:
    """The ``k`` nearest references of one query vector and their votes.

    ``similarities``, ``weights`` ``(k,)`` and ``index`` ``(k,)`` (rows of the references),
    nearest first; ``labels`` ``(k, C)`` their label distributions; ``votes`` ``(C,)``.
    """

    similarities: torch.Tensor
    index: torch.Tensor
    weights: torch.Tensor
    labels: torch.Tensor
    votes: torch.Tensor


def nearest_votes(query: torch.Tensor, ref_embeddings, ref_labels, k: int, temperature: float) -> NearestVotes:
    """The global vote of one ``(D,)`` query, as the transfer computes it for a cell
    (same kernels, so the same numbers), with every reference that took part."""
    values, index = topk_global(query[None], ref_embeddings, k)
    weights = torch.nan_to_num(torch.softmax(values / temperature, dim=1), nan=0.0)
    votes = vote(values, index, ref_labels, temperature)
    return NearestVotes(values[0], index[0], weights[0], ref_labels[index[0]], votes[0])
