"""Label transfer: the kNN kernels against plain references, propagation quality on
synthetic and real videos, the candidates kept across rounds, and the inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from simwidgets.errors import BadInputError
from simwidgets.models import ColourPositionEmbedding
from simwidgets.scribbles import Scribbles
from simwidgets.transfer import LabelTransfer, References, TransferConfig, knn, propagate
from simwidgets.video import synthetic_video


def naive_vote(query, refs, context, config):
    """Reference implementation, one query cell at a time (slow, obviously right)."""
    dim, h, w = query.shape
    n_classes = refs.labels.shape[1]
    out = torch.zeros(n_classes, h, w)
    r = config.window
    for y in range(h):
        for x in range(w):
            q = query[:, y, x]
            sims = [refs.embeddings @ q]
            labels = [refs.labels]
            for emb, probs in context:
                y0, y1, x0, x1 = max(0, y - r), min(h, y + r + 1), max(0, x - r), min(w, x + r + 1)
                keys = emb[:, y0:y1, x0:x1].reshape(dim, -1).T
                sims.append(keys @ q)
                labels.append(probs[:, y0:y1, x0:x1].reshape(n_classes, -1).T)
            sims, labels = torch.cat(sims), torch.cat(labels)
            values, index = sims.topk(min(config.top_k, len(sims)))
            weights = torch.softmax(values / config.temperature, 0)
            out[:, y, x] = weights @ labels[index]
    return out


def vote_frame(query, refs, context, config, **kwargs):
    """The fast kernel with a config's options."""
    return knn.vote_frame(query, refs.embeddings, refs.labels, context, config.top_k, config.temperature,
                          config.window, **kwargs)


@pytest.mark.parametrize("window,n_context", [(2, 1), (3, 2), (12, 3)])
def test_vote_kernel_matches_naive_reference(window, n_context):
    torch.manual_seed(0)
    h, w, dim, n_classes = 11, 19, 8, 3
    config = TransferConfig(top_k=7, temperature=0.1, window=window)
    emb = lambda: torch.nn.functional.normalize(torch.randn(dim, h, w), dim=0)  # noqa: E731
    refs = References(
        torch.nn.functional.normalize(torch.randn(25, dim), dim=1),
        torch.softmax(torch.randn(25, n_classes), 1),
    )
    context = [(emb(), torch.softmax(torch.randn(n_classes, h, w), 0)) for _ in range(n_context)]
    query = emb()
    fast = vote_frame(query, refs, context, config)
    slow = naive_vote(query, refs, context, config)
    assert torch.allclose(fast, slow, atol=1e-5)
    # the package's own plain reference agrees too
    reference = knn.vote_frame_reference(query, refs.embeddings, refs.labels, context, config.top_k,
                                         config.temperature, config.window)
    assert torch.allclose(reference, slow, atol=1e-5)
    # without context only the global references vote
    assert torch.allclose(vote_frame(query, refs, [], config), naive_vote(query, refs, [], config), atol=1e-5)


@pytest.fixture(scope="module")
def video():
    return synthetic_video(n_frames=10, n_objects=2, height=96, width=128, seed=3)


@pytest.mark.parametrize("temporal", [False, True])
def test_mask_propagation_on_synthetic_video(video, temporal):
    engine = LabelTransfer(video.frames, model="baseline")
    result = engine.propagate({0: video.masks[0]}, temporal=temporal)
    assert result.masks.shape == video.masks.shape and result.masks.dtype == np.uint8
    assert result.object_ids == [0, 1, 2]
    accuracy = (result.masks == video.masks).mean(axis=(1, 2))
    assert accuracy.min() > 0.95, accuracy
    # each object is found where it is, frame after frame
    for obj in (1, 2):
        inter = ((result.masks == obj) & (video.masks == obj)).sum()
        union = ((result.masks == obj) | (video.masks == obj)).sum()
        assert inter / union > 0.85
    assert result.confidence.shape == (video.n_frames,) and np.all(result.confidence <= 1.0 + 1e-6)
    assert np.all((result.entropy >= 0) & (result.entropy <= 1 + 1e-6))


def test_scribbles_label_the_whole_video(video):
    scribbles = Scribbles(video.n_frames, "synthetic")
    h, w = video.size
    points = {}
    for obj in (0, 1, 2):
        rows, cols = np.nonzero(video.masks[4] == obj)
        pick = np.linspace(0, len(rows) - 1, 30).astype(int)
        points[obj] = rows[pick], cols[pick]
        for r, c in zip(*points[obj]):  # dots: no line may cross another object
            scribbles.add_pixel_stroke(4, [[c + 0.5, r + 0.5]], obj, height=h, width=w)
    masks = propagate(video.frames, scribbles, model="baseline", brush_width=1)
    assert (masks == video.masks).mean() > 0.9
    # the scribbled pixels themselves keep their labels
    for obj, (rows, cols) in points.items():
        assert np.mean(masks[4][rows, cols] == obj) > 0.9


def test_object_only_scribbles_still_find_background(video):
    """The DAVIS protocol's first human scribbles mark objects only: far cells become background."""
    scribbles = Scribbles(video.n_frames)
    h, w = video.size
    rows, cols = np.nonzero(video.masks[0] == 1)
    centre = [cols.mean() + 0.5, rows.mean() + 0.5]
    scribbles.add_pixel_stroke(0, [centre, [centre[0] + 2, centre[1] + 1]], 1, height=h, width=w)
    masks = propagate(video.frames, scribbles, model="baseline", background_margin=0.2)
    assert set(np.unique(masks)) == {0, 1}
    background = video.masks == 0
    assert np.mean(masks[background] == 0) > 0.8
    with pytest.raises(BadInputError, match="no reference"):
        propagate(video.frames, Scribbles(video.n_frames), model="baseline")


def test_cache_embeds_each_frame_once(video):
    engine = LabelTransfer(video.frames, model="baseline")
    engine.propagate({0: video.masks[0]})
    assert engine.cache.n_computed == video.n_frames
    engine.propagate({0: video.masks[0], 5: video.masks[5]})
    engine.propagate({3: video.masks[3]}, temporal=False)
    assert engine.cache.n_computed == video.n_frames


def test_annotated_frames_keep_their_labels(video):
    engine = LabelTransfer(video.frames, model="baseline")
    masks = engine.propagate({0: video.masks[0], 9: video.masks[9]}).masks
    for t in (0, 9):
        assert (masks[t] == video.masks[t]).mean() > 0.97


def test_real_sequence_semi_supervised(bear):
    """Frame-0 ground truth of the real bear sequence, 16 frames: the baseline keeps the bear."""
    from simwidgets.evaluation.metrics import evaluate_masks

    frames, masks = bear.frames[:16], bear.masks[:16]
    pred = propagate(frames, {0: masks[0]}, model=ColourPositionEmbedding(stride=8))
    scores = evaluate_masks(pred[1:], masks[1:])
    assert scores.j_mean > 0.7, scores.summary()
    # and a video where the object is replaced by another frame's mask scores lower
    shuffled = evaluate_masks(pred[1:], masks[::-1][1:16])
    assert shuffled.j_mean < scores.j_mean


@pytest.mark.parametrize(
    "references,message",
    [
        ({0: np.zeros((5, 5), int)}, "shape"),
        ({99: None}, "outside the video"),
        ({-1: None}, "outside the video"),
        ({0.5: None}, "integer"),
        ({0: "mask"}, "shape|integer"),
        ([1, 2], "dict"),
    ],
)
def test_bad_references(video, references, message):
    engine = LabelTransfer(video.frames, model="baseline")
    fixed = {}
    if isinstance(references, dict):
        for k, v in references.items():
            fixed[k] = np.zeros(video.size, int) if v is None else v
    else:
        fixed = references
    with pytest.raises(BadInputError, match=message):
        engine.propagate(fixed)


def test_bad_config_and_frames(video):
    with pytest.raises(BadInputError, match="top_k"):
        TransferConfig(top_k=0)
    with pytest.raises(BadInputError, match="temperature"):
        TransferConfig(temperature=0)
    with pytest.raises(BadInputError, match="frame-count"):
        LabelTransfer(video.frames, model="baseline").propagate(Scribbles(3))
    with pytest.raises(BadInputError, match="shape"):
        LabelTransfer(video.frames[..., 0], model="baseline")


def test_a_background_correction_keeps_the_far_background(video):
    """Adding one background stroke to an object-only frame must not drop the other
    background examples (it once did, and most of the scene turned into the object)."""
    h, w = video.size
    rows, cols = np.nonzero(video.masks[0] == 1)
    centre = [cols.mean() + 0.5, rows.mean() + 0.5]
    first = Scribbles(video.n_frames)
    first.add_pixel_stroke(0, [centre, [centre[0] + 2, centre[1] + 1]], 1, height=h, width=w)
    correction = Scribbles(video.n_frames)
    bg_rows, bg_cols = np.nonzero(video.masks[0] == 0)
    correction.add_pixel_stroke(0, [[bg_cols[0] + 0.5, bg_rows[0] + 0.5]], 0, height=h, width=w)
    engine = LabelTransfer(video.frames, model="baseline", config=TransferConfig(background_margin=0.2))
    before = engine.propagate(first).masks
    after = engine.propagate(first.merge(correction)).masks
    background = video.masks == 0
    assert np.mean(after[background] == 0) >= np.mean(before[background] == 0) - 0.01
    # a frame that marks only some of the objects adds no background guesses
    partial = first.merge(Scribbles(video.n_frames))
    partial.add_pixel_stroke(5, [[cols[0] + 0.5, rows[0] + 0.5]], 2, height=h, width=w)
    refs, _ = engine.build_references(engine.normalise_references(partial), [0, 1, 2], engine.config)
    only_first = engine.build_references(engine.normalise_references(first), [0, 1], engine.config)[0]
    n_background = lambda r: int((r.labels[:, 0] == 1).sum())  # noqa: E731
    assert n_background(refs) == 0  # frame 0 no longer marks every object (2 is new) and 5 marks only 2
    assert n_background(only_first) > 0


def dense_vote(query, refs, context, config):
    """Reference vote with the window as an explicit (cell, cell) distance mask: the whole
    score matrix at once, no tiles, chunks or index arithmetic (fine for small grids)."""
    dim, h, w = query.shape
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    inside = ((rows[:, None] - rows[None, :]).abs() <= config.window) & (
        (cols[:, None] - cols[None, :]).abs() <= config.window
    )
    q = query.reshape(dim, -1).T
    scores, labels = [q @ refs.embeddings.T], [refs.labels]
    for emb, probs in context:
        scores.append((q @ emb.reshape(dim, -1)).masked_fill(~inside, float("-inf")))
        labels.append(probs.reshape(probs.shape[0], -1).T)
    scores, labels = torch.cat(scores, 1), torch.cat(labels)
    values, index = scores.topk(config.top_k + 1, dim=1)
    # cells whose k-th and (k+1)-th similarities are within rounding may pick either
    clear = (values[:, -2] - values[:, -1] > 1e-5).reshape(h, w)
    values, index = values[:, :-1], index[:, :-1]
    weights = torch.softmax(values / config.temperature, 1)
    return (weights[..., None] * labels[index]).sum(1).T.reshape(-1, h, w), clear


@pytest.mark.parametrize("window,n_context", [(3, 1), (12, 3)])
def test_chunked_kernel_equals_dense_reference_on_real_frames(bear, window, n_context):
    """The tiled, chunked local match (every chunk shape: whole tile rows, parts of a row)
    gives the dense reference's votes on real bear embeddings."""
    frames = np.ascontiguousarray(bear.frames[36:40, 100:300, 200:520])  # a 25 x 40 grid
    engine = LabelTransfer(frames, model="default")
    embeddings = [engine.cache[i] for i in range(4)]
    dim, h, w = embeddings[0].shape
    generator = torch.Generator().manual_seed(0)
    picks = torch.randint(0, h * w, (300,), generator=generator)
    refs = References(embeddings[0].reshape(dim, -1).T[picks], torch.softmax(torch.randn(300, 3, generator=generator), 1))
    context = [(e, torch.softmax(torch.randn(3, h, w, generator=generator) * 3, 0)) for e in embeddings[1 : 1 + n_context]]
    config = TransferConfig(window=window)
    expected, clear = dense_vote(embeddings[3], refs, context, config)
    assert clear.float().mean() > 0.9
    for chunk_bytes in (32 * 2**20, 2 * 64 * (8 + 2 * window) ** 2 * n_context * 4, 1):
        # all tiles at once, two tiles, one tile
        got = vote_frame(embeddings[3], refs, context, config, chunk_bytes=chunk_bytes)
        error = (got - expected).abs().amax(0)
        assert error[clear].max() < 1e-5, (chunk_bytes, error[clear].max())


def test_two_class_finish_equals_argmax_of_upsampled_scores(bear):
    """With two classes only p1 - p0 is upsampled: the masks equal the argmax of both
    upsampled channels (wherever the two are not tied to rounding).  Frame 0, annotated,
    keeps the given labels pixel for pixel instead (its own test below)."""
    frames, masks = bear.frames[:6], bear.masks[:6]
    engine = LabelTransfer(frames, model="baseline", config=TransferConfig(refine=False))
    result = engine.propagate({0: masks[0]})
    assert result.object_ids == [0, 1]
    probs = torch.stack(result.probabilities)
    h, w = engine.grid
    up = torch.nn.functional.interpolate(probs, size=(h * engine.stride, w * engine.stride), mode="bilinear")
    up = up[:, :, : engine.height, : engine.width]
    expected = up.argmax(1).numpy().astype(np.uint8)
    decided = (up[:, 1] - up[:, 0]).abs().numpy() > 1e-5
    assert decided.mean() > 0.99
    decided[0] = False
    assert np.array_equal(result.masks[decided], expected[decided])
    # three classes take the general path: same check
    three = np.where(masks[0] > 0, 1, np.where(np.arange(masks.shape[2])[None, :] < 300, 0, 2))
    result = engine.propagate({0: three})
    probs = torch.stack(result.probabilities)
    up = torch.nn.functional.interpolate(probs, size=(h * engine.stride, w * engine.stride), mode="bilinear")
    expected = np.asarray(result.object_ids, np.uint8)[up[:, :, : engine.height, : engine.width].argmax(1).numpy()]
    assert np.array_equal(result.masks[1:], expected[1:])
    assert np.array_equal(result.masks[0], three)
    assert set(np.unique(result.masks)) == {0, 1, 2}


@pytest.mark.parametrize("use_numba", [True, False])
def test_refined_finish_equals_argmax_of_guided_upsampled_scores(bear, use_numba, monkeypatch):
    """With refine=True (the default) the masks are the argmax of the guided filter's
    output for every class (two classes: the sign of p1 - p0 through it), from the fused
    kernel and from the torch path alike; annotated frames keep the user's labels."""
    from simwidgets.transfer import refine

    if not use_numba:
        monkeypatch.setattr(refine, "available", lambda: False)
    elif not refine.available():
        pytest.skip("numba is not installed")
    frames, masks = bear.frames[:6], bear.masks[:6]
    engine = LabelTransfer(frames, model="baseline")
    assert engine.config.refine
    three = np.where(masks[0] > 0, 1, np.where(np.arange(masks.shape[2])[None, :] < 300, 0, 2))
    for references in ({0: masks[0]}, {0: three}):
        result = engine.propagate(references)
        probs = torch.stack(result.probabilities)
        up = refine.guided_upsample(probs, np.asarray(frames), engine.stride, engine.config.refine_radius,
                                    engine.config.refine_eps)
        top2 = up.topk(2, dim=1).values
        decided = (top2[:, 0] - top2[:, 1]).numpy() > 1e-4
        assert decided[1:].mean() > 0.99
        expected = np.asarray(result.object_ids, np.uint8)[up.argmax(1).numpy()]
        decided[0] = False
        # the fused kernel solves in float64, the torch path in float32: a rare pixel whose
        # winner is decided by less than their rounding may differ
        assert (result.masks[decided] != expected[decided]).mean() < 1e-5
        assert np.array_equal(result.masks[0], references[0])
        plain = engine.propagate(references, refine=False)
        assert 0 < (plain.masks[1:] != result.masks[1:]).mean() < 0.05  # edges move, the rest stays


def test_guided_upsample_matches_the_plain_computation(bear):
    """The torch fast guided filter against the loops-and-solves reference, on real
    frames cut to sizes that are not whole cells, for 1 and 3 channels."""
    from simwidgets.transfer import refine

    frames = np.asarray(bear.frames[[10, 50], 100:157, 200:283])
    gen = torch.Generator().manual_seed(0)
    for channels, radius, eps in ((1, 1, 1e-3), (3, 2, 1e-2), (1, 0, 1e-4)):
        scores = torch.randn((2, channels, 8, 11), generator=gen)
        got = refine.guided_upsample(scores, frames, 8, radius, eps)
        want = refine.guided_upsample_reference(scores, frames, 8, radius, eps)
        assert got.shape == (2, channels, 57, 83)
        assert torch.allclose(got, want, atol=1e-4)
        if refine.available():
            labels = refine.refined_labels(scores, frames, 8, radius, eps)
            expected = (want[:, 0] > 0).numpy() if channels == 1 else want.argmax(1).numpy()
            clear = (want[:, 0].abs() > 1e-4).numpy() if channels == 1 else \
                (want.topk(2, 1).values[:, 0] - want.topk(2, 1).values[:, 1]).numpy() > 1e-4
            assert np.array_equal(labels[clear], expected[clear].astype(np.uint8))


def test_guided_upsample_follows_an_edge_inside_a_cell():
    """A vertical colour edge 3 pixels into a cell, scores that change from one cell to the
    next: bilinear upsampling puts the mask edge half-way between cell centres, the
    guided filter on the colour edge itself."""
    from simwidgets.transfer import refine

    frame = np.zeros((1, 16, 32, 3), np.uint8)
    frame[:, :, 11:] = 200  # the edge at x = 11, inside cell 1 (pixels 8..15)
    scores = torch.tensor([[-1.0, -1.0, 1.0, 1.0]]).repeat(2, 1)[None, None]  # (1, 1, 2, 4)
    bilinear = torch.nn.functional.interpolate(scores, size=(16, 32), mode="bilinear")[0, 0]
    assert (bilinear[8] > 0).nonzero()[0].item() == 16  # midway between the cell centres 11.5 and 19.5
    edge = {r: (refine.guided_upsample(scores, frame, 8, radius=r, eps=1e-3)[0, 0, 8] > 0).nonzero()[0].item()
            for r in (1, 2)}
    assert 11 <= edge[1] < 16 and edge[2] == 11  # a wider window sees the whole edge


def test_correction_round_reuses_local_candidates_exactly(bear):
    """The local top-k kept from the first round gives the very numbers a fresh engine
    computes: a correction on another frame changes only what it should."""
    frames = bear.frames[30:42]
    first = {6: np.where(bear.masks[36] > 0, 1, -1)}
    correction = {**first, 9: np.where(bear.masks[39] == 0, 0, -1)}
    engine = LabelTransfer(frames, model="baseline")
    engine.propagate(first)
    assert len(engine.local_pool) > 0
    kept = set(engine.local_pool.keys())
    reused = engine.propagate(correction)
    assert any(key in kept for key in engine.local_pool.keys())  # some frames came from the pool
    fresh = LabelTransfer(frames, model="baseline")
    fresh.local_pool.budget_bytes = 0
    expected = fresh.propagate(correction)
    assert len(fresh.local_pool) == 0
    for got, want in zip(reused.probabilities, expected.probabilities):
        assert torch.equal(got, want)
    assert np.array_equal(reused.masks, expected.masks)
    # a tiny budget keeps the most recent frames only
    entry = engine.local_pool.nbytes // engine.local_pool.n_slots
    engine.local_pool.budget_bytes = 3 * entry  # a new budget frees the pool
    assert len(engine.local_pool) == 0
    again = engine.propagate(correction)
    assert len(engine.local_pool) == 3 and engine.local_pool.n_slots == 3
    assert np.array_equal(again.masks, expected.masks)


@pytest.mark.parametrize("cap", [10**6, 500])
def test_correction_round_matches_only_the_new_frames_references(bear, cap, monkeypatch):
    """A correction on another frame matches each frame against that frame's reference
    cells only (the first frame's block is kept) and gives a fresh engine's result; a
    change to the first frame's own scribbles matches that frame's new block only.  With a
    cap below the first frame's cells too: the cap holds frame by frame, so the first
    frame's subset does not change when another frame is annotated, and the new frame's
    cells are all kept."""
    frames = bear.frames[30:42]
    first = {6: np.where(bear.masks[36] > 0, 1, -1)}
    correction = {**first, 9: np.where(bear.masks[39] == 0, 0, -1)}
    engine = LabelTransfer(frames, model="baseline", config=TransferConfig(max_references=cap))
    engine.fused = False  # count the matches of the torch kernel
    matched = []
    plain, merge = knn.topk_global, knn.merge_topk

    def counting(queries, keys, *args):
        matched.append(len(keys))
        return plain(queries, keys, *args)

    def counting_merge(queries, new_keys, *args):
        matched.append(len(new_keys))
        return merge(queries, new_keys, *args)

    monkeypatch.setattr(knn, "topk_global", counting)
    monkeypatch.setattr(knn, "merge_topk", counting_merge)
    engine.propagate(first)
    first_block = matched[0]
    assert set(matched) == {first_block} and len(matched) == engine.n_frames  # once per frame, not per sweep
    matched.clear()
    reused = engine.propagate(correction)
    both = len(engine.build_references(correction, [0, 1], engine.config)[0])
    new_block = both - first_block
    assert 0 < new_block and set(matched) == {new_block} and len(matched) == engine.n_frames
    if cap == 500:
        cells = engine.reference_cells(correction, [0, 1])
        assert [len(b.cells) for b in cells.blocks] == [first_block, new_block] == [500, 500]
    fresh = LabelTransfer(frames, model="baseline", config=TransferConfig(max_references=cap))
    fresh.fused = False  # the same kernels as the counted engine
    fresh.global_pool.budget_bytes = 0
    expected = fresh.propagate(correction)
    assert len(fresh.global_pool) == 0
    for got, want in zip(reused.probabilities, expected.probabilities):
        assert torch.allclose(got, want, atol=1e-6)
    assert np.array_equal(reused.masks, expected.masks)
    # the first frame's scribble changes: its block is new and matched, frame 9's is kept
    matched.clear()
    changed = {6: np.where(bear.masks[36] > 0, 1, 0), 9: correction[9]}
    again = engine.propagate(changed)
    assert len(matched) == engine.n_frames and min(matched) > new_block
    fresh = LabelTransfer(frames, model="baseline", config=TransferConfig(max_references=cap))
    fresh.fused = False  # the same kernels as the counted engine (the fused ones differ at near-ties)
    assert np.array_equal(again.masks, fresh.propagate(changed).masks)


def test_the_users_own_pixels_keep_their_labels(bear):
    """A thin stroke survives at full resolution on its own frame: the grid clamp alone,
    upsampled bilinearly, would blur a 3-pixel stroke into its neighbours' label."""
    frames = bear.frames[:4]
    engine = LabelTransfer(frames, model="baseline")
    labels = np.full(frames.shape[1:3], -1, np.int64)
    labels[bear.masks[0] > 0] = 1
    labels[:40] = 0
    labels[300:303, 100:700] = 0  # a thin background stroke across the bear (rows 214-434)
    result = engine.propagate({0: labels})
    known = labels >= 0
    assert np.array_equal(result.masks[0][known], labels[known])
    # the stroke holds on its own frame only: on the next frame the bear is there again
    on_bear = bear.masks[1][301, 100:700] > 0
    assert (result.masks[1][301, 100:700][on_bear] == 1).mean() > 0.9


@pytest.mark.skipif(not __import__("simwidgets.transfer.fused", fromlist=["available"]).available(),
                    reason="numba is not installed")
def test_the_fused_global_match_gives_the_torch_paths_masks(bear):
    """The numba kernel in the engine: the same probabilities as the plain torch kernel but
    where a near-tie (fp32 rounding of the dot products) swaps a query's k-th neighbour,
    the same masks but for a few such pixels."""
    frames = bear.frames[36:44]
    refs = {3: np.where(bear.masks[39] > 0, 1, 0)}
    fast = LabelTransfer(frames, model="baseline")
    plain = LabelTransfer(frames, model="baseline")
    plain.fused = False
    assert fast.fused
    a, b = fast.propagate(refs), plain.propagate(refs)
    difference = torch.stack([(x - y).abs() for x, y in zip(a.probabilities, b.probabilities)])
    assert difference.mean() < 1e-4 and (difference > 1e-4).float().mean() < 1e-3
    assert np.mean(a.masks == b.masks) > 0.999


def test_on_frame_streams_every_frames_final_mask_once(bear):
    """on_frame gets each frame's mask as soon as it is final, once per frame, equal to the
    result's; frames after the last annotation come before the backward sweep's."""
    frames = bear.frames[30:42]
    references = {4: np.where(bear.masks[34] > 0, 1, -1), 8: np.where(bear.masks[38] == 0, 0, -1)}
    engine = LabelTransfer(frames, model="baseline")
    order, masks = [], {}

    def on_frame(frame_idx, mask):
        order.append(frame_idx)
        masks[frame_idx] = mask.copy()

    result = engine.propagate(references, on_frame=on_frame)
    assert sorted(order) == list(range(len(frames)))
    assert order[: len(frames) - 9] == list(range(9, len(frames)))  # the forward sweep's, first
    assert order[len(frames) - 9 :] == list(range(8, -1, -1))  # then the backward sweep's, blended
    for t in range(len(frames)):
        assert np.array_equal(masks[t], result.masks[t])
    plain = engine.propagate(references)
    assert np.array_equal(plain.masks, result.masks)
    assert np.allclose(plain.confidence, result.confidence) and np.allclose(plain.entropy, result.entropy)


def test_propagate_adapts_a_copy_of_the_model_when_asked():
    """``propagate(adapt=True)`` fine-tunes a copy with MASK_ADAPT on the references before the
    transfer: the same masks as adapting by hand and transferring with the copy, other
    masks than without, the caller's model untouched; a dict gives the options, a model
    without weights comes back unchanged, and anything else is refused by name."""
    from simwidgets.models import build_model
    from simwidgets.training import MASK_ADAPT, adapt_to_references

    video = synthetic_video(n_frames=5, n_objects=2, height=48, width=64, seed=4)
    torch.manual_seed(0)
    model = build_model("fcn-small", dim=8, width=8).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    refs = {0: video.masks[0].astype(np.int64)}
    plain = propagate(video.frames, refs, model=model, temporal=False)
    adapted = propagate(video.frames, refs, model=model, adapt=True, temporal=False)
    options = TransferConfig(temporal=False)
    by_hand, _ = adapt_to_references(model, video.frames, refs, config=options, **MASK_ADAPT)
    assert np.array_equal(adapted, LabelTransfer(video.frames, model=by_hand, config=options).propagate(refs).masks)
    assert not np.array_equal(adapted[1:], plain[1:])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    few = propagate(list(video.frames), refs, model=model, adapt={"steps": 2, "lr": 1e-2}, temporal=False)
    assert few.shape == adapted.shape
    baseline = ColourPositionEmbedding()
    assert np.array_equal(propagate(video.frames, refs, model=baseline, adapt=True),
                          propagate(video.frames, refs, model=baseline))
    with pytest.raises(BadInputError, match="adapt must be None, False, True or a dict"):
        propagate(video.frames, refs, model=model, adapt="yes")
    with pytest.raises(BadInputError, match="adapt: unknown option.s. step;"):
        propagate(video.frames, refs, model=model, adapt={"step": 3})
