"""``correction_reach``: a correction's references weigh less in frames far from it
(transfer/reach.py).  The fast path (kept candidates re-ranked, the fused vote) against the
plain computation on real embeddings; then sessions on real DAVIS frames (bear, the
quarter-size clip of test_session; scribble 001, then the official correction 002)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from simwidgets.errors import BadInputError
from simwidgets.session import InteractiveSession
from simwidgets.transfer import TransferConfig, fused, knn
from simwidgets.transfer.fused_vote import vote_candidates
from simwidgets.transfer.reach import ReferenceFade, rerank
from simwidgets.transfer.references import BlockKey, References
from simwidgets.video import load_sample
from test_session import FIRST, LAST, SCALE, dots, scribble_then_correct, shrink_clip

#: each rule on its own: the tests below switch on the one they test
CONFIG = TransferConfig(max_references=10**6, reference_depth=None, local_depth=None, correction_reach=None)


@pytest.fixture(scope="module")
def bear_embedding():
    """The shipped model's (6, D, h, w) embedding of six quarter frames of bear."""
    from simwidgets.models import load_model

    frames = load_sample("bear").frames[[0, 1, 2, 3, 20, 40], :240, :428]
    return load_model("default").embed(frames, precision="fp32")


def _table(emb, frames, n_per_frame, n_classes=3, seed=0):
    """References of ``n_per_frame`` random cells from each of ``frames`` (rows of ``emb``),
    named by blocks as the engine names them, with random label distributions."""
    gen = torch.Generator().manual_seed(seed)
    dim = emb.shape[1]
    cells = emb.permute(0, 2, 3, 1).reshape(emb.shape[0], -1, dim)
    rows, blocks = [], []
    for source, frame in frames:
        picked = torch.randperm(cells.shape[1], generator=gen)[:n_per_frame].sort().values
        rows.append(cells[source, picked])
        blocks.append(BlockKey(frame, picked.numpy().tobytes()))
    labels = torch.softmax(3 * torch.randn(len(frames) * n_per_frame, n_classes, generator=gen), 1)
    return References(torch.cat(rows).contiguous(), labels, tuple(blocks))


def test_offsets_fade_only_the_correction_rows_by_their_distance(bear_embedding):
    refs = _table(bear_embedding, [(0, 0), (1, 30)], 5)
    fade = ReferenceFade.of(refs, {30}, reach=10.0, temperature=0.05)
    offsets = fade.offsets(50)
    assert torch.equal(offsets[:5], torch.zeros(5))              # the first frame's rows: unfaded
    assert torch.allclose(offsets[5:], torch.full((5,), -0.05 * 20 / 10))
    assert torch.equal(fade.offsets(30), torch.zeros(10))        # on the correction's own frame: nothing
    # an offset T log w multiplies a vote weight by w = exp(-d / reach)
    assert np.isclose(np.exp(float(offsets[5]) / 0.05), np.exp(-2.0))
    assert ReferenceFade.of(refs, {30}, None, 0.05) is None
    assert ReferenceFade.of(refs, set(), 10.0, 0.05) is None
    assert ReferenceFade.of(refs, {7}, 10.0, 0.05) is None      # no row of that frame


@pytest.mark.parametrize("use_numba", [False, True])
def test_the_faded_vote_equals_the_plain_computation(bear_embedding, use_numba):
    """Kept global candidates re-ranked with the offsets and voted with context (the torch
    and the numba vote) give the plain computation's probabilities: whole score matrices, the
    offsets added to the global top-k, one softmax over the union's best."""
    if use_numba and not fused.available():
        pytest.skip("numba is not installed")
    emb = bear_embedding
    _, dim, h, w = emb.shape
    query, context_emb = emb[3], [emb[0], emb[1], emb[2]]
    # references from frames that are neither the query nor its context (a reference equal
    # to a context cell would tie with it, and either may take the last place)
    refs = _table(emb, [(4, 0), (5, 12), (4, 40)], 200)
    fade = ReferenceFade.of(refs, {12, 40}, reach=4.0, temperature=0.05)
    offsets = fade.offsets(3)
    gen = torch.Generator().manual_seed(2)
    context_probs = [torch.softmax(3 * torch.randn(3, h, w, generator=gen), 0) for _ in context_emb]
    top_k, window = 20, 4
    expected = knn.vote_frame_reference(query, refs.embeddings, refs.labels, list(zip(context_emb, context_probs)),
                                        top_k, 0.05, window, global_offsets=offsets)
    global_candidates = knn.topk_global(query.reshape(dim, -1).T, refs.embeddings, top_k)
    faded = rerank(*global_candidates, offsets)
    # the window match's own kernels are compared in test_transfer_fused.py (they may pick
    # either of two near-tied cells); here both votes get the same local candidates
    local = knn.local_topk(query, context_emb, window, top_k, knn.TILE)
    got = vote_candidates(faded, refs.labels, local, context_probs, (h, w), top_k, 0.05, window,
                          use_numba=use_numba)
    assert torch.allclose(got, expected, atol=1e-5), float((got - expected).abs().max())
    # the fade matters here: without it the vote differs
    plain = vote_candidates(global_candidates, refs.labels, local, context_probs, (h, w), top_k, 0.05, window,
                            use_numba=use_numba)
    assert (plain - expected).abs().max() > 1e-2
    # and the kept candidates were not touched
    assert torch.equal(global_candidates[0], knn.topk_global(query.reshape(dim, -1).T, refs.embeddings, top_k)[0])


@pytest.fixture(scope="module")
def clip(davis_root):
    return shrink_clip(load_sample("bear", lazy=True), FIRST, LAST, SCALE)


def _rounds(clip, extra_mask=False, **options):
    """Scribble 001, then correction 002 (and, with ``extra_mask``, frame 0's true mask)."""
    between = (lambda session: session.add_mask(0, clip.masks[0])) if extra_mask else None
    return scribble_then_correct(clip, CONFIG.with_options(**options), "default", between)


def test_the_session_fades_only_its_corrections(clip):
    session, _, _ = _rounds(clip, extra_mask=True, correction_reach=2.0)
    (corrected,) = clip.scribbles["002"].annotated_frames
    first = clip.scribbles["001"].annotated_frames[0]
    references = session.references()
    assert set(references) == {0, first, corrected}
    # the first scribbles and a mask of the user's own hold in every frame; the correction fades
    assert session._correction_frames(references) == {corrected}
    # strokes added later to the first frame do not make it a correction frame
    session.add_scribbles({first: dots(clip.masks[first], 1, 5, seed=4)})
    session.propagate()
    assert session._correction_frames(session.references()) == {corrected}


def test_a_faded_correction_moves_far_frames_less_and_its_own_frame_as_much(clip):
    """On real frames: with a short reach, the correction changes the frames far from it
    less than with none, and its own frame (clamped strokes, unfaded references there)
    keeps every stroke pixel's label."""
    (corrected,) = clip.scribbles["002"].annotated_frames
    _, one, whole = _rounds(clip)
    _, one_faded, faded = _rounds(clip, correction_reach=1.0)
    assert np.array_equal(one, one_faded)  # the first round has no correction: no fade
    far = [t for t in range(clip.n_frames) if abs(t - corrected) >= 4]
    assert far
    moved_whole = int((whole[far] != one[far]).sum())
    moved_faded = int((faded[far] != one[far]).sum())
    assert moved_whole > 0, "the correction changed nothing far away: nothing to fade"
    assert moved_faded < moved_whole, (moved_faded, moved_whole)
    strokes = clip.scribbles["002"].frames[corrected]
    from simwidgets.scribbles import rasterize_strokes

    drawn = rasterize_strokes(strokes, clip.frames.shape[1], clip.frames.shape[2], CONFIG.brush_width)
    assert np.array_equal(faded[corrected][drawn >= 0], drawn[drawn >= 0])


@pytest.mark.parametrize("option", ["correction_reach", "local_depth"])
@pytest.mark.parametrize("bad", [0, -3, "far", float("nan"), float("inf")])
def test_a_bad_reach_or_depth_is_refused(option, bad):
    with pytest.raises(BadInputError, match=option):
        TransferConfig(**{option: bad})
    assert getattr(TransferConfig(**{option: 2}), option) == 2.0


def test_shallow_correction_pixels_keep_their_labels_but_are_no_references(clip):
    """``reference_depth``: a correction's stroke pixels less than a grid cell inside the
    region they correct are left out of the transfer's references (their cells straddle
    that region's edge) and keep their labels on their frame; the round equals the plain
    transfer of the references without them, those pixels painted back.  The correction:
    object dabs on pixels shown as background up to two cells from the shown bear."""
    from scipy import ndimage

    from simwidgets.scribbles import rasterize_strokes

    config = CONFIG.with_options(reference_depth=1.0, local_corrections=False, corrected_context=False)
    session = InteractiveSession(clip, model="default", config=config)
    first = clip.scribbles["001"].annotated_frames[0]
    session.add_scribbles(clip.scribbles["001"])
    one = session.propagate().masks.copy()
    corrected = first + 4
    stride = session.transfer.stride
    inside = ndimage.distance_transform_edt(one[corrected] != 1)
    band = ((one[corrected] == 0) & (inside < 2 * stride)).astype(np.int64)
    dabs = dots(band, 1, 12, seed=5, object_id=1)
    # and one dab deep inside the shown bear: it confirms, and its cell is the bear's own
    deep = ndimage.distance_transform_edt(one[corrected] == 1) >= 2 * stride
    confirm = dots(deep.astype(np.int64), 1, 1, seed=6, object_id=1)
    session.add_scribbles({corrected: dabs + confirm})
    two = session.propagate().masks
    references = session.references()
    drawn = rasterize_strokes(session.scribbles.frames[corrected], one.shape[1], one.shape[2], config.brush_width)
    shown = one[corrected] == 1
    to_edge = np.where(shown, ndimage.distance_transform_edt(shown), inside)  # from either side
    expected = (drawn == 1) & (to_edge < stride)
    assert ((drawn == 1) & deep).any() and not expected[deep].any()  # the confirming dab: a reference
    assert expected.any() and ((drawn == 1) & ~expected).any(), "the dabs should be both shallow and deep"
    transferred, hidden = session._deep_references(references, session.config)
    assert set(hidden) == {corrected} and np.array_equal(hidden[corrected], expected)
    assert (transferred[corrected][expected] == -1).all()
    assert np.array_equal(transferred[corrected][~expected], references[corrected][~expected])
    assert np.array_equal(transferred[first], references[first])  # the first scribbles: all of them
    assert np.array_equal(two[corrected][drawn >= 0], drawn[drawn >= 0])  # every stroke pixel keeps its label
    plain = session.transfer.propagate(transferred, background_frames=session._background_frames(references),
                                       correction_frames=session._correction_frames(references))
    painted = plain.masks.copy()
    painted[corrected][expected] = 1
    assert np.array_equal(two, painted)
    # without the option every stroke pixel is a reference
    assert session._deep_references(references, config.with_options(reference_depth=None)) == (references, {})
