"""Scribbles: the DAVIS interactive JSON format, interaction rounds, rasterisation."""
from __future__ import annotations

import json
import math
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simwidgets.errors import BadInputError
from simwidgets.scribbles import UNKNOWN, Scribbles, Stroke, atomic_write_text

OFFICIAL = [("bear", "001"), ("bear", "002"), ("tennis", "003")]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- strategies

coordinate = st.floats(min_value=0.0, max_value=1.0, allow_nan=False, allow_infinity=False)
paths = st.lists(st.tuples(coordinate, coordinate), min_size=1, max_size=12)
object_ids = st.integers(min_value=0, max_value=255)
times = st.one_of(
    st.none(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
)
sizes = st.tuples(st.integers(1, 48), st.integers(1, 48))
brushes = st.floats(min_value=0.5, max_value=9.0)


@st.composite
def scribbles_strategy(draw):
    n_frames = draw(st.integers(1, 6))
    scribbles = Scribbles(n_frames, draw(st.text(max_size=12)))
    for _ in range(draw(st.integers(0, 8))):
        scribbles.add_stroke(
            draw(st.integers(0, n_frames - 1)), draw(paths), draw(object_ids),
            start_time=draw(times), end_time=draw(times),
        )
    return scribbles


def point_pixels(path, height, width):
    """The pixel (row, col) that contains each normalised point, clipped to the frame."""
    path = np.asarray(path, dtype=np.float64)
    cols = np.clip(np.floor(path[:, 0] * width).astype(int), 0, width - 1)
    rows = np.clip(np.floor(path[:, 1] * height).astype(int), 0, height - 1)
    return rows, cols


# --------------------------------------------------------------------------- official files

@pytest.mark.parametrize("sequence, stem", OFFICIAL)
def test_official_files_round_trip_without_changing_a_value(davis_root, tmp_path, sequence, stem):
    path = davis_root / "Scribbles" / sequence / f"{stem}.json"
    original = json.loads(path.read_text())
    scribbles = Scribbles.load(path)
    assert scribbles.n_frames == len(original["scribbles"])
    assert scribbles.sequence == original["sequence"] == sequence
    # dict == dict compares every float exactly, and 1 != 1.5 style type drift would show
    assert json.loads(scribbles.to_json()) == original
    out = tmp_path / f"{stem}.json"
    scribbles.save(out)
    assert json.loads(out.read_text()) == original
    # and the written file reads back as an equal object
    assert Scribbles.load(out, n_frames=scribbles.n_frames) == scribbles
    # values keep their JSON types (times were ints in the official files)
    for frame_idx, stroke in scribbles:
        source = original["scribbles"][frame_idx]
        assert any(type(s["start_time"]) is type(stroke.start_time) for s in source)


def test_official_bear_scribble_structure(bear):
    scribbles = bear.scribbles["001"]
    assert scribbles.object_ids == [1]
    assert len(scribbles.annotated_frames) >= 1
    for _, stroke in scribbles:
        assert stroke.path.dtype == np.float64 and stroke.path.ndim == 2 and stroke.path.shape[1] == 2
        assert 0.0 <= stroke.path.min() and stroke.path.max() <= 1.0


@pytest.mark.parametrize("stem", ["001", "002"])
def test_rasterised_bear_scribbles_lie_on_the_bear(bear, stem):
    """Real-data sanity: the human scribble of the bear falls inside its ground-truth mask."""
    scribbles = bear.scribbles[stem]
    height, width = bear.size
    for frame_idx in scribbles.annotated_frames:
        labels = scribbles.rasterize(frame_idx, height, width, brush_width=3)
        drawn = labels == 1
        assert drawn.sum() > 100
        inside = bear.masks[frame_idx][drawn] == 1
        assert inside.mean() > 0.9, f"frame {frame_idx}: only {inside.mean():.1%} on the bear"


def test_rasterised_tennis_scribbles_lie_on_the_player(tennis):
    scribbles = tennis.scribbles["003"]
    height, width = tennis.size
    drawn_total, inside_total = 0, 0
    for frame_idx in scribbles.annotated_frames:
        labels = scribbles.rasterize(frame_idx, height, width, brush_width=3)
        drawn = labels > 0
        assert set(np.unique(labels[drawn]).tolist()) <= {1, 2}
        drawn_total += drawn.sum()
        inside_total += (tennis.masks[frame_idx][drawn] == 1).sum()
    assert inside_total / drawn_total > 0.9


# --------------------------------------------------------------------------- building, merging

def _two_rounds():
    first = Scribbles(5, "toy")
    first.add_stroke(1, [[0.1, 0.1], [0.2, 0.2]], 1, start_time=0, end_time=1)
    first.add_stroke(3, [[0.5, 0.5]], 0, start_time=1, end_time=2)
    second = Scribbles(5, "toy")
    second.add_stroke(1, [[0.8, 0.8], [0.9, 0.7]], 2, start_time=10, end_time=11)
    second.add_stroke(4, [[0.3, 0.6]], 1, start_time=12, end_time=13)
    return first, second


def test_merge_appends_later_rounds_in_order():
    first, second = _two_rounds()
    before = (first.to_json(), second.to_json())
    merged = first.merge(second)
    assert len(merged) == len(first) + len(second) == 4
    assert merged.frames[1] == first.frames[1] + second.frames[1]
    assert [s.object_id for s in merged.frames[1]] == [1, 2]
    assert merged.frames[3] == first.frames[3] and merged.frames[4] == second.frames[4]
    assert merged.annotated_frames == [1, 3, 4]
    assert merged.object_ids == [0, 1, 2]
    assert first + second == merged
    # merging builds a new object: neither round is modified, and the merge owns its paths
    assert (first.to_json(), second.to_json()) == before
    merged.frames[1][0].path[0, 0] = 0.99
    assert first.frames[1][0].path[0, 0] == 0.1


def test_merge_real_rounds(bear):
    first, second = bear.scribbles["001"], bear.scribbles["002"]
    merged = first + second
    assert len(merged) == len(first) + len(second)
    assert merged.annotated_frames == sorted(set(first.annotated_frames) | set(second.annotated_frames))
    assert merged.sequence == "bear"


def test_merge_rejects_frame_count_mismatch_and_non_scribbles():
    first, _ = _two_rounds()
    with pytest.raises(BadInputError, match="frame-count mismatch.*6 frames.*5 frames"):
        first.merge(Scribbles(6))
    with pytest.raises(BadInputError, match="can only merge Scribbles"):
        first.merge({"scribbles": []})


def test_merge_takes_the_sequence_name_when_missing():
    first, second = _two_rounds()
    assert Scribbles(5).merge(second).sequence == "toy"


def test_pop_and_clear():
    first, _ = _two_rounds()
    extra = first.add_stroke(1, [[0.4, 0.4]], 3)
    assert len(first) == 3
    assert first.pop_stroke(1) == extra
    assert [s.object_id for s in first.frames[1]] == [1]
    with pytest.raises(BadInputError, match="frame 2 has no stroke to remove"):
        first.pop_stroke(2)
    removed = first.clear_frame(1)
    assert [s.object_id for s in removed] == [1]
    assert first.frames[1] == [] and first.annotated_frames == [3]
    assert first.clear_frame(1) == []


def test_copy_is_independent():
    first, _ = _two_rounds()
    copy = first.copy()
    assert copy == first
    copy.pop_stroke(1)
    assert copy != first and len(first) == 2


def test_add_pixel_stroke_normalises_by_frame_size():
    scribbles = Scribbles(2)
    stroke = scribbles.add_pixel_stroke(0, [(10, 20), (30, 5)], 4, height=40, width=80, start_time=3)
    np.testing.assert_array_equal(stroke.path, [[10 / 80, 20 / 40], [30 / 80, 5 / 40]])
    assert stroke.start_time == 3 and stroke.end_time is None
    np.testing.assert_allclose(stroke.pixel_path(40, 80), [[10, 20], [30, 5]])
    labels = scribbles.rasterize(0, 40, 80, brush_width=1)
    assert labels[20, 10] == 4 and labels[5, 30] == 4
    # the border itself (col = W, row = H) is still inside the frame
    scribbles.add_pixel_stroke(1, [(80, 40)], 1, height=40, width=80)
    assert scribbles.rasterize(1, 40, 80)[39, 79] == 1
    with pytest.raises(BadInputError, match="leaves the 80x40 frame"):
        scribbles.add_pixel_stroke(0, [(81, 3)], 1, height=40, width=80)


def test_check_object_ids():
    first, second = _two_rounds()
    (first + second).check_object_ids([1, 2])
    with pytest.raises(BadInputError, match="unknown object id 2"):
        (first + second).check_object_ids([1])


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "a.json"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new text")
    assert target.read_text() == "new text"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


# --------------------------------------------------------------------------- rasterisation

def test_rasterize_empty_frame_is_all_unknown():
    labels = Scribbles(3).rasterize(1, 7, 9)
    assert labels.shape == (7, 9) and labels.dtype == np.int64
    assert (labels == UNKNOWN).all()


def test_rasterize_draws_the_segment_between_points():
    scribbles = Scribbles(1)
    scribbles.add_pixel_stroke(0, [(2.5, 10.5), (37.5, 10.5)], 5, height=21, width=40)
    labels = scribbles.rasterize(0, 21, 40, brush_width=1)
    assert (labels[10, 2:38] == 5).all()            # the whole horizontal line
    assert (labels[:10] == UNKNOWN).all() and (labels[11:] == UNKNOWN).all()
    wide = scribbles.rasterize(0, 21, 40, brush_width=5)
    assert (wide[8:13, 2:38] == 5).all()            # 5 pixels thick
    assert (wide[:7] == UNKNOWN).all() and (wide[14:] == UNKNOWN).all()


@FAST
@given(path=paths, object_id=st.integers(1, 255), size=sizes, brush=brushes)
def test_every_stroke_point_is_labelled(path, object_id, size, brush):
    height, width = size
    scribbles = Scribbles(1)
    scribbles.add_stroke(0, path, object_id)
    labels = scribbles.rasterize(0, height, width, brush_width=brush)
    rows, cols = point_pixels(path, height, width)
    assert (labels[rows, cols] == object_id).all()
    assert set(np.unique(labels).tolist()) <= {UNKNOWN, object_id}


@FAST
@given(
    first=paths, second=paths, ids=st.lists(object_ids, min_size=2, max_size=2, unique=True),
    size=sizes, brush=brushes,
)
def test_later_strokes_override_earlier_ones(first, second, ids, size, brush):
    height, width = size
    scribbles = Scribbles(1)
    scribbles.add_stroke(0, first, ids[0])
    scribbles.add_stroke(0, second, ids[1])
    labels = scribbles.rasterize(0, height, width, brush_width=brush)
    assert set(np.unique(labels).tolist()) <= {UNKNOWN, *ids}
    rows, cols = point_pixels(second, height, width)
    assert (labels[rows, cols] == ids[1]).all()
    # the combined map is exactly the second stroke over the first
    alone = []
    for path, object_id in ((first, ids[0]), (second, ids[1])):
        single = Scribbles(1)
        single.add_stroke(0, path, object_id)
        alone.append(single.rasterize(0, height, width, brush_width=brush) != UNKNOWN)
    expected = np.where(alone[1], ids[1], np.where(alone[0], ids[0], UNKNOWN))
    np.testing.assert_array_equal(labels, expected)


@FAST
@given(path=paths, size=sizes, brushes_pair=st.tuples(brushes, brushes))
def test_thicker_brush_covers_a_superset(path, size, brushes_pair):
    height, width = size
    thin, thick = sorted(brushes_pair)
    scribbles = Scribbles(1)
    scribbles.add_stroke(0, path, 1)
    thin_map = scribbles.rasterize(0, height, width, brush_width=thin) == 1
    thick_map = scribbles.rasterize(0, height, width, brush_width=thick) == 1
    assert not (thin_map & ~thick_map).any()


@FAST
@given(path=paths, size=sizes)
def test_thin_brush_stays_near_the_path(path, size):
    """A brush of width w labels only pixels within w/2 (+ half a pixel diagonal) of the path."""
    height, width = size
    brush = 2.0
    scribbles = Scribbles(1)
    scribbles.add_stroke(0, path, 1)
    labelled = np.argwhere(scribbles.rasterize(0, height, width, brush_width=brush) == 1) + 0.5
    points = np.asarray(path) * [width, height]
    points = points[:, ::-1]  # (row, col) like argwhere
    segments = list(zip(points[:-1], points[1:])) or [(points[0], points[0])]
    best = np.full(len(labelled), np.inf)
    for a, b in segments:
        d = b - a
        t = np.clip(((labelled - a) @ d) / max(d @ d, 1e-12), 0, 1)
        best = np.minimum(best, np.linalg.norm(labelled - (a + t[:, None] * d), axis=1))
    assert (best <= brush / 2 + math.sqrt(0.5) + 1e-9).all()


# --------------------------------------------------------------------------- JSON round trip

@FAST
@given(scribbles=scribbles_strategy())
def test_random_scribbles_round_trip_through_json(scribbles):
    text = scribbles.to_json()
    again = Scribbles.from_json(text, n_frames=scribbles.n_frames)
    assert again == scribbles
    assert again.sequence == scribbles.sequence
    assert again.to_json() == text
    # exact: every coordinate and time survives bit for bit
    for (_, a), (_, b) in zip(scribbles, again):
        assert a.path.tobytes() == b.path.tobytes()
        assert type(a.start_time) is type(b.start_time) and type(a.end_time) is type(b.end_time)


@FAST
@given(scribbles=scribbles_strategy())
def test_random_scribbles_round_trip_through_a_file(tmp_path_factory, scribbles):
    path = tmp_path_factory.mktemp("scribbles") / "001.json"
    scribbles.save(path, indent=1)
    assert Scribbles.load(path) == scribbles


def test_stroke_equality_compares_paths_exactly():
    a = Stroke([[0.1, 0.2]], 1, 0, 1)
    assert a == Stroke(np.array([[0.1, 0.2]]), 1, 0, 1)
    assert a != Stroke([[0.1, 0.2 + 1e-16 * 2]], 1, 0, 1)
    assert a != Stroke([[0.1, 0.2]], 2, 0, 1)
    assert a != Stroke([[0.1, 0.2], [0.1, 0.2]], 1, 0, 1)


def test_atomic_write_names_its_temporary_file_after_the_target(tmp_path, monkeypatch):
    from simwidgets.scribbles import TEMP_SUFFIX

    seen = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (seen.append(Path(src).name), real_replace(src, dst)))
    atomic_write_text(tmp_path / "a.json", "text")
    assert len(seen) == 1 and seen[0].startswith(".a.json.") and seen[0].endswith(TEMP_SUFFIX)


def test_atomic_write_removes_stale_temporary_files_of_its_target_only(tmp_path):
    from simwidgets.scribbles import TEMP_SUFFIX

    old = time.time() - 3600
    stale = tmp_path / f".a.json.dead{TEMP_SUFFIX}"  # a write killed an hour ago
    young = tmp_path / f".a.json.beef{TEMP_SUFFIX}"  # another process writing right now
    other = tmp_path / f".b.json.dead{TEMP_SUFFIX}"  # another target's
    mine = tmp_path / ".a.json.backup"  # a user's file
    for path in (stale, young, other, mine):
        path.write_text("x")
    for path in (stale, other, mine):
        os.utime(path, (old, old))
    atomic_write_text(tmp_path / "a.json", "text")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.json", young.name, other.name, mine.name])


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_saved_files_get_the_mode_of_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        Scribbles(2, "toy").save(tmp_path / "new.json")
        atomic_write_text(tmp_path / "new.json", "again")  # replacing keeps the umask's mode
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == mode
