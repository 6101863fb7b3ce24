"""InteractiveSession: rounds of scribbles on real DAVIS frames (bear, a short clip at a
quarter of 480p so a round takes a fraction of a second), cache reuse counted at the
model, frame suggestions, and bad input."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from simwidgets.errors import BadInputError
from simwidgets.evaluation.metrics import evaluate_masks
from simwidgets.scribbles import Scribbles, Stroke
from simwidgets.session import InteractiveSession, RoundRecord
from simwidgets.transfer import TransferConfig
from simwidgets.video import VideoSequence, load_sample

FIRST, LAST, SCALE = 35, 45, 4  # bear frames 35..44; the human scribble 001 is on frame 39
#: every reference kept (no random subsample), so adding references is the only change
CONFIG = TransferConfig(max_references=10**6)


def shrink_clip(video, first, last, scale):
    """Frames ``first..last-1`` of a sequence at ``1/scale`` size, scribbles re-indexed."""
    h, w = video.frames.shape[1] // scale, video.frames.shape[2] // scale
    frames = np.stack([np.asarray(Image.fromarray(video.frames[i]).resize((w, h), Image.BILINEAR))
                       for i in range(first, last)])
    masks = np.stack([np.asarray(Image.fromarray(video.masks[i].astype(np.uint8)).resize((w, h), Image.NEAREST))
                      for i in range(first, last)]).astype(np.int64)
    scribbles = {}
    for stem, full in video.scribbles.items():
        cut = Scribbles(last - first, video.name)
        cut.frames = [list(full.frames[i]) for i in range(first, last)]
        scribbles[stem] = cut
    return VideoSequence(video.name, frames, masks, scribbles)


@pytest.fixture(scope="module")
def clip(davis_root):
    return shrink_clip(load_sample("bear", lazy=True), FIRST, LAST, SCALE)


def dots(mask, value, n, seed=0, object_id=None):
    """``n`` one-point strokes on random pixels where ``mask == value`` (a dab each)."""
    rows, cols = np.nonzero(mask == value)
    pick = np.random.default_rng(seed).choice(len(rows), n, replace=False)
    h, w = mask.shape
    label = value if object_id is None else object_id
    return [{"path": [[(cols[i] + 0.5) / w, (rows[i] + 0.5) / h]], "object_id": label} for i in pick]


def scribble_then_correct(clip, config, model, between=None):
    """``(session, round-1 masks, round-2 masks)``: the human scribble 001 plus background
    dots on its frame, then the official correction 002 (``between(session)`` first, if
    given)."""
    session = InteractiveSession(clip, model=model, config=config)
    first = clip.scribbles["001"].annotated_frames[0]
    session.add_scribbles(clip.scribbles["001"])
    session.add_scribbles({first: dots(clip.masks[first], 0, 150)})
    one = session.propagate().masks.copy()
    session.add_scribbles(clip.scribbles["002"])
    if between is not None:
        between(session)
    two = session.propagate().masks.copy()
    return session, one, two


def box_stroke(rows, cols, shape):
    """A closed stroke around a pixel box, normalised."""
    h, w = shape
    (r0, r1), (c0, c1) = rows, cols
    corners = [(c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0)]
    return np.array([((c + 0.5) / w, (r + 0.5) / h) for c, r in corners])


@pytest.fixture(scope="module")
def first_round(clip):
    """Round 1: the human scribble on the bear plus background dabs, propagated."""
    session = InteractiveSession(clip, model="baseline", config=CONFIG)
    annotated = clip.scribbles["001"].annotated_frames[0]
    session.add_scribbles(clip.scribbles["001"])
    session.add_scribbles({annotated: dots(clip.masks[annotated], 0, 150)})
    result = session.propagate()
    return session, result


def test_round_labels_the_clip_and_is_recorded(clip, first_round):
    session, result = first_round
    assert result.masks.shape == clip.masks.shape and result.masks.dtype == np.uint8
    assert set(np.unique(result.masks)) <= {0, 1}
    assert evaluate_masks(result.masks, clip.masks).jf_mean > 0.5  # a real segmentation, not noise
    (record,) = session.history[:1]
    assert isinstance(record, RoundRecord)
    assert record.round == 1 and record.frames == [4] and record.n_strokes == 152
    assert record.object_ids == [0, 1] and record.n_embedded == clip.n_frames
    assert record.changed_frames == list(range(clip.n_frames))
    assert 0 < record.embed_seconds <= record.seconds
    assert session.timings()[0]["seconds_per_frame"] == pytest.approx(record.seconds / clip.n_frames)


def test_background_correction_only_removes_foreground(clip, first_round):
    """A background stroke over a wrongly labelled region makes it background there, adds
    no foreground on its frame, and hardly any elsewhere."""
    base, before = first_round
    session = InteractiveSession(clip, model=base.transfer.model, config=CONFIG)
    session.add_scribbles(base.scribbles)
    assert np.array_equal(session.propagate().masks, before.masks)  # same input, same output
    # the worst false-positive frame and, on it, a box of false positives
    false_pos = (before.masks > 0) & (clip.masks == 0)
    frame_idx = int(false_pos.reshape(clip.n_frames, -1).sum(1).argmax())
    rows, cols = np.nonzero(false_pos[frame_idx])
    r0, c0 = np.percentile(rows, 40).astype(int), np.percentile(cols, 40).astype(int)
    r1, c1 = r0 + 6, c0 + 6
    region = np.zeros(clip.masks.shape[1:], bool)
    region[r0 : r1 + 1, c0 : c1 + 1] = True
    assert before.masks[frame_idx][region].mean() > 0.5  # mostly wrong before the correction
    session.add_stroke(frame_idx, box_stroke((r0, r1), (c0, c1), clip.masks.shape[1:]), 0)
    after = session.propagate()
    drawn = session.references()[frame_idx] == 0
    stroke_pixels = drawn & region
    assert (after.masks[frame_idx][stroke_pixels] == 0).mean() > 0.9
    grown = (after.masks > 0) & (before.masks == 0)
    # on the corrected frame nothing turns foreground (a background stroke only removes)...
    assert not grown[frame_idx].any()
    # ... and elsewhere hardly anything: more background references lower every object's
    # votes, but the new annotated frame also restarts the temporal sweeps there, and the
    # edge-aware upsampling (a guided filter, negative lobes across edges) is not monotone;
    # 63 of 255,600 pixels grew here
    assert grown.sum() <= 5e-4 * grown.size
    assert ((before.masks > 0) & (after.masks == 0)).sum() > stroke_pixels.sum()  # it spread
    assert session.history[-1].frames == [frame_idx] and session.history[-1].n_strokes == 1
    assert frame_idx in session.history[-1].changed_frames


def test_new_object_stroke_adds_that_object(clip, first_round):
    base, before = first_round
    session = InteractiveSession(clip, model=base.transfer.model, config=CONFIG)
    session.add_scribbles(base.scribbles)
    session.propagate()
    # call the bear's head region object 2 on one frame (a new object id)
    frame_idx = 7
    session.add_scribbles({frame_idx: dots(clip.masks[frame_idx], 1, 6, seed=1, object_id=2)})
    after = session.propagate()
    assert after.object_ids == [0, 1, 2]
    assert 2 in np.unique(after.masks[frame_idx])
    # more references for 2 raise its votes and lower every other id's: pixels change
    # mostly to 2, and mostly where the bear (the object the dabs were on) really is
    became_2 = (after.masks == 2) & (before.masks != 2)
    assert became_2.any()
    assert (became_2 & (clip.masks == 1)).sum() > 0.6 * became_2.sum()
    other_changes = (after.masks != before.masks) & ~became_2
    assert other_changes.sum() < 0.01 * other_changes.size
    # earlier rounds are kept, in order, and the caller's scribbles were not touched
    strokes = session.scribbles
    assert len(strokes) == len(base.scribbles) + 6
    assert strokes.frames[frame_idx][-1].object_id == 2
    earlier = [(f, stroke) for f, stroke in strokes][: len(base.scribbles)]
    assert earlier == [(f, stroke) for f, stroke in base.scribbles]
    assert len(clip.scribbles["001"]) == 2


def test_input_scribbles_are_copied(clip):
    session = InteractiveSession(clip, model="baseline", config=CONFIG)
    given = clip.scribbles["001"].copy()
    session.add_scribbles(given)
    given.frames[4][0].path[:] = 0.5  # mutate the caller's copy after adding
    assert not np.allclose(session.scribbles.frames[4][0].path, 0.5)
    returned = session.scribbles
    returned.frames[4].clear()
    assert len(session.scribbles.frames[4]) == 2


def test_cache_is_reused_across_rounds(clip):
    """Count real embedding calls at the model: the video is embedded once, in round 1."""
    session = InteractiveSession(clip, model="baseline", config=CONFIG)
    model = session.transfer.model
    calls = []
    original = model.embed

    def counting_embed(frames, *args, **kwargs):
        calls.append(len(frames))
        return original(frames, *args, **kwargs)

    model.embed = counting_embed
    try:
        session.add_scribbles(clip.scribbles["001"])
        session.propagate()
        assert sum(calls) == clip.n_frames == session.cache.n_computed
        session.add_scribbles({2: dots(clip.masks[2], 0, 20)})
        session.propagate()
        session.configure(top_k=5, temporal=False)  # new options, same embeddings
        session.propagate()
        session.reset()
        session.add_scribbles(clip.scribbles["001"])
        session.propagate()
        assert sum(calls) == clip.n_frames == session.cache.n_computed
        assert [r.n_embedded for r in session.history] == [0]  # reset cleared history only
    finally:
        model.embed = original


def test_progress_callback_reports_both_stages(clip):
    session = InteractiveSession(clip, model="baseline", config=CONFIG)
    session.add_scribbles(clip.scribbles["001"])
    events = []
    session.propagate(callback=lambda stage, done, total: events.append((stage, done, total)))
    embedding = [e for e in events if e[0] == "embedding"]
    labelling = [e for e in events if e[0] == "propagating"]
    assert embedding[0][1] == 0 and embedding[-1][1:] == (clip.n_frames, clip.n_frames)
    done = [e[1] for e in labelling]
    assert done == sorted(done) and done[-1] == labelling[-1][2] >= clip.n_frames
    events.clear()
    session.propagate(callback=lambda *e: events.append(e))
    assert events and all(e[0] == "propagating" for e in events)  # nothing left to embed


def test_suggestions_are_valid_unannotated_frames(clip, first_round):
    session, result = first_round
    annotated = set(session.annotated_frames)
    for by in ("entropy", "confidence"):
        frame_idx = session.suggest_frame(by=by)
        assert isinstance(frame_idx, int) and 0 <= frame_idx < clip.n_frames
        assert frame_idx not in annotated
        scores = session.uncertainty(by)
        assert scores.shape == (clip.n_frames,)
        assert scores[frame_idx] == max(scores[f] for f in range(clip.n_frames) if f not in annotated)
    # the scores come from the transfer's own confidence, not the truth
    assert np.allclose(session.uncertainty("confidence"), 1 - result.confidence)
    everything_else = [f for f in range(clip.n_frames) if f != 3]
    assert session.suggest_frame(exclude=everything_else) == 3
    assert 0 <= session.suggest_frame(exclude=range(clip.n_frames)) < clip.n_frames


def test_masks_as_references(clip):
    session = InteractiveSession(clip, model="baseline", config=CONFIG)
    session.add_mask(0, clip.masks[0])
    result = session.propagate()
    assert np.array_equal(result.masks[0], clip.masks[0].astype(np.uint8)) or (
        (result.masks[0] == clip.masks[0]).mean() > 0.98
    )
    assert evaluate_masks(result.masks[1:], clip.masks[1:]).jf_mean > 0.5
    # a stroke over the mask wins where it is drawn
    session.add_stroke(0, box_stroke((5, 15), (5, 15), clip.masks.shape[1:]), 3)
    assert (session.references()[0] == 3).any()
    assert session.object_ids == [0, 1, 3]


# --------------------------------------------------------------------------- bad input

@pytest.fixture
def fresh(clip):
    return InteractiveSession(clip, model="baseline", config=CONFIG)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.add_stroke(10, [[0.5, 0.5]], 1), "outside the video"),
        (lambda s: s.add_stroke(-1, [[0.5, 0.5]], 1), "outside the video"),
        (lambda s: s.add_scribbles({12: [{"path": [[0.5, 0.5]], "object_id": 1}]}), "outside the video"),
        (lambda s: s.add_mask(10, np.zeros((120, 213), int)), "outside the video"),
        (lambda s: s.add_stroke(1.5, [[0.5, 0.5]], 1), "must be an integer"),
        (lambda s: s.add_stroke(0, [[0.5, 0.5]], 256), "outside 0..255"),
        (lambda s: s.add_stroke(0, [[0.5, 0.5]], -1), "outside 0..255"),
        (lambda s: s.add_scribbles({0: [{"path": [[0.5, 0.5]], "object_id": 300}]}), "outside 0..255"),
        (lambda s: s.add_scribbles({0: [{"path": [[0.5, 0.5]], "object_id": "1"}]}), "must be an integer"),
        (lambda s: s.add_scribbles({"scribbles": [[]] * 10 + [[{"path": [[0.5, 0.5]], "object_id": 256}]]}),
         "frame-count mismatch"),
        (lambda s: s.add_scribbles({"scribbles": [[]] * 9 + [[{"path": [[0.5, 0.5]], "object_id": 256}]]}),
         "outside 0..255"),
        (lambda s: s.add_scribbles(Scribbles(11)), "frame-count mismatch"),
        (lambda s: s.add_scribbles([1, 2]), "scribbles must be"),
        (lambda s: s.add_scribbles({0: [{"object_id": 1}]}), "needs 'path'"),
        (lambda s: s.add_stroke(0, [[1.5, 0.5]], 1), "normalised"),
        (lambda s: s.add_mask(0, np.full((120, 213), 256)), r"holds id 256, outside -1\.\.255"),
        (lambda s: s.add_mask(0, np.zeros((10, 10), int)), "shape"),
        (lambda s: s.add_mask(0, np.zeros((120, 213), float)), "integer"),
        (lambda s: s.propagate(), "nothing to propagate"),
        (lambda s: s.suggest_frame(), "no propagation yet"),
        (lambda s: s.configure(no_such_option=1), "unknown transfer option .no_such_option.; valid options: top_k"),
    ],
)
def test_bad_input(fresh, call, message):
    with pytest.raises(BadInputError, match=message):
        call(fresh)
    assert fresh.annotated_frames == [] and len(fresh.scribbles) == 0  # nothing half-added


def test_bad_round_adds_nothing(fresh):
    good = {"path": [[0.5, 0.5]], "object_id": 1}
    with pytest.raises(BadInputError, match="outside 0..255"):
        fresh.add_scribbles({0: [good], 1: [{"path": [[0.2, 0.2]], "object_id": 999}]})
    assert len(fresh.scribbles) == 0
    with pytest.raises(BadInputError, match="must be one of"):
        fresh.add_stroke(0, [[0.5, 0.5]], 1)
        fresh.propagate()
        fresh.suggest_frame(by="random")


def test_bad_frames():
    with pytest.raises(BadInputError, match=r"\(T, H, W, 3\)"):
        InteractiveSession(np.zeros((4, 8, 8), np.uint8), model="baseline")
    with pytest.raises(BadInputError, match="uint8"):
        InteractiveSession(np.zeros((2, 8, 8, 3), np.float32), model="baseline")


def test_set_scribbles_replaces_strokes(clip):
    """What an editor with undo needs: the session follows a replaced stroke list exactly,
    even when a frame keeps the same number of strokes (no stale rasterisation)."""
    session = InteractiveSession(clip, model="baseline", config=CONFIG)
    first = dots(clip.masks[4], 1, 2, seed=0)
    session.add_scribbles({4: first})
    session.propagate()
    before = session.references()[4].copy()
    swapped = Scribbles(clip.n_frames, "bear")
    for stroke in first[:1] + dots(clip.masks[4], 0, 1, seed=3):  # keep one, replace the other
        swapped.add_stroke(4, stroke["path"], stroke["object_id"])
    assert session.set_scribbles(swapped) == [4]
    after = session.references()[4]
    assert not np.array_equal(before, after) and (after == 0).any()
    assert session.scribbles == swapped
    session.propagate()
    assert [r.n_strokes for r in session.history] == [2, 1]  # the kept stroke is not new
    assert session.set_scribbles(swapped) == []
    with pytest.raises(BadInputError, match="outside 0..255"):
        session.set_scribbles({4: [{"path": [[0.5, 0.5]], "object_id": 256}]})
    assert session.scribbles == swapped
