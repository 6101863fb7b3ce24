"""The fused numba top-k (simwidgets.transfer.fused) against the plain torch kernels."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from simwidgets.transfer import fused, knn

needs_numba = pytest.mark.skipif(not fused.available(), reason="numba is not installed")


def unit(n, d=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=gen), dim=1)


def check(queries, keys, k, values, index):
    """Values as the reference's (fp32 rounding), each index scoring its value, indices
    equal to the reference's wherever the reference's values are not (near-)tied."""
    ref_v, ref_i = knn.topk_global_reference(queries, keys, k)
    assert values.shape == ref_v.shape and index.dtype == torch.int64
    assert torch.allclose(values, ref_v, atol=1e-5, rtol=0)
    scores = queries @ keys.T
    assert torch.allclose(torch.gather(scores, 1, index), values, atol=1e-5, rtol=0)
    assert (index.sort(1).values.diff(1) > 0).all() if index.shape[1] > 1 else True  # no repeats
    assert (values.diff(1) <= 0).all()
    wide = knn.topk_global_reference(queries, keys, k + 1).values  # the k-th's runner-up too
    if wide.shape[1] == ref_v.shape[1]:  # k >= N: nothing beyond
        wide = torch.cat([wide, torch.full_like(wide[:, :1], -2.0)], 1)
    gaps = wide[:, :-1] - wide[:, 1:]
    lonely = (gaps > 1e-5) & torch.cat([torch.ones_like(gaps[:, :1], dtype=torch.bool), gaps[:, :-1] > 1e-5], 1)
    assert (index[lonely] == ref_i[lonely]).all()


@pytest.fixture(scope="module")
def bear_embedding():
    """The shipped model's (2, D, h, w) embedding of two quarter frames of bear."""
    from simwidgets.models import load_model
    from simwidgets.video import load_sample

    frames = load_sample("bear").frames[:2, :240, :428]  # two quarter frames: fast
    return load_model("default").embed(frames, precision="fp32")


@pytest.fixture(scope="module")
def bear_cells(bear_embedding):
    emb = bear_embedding
    return emb.permute(0, 2, 3, 1).reshape(2, -1, emb.shape[1]).contiguous()


def test_available_is_a_bool():
    assert isinstance(fused.available(), bool)


@needs_numba
@pytest.mark.parametrize("n_refs", [300, 2048])
def test_real_embeddings(bear_cells, n_refs):
    queries = bear_cells[1]
    gen = torch.Generator().manual_seed(1)
    keys = bear_cells[0][torch.randperm(bear_cells.shape[1], generator=gen)[:n_refs]]
    values, index = fused.topk_dot(queries, keys, 20)
    check(queries, keys, 20, values, index)
    fast_v, fast_i = knn.topk_global(queries, keys, 20)
    assert (values - fast_v).abs().max() < 1e-5
    assert (index == fast_i).double().mean() > 0.999


@needs_numba
@pytest.mark.parametrize("n_queries, n_refs, k", [
    (1, 1, 20),  # N = 1 < k
    (7, 5, 20),  # k > N, Q not a multiple of the query block
    (1001, 20, 20),  # k = N
    (333, 21, 20),
    (257, 257, 5),  # N just over a ref block
    (64, 3000, 20),  # several ref blocks, padded
    (50, 700, 1),
    (10, 160, 20),  # fewer selection groups than k
])
def test_random_shapes(n_queries, n_refs, k):
    queries, keys = unit(n_queries, seed=n_queries), unit(n_refs, seed=n_refs + 1)
    values, index = fused.topk_dot(queries, keys, k)
    check(queries, keys, k, values, index)


@needs_numba
def test_other_dims_and_numpy():
    queries, keys = unit(99, d=7, seed=3), unit(400, d=7, seed=4)
    values, index = fused.topk_dot(queries.numpy(), keys.numpy(), 10)
    assert isinstance(values, np.ndarray)
    check(queries, keys, 10, torch.from_numpy(values), torch.from_numpy(index))


@needs_numba
def test_exact_ties_break_by_lower_index():
    keys = unit(40, seed=5)
    keys = torch.cat([keys, keys, keys[:3]])  # every score appears two or three times
    queries = unit(30, seed=6)
    values, index = fused.topk_dot(queries, keys, 20)
    ref_v, _ = knn.topk_global_reference(queries, keys, 20)
    assert torch.allclose(values, ref_v, atol=1e-6, rtol=0)
    scores = queries @ keys.T
    assert torch.allclose(torch.gather(scores, 1, index), values, atol=1e-6, rtol=0)
    same = values[:, 1:] == values[:, :-1]
    assert (index[:, 1:][same] > index[:, :-1][same]).all()
    # all-equal scores: the lowest indices win
    values, index = fused.topk_dot(torch.ones(3, 4), torch.ones(50, 4), 6)
    assert torch.equal(index, torch.arange(6).expand(3, 6))


@needs_numba
def test_prepared_keys_reused():
    queries, keys = unit(100, seed=7), unit(600, seed=8)
    prepared = fused.prepare_keys(keys)
    a = fused.topk_dot(queries, keys, 20, prepared=prepared)
    b = fused.topk_dot(queries, keys, 20)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@needs_numba
@pytest.mark.parametrize("n_old, n_new, kept", [(500, 300, 20), (10, 300, 10), (3, 4, 3)])
def test_merge_matches_reference(n_old, n_new, kept):
    queries, keys = unit(150, seed=9), unit(n_old + n_new, seed=10)
    k = 20
    values, index = knn.topk_global(queries, keys[:n_old], k)
    assert values.shape[1] == min(k, n_old) == kept
    new_rows = torch.arange(n_old, n_old + n_new)
    merged_v, merged_i = fused.merge_topk_dot(queries, keys[n_old:], new_rows, values, index, k)
    full_v, full_i = knn.topk_global_reference(queries, keys, k)
    assert torch.allclose(merged_v, full_v, atol=1e-5, rtol=0)
    assert (merged_i == full_i).double().mean() > 0.999
    if kept == k:
        ref_v, ref_i = knn.merge_topk_reference(queries, keys[n_old:], new_rows, values, index, k)
        assert torch.allclose(merged_v, ref_v, atol=1e-5, rtol=0)


def test_falls_back_to_torch_without_numba(monkeypatch):
    monkeypatch.setattr(fused, "numba", None)
    assert fused.available() is False
    queries, keys = unit(50, seed=11), unit(30, seed=12)
    values, index = fused.topk_dot(queries, keys, 20)
    ref_v, ref_i = knn.topk_global(queries, keys, 20)
    assert torch.equal(values, ref_v) and torch.equal(index, ref_i)


# --------------------------------------------------------------------------- the vote
@needs_numba
@pytest.mark.parametrize("n_ctx, n_classes", [(0, 2), (1, 2), (3, 3)])
def test_fused_vote_matches_the_plain_vote(n_ctx, n_classes):
    """vote_candidates (one pass: merge, softmax, labels, window decode) gives the plain
    computation's probabilities from the same frame, references and context."""
    from simwidgets.transfer import fused_vote

    gen = torch.Generator().manual_seed(n_ctx + 10 * n_classes)
    dim, h, w, window, k = 16, 11, 19, 3, 8
    query = torch.nn.functional.normalize(torch.randn(dim, h, w, generator=gen), dim=0)
    refs = unit(60, dim, seed=n_ctx)
    labels = torch.softmax(torch.randn(60, n_classes, generator=gen), 1)
    context = [(torch.nn.functional.normalize(torch.randn(dim, h, w, generator=gen), dim=0),
                torch.softmax(torch.randn(n_classes, h, w, generator=gen), 0)) for _ in range(n_ctx)]
    g = knn.topk_global(query.reshape(dim, -1).T, refs, k)
    local = knn.local_topk(query, [e for e, _ in context], window, k, tile=4) if context else None
    got = fused_vote.vote_candidates(g, labels, local, [p for _, p in context], (h, w), k, 0.05, window, tile=4)
    want = knn.vote_frame_reference(query, refs, labels, context, k, 0.05, window)
    assert got.shape == (n_classes, h, w)
    assert torch.allclose(got, want, atol=1e-5)


@needs_numba
def test_fused_vote_gives_zero_votes_where_nothing_is_in_reach():
    from simwidgets.transfer import fused_vote

    values = torch.full((6, 3), float("-inf"))
    index = torch.zeros((6, 3), dtype=torch.long)
    got = fused_vote.vote_candidates((values, index), torch.ones(1, 2) / 2, None, [], (2, 3), 3, 0.1, 1)
    assert torch.equal(got, torch.zeros(2, 2, 3))


@needs_numba
def test_engine_with_fused_vote_matches_the_torch_engine(bear, monkeypatch):
    """A scribble round and a correction round on real video: the engine voting with the
    fused kernel and with plain torch give the same probabilities (fp32 rounding) and
    masks.  (The global matches run on torch in both: the fused top-k may pick another of
    two near-tied references, which the colour-and-position baseline has many of.)

    Near-ties remain in the union itself: an annotated frame's cell is both a global
    reference and a context cell, with the same similarity up to rounding but another
    label (the mask's against the cell's vote), and the two kernels may keep different
    ones of the pair at the ``k``-th place.  So probabilities agree on average to 5e-5 and
    the masks on all but a few pixels in 10^4."""
    from simwidgets.transfer import LabelTransfer

    monkeypatch.setattr(fused, "topk_dot", knn.topk_global)
    monkeypatch.setattr(fused, "merge_topk_dot", knn.merge_topk)
    frames = bear.frames[34:46]
    first = {3: np.where(bear.masks[37] > 0, 1, -1)}
    correction = {**first, 8: np.where(bear.masks[42] == 0, 0, -1)}
    results = {}
    for use_fused in (True, False):
        engine = LabelTransfer(frames, model="baseline")
        engine.fused = use_fused
        results[use_fused] = [engine.propagate(first), engine.propagate(correction)]
    for got, want in zip(results[True], results[False]):
        gaps = torch.stack([(a - b).abs() for a, b in zip(got.probabilities, want.probabilities)])
        assert float(gaps.mean()) < 5e-5 and float(gaps.max()) < 0.1
        assert (got.masks != want.masks).mean() < 2e-4


# --------------------------------------------------------------------------- window match
def _field(dim, h, w, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(dim, h, w, generator=gen), dim=0)


@needs_numba
@pytest.mark.parametrize("h, w, window, n_ctx, tile, k", [
    (11, 19, 2, 1, 4, 7),    # frame not a multiple of the tile
    (13, 9, 3, 3, 8, 20),    # window wider than the frame's half
    (20, 21, 6, 2, 8, 20),   # the engine's stride-8 case
    (7, 6, 0, 2, 4, 5),      # one cell per context frame: fewer than k, the rest -inf
])
def test_fused_window_match_equals_the_dense_window_match(h, w, window, n_ctx, tile, k):
    """window_topk gives the window match of the plain dense computation (every context
    cell scored, the window as a distance mask): the same values, the same cells wherever
    the values are not (near-)tied, and -inf beyond the cells a window holds."""
    from simwidgets.transfer import fused_window

    query = _field(8, h, w, seed=5)
    context = [_field(8, h, w, seed=6 + i) for i in range(n_ctx)]
    values, position = fused_window.window_topk(query, context, window, k, tile)
    want_values, want_index = knn.local_topk_reference(query, context, window, k)
    assert values.shape == want_values.shape == (h * w, k) and position.dtype == torch.int16
    finite = torch.isfinite(want_values)
    assert torch.equal(torch.isfinite(values), finite)
    assert torch.allclose(values[finite], want_values[finite], atol=1e-5, rtol=0)
    assert (values.diff(1)[finite[:, 1:]] <= 0).all()  # descending
    index = knn.window_cells(position, h, w, window, tile)
    # an entry whose value is clear of both neighbours' (no near-tie to reorder)
    padded = torch.cat([torch.full((h * w, 1), 9.0), want_values, torch.full((h * w, 1), -9.0)], 1)
    padded = torch.nan_to_num(padded, neginf=-9.0)
    gaps = padded[:, :-1] - padded[:, 1:]
    lonely = (gaps[:, :-1] > 1e-5) & (gaps[:, 1:] > 1e-5) & finite
    assert lonely.float().mean() > 0.1
    assert torch.equal(index[lonely], want_index[lonely])


@needs_numba
def test_fused_window_match_equals_the_tiled_torch_match_on_real_embeddings(bear_embedding):
    """On real embeddings (two quarter frames of bear, the shipped model): the same values
    and window positions as knn.local_topk, the engine's plain path, for the windows of
    stride 4, stride 8 and a small one."""
    from simwidgets.transfer import fused_window

    frames = bear_embedding.contiguous()
    for window in (12, 6, 3):
        plain = knn.local_topk(frames[1], [frames[0], frames[1]], window, 20)
        fast = fused_window.window_topk(frames[1], [frames[0], frames[1]], window, 20, knn.TILE)
        assert fast[1].dtype == plain[1].dtype
        assert torch.allclose(plain[0], fast[0], atol=1e-5) and (plain[1] == fast[1]).float().mean() > 0.999
