"""``corrected_context``: a corrected frame passes on to the frames around it what the user
gets on it (its local edit), not the new transfer's raw scores.  The scores of an edited
frame against a plain per-cell computation, then sweeps and a session on real DAVIS frames
(bear, a quarter-size 10-frame clip; scribble 001, then the official correction 002)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from simwidgets.session import InteractiveSession
from simwidgets.transfer import LabelTransfer, TransferConfig
from simwidgets.video import load_sample
from test_session import FIRST, LAST, SCALE, shrink_clip

CONFIG = TransferConfig(max_references=10**6)


@pytest.fixture(scope="module")
def clip(davis_root):
    return shrink_clip(load_sample("bear", lazy=True), FIRST, LAST, SCALE)


@pytest.fixture(scope="module")
def engine(clip):
    return LabelTransfer(clip.frames, model="baseline", config=CONFIG)


def _plain_accepted(probs, edited, raw, class_ids, stride):
    """The cells the edit changed get the edited labels' share of their in-frame pixels,
    cell by cell."""
    out = probs.clone()
    _, h, w = probs.shape
    height, width = edited.shape
    for i in range(h):
        for j in range(w):
            rows = slice(i * stride, min((i + 1) * stride, height))
            cols = slice(j * stride, min((j + 1) * stride, width))
            block, before = edited[rows, cols], raw[rows, cols]
            if block.size == 0 or np.array_equal(block, before):
                continue
            for c, object_id in enumerate(class_ids):
                out[c, i, j] = float((block == object_id).sum()) / block.size
    return out


def test_an_edited_frame_passes_on_the_edited_labels_cell_by_cell(clip, engine):
    first = clip.scribbles["001"].annotated_frames[0]
    references = {first: np.where(clip.masks[first] > 0, 1, -1)}
    references[first][::7, ::7] = np.where(clip.masks[first][::7, ::7] == 0, 0, references[first][::7, ::7])
    result = engine.propagate(references)
    class_ids = result.object_ids
    t = first + 2
    probs = result.probabilities[t]
    config = engine.configured()
    raw = engine._finish([probs], class_ids, [t], config)[0][0]
    # an edit that takes a block of the object away (a local edit keeping the shown background)
    rows, cols = np.nonzero(raw == 1)
    top, left = rows.min(), cols.min()

    def edit(mask):
        mask = mask.copy()
        mask[top:top + 13, left:left + 21] = 0
        return mask

    edited = edit(raw)
    assert (edited != raw).any()
    accepted = engine._accepted_scores(probs, t, edit, None, class_ids, config)
    expected = _plain_accepted(probs, edited, raw, class_ids, engine.stride)
    assert torch.allclose(accepted, expected, atol=1e-6)
    assert not torch.equal(accepted, probs)
    assert accepted.sum(0).sub(1).abs().max() < 1e-5  # still distributions
    # an edit that changes nothing passes the scores on as they are
    assert engine._accepted_scores(probs, t, lambda mask: mask, None, class_ids, config) is probs


def test_the_sweep_carries_the_accepted_frame_to_its_neighbours(clip, engine):
    """With the identity edit a round is bit for bit the plain one; when the user accepts
    an empty frame, the frames the sweep reaches from it hold less of the object, while the
    frame's own scores stay the transfer's."""
    first = clip.scribbles["001"].annotated_frames[0]
    other = first + 3
    references = {first: np.where(clip.masks[first] > 0, 1, 0),
                  other: np.where(clip.masks[other] > 0, 1, -1)}
    plain = engine.propagate(references)
    same = engine.propagate(references, accepted_edits={other: lambda mask: mask})
    assert np.array_equal(plain.masks, same.masks)
    assert all(torch.equal(a, b) for a, b in zip(plain.probabilities, same.probabilities))
    emptied = engine.propagate(references, accepted_edits={other: np.zeros_like})
    assert torch.equal(emptied.probabilities[other], plain.probabilities[other])
    after = other + 1  # after the last annotation: the forward sweep alone, from ``other``
    assert emptied.probabilities[after][1].sum() < plain.probabilities[after][1].sum() - 1.0


def test_a_session_passes_on_its_corrected_frame(clip):
    """In a correction round the session gives the engine its local edit of the corrected
    frame (on by default; off: the raw scores, as before)."""
    rounds = {}
    for on in (True, False):
        session = InteractiveSession(clip, model="baseline", config=CONFIG.with_options(corrected_context=on))
        seen = []
        original = session.transfer.propagate

        def spy(*args, seen=seen, original=original, **kwargs):
            seen.append(sorted(kwargs.get("accepted_edits") or {}))
            return original(*args, **kwargs)

        session.transfer.propagate = spy
        session.add_scribbles(clip.scribbles["001"])
        session.propagate()
        session.add_scribbles(clip.scribbles["002"])
        rounds[on] = (session.propagate().masks.copy(), seen)
    (corrected,) = clip.scribbles["002"].annotated_frames
    assert rounds[True][1] == [[], [corrected]]
    assert rounds[False][1] == [[], []]
    # the corrected frame itself is the same either way: its own scores are the transfer's
    assert np.array_equal(rounds[True][0][corrected], rounds[False][0][corrected])
