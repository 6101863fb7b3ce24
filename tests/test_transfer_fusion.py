"""Fused correction rounds (transfer/fusion.py, ``fuse_corrections``): the weights, the
span a round computes, and the engine's fused scores against the plain computation --
a full unfused propagation blended frame by frame with the previous result -- on real
DAVIS frames (bear, a quarter-size clip of 10 frames; the human scribble 001 is on clip
frame 4 and the correction 002 on clip frame 6)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from simwidgets.errors import BadInputError
from simwidgets.session import InteractiveSession
from simwidgets.transfer import LabelTransfer, TransferConfig, fusion
from simwidgets.video import load_sample
from test_session import FIRST, LAST, SCALE, dots, shrink_clip

CONFIG = TransferConfig(max_references=10**6)


@pytest.fixture(scope="module")
def clip(davis_root):
    return shrink_clip(load_sample("bear", lazy=True), FIRST, LAST, SCALE)


def test_weights_are_linear_between_annotations_and_held_beyond():
    w = fusion.correction_weights(10, changed=[5], kept=[2])
    assert np.allclose(w, [0, 0, 0, 1 / 3, 2 / 3, 1, 1, 1, 1, 1])
    assert fusion.correction_span(10, [5], [2]) == (2, 9)
    w = fusion.correction_weights(10, changed=[5], kept=[2, 8])
    assert np.allclose(w, [0, 0, 0, 1 / 3, 2 / 3, 1, 2 / 3, 1 / 3, 0, 0])
    assert fusion.correction_span(10, [5], [2, 8]) == (2, 8)
    # no earlier annotation: the new result everywhere
    assert np.allclose(fusion.correction_weights(6, [3], []), 1) and fusion.correction_span(6, [3], []) == (0, 5)
    # two corrections around a kept frame: the kept frame stays, both sides move
    w = fusion.correction_weights(9, changed=[2, 6], kept=[4])
    assert np.allclose(w, [1, 1, 1, 0.5, 0, 0.5, 1, 1, 1]) and fusion.correction_span(9, [2, 6], [4]) == (0, 8)
    with pytest.raises(ValueError):
        fusion.correction_weights(5, [], [1])


def _references(clip):
    first = clip.scribbles["001"].annotated_frames[0]
    session = InteractiveSession(clip, model="baseline", config=CONFIG)
    session.add_scribbles(clip.scribbles["001"])
    session.add_scribbles({first: dots(clip.masks[first], 0, 150)})
    one = session.references()
    session.add_scribbles(clip.scribbles["002"])
    two = session.references()
    (changed,) = [f for f in two if f not in one]
    return one, two, changed


@pytest.mark.parametrize("temporal", [False, True])
def test_fused_round_is_the_full_round_blended_with_the_previous(clip, temporal):
    """Inside the span the fused scores are ``w * full + (1 - w) * previous``, with
    ``full`` an ordinary propagation of all references; outside it they are the previous
    round's, bit for bit, and so are the masks.  (With the kept annotation first and the
    correction after it, the span's sweeps start where the full round's do, so the
    temporal case is exact too.)"""
    one, two, changed = _references(clip)
    kept = [f for f in two if f != changed]
    engine = LabelTransfer(clip.frames, model="baseline", config=CONFIG.with_options(temporal=temporal))
    engine.fused = False
    previous = engine.propagate(one)
    full = engine.propagate(two)
    fused = engine.propagate(two, previous=previous, changed_frames=[changed])
    lo, hi = fusion.correction_span(clip.n_frames, [changed], kept)
    assert fused.span == (lo, hi) and full.span == (0, clip.n_frames - 1)
    assert lo == kept[0] and hi == clip.n_frames - 1 and lo > 0  # frames before lo are kept
    weights = fusion.correction_weights(clip.n_frames, [changed], kept)
    expected = fusion.fuse_reference(torch.stack(full.probabilities).numpy(),
                                     torch.stack(previous.probabilities).numpy(), weights)
    got = torch.stack(fused.probabilities).numpy()
    assert np.allclose(got, expected, atol=1e-6)
    for t in range(clip.n_frames):
        if not lo <= t <= hi or weights[t] == 0:
            assert np.array_equal(got[t], torch.stack(previous.probabilities)[t].numpy())
            assert np.array_equal(fused.masks[t], previous.masks[t])
        if weights[t] == 1:
            assert np.array_equal(fused.masks[t], full.masks[t])
    assert not np.array_equal(fused.masks[changed], previous.masks[changed])  # the correction acts


def test_streamed_fused_round_sends_every_frame_once(clip):
    one, two, changed = _references(clip)
    engine = LabelTransfer(clip.frames, model="baseline", config=CONFIG)
    previous = engine.propagate(one)
    seen = []
    fused = engine.propagate(two, previous=previous, changed_frames=[changed],
                             on_frame=lambda t, mask: seen.append((t, mask.copy())))
    assert sorted(t for t, _ in seen) == list(range(clip.n_frames))
    for t, mask in seen:
        assert np.array_equal(mask, fused.masks[t])
    # the kept frames outside the span come first: they are known before any sweep
    lo = fused.span[0]
    assert [t for t, _ in seen[:lo]] == list(range(lo))


def test_session_fuses_only_plain_corrections(clip):
    one, two, changed = _references(clip)
    session = InteractiveSession(clip, model="baseline", config=CONFIG.with_options(fuse_corrections=True))
    session.add_scribbles(clip.scribbles["001"])
    first = clip.scribbles["001"].annotated_frames[0]
    session.add_scribbles({first: dots(clip.masks[first], 0, 150)})
    r1 = session.propagate()
    assert r1.span == (0, clip.n_frames - 1)
    session.add_scribbles(clip.scribbles["002"])
    r2 = session.propagate()
    assert r2.span == (first, clip.n_frames - 1)
    assert np.array_equal(r2.masks[:first], r1.masks[:first])
    # a changed option is a full round (the previous scores were made under other options)
    session.configure(top_k=10)
    session.add_scribbles({changed: dots(clip.masks[changed], 1, 3, seed=1)})
    assert session.propagate().span == (0, clip.n_frames - 1)
    # a new object is a full round too
    session.add_scribbles({changed: dots(clip.masks[changed], 0, 2, seed=2, object_id=2)})
    assert session.propagate().span == (0, clip.n_frames - 1)
    # and without fuse_corrections every round is whole
    plain = InteractiveSession(clip, model="baseline", config=CONFIG)
    plain.add_scribbles(session.scribbles)
    plain.propagate()
    plain.add_stroke(changed, np.array([[0.5, 0.5]]), 1)
    assert plain.propagate().span == (0, clip.n_frames - 1)


def test_fusion_bad_input(clip):
    one, two, changed = _references(clip)
    engine = LabelTransfer(clip.frames, model="baseline", config=CONFIG)
    previous = engine.propagate(one)
    with pytest.raises(BadInputError, match="changed_frames is needed"):
        engine.propagate(two, previous=previous)
    with pytest.raises(BadInputError, match="must be annotated frames"):
        engine.propagate(two, previous=previous, changed_frames=[0])
    other = {f: np.where(m == 1, 2, m) for f, m in two.items()}  # object 2 instead of 1
    with pytest.raises(BadInputError, match="cannot be fused"):
        engine.propagate(other, previous=previous, changed_frames=[changed])
    with pytest.raises(BadInputError, match="PropagationResult"):
        engine.propagate(two, previous=previous.masks, changed_frames=[changed])
