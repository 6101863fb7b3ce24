"""``local_edge_cost``: a correction stroke's reach measured along the frame
(transfer/geodesic.py).  The fast distance against the plain priority-queue walk on a real
DAVIS frame, then the bound on that frame: a background stroke through a false positive
next to the bear removes the false positive, and where the straight-line bound also cuts
into the bear, the bound along the frame stops at the bear's edge where the edge is clear."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from simwidgets.errors import BadInputError
from simwidgets.transfer import TransferConfig
from simwidgets.transfer.geodesic import geodesic_distance, geodesic_distance_reference, within_reach
from simwidgets.transfer.local_edit import local_changes
from simwidgets.video import load_sample


@pytest.fixture(scope="module")
def bear():
    video = load_sample("bear", lazy=True)
    return np.asarray(video.frames[0]), np.asarray(video.masks[0]) > 0


def test_the_fast_distance_is_the_plain_walk(bear):
    image, mask = bear
    rows, cols = np.nonzero(mask)
    r, c = int(rows.mean()), int(cols.min())  # the bear's left edge: object, grass, rocks
    crop = image[r - 24:r + 24, c - 30:c + 40]
    sources = np.zeros(crop.shape[:2], bool)
    sources[20:28, 10] = True
    sources[5, 60] = True                      # two separate strokes: the nearest one counts
    for edge_cost in (0.5, 2.0):
        plain = geodesic_distance_reference(crop, sources, edge_cost)
        limit = float(np.percentile(plain, 60))
        fast = geodesic_distance(crop, sources, limit, edge_cost)
        inside = plain <= limit
        assert inside.sum() > 100 and (~inside).sum() > 100
        np.testing.assert_allclose(fast[inside], plain[inside], rtol=1e-5)
        assert np.isinf(fast[plain > limit * 1.0001]).all()
    # edges cost: along the frame no pixel is nearer than in a straight line
    assert (plain >= ndimage.distance_transform_edt(~sources) - 1e-6).all()
    # no edge cost: within reach is the straight-line disc around the strokes
    straight = within_reach(None, sources, 7.5, None)
    assert np.array_equal(straight, ndimage.distance_transform_edt(~sources) <= 7.5)


def test_the_bound_along_the_frame_stops_at_the_objects_edge(bear):
    image, mask = bear
    # shown: the bear and a false positive band of 12 pixels beside its whole outline
    band = ndimage.binary_dilation(mask, iterations=12) & ~mask
    shown = (mask | band).astype(np.uint8)
    # the robot's stroke: the middle of the band on the bear's left half
    middle = band & (ndimage.distance_transform_edt(~mask) > 5) & (ndimage.distance_transform_edt(~mask) <= 6)
    cols = np.nonzero(mask)[1]
    middle[:, int(np.median(cols)):] = False
    strokes = np.where(middle, 0, -1)
    proposed = np.zeros_like(shown)            # a collapsed transfer: all background
    straight = local_changes(shown, proposed, strokes, reach=8, depth=1.0)
    along = local_changes(shown, proposed, strokes, reach=8, depth=1.0, image=image, edge_cost=2.0)
    lost_straight = (mask & (straight == 0)).sum()
    lost_along = (mask & (along == 0)).sum()
    fixed_straight = (band & (straight == 0)).sum()
    fixed_along = (band & (along == 0)).sum()
    assert lost_straight > 5000                # the straight disc cuts into the bear
    assert lost_along < 0.55 * lost_straight   # along the frame it stops where the edge is clear
    assert fixed_along > 0.9 * fixed_straight  # and removes as much of the false positive

    def jaccard(labels):
        return ((labels > 0) & mask).sum() / ((labels > 0) | mask).sum()

    # shown 0.764: the straight bound leaves the frame far worse (0.646), along the frame
    # it ends close to what was shown (0.757: the fur's soft edge lets some of it through)
    assert jaccard(straight) < jaccard(shown) - 0.1
    assert jaccard(along) > jaccard(straight) + 0.08
    assert (along[middle] == 0).all()
    # nothing moves beyond the straight bound: a path along the frame is never shorter
    assert not ((along != shown) & (straight == shown)).any()


def test_the_session_passes_its_frame_and_computes_the_bound_once(davis_root, monkeypatch):
    """The corrected frame's own pixels go to the edit, and its depth bound is computed in
    the first call and reused by every later one, in this round and the next."""
    import simwidgets.session as session_module
    import simwidgets.transfer.local_edit as local_edit
    from test_session import FIRST, LAST, SCALE, scribble_then_correct, shrink_clip

    clip = shrink_clip(load_sample("bear", lazy=True), FIRST, LAST, SCALE)
    calls, bounds = [], []
    edit, within_depth = session_module.local_changes, local_edit._within_depth

    def spy(*args, **kwargs):
        calls.append(args)
        return edit(*args, **kwargs)

    def counted(*args, **kwargs):
        bounds.append(args[2])  # the stroke label whose bound is computed
        return within_depth(*args, **kwargs)

    monkeypatch.setattr(session_module, "local_changes", spy)
    monkeypatch.setattr(local_edit, "_within_depth", counted)
    config = TransferConfig(max_references=10**6, local_edge_cost=2.0)
    session, _, two = scribble_then_correct(clip, config, "baseline")
    (corrected,) = clip.scribbles["002"].annotated_frames
    assert calls, "the correction was not edited"
    for args in calls:
        image, edge_cost, memo = args[6], args[7], args[8]
        assert np.array_equal(image, clip.frames[corrected]) and edge_cost == 2.0
        assert memo is calls[0][8]
    assert len(bounds) == len(set(bounds))     # each label's bound once
    n_bounds, n_calls = len(bounds), len(calls)
    again = session.propagate().masks          # the same correction, edited again
    assert len(calls) > n_calls and calls[-1][8] is calls[0][8]
    assert len(bounds) == n_bounds and np.array_equal(again[corrected], two[corrected])


def test_the_option_is_checked():
    assert TransferConfig().local_edge_cost == 1.0   # on by default
    assert TransferConfig(local_edge_cost=None).local_edge_cost is None
    assert TransferConfig(local_edge_cost=2).local_edge_cost == 2.0
    with pytest.raises(BadInputError, match="local_edge_cost"):
        TransferConfig(local_edge_cost=-1.0)
