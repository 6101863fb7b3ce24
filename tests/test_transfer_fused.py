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


# --------------------------------------------------------------------------- rows (window match)
@needs_numba
@pytest.mark.parametrize("n, masked", [(3072, 0.4), (1200, 0.0), (50, 0.9)])
def test_topk_rows_matches_torch_topk_with_masked_scores(n, masked):
    """Top-k of each row, as torch.topk gives it, also where many scores are -inf (the
    window match masks the keys outside a query's window) and for row lengths that are
    not a multiple of the selection's groups."""
    gen = torch.Generator().manual_seed(n)
    scores = torch.randn(3, 40, n, generator=gen)
    scores[torch.rand(scores.shape, generator=gen) < masked] = float("-inf")
    scores[..., :20] = torch.randn(3, 40, 20, generator=gen)  # at least k finite per row
    values, index = fused.topk_rows(scores, 20)
    ref_v, ref_i = torch.topk(scores, 20, dim=-1)
    assert values.shape == (3, 40, 20) and torch.equal(values, ref_v)
    assert torch.equal(torch.gather(scores, -1, index), values)


@needs_numba
def test_local_match_with_the_fused_selection_matches_the_plain_one(bear_embedding):
    """knn.local_topk with select=fused.topk_rows: the same values and window positions as
    with torch.topk, on real embeddings (two quarter frames of bear)."""
    frames = bear_embedding.contiguous()
    for window in (12, 6, 3):
        plain = knn.local_topk(frames[1], [frames[0]], window, 20)
        fast = knn.local_topk(frames[1], [frames[0]], window, 20, select=fused.topk_rows)
        assert torch.allclose(plain[0], fast[0]) and (plain[1] == fast[1]).float().mean() > 0.999
