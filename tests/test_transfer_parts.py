"""The transfer's parts on their own: each fast kernel against its plain reference, the
candidate pool's budget and eviction rules, the embedding cache's public API, and the
reference cells the explorer locates."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simwidgets.errors import BadInputError
from simwidgets.models import ColourPositionEmbedding
from simwidgets.transfer import EmbeddingCache, LabelTransfer, TransferConfig, knn, reference_cells
from simwidgets.transfer.references import BlockKey
from simwidgets.transfer.reuse import CandidatePool, GlobalKey, GlobalOrigin, LocalKey
from simwidgets.video import synthetic_video


def unit(*shape, dim=1, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=dim)


# --------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("n,m,k,block", [(50, 30, 7, 16), (40, 5, 7, 1024), (33, 200, 20, 7)])
def test_topk_global_equals_reference(n, m, k, block):
    queries, keys = unit(n, 8, seed=1), unit(m, 8, seed=2)
    values, index = knn.topk_global(queries, keys, k, block)
    want_values, want_index = knn.topk_global_reference(queries, keys, k)
    assert values.shape == (n, min(k, m))
    assert torch.allclose(values, want_values, atol=1e-6) and torch.equal(index, want_index)


@pytest.mark.parametrize("n_old,n_new,k", [(60, 25, 10), (4, 30, 10)])  # kept k; fewer than k kept
def test_merge_topk_equals_a_fresh_match_of_the_union(n_old, n_new, k):
    queries, keys = unit(70, 8, seed=3), unit(n_old + n_new, 8, seed=4)
    old_rows, new_rows = torch.arange(n_old), torch.arange(n_old, n_old + n_new)
    kept_values, kept_index = knn.topk_global(queries, keys[old_rows], k)
    merged = knn.merge_topk(queries, keys[new_rows], new_rows, kept_values.clone(), kept_index.clone(), k, block=16)
    plain = knn.merge_topk_reference(queries, keys[new_rows], new_rows, kept_values, kept_index, k)
    fresh = knn.topk_global_reference(queries, keys, k)
    for got in (merged, plain):
        assert torch.allclose(got[0], fresh[0], atol=1e-6) and torch.equal(got[1], fresh[1])


@pytest.mark.parametrize("h,w,window,n_ctx,chunk", [(11, 19, 2, 1, 1), (13, 9, 3, 2, 10**9), (20, 21, 12, 3, 2**16)])
def test_local_topk_equals_the_dense_window_match(h, w, window, n_ctx, chunk):
    query = unit(8, h, w, dim=0, seed=5)
    context = [unit(8, h, w, dim=0, seed=6 + i) for i in range(n_ctx)]
    values, position = knn.local_topk(query, context, window, 7, chunk_bytes=chunk)
    index = knn.window_cells(position, h, w, window)
    want_values, want_index = knn.local_topk_reference(query, context, window, 7)
    assert position.dtype == torch.int16  # compact: kept across rounds
    assert torch.allclose(values, want_values, atol=1e-5)
    clear = (want_values[:, :-1] - want_values[:, 1:]).abs().amin(1) > 1e-5  # no near-ties to reorder
    assert clear.float().mean() > 0.9
    assert torch.equal(index[clear], want_index[clear])


def test_nearest_votes_equal_the_global_vote_of_a_frame():
    query, keys = unit(8, 4, 5, dim=0, seed=7), unit(30, 8, seed=8)
    labels = torch.softmax(torch.randn(30, 3, generator=torch.Generator().manual_seed(9)), 1)
    frame = knn.vote_frame(query, keys, labels, [], 6, 0.1, 2)
    one = knn.nearest_votes(query[:, 2, 3], keys, labels, 6, 0.1)
    assert torch.allclose(one.votes, frame[:, 2, 3], atol=1e-6)  # one row of the same matmuls
    assert torch.allclose(one.weights.sum(), torch.tensor(1.0)) and one.labels.shape == (6, 3)
    assert torch.equal(one.labels, labels[one.index])


# --------------------------------------------------------------------------- pool
def entry(value, shape=(6, 4), dtype=torch.int16):
    return torch.full(shape, float(value)), torch.full(shape, int(value), dtype=dtype)


def test_keys_are_frozen_named_dataclasses():
    key = LocalKey(frame=3, context=(0, 1, 2), window=12, top_k=20, tile=8)
    assert key == LocalKey(3, (0, 1, 2), 12, 20, 8) and hash(key) == hash(LocalKey(3, (0, 1, 2), 12, 20, 8))
    assert key != LocalKey(3, (0, 1, 2), 12, 20, 4) and GlobalKey(3) != LocalKey(3, (), 0, 0, 0)
    for kind in (LocalKey, GlobalKey, GlobalOrigin, BlockKey):
        assert dataclasses.is_dataclass(kind) and kind.__dataclass_params__.frozen
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.frame = 4


def test_an_evicting_pool_keeps_the_most_recently_used():
    one = sum(t.numel() * t.element_size() for t in entry(0))
    pool = CandidatePool(3 * one, max_entries=10, evict=True)
    for f in range(3):
        assert pool.put(LocalKey(f, (), 1, 4, 8), *entry(f))
    assert pool.n_slots == 3 and pool.nbytes == 3 * one
    assert pool.get(LocalKey(0, (), 1, 4, 8)).values[0, 0] == 0  # 0 is now the most recent
    assert pool.put(LocalKey(3, (), 1, 4, 8), *entry(3))  # evicts 1, the least recent
    assert [k.frame for k in pool.keys()] == [2, 0, 3]
    kept = pool.get(LocalKey(3, (), 1, 4, 8))
    assert torch.equal(kept.values, entry(3)[0]) and torch.equal(kept.index, entry(3)[1])


def test_a_filling_pool_never_evicts_and_replaces_its_own_entries():
    one = entry(0)[0].numel() * 8  # float32 values and int32 indices
    pool = CandidatePool(2 * one, max_entries=10, evict=False, index_dtype=torch.int32)
    assert pool.put(GlobalKey(0), *entry(0, dtype=torch.long), origin=GlobalOrigin(4, ()))
    assert pool.put(GlobalKey(1), *entry(1, dtype=torch.long))
    assert not pool.put(GlobalKey(2), *entry(2, dtype=torch.long))  # full: not kept
    assert pool.put(GlobalKey(0), *entry(5, dtype=torch.long))  # its own slot again
    kept = pool.get(GlobalKey(0))
    assert kept.values[0, 0] == 5 and kept.index.dtype == torch.int32 and kept.origin is None
    assert GlobalKey(2) not in pool and len(pool) == 2


def test_a_pool_within_no_budget_keeps_nothing_and_a_new_shape_starts_afresh():
    assert not CandidatePool(0, 10, evict=True).put(GlobalKey(0), *entry(0))
    pool = CandidatePool(2**20, 10, evict=True)
    pool.put(GlobalKey(0), *entry(0))
    pool.put(GlobalKey(1), *entry(1, shape=(6, 5)))  # another k: the old entries go
    assert pool.keys() == [GlobalKey(1)]
    pool.budget_bytes = 2**21  # a new budget frees the slots
    assert len(pool) == 0 and pool.n_slots == 0


# --------------------------------------------------------------------------- cache
def test_embedding_cache_public_api():
    video = synthetic_video(n_frames=4, n_objects=1, height=16, width=24, seed=2)
    model = ColourPositionEmbedding(stride=4)
    cache = EmbeddingCache(model, list(video.frames))  # a list of frames is stacked
    assert cache.embedded_frames == [] and not cache.is_embedded(2)
    cache.ensure([2])
    assert cache.embedded_frames == [2] and cache.is_embedded(2) and cache.n_computed == 1
    other = EmbeddingCache(model, video.frames)
    other.put(1, cache[2])
    assert other.embedded_frames == [1] and other.n_computed == 0  # not embedded by the model
    assert torch.equal(other[1], cache[2])
    with pytest.raises(BadInputError, match="already embedded"):
        other.put(1, cache[2])
    with pytest.raises(BadInputError, match="shape"):
        other.put(0, cache[2][:1])
    with pytest.raises(BadInputError, match="outside the video"):
        other.ensure([4])


# --------------------------------------------------------------------------- references
def test_reference_cells_locate_every_row_of_the_table():
    """The positions the explorer shows are those of the table's rows: each row's
    embedding is that of its (frame, row, col) cell, also when the cap subsamples."""
    video = synthetic_video(n_frames=5, n_objects=2, height=48, width=64, seed=4)
    engine = LabelTransfer(video.frames, model="baseline")
    references = {0: video.masks[0].astype(np.int64), 3: np.where(video.masks[3] == 2, 2, -1)}
    for cap in (10**6, 40):
        config = TransferConfig(max_references=cap)
        cells = engine.reference_cells(references, config=config)
        refs, clamps = engine.build_references(engine.normalise_references(references), cells.class_ids, config)
        positions = cells.positions()
        assert len(cells) == len(refs) == len(positions)
        assert all(len(block.cells) <= cap for block in cells.blocks)  # the cap holds frame by frame
        assert torch.equal(cells.labels(), refs.labels)
        looked_up = torch.stack([engine.cache[int(f)][:, r, c] for f, r, c in positions.tolist()])
        assert torch.equal(looked_up, refs.embeddings)
        assert [b.frame for b in refs.blocks] == [b.frame for b in cells.blocks] == [0, 3]
        assert set(clamps) == {0, 3}
    assert reference_cells(engine.normalise_references(references), [0, 1, 2], TransferConfig(), engine.stride,
                           engine.grid).class_ids == [0, 1, 2]


def test_frame_subset_keeps_the_users_cells_and_caps_automatic_background():
    """The user's cells all stay when they fit; automatic background fills up to one
    class's share; a frame with more user cells than the cap keeps a class-stratified
    subset of them (small objects survive); the choice depends on the frame alone."""
    from simwidgets.transfer.references import frame_subset

    dominant = torch.tensor([1] * 30 + [0] * 10 + [0] * 500)
    user = torch.tensor([True] * 40 + [False] * 500)
    keep = frame_subset(dominant, user, 100)
    assert set(range(40)) <= set(keep.tolist())  # every user cell
    assert len(keep) == 40 + 50  # automatic background up to 100 // 2 classes
    assert torch.equal(keep, frame_subset(dominant, user, 100))  # seeded: the same cells again
    full = torch.tensor([1] * 20 + [0] * 980)
    kept = frame_subset(full, torch.ones(1000, dtype=torch.bool), 100)
    assert len(kept) == 70 and (full[kept] == 1).sum() == 20  # the small object whole, 50 background


def test_the_default_window_is_the_same_in_pixels_at_every_stride():
    """window=None means 48 pixels: 12 cells at stride 4, 6 at stride 8; a window given
    in cells is kept; the engine matches with the resolved window."""
    from simwidgets.transfer.config import WINDOW_PIXELS

    config = TransferConfig()
    assert config.window is None and WINDOW_PIXELS == 48
    assert config.for_stride(4).window == 12 and config.for_stride(8).window == 6
    assert TransferConfig(window=3).for_stride(8).window == 3
    video = synthetic_video(n_frames=3, n_objects=1, height=48, width=64, seed=1)
    engine = LabelTransfer(video.frames, model="baseline")  # stride 8
    engine.propagate({0: video.masks[0]})
    keys = list(engine.local_pool.keys())
    assert keys and {key.window for key in keys} == {6}


def test_a_mirrored_transfer_embeds_each_frame_with_its_mirror_image_and_keeps_to_it(bear):
    """``TransferConfig(mirror=True)``: the cached embeddings are the model's mirror-averaged
    ones, and the option cannot change for the transfer's life (nor a session's), since the
    kept embeddings and candidates were made with it; a refused change leaves the options."""
    from simwidgets.models import load_model
    from simwidgets.session import InteractiveSession

    frames = np.ascontiguousarray(bear.frames[:3, :240, :416])
    model = load_model("default")
    engine = LabelTransfer(frames, model=model, config=TransferConfig(mirror=True))
    want = model.embed(frames, device="cpu", mirror=True)
    assert torch.allclose(engine.cache[1], want[1], atol=2e-2)  # stored as float16
    assert not torch.allclose(want[1], model.embed(frames[1], device="cpu"), atol=2e-2)
    with pytest.raises(BadInputError, match="mirror is fixed"):
        engine.propagate({0: (bear.masks[0][:240, :416] > 0).astype(np.int64)}, mirror=False)
    session = InteractiveSession(frames, model=model)
    with pytest.raises(BadInputError, match="mirror is fixed"):
        session.configure(mirror=True, top_k=3)
    assert session.config.mirror is False and session.config.top_k == TransferConfig().top_k
