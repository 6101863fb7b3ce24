"""``local_corrections``: a correction changes its own frame only as its strokes ask, where they
reach (transfer/local_edit.py).  The rule on hand-made label maps, then a session on real
DAVIS frames (bear, a quarter-size 10-frame clip; scribble 001, then the official
correction 002 on another frame)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from simwidgets.session import InteractiveSession
from simwidgets.transfer import TransferConfig
from simwidgets.transfer.local_edit import local_changes
from simwidgets.scribbles import rasterize_strokes
from simwidgets.video import load_sample
from test_session import FIRST, LAST, SCALE, dots, scribble_then_correct, shrink_clip

#: the local-edit rule alone: the depth bounds and the reach of a correction's references,
#: and the context a corrected frame passes on, on by default, have their own tests
#: (test_a_stroke_at_an_edge..., test_correction_reach.py, test_corrected_context.py)
CONFIG = TransferConfig(max_references=10**6, local_depth=None, reference_depth=None, correction_reach=None,
                        corrected_context=False)


@pytest.fixture(scope="module")
def clip(davis_root):
    return shrink_clip(load_sample("bear", lazy=True), FIRST, LAST, SCALE)


def test_a_stroke_only_takes_what_it_asks_for_where_it_reaches():
    previous = np.zeros((20, 30), np.uint8)
    previous[5:15, 5:12] = 1
    proposed = previous.copy()
    proposed[5:15, 12:16] = 1      # grows the object beside the object stroke
    proposed[2:4, 25:28] = 1       # a look-alike far away
    proposed[14, 5:8] = 0          # a loss on the far side of the object
    proposed[5, 8:12] = 0          # a loss touching the grown region: an object stroke never removes
    strokes = np.full(previous.shape, -1)
    strokes[9, 13:15] = 1
    out = local_changes(previous, proposed, strokes)
    expected = previous.copy()
    expected[5:15, 12:16] = 1
    assert np.array_equal(out, expected)
    # a stroke whose own pixels were already right still reaches the region beside it
    beside = np.full(previous.shape, -1)
    beside[9, 10] = 1
    assert np.array_equal(local_changes(previous, proposed, beside, reach=2), expected)
    assert np.array_equal(local_changes(previous, proposed, beside, reach=0), previous)
    # a background stroke only removes: the loss it touches, nothing it does not
    erase = np.full(previous.shape, -1)
    erase[14, 6] = 0
    removed = previous.copy()
    removed[14, 5:8] = 0
    assert np.array_equal(local_changes(previous, proposed, erase), removed)
    # no stroke, or no change: the frame as it was
    assert np.array_equal(local_changes(previous, proposed, np.full(previous.shape, -1)), previous)
    assert np.array_equal(local_changes(previous, previous, strokes), previous)
    with pytest.raises(ValueError):
        local_changes(previous, proposed[:, :10], strokes)


def _reference_rule(seen, whole, drawn, reach):
    """The rule spelt out with whole-frame dilations, for the session test."""
    out = seen.copy()
    for label in np.unique(drawn[drawn >= 0]):
        gained = (whole == label) & (seen != label)
        regions, _ = ndimage.label(gained, np.ones((3, 3), bool))
        near = ndimage.binary_dilation(drawn == label, np.ones((3, 3), bool), iterations=reach)
        touched = np.unique(regions[near & gained])
        out[np.isin(regions, touched[touched > 0])] = label
    return out


def _two_rounds(clip, **options):
    return scribble_then_correct(clip, CONFIG.with_options(**options), "baseline")


def test_strokes_of_several_labels_split_the_frame_between_them():
    """A background stroke on a false positive joined to the object, and an object stroke
    on the object, in one correction: a transfer that calls everything background removes
    only the pixels nearer the background stroke (the plain rule removed the object too)."""
    previous = np.zeros((20, 40), np.uint8)
    previous[5:15, 5:30] = 1       # the object (columns 5..19) joined to a false positive (20..29)
    proposed = np.zeros_like(previous)
    strokes = np.full(previous.shape, -1)
    strokes[10, 24:28] = 0         # background stroke on the false positive
    strokes[10, 8:11] = 1          # object stroke on the object
    split = local_changes(previous, proposed, strokes)
    plain = local_changes(previous, proposed, strokes, nearest_stroke=False)
    assert not plain[5:15, 5:20].any()                     # the plain rule: the object is gone
    columns = np.arange(40)
    dist_bg = np.abs(columns - 24)
    dist_obj = np.abs(columns - 10)
    nearer_bg = (dist_bg <= dist_obj) & (columns >= 5) & (columns < 30)  # ties allow
    # rows 5..14 all share the column's nearest stroke up to the rounding of the diagonal: check
    # the stroke's own row exactly, and that everything at the far side stays object
    assert np.array_equal(split[10] == 0, (previous[10] == 0) | nearer_bg)
    assert split[5:15, 5:16].all() and not split[5:15, 22:30].any()
    assert (strokes == 1).sum() == (split[strokes == 1] == 1).sum()
    # one label only: nothing to split, the plain rule (the whole joined region goes)
    only_bg = np.where(strokes == 0, 0, -1)
    assert not local_changes(previous, proposed, only_bg).any()


def test_a_stroke_at_an_edge_fixes_the_edge_not_the_object_behind_it():
    """``depth``: a background stroke two pixels inside the shown object's edge (a thin
    false positive there) removes only what lies within that depth of it, though the new
    transfer calls the whole object background; a stroke along the middle of a wrongly
    shown blob reaches all of the blob."""
    previous = np.zeros((40, 60), np.uint8)
    previous[10:30, 10:40] = 1                 # shown object: the true object (cols 10..35) + a thin edge 36..39
    proposed = np.zeros_like(previous)         # the new transfer: all background
    edge = np.full(previous.shape, -1)
    edge[15:25, 38] = 0                        # along the false edge, 2 pixels inside the shown mask
    unbounded = local_changes(previous, proposed, edge, reach=1)
    assert not unbounded.any()                 # without the bound the whole object goes
    bounded = local_changes(previous, proposed, edge, reach=1, depth=1.0)
    distance = ndimage.distance_transform_edt(edge != 0)
    inside = ndimage.distance_transform_edt(previous != 0)
    limit = 1.0 * inside[edge == 0].max() + 1
    assert inside[edge == 0].max() == 2.0
    removed = (previous == 1) & (bounded == 0)
    assert removed.any() and np.array_equal(removed, (previous == 1) & (distance <= limit))
    assert bounded[10:30, 10:30].all()         # the object behind the edge stays
    # a blob shown wrongly, stroked along its middle: its depth is the blob's half-width
    blob = np.zeros_like(previous)
    blob[5:35, 20:29] = 1
    middle = np.full(previous.shape, -1)
    middle[8:32, 24] = 0
    assert not local_changes(blob, proposed, middle, reach=1, depth=1.0).any()
    # nothing shown with the stroke's label: no region to be inside, no bound
    everything = np.ones_like(previous)
    assert not local_changes(everything, proposed, middle, reach=1, depth=1.0).any()


def test_a_correction_moves_its_frame_only_where_it_reaches(clip):
    plain, one, whole = _two_rounds(clip, local_corrections=False)
    local, one_local, two = _two_rounds(clip, local_corrections=True)
    assert np.array_equal(one, one_local)  # the first round is no correction
    (corrected,) = clip.scribbles["002"].annotated_frames
    strokes = clip.scribbles["002"].frames[corrected]
    drawn = rasterize_strokes(strokes, local.height, local.width, CONFIG.brush_width)
    # every stroke pixel has its label, as in the whole round
    assert np.array_equal(two[corrected][drawn >= 0], drawn[drawn >= 0])
    # the rest of the frame is as it was shown, but for what the strokes ask for where they reach
    stride = local.transfer.stride
    assert np.array_equal(two[corrected], _reference_rule(one[corrected], whole[corrected], drawn, stride))
    assert (two[corrected] != one[corrected]).any(), "the correction changed nothing on its frame"
    assert (whole[corrected] != two[corrected]).any(), "the whole round moved pixels the stroke does not ask for"
    # every other frame takes the whole new transfer
    others = [t for t in range(clip.n_frames) if t != corrected]
    assert np.array_equal(two[others], whole[others])
    # a later round elsewhere keeps the rule on this frame: against the mask shown before
    # its correction, only the regions its strokes reach follow the new transfer
    other = [t for t in range(clip.n_frames) if t not in local.annotated_frames][0]
    more = {other: dots(clip.masks[other], 1, 5, seed=3)}
    local.add_scribbles(more)
    plain.add_scribbles(more)
    three, whole3 = local.propagate().masks, plain.propagate().masks
    assert np.array_equal(three[corrected], _reference_rule(one[corrected], whole3[corrected], drawn, stride))
    new = rasterize_strokes(local.scribbles.frames[other], local.height, local.width, CONFIG.brush_width)
    assert np.array_equal(three[other], _reference_rule(two[other], whole3[other], new, stride))
    rest = [t for t in others if t != other]
    assert np.array_equal(three[rest], whole3[rest])


def test_undoing_a_correction_gives_the_whole_transfer_back(clip):
    local, one, two = _two_rounds(clip, local_corrections=True)
    plain = InteractiveSession(clip, model="baseline", config=CONFIG.with_options(local_corrections=False))
    first = clip.scribbles["001"].annotated_frames[0]
    # the app keeps the strokes itself: undo the correction, then draw it again
    kept = {f: list(s) for f, s in enumerate(local.scribbles.frames) if s}
    (corrected,) = clip.scribbles["002"].annotated_frames
    without = {f: s for f, s in kept.items() if f != corrected}
    local.set_scribbles(without)
    plain.set_scribbles(without)
    assert np.array_equal(local.propagate().masks, plain.propagate().masks)
    assert first in local.annotated_frames


def test_a_streamed_corrected_frame_is_the_edited_one(clip):
    """``on_frame`` hands out the corrected frame after its local edit, equal to the result's."""
    session = InteractiveSession(clip, model="baseline", config=CONFIG)
    first = clip.scribbles["001"].annotated_frames[0]
    session.add_scribbles(clip.scribbles["001"])
    session.add_scribbles({first: dots(clip.masks[first], 0, 150)})
    session.propagate()
    session.add_scribbles(clip.scribbles["002"])
    streamed = {}
    result = session.propagate(on_frame=lambda t, mask: streamed.__setitem__(t, mask.copy()))
    assert sorted(streamed) == list(range(clip.n_frames))
    for t, mask in streamed.items():
        assert np.array_equal(mask, result.masks[t]), t


def test_a_corrected_frame_becomes_a_reference_mask(clip):
    """``correction_masks``: the corrected frame's labels (the mask shown, edited where the
    strokes reach against a quick transfer of that frame) are given to the round as that
    frame's reference mask, exactly as a mask of the user's own would be; a later round
    elsewhere keeps the frame as it is, and undoing the correction takes the mask away."""
    session, one, two = _two_rounds(clip, correction_masks=True)
    (corrected,) = clip.scribbles["002"].annotated_frames
    strokes = clip.scribbles["002"].frames[corrected]
    drawn = rasterize_strokes(strokes, session.height, session.width, CONFIG.brush_width)
    # the quick transfer the edit starts from: the frame alone, from every reference of the
    # round (a session without correction masks holds the same strokes after the same rounds)
    probe, _, _ = _two_rounds(clip)
    proposed = probe.preview(corrected)
    expected = _reference_rule(one[corrected], proposed, drawn, session.transfer.stride)
    mask = session.references()[corrected]
    assert (mask >= 0).all() and np.array_equal(mask, expected)
    assert np.array_equal(two[corrected], expected)
    assert np.array_equal(two[corrected][drawn >= 0], drawn[drawn >= 0])
    assert (two[corrected] != one[corrected]).any(), "the correction changed nothing on its frame"
    # the round is the one a user's own mask of that frame gives
    first = clip.scribbles["001"].annotated_frames[0]
    by_hand = InteractiveSession(clip, model="baseline", config=CONFIG)
    by_hand.add_scribbles(clip.scribbles["001"])
    by_hand.add_scribbles({first: dots(clip.masks[first], 0, 150)})
    by_hand.propagate()
    by_hand.add_mask(corrected, expected)
    assert np.array_equal(by_hand.propagate().masks, two)
    # a later round elsewhere keeps the corrected frame as it is
    other = [t for t in range(clip.n_frames) if t not in session.annotated_frames][0]
    session.add_scribbles({other: dots(clip.masks[other], 1, 5, seed=3)})
    assert np.array_equal(session.propagate().masks[corrected], expected)
    # the option turned off, for one round or for good: the frame is its strokes again
    # (those of a session that never had the option), and turned on, its mask is back
    on = session.propagate().masks
    off = session.propagate(correction_masks=False).masks
    assert not np.array_equal(off, on)
    assert np.array_equal(session.references()[corrected], expected)  # still on in the session
    session.configure(correction_masks=False)
    assert np.array_equal(session.references()[corrected], probe.references()[corrected])
    assert np.array_equal(session.propagate().masks, off)
    session.configure(correction_masks=True)
    assert np.array_equal(session.references()[corrected], expected)
    assert np.array_equal(session.propagate().masks, on)
    # undo the correction: the frame is no reference any more
    kept = {f: list(s) for f, s in enumerate(session.scribbles.frames) if s and f != corrected}
    session.set_scribbles(kept)
    session.propagate()
    assert corrected not in session.references()
