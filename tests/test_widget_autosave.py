"""Autosave of the scribble widget: every finished stroke on disk, restored by a new widget."""
import json
import os
import stat
import time
import warnings

import numpy as np
import pytest

from simwidgets.scribbles import Scribbles
from simwidgets.video import synthetic_video
from simwidgets.widgets import AutosaveWarning, ScribbleWidget, default_autosave_path


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def drag(widget, points):
    widget.handle_mouse_down(*points[0])
    for point in points[1:]:
        widget.handle_mouse_move(*point)
    widget.handle_mouse_up(*points[-1])


def on_disk(path, n_frames):
    return Scribbles.load(path, n_frames=n_frames)


def test_default_autosave_is_named_after_the_sequence_in_the_current_folder(bear, tmp_path):
    w = ScribbleWidget(bear, width=640)
    assert w.autosave_path == tmp_path / "bear.scribbles.json"
    assert not w.autosave_path.exists(), "nothing is written before the first stroke"
    drag(w, [(100, 100), (200, 150)])
    assert on_disk(w.autosave_path, 82) == w.scribbles
    assert "bear.scribbles.json" in w.status.value


def test_every_finished_stroke_is_written(synthetic, tmp_path):
    path = tmp_path / "sub" / "toy.json"
    w = ScribbleWidget(synthetic, width=192, autosave=path)
    for k in range(3):
        drag(w, [(10 + k, 10), (40, 40 + k)])
        assert len(on_disk(path, 8)) == k + 1
    w.undo()
    assert len(on_disk(path, 8)) == 2
    w.clear_frame(0)
    assert len(on_disk(path, 8)) == 0
    w.redo()
    w.undo()
    assert len(on_disk(path, 8)) == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["toy.json"], "no temporary file left"


def test_a_new_widget_on_the_same_video_restores_the_strokes(bear):
    first = ScribbleWidget(bear, width=640)
    drag(first, [(100, 100), (200, 150)])
    first.handle_key_down("ArrowRight")
    drag(first, [(300, 100), (310, 160)])
    # a kernel restart: a new widget, same video, another display width
    second = ScribbleWidget(bear, width=320)
    assert second.scribbles == first.scribbles
    assert second.canvas.annotated_frames == [0, 1]
    drag(second, [(10, 10), (20, 20)])
    assert len(on_disk(second.autosave_path, 82)) == 3


def test_an_unnamed_array_gets_a_stable_autosave_name(synthetic, tmp_path):
    frames = synthetic.frames.copy()
    w = ScribbleWidget(frames, width=192)
    assert w.autosave_path.parent == tmp_path and w.autosave_path.name.startswith("video-")
    drag(w, [(10, 10), (30, 30)])
    again = ScribbleWidget(frames.copy(), width=192)
    assert again.autosave_path == w.autosave_path and len(again.scribbles) == 1
    other = ScribbleWidget(synthetic_video(n_frames=8, seed=9).frames, width=192)
    assert other.autosave_path != w.autosave_path and len(other.scribbles) == 0


def test_a_stroke_in_progress_is_all_a_crash_loses(synthetic, tmp_path):
    path = tmp_path / "toy.json"
    w = ScribbleWidget(synthetic, width=192, autosave=path)
    drag(w, [(10, 10), (30, 30)])
    w.handle_mouse_down(50, 50)
    w.handle_mouse_move(60, 60)  # ... and the kernel dies here
    restored = ScribbleWidget(synthetic, width=192, autosave=path)
    assert len(restored.scribbles) == 1
    np.testing.assert_allclose(restored.scribbles.frames[0][0].path[-1] * [192, 128], [30, 30])


def test_a_corrupt_autosave_is_moved_aside_never_overwritten(synthetic, tmp_path):
    path = tmp_path / "toy.json"
    path.write_text('{"scribbles": [[{"path": [[0.1, 0.1]], "object_id"')  # truncated
    with pytest.warns(AutosaveWarning, match="cannot be read") as record:
        w = ScribbleWidget(synthetic, width=192, autosave=path)
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("toy.json.corrupt-")]
    assert len(moved) == 1 and str(moved[0]) in str(record[0].message)
    assert moved[0].read_text().endswith('"object_id"'), "the corrupt file is kept as it was"
    assert len(w.scribbles) == 0 and not path.exists()
    drag(w, [(10, 10), (30, 30)])
    assert len(on_disk(path, 8)) == 1


def test_an_autosave_of_another_video_is_moved_aside(synthetic, tmp_path):
    path = tmp_path / "toy.json"
    Scribbles(5, "other").save(path)
    with pytest.warns(AutosaveWarning, match="5 frames and this video has 8"):
        w = ScribbleWidget(synthetic, width=192, autosave=path)
    assert len(w.scribbles) == 0
    assert len([p for p in tmp_path.iterdir() if ".other-" in p.name]) == 1


def test_explicit_scribbles_do_not_silently_replace_an_autosave(synthetic, tmp_path):
    path = tmp_path / "toy.json"
    w = ScribbleWidget(synthetic, width=192, autosave=path)
    drag(w, [(10, 10), (30, 30)])
    explicit = Scribbles(8, "toy")
    explicit.add_stroke(2, [[0.5, 0.5]], 1)
    with pytest.warns(AutosaveWarning, match="passed explicitly"):
        again = ScribbleWidget(synthetic, width=192, autosave=path, scribbles=explicit)
    assert again.scribbles == explicit
    kept = [p for p in tmp_path.iterdir() if ".replaced-" in p.name]
    assert len(kept) == 1 and len(on_disk(kept[0], 8)) == 1
    # the same scribbles as the autosave: nothing to move, no warning
    again.add_stroke(3, [[0.2, 0.2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ScribbleWidget(synthetic, width=192, autosave=path, scribbles=again.scribbles)


def test_autosave_off(synthetic, tmp_path):
    w = ScribbleWidget(synthetic, width=192, autosave=False)
    drag(w, [(10, 10), (30, 30)])
    assert w.autosave_path is None and list(tmp_path.iterdir()) == []
    assert "autosave off" in w.status.value


def test_a_failing_disk_warns_and_keeps_the_strokes(synthetic, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    w = ScribbleWidget(synthetic, width=192, autosave=blocker / "toy.json")  # parent is a file
    with pytest.warns(AutosaveWarning, match="could not autosave"):
        drag(w, [(10, 10), (30, 30)])
    assert len(w.scribbles) == 1 and "autosave failed" in w.status.value


def test_the_autosave_is_plain_davis_json(bear, tmp_path):
    w = ScribbleWidget(bear, width=640)
    drag(w, [(100, 100), (200, 150)])
    data = json.loads(w.autosave_path.read_text())
    assert data["sequence"] == "bear" and len(data["scribbles"]) == 82
    stroke = data["scribbles"][0][0]
    assert set(stroke) == {"path", "object_id", "start_time", "end_time"}
    assert stroke["path"][0] == pytest.approx([100 / 640, 100 / 360])


def test_default_autosave_path_sanitises_names(tmp_path):
    assert default_autosave_path("bear", tmp_path) == tmp_path / "bear.scribbles.json"
    assert default_autosave_path("../etc/passwd", tmp_path).parent == tmp_path


# --------------------------------------------------------------------------- several widgets, killed saves, modes

def test_two_live_widgets_on_one_video_never_overwrite_each_others_strokes(synthetic, tmp_path):
    """A ScribbleWidget and a SegmentationApp (which holds one) on the same video share the
    default file name; the first to find the other's strokes in it moves to a sibling file."""
    first = ScribbleWidget(synthetic, width=192)
    second = ScribbleWidget(synthetic, width=192)
    assert first.autosave_path == second.autosave_path  # both named after the video
    drag(first, [(10, 10), (30, 30)])
    with pytest.warns(AutosaveWarning, match=r"changed by another widget.*now autosave to .*-2\.scribbles\.json"):
        drag(second, [(50, 50), (70, 70)])
    drag(first, [(90, 10), (95, 40)])
    drag(second, [(20, 90), (40, 100)])
    assert first.autosave_path != second.autosave_path
    assert second.autosave_path.name.endswith("-2.scribbles.json")
    assert on_disk(first.autosave_path, 8) == first.scribbles and len(first.scribbles) == 2
    assert on_disk(second.autosave_path, 8) == second.scribbles and len(second.scribbles) == 2
    assert str(second.autosave_path) in second.status.value
    # a new widget (a restarted kernel) continues the file named after the video
    assert ScribbleWidget(synthetic, width=192).scribbles == first.scribbles


def test_a_file_changed_by_another_process_is_left_alone(synthetic, tmp_path):
    path = tmp_path / "toy.json"
    w = ScribbleWidget(synthetic, width=192, autosave=path)
    drag(w, [(10, 10), (30, 30)])
    theirs = Scribbles(8, "toy")
    theirs.add_stroke(5, [[0.5, 0.5]], 2)
    theirs.save(path)  # the same notebook open in a second kernel
    with pytest.warns(AutosaveWarning, match=r"toy\.json was changed .* now autosave to .*toy-2\.json"):
        drag(w, [(50, 50), (70, 70)])
    assert on_disk(path, 8) == theirs
    assert on_disk(tmp_path / "toy-2.json", 8) == w.scribbles and len(w.scribbles) == 2


def test_a_leftover_of_a_killed_autosave_is_removed_by_the_next_one(synthetic, tmp_path):
    path = tmp_path / "toy.json"
    w = ScribbleWidget(synthetic, width=192, autosave=path)
    stale = tmp_path / ".toy.json.0badf00d.simwidgets-partial.tmp"  # what a kill mid-save leaves
    stale.write_text('{"scribbles": [[')
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    drag(w, [(10, 10), (30, 30)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["toy.json"]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_the_autosave_gets_the_mode_of_the_umask(synthetic, tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        w = ScribbleWidget(synthetic, width=192, autosave=tmp_path / "toy.json")
        drag(w, [(10, 10), (30, 30)])
    finally:
        os.umask(previous)
    assert stat.S_IMODE(w.autosave_path.stat().st_mode) == mode
