"""The scribble widget driven through its public handlers with synthetic events.

The browser reports mouse positions in canvas pixels and keys by name; these tests send
the same calls and check the Python state (the DAVIS Scribbles), undo/redo, frames, the
mask overlay and the drawing commands that reach the browser.
"""
import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest

import ipycanvas.canvas
from simwidgets.errors import BadInputError
from simwidgets.palette import object_colour
from simwidgets.scribbles import Scribbles
from simwidgets.video import LazyFrames, load_sample
from simwidgets.widgets import ScribbleCanvas, ScribbleEvent, ScribbleWidget, mask_overlay


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """The default autosave goes to the current folder: keep it in tmp_path."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def sent(monkeypatch):
    """Every message the canvas manager sends to the browser: a list of (commands, n_buffers, buffers)."""
    messages = []
    manager = ipycanvas.canvas._CANVAS_MANAGER

    def record(command, buffers=[]):
        messages.append((json.dumps(command, default=str), [bytes(b) for b in buffers]))

    monkeypatch.setattr(manager, "_send_custom", record)
    return messages


def drag(widget, points):
    """Mouse down at the first point, moves through the others, up at the last."""
    widget.handle_mouse_down(*points[0])
    for point in points[1:]:
        widget.handle_mouse_move(*point)
    widget.handle_mouse_up(*points[-1])


def test_widget_module_does_not_import_torch():
    code = (
        "import sys\n"
        "import simwidgets.widgets\n"
        "from simwidgets.widgets import ScribbleWidget\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_real_sequence_is_shown_at_its_aspect_ratio(bear):
    w = ScribbleWidget(bear, width=640)
    assert w.canvas.canvas_size == (360, 640)
    assert w.canvas.multi.width == 640 and w.canvas.multi.height == 360
    frame = w.canvas.display_frame(5)
    assert frame.shape == (360, 640, 3) and frame.dtype == np.uint8
    # the displayed frame is the video frame, scaled
    small = np.asarray(bear.frames[5], dtype=float)[::4, ::4].mean()
    assert abs(frame.astype(float).mean() - small) < 3
    assert w.canvas.name == "bear" and w.scribbles.sequence == "bear"


def test_a_stroke_lands_where_the_mouse_went(bear):
    w = ScribbleWidget(bear, width=640)
    path = [(100.0, 50.0), (120.0, 60.0), (150.0, 80.0), (200.0, 100.0)]
    drag(w, path)
    scribbles = w.scribbles
    assert len(scribbles) == 1 and scribbles.annotated_frames == [0]
    stroke = scribbles.frames[0][0]
    assert stroke.object_id == 1
    np.testing.assert_allclose(stroke.path, np.array(path) / [640, 360])
    # in image pixels of the 854x480 frame
    np.testing.assert_allclose(stroke.pixel_path(480, 854)[0], [100 * 854 / 640, 50 * 480 / 360])
    assert stroke.start_time <= stroke.end_time
    # rasterised, the stroke covers the pixels under the mouse path
    labels = scribbles.rasterize(0, 480, 854, brush_width=3)
    for x, y in path:
        row, col = int(y * 480 / 360), int(x * 854 / 640)
        assert labels[row - 1:row + 2, col - 1:col + 2].max() == 1


def test_two_objects_and_background(synthetic):
    w = ScribbleWidget(synthetic, masks=synthetic.masks, width=192)
    assert w.n_objects == 3  # the largest id in the masks
    drag(w, [(10, 10), (30, 10)])
    w.handle_key_down("2")
    drag(w, [(10, 40), (30, 40)])
    w.handle_key_down("0")
    drag(w, [(100, 100), (120, 110)])
    assert [s.object_id for s in w.scribbles.frames[0]] == [1, 2, 0]
    assert w.scribbles.object_ids == [0, 1, 2]


def test_moves_are_thinned(synthetic):
    w = ScribbleWidget(synthetic, width=192, min_move=2.0)
    w.handle_mouse_down(10, 10)
    for k in range(1, 201):
        w.handle_mouse_move(10 + 0.25 * k, 10)  # 200 moves over 50 pixels
    w.handle_mouse_up(60, 10)
    path = w.scribbles.frames[0][0].path * [192, 128]
    assert 20 <= len(path) <= 27
    assert np.all(np.diff(path[:, 0]) >= 2.0 - 1e-9)
    np.testing.assert_allclose(path[0], [10, 10])
    np.testing.assert_allclose(path[-1], [60, 10])


def test_a_fast_stroke_sends_few_messages(synthetic, sent):
    w = ScribbleWidget(synthetic, width=192, live_interval=60.0)
    sent.clear()
    w.handle_mouse_down(10, 10)
    for k in range(500):
        w.handle_mouse_move(10 + (k % 150), 10 + k % 90)
    assert len(sent) == 1  # the stroke's first point; the moves wait for the next live update
    w.handle_mouse_up(50, 50)
    assert len(sent) == 2  # one batched redraw (hold_canvas) at mouse-up
    assert len(w.scribbles.frames[0][0].path) > 50


def test_mouse_leaving_the_canvas_ends_the_stroke_inside(synthetic):
    w = ScribbleWidget(synthetic, width=192)
    w.handle_mouse_down(150, 60)
    w.handle_mouse_move(185, 60)
    w.canvas.handle_mouse_out(230, 60)
    assert not w.canvas.drawing
    path = w.scribbles.frames[0][0].path
    assert path.max() <= 1.0 and path[-1, 0] == 1.0
    w.handle_mouse_move(100, 100)  # moves after the stroke ended do nothing
    w.handle_mouse_up(100, 100)
    assert len(w.scribbles) == 1


def test_undo_redo_per_stroke_across_frames(synthetic):
    w = ScribbleWidget(synthetic, width=192)
    drag(w, [(10, 10), (20, 20)])
    drag(w, [(30, 30), (40, 40)])
    w.handle_key_down("ArrowRight")
    assert w.frame_idx == 1
    drag(w, [(50, 50), (60, 60)])
    assert [len(f) for f in w.scribbles.frames[:2]] == [2, 1]
    assert w.handle_key_down("z")
    assert [len(f) for f in w.scribbles.frames[:2]] == [2, 0]
    w.handle_key_down("z")
    assert w.frame_idx == 0, "undoing a stroke shows its frame"
    assert [len(f) for f in w.scribbles.frames[:2]] == [1, 0]
    np.testing.assert_allclose(w.scribbles.frames[0][0].path[0] * [192, 128], [10, 10])
    assert w.handle_key_down("Z", shift_key=True)
    assert [len(f) for f in w.scribbles.frames[:2]] == [2, 0]
    w.redo()
    assert [len(f) for f in w.scribbles.frames[:2]] == [2, 1] and w.frame_idx == 1
    assert not w.redo() and not w.canvas.can_redo
    # a new stroke after an undo clears the redo history
    w.undo()
    drag(w, [(5, 5), (9, 9)])
    assert not w.canvas.can_redo and not w.handle_key_down("Z")
    while w.undo():
        pass
    assert len(w.scribbles) == 0 and not w.handle_key_down("z")


def test_keyboard_shortcuts(synthetic):
    w = ScribbleWidget(synthetic.frames, width=192, n_objects=2)
    assert w.handle_key_down("End") and w.frame_idx == 7
    assert w.handle_key_down("ArrowRight") and w.frame_idx == 7  # stops at the end
    assert w.handle_key_down("Home") and w.frame_idx == 0
    assert w.handle_key_down("ArrowLeft") and w.frame_idx == 0
    w.handle_key_down("ArrowRight", shift_key=True)
    assert w.frame_idx == 7  # 10 frames, clipped
    assert w.handle_key_down("2") and w.object_id == 2
    assert not w.handle_key_down("5") and w.object_id == 2  # not offered
    assert w.handle_key_down("+") and w.n_objects == 3 and w.object_id == 3
    assert w.handle_key_down("0") and w.object_id == 0
    assert w.handle_key_down("e") and w.tool == "eraser"
    assert w.handle_key_down("e") and w.tool == "brush"
    assert w.handle_key_down("m") and not w.show_masks
    assert not w.handle_key_down("q")


def test_eraser_removes_only_the_stroke_under_the_pointer(synthetic):
    w = ScribbleWidget(synthetic, width=192)
    drag(w, [(10, 10), (90, 10)])
    drag(w, [(10, 60), (90, 60)])
    drag(w, [(10, 100), (90, 100)])
    w.tool = "eraser"
    w.handle_mouse_down(150, 60)  # far from everything
    w.handle_mouse_up(150, 60)
    assert len(w.scribbles) == 3
    w.handle_mouse_down(50, 61)  # on the middle stroke, between two points
    w.handle_mouse_up(50, 61)
    assert [s.path[0, 1] * 128 for s in w.scribbles.frames[0]] == pytest.approx([10, 100])
    w.undo()
    assert [s.path[0, 1] * 128 for s in w.scribbles.frames[0]] == pytest.approx([10, 60, 100])
    # a drag erases what it crosses
    w.handle_mouse_down(30, 0)
    for y in range(0, 128, 4):
        w.handle_mouse_move(30, y)
    w.handle_mouse_up(30, 127)
    assert len(w.scribbles) == 0


def test_clear_frame_is_undoable(synthetic):
    w = ScribbleWidget(synthetic, width=192)
    drag(w, [(10, 10), (20, 20)])
    drag(w, [(30, 30), (40, 40)])
    w.clear_button.click()
    assert len(w.scribbles) == 0
    w.undo_button.click()
    assert len(w.scribbles) == 2


def test_controls_drive_the_canvas(synthetic):
    w = ScribbleWidget(synthetic, width=192)
    w.next_button.click()
    w.next_button.click()
    w.prev_button.click()
    assert w.frame_idx == 1 and w.frame_slider.value == 1
    w.frame_slider.value = 6
    assert w.canvas.frame_idx == 6 and w.frame_label.value == "/ 7"
    marked = re.findall(r'title="frame (\d+)"[^>]*border-bottom:2px solid #000', w.timeline.value)
    assert marked == ["6"], "the timeline marks the current frame"
    w.object_buttons[3].click()
    assert w.object_id == 3 and w.object_buttons[3].description.startswith("●")
    w.add_object_button.click()
    assert w.object_id == 4 and len(w.object_buttons) == 5
    w.opacity_slider.value = 0.8
    assert w.canvas.opacity == 0.8
    w.tool_buttons.value = "eraser"
    assert w.canvas.tool == "eraser"
    w.brush_slider.value = 12
    assert w.canvas.brush_width == 12
    assert w.undo_button.disabled
    w.tool = "brush"
    drag(w, [(10, 10), (20, 20)])
    assert not w.undo_button.disabled
    assert "1 strokes on frames [6]" in w.status.value
    assert w.timeline.value.count("#e6550d") == 1


def test_set_scribbles_with_the_official_human_scribbles(bear):
    w = ScribbleWidget(bear, width=640)
    official = bear.scribbles["001"]
    w.set_scribbles(official)
    assert w.scribbles == official
    assert w.canvas.annotated_frames == official.annotated_frames
    w.undo()
    assert len(w.scribbles) == 0
    w.redo()
    assert w.scribbles == official
    with pytest.raises(BadInputError, match="frame-count mismatch"):
        w.set_scribbles(Scribbles(3))


def test_set_scribbles_from_a_dict_and_a_file(bear, tmp_path, davis_root):
    w = ScribbleWidget(bear, width=640)
    w.set_scribbles(davis_root / "Scribbles" / "bear" / "002.json")
    assert w.scribbles == bear.scribbles["002"]
    w.set_scribbles(bear.scribbles["001"].to_dict())
    assert w.scribbles == bear.scribbles["001"]


def test_scribbles_are_a_copy(synthetic):
    w = ScribbleWidget(synthetic, width=192)
    drag(w, [(10, 10), (20, 20)])
    copy = w.scribbles
    copy.clear_frame(0)
    assert len(w.scribbles) == 1


def test_on_change_callbacks(synthetic):
    w = ScribbleWidget(synthetic, width=192)
    events = []
    w.on_change(events.append)
    drag(w, [(10, 10), (20, 20)])
    w.undo()
    w.redo()
    w.add_stroke(3, [[0.5, 0.5], [0.6, 0.6]], object_id=2)
    w.clear_frame(3)
    assert [e.kind for e in events] == ["add", "undo", "redo", "add", "clear"]
    assert all(isinstance(e, ScribbleEvent) for e in events)
    assert events[0].frame_idx == 0 and events[0].stroke.object_id == 1
    assert len(events[0].scribbles) == 1 and len(events[1].scribbles) == 0
    assert events[3].frame_idx == 3 and events[3].stroke.object_id == 2
    w.on_change(events.append, remove=True)
    drag(w, [(10, 10), (20, 20)])
    assert len(events) == 5
    with pytest.raises(BadInputError, match="callable"):
        w.on_change("not a function")


def test_mask_overlay_in_davis_colours(synthetic):
    mask = synthetic.masks[0]
    rgba = mask_overlay(mask, (64, 96), opacity=0.5)
    assert rgba.shape == (64, 96, 4) and rgba.dtype == np.uint8
    assert np.all(rgba[mask == 0, 3] == 0)
    interior = (mask == 2) & (rgba[..., 3] == 128)
    assert interior.sum() > 0.5 * (mask == 2).sum()
    assert tuple(rgba[interior][0, :3]) == object_colour(2)
    assert rgba[..., 3].max() == 255  # outlines drawn stronger
    assert mask_overlay(mask, (32, 48), 0.5).shape == (32, 48, 4)


def test_frames_sent_as_rgb_and_masks_as_rgba(synthetic, sent):
    w = ScribbleWidget(synthetic, masks=synthetic.masks, width=192)
    sent.clear()
    w.frame_idx = 2
    assert len(sent) == 1, "a frame change is one batched message"
    buffers = sent[0][1]
    assert any(b[:3] == b"\xff\xd8\xff" for b in buffers), "frame as JPEG"
    assert any(b[:8] == b"\x89PNG\r\n\x1a\n" for b in buffers), "overlay as PNG"
    sent.clear()
    w.show_masks = False
    assert len(sent) == 1 and not any(b[:4] == b"\x89PNG" for b in sent[0][1])
    sent.clear()
    w.opacity = 0.3  # hidden overlay: still redrawn (cleared), no image
    assert not any(b[:4] == b"\x89PNG" for b in sent[0][1])


def test_the_overlay_sent_is_exactly_the_mask_overlay(synthetic, sent):
    """Only the box around the objects travels (as PNG); placed at its offset it is the full overlay."""
    from PIL import Image

    w = ScribbleWidget(synthetic, masks=synthetic.masks, width=192, opacity=0.6)
    sent.clear()
    w.frame_idx = 2
    commands, buffers = json.loads(sent[0][0]), sent[0][1]
    puts = [args for code, args, *rest in commands if rest and rest[0] == 1]  # drawing commands with a buffer
    assert len(puts) == 2 and puts[0] == [0, 0]
    left, top = puts[1]
    crop = np.asarray(Image.open(io.BytesIO(buffers[1])))
    rebuilt = np.zeros((128, 192, 4), np.uint8)
    rebuilt[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
    assert np.array_equal(rebuilt, mask_overlay(synthetic.masks[2], (128, 192), 0.6))
    assert crop.shape[0] * crop.shape[1] < 128 * 192


def test_redraw_is_idempotent_and_replayed_for_new_views(synthetic, sent):
    w = ScribbleWidget(synthetic, masks=synthetic.masks, width=192)
    drag(w, [(10, 10), (50, 20), (60, 70)])
    w.handle_key_down("2")
    drag(w, [(100, 100), (120, 90)])
    sent.clear()
    w.redraw()
    first = list(sent)
    sent.clear()
    w.redraw()
    assert sent == first
    # a new browser view announces itself per layer: each layer replays its own drawing
    sent.clear()
    for layer in w.canvas.multi._canvases:
        layer._handle_frontend_event(None, {"event": "client_ready"}, [])
    replayed = b"".join(b for _, buffers in sent for b in buffers)
    assert b"\xff\xd8\xff" in replayed and b"\x89PNG" in replayed
    assert len(sent) == 4


def test_set_masks_and_set_mask(synthetic):
    w = ScribbleWidget(synthetic, width=192)
    assert all(m is None for m in w.masks)
    w.set_masks(synthetic.masks)
    assert np.array_equal(w.masks[3], synthetic.masks[3])
    w.set_mask(3, None)
    assert w.masks[3] is None
    w.set_mask(3, np.full((64, 96), 5))
    assert w.n_objects == 5
    w.set_masks(None)
    assert all(m is None for m in w.masks)


@pytest.mark.parametrize(
    "make",
    [
        lambda v: v,
        lambda v: v.frames,
        lambda v: list(v.frames),
        lambda v: v.frames[0],
    ],
    ids=["VideoSequence", "array", "list", "one-frame"],
)
def test_accepted_videos(synthetic, make):
    w = ScribbleWidget(make(synthetic), width=96)
    assert w.canvas.image_size == (64, 96)
    drag(w, [(1, 1), (50, 50)])
    assert len(w.scribbles) == 1


def test_lazy_frames(davis_root):
    video = load_sample("dog-agility", lazy=True)
    assert isinstance(video.frames, LazyFrames)
    w = ScribbleWidget(video, width=320)
    w.frame_idx = 24
    assert w.canvas.display_frame(24).shape == (180, 320, 3)


def test_add_stroke_from_code(synthetic):
    w = ScribbleWidget(synthetic, width=192)
    stroke = w.add_stroke(4, [[0.1, 0.2], [0.3, 0.4]], object_id=7)
    assert w.n_objects == 7 and w.scribbles.frames[4] == [stroke]
    with pytest.raises(BadInputError, match="normalised"):
        w.add_stroke(4, [[10, 20], [30, 40]])
    with pytest.raises(BadInputError, match="outside the video"):
        w.add_stroke(8, [[0.1, 0.2]])


def test_repr_and_save(synthetic, tmp_path):
    w = ScribbleWidget(synthetic, width=192, name="toy")
    drag(w, [(10, 10), (20, 20)])
    assert "toy" in repr(w) and "1 strokes" in repr(w)
    w.save(tmp_path / "out.json")
    assert Scribbles.load(tmp_path / "out.json", n_frames=8) == w.scribbles


def test_canvas_alone_is_reusable(synthetic):
    """The canvas has no controls: an application can wrap it in its own."""
    canvas = ScribbleCanvas(synthetic, width=192, autosave=False)
    assert canvas.children == (canvas.multi,)
    drag(canvas, [(10, 10), (20, 20)])
    assert canvas.n_strokes == 1 and canvas.annotated_frames == [0]


def test_initial_state_from_the_constructor(synthetic):
    w = ScribbleWidget(synthetic, width=192, frame_idx=3, object_id=2, opacity=0.2, brush_width=9, show_masks=False)
    assert (w.frame_idx, w.object_id, w.opacity, w.brush_width, w.show_masks) == (3, 2, 0.2, 9, False)
    assert w.frame_slider.value == 3 and w.opacity_slider.value == 0.2 and not w.masks_checkbox.value
    with pytest.raises(BadInputError, match="outside the video"):
        ScribbleWidget(synthetic, width=192, frame_idx=99)


# --------------------------------------------------------------------------- input a browser or a user gets wrong

@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_mouse_position_drops_that_point_not_the_stroke(synthetic, bad):
    w = ScribbleWidget(synthetic, width=192, autosave=False)
    w.handle_mouse_down(10, 10)
    w.handle_mouse_move(30, 30)
    w.handle_mouse_move(bad, 40)  # one broken move event ...
    w.handle_mouse_move(50, bad)
    w.handle_mouse_move(60, 60)
    w.handle_mouse_up(bad, bad)  # ... and a broken mouse-up: the stroke still ends here
    strokes = w.scribbles.frames[0]
    assert len(strokes) == 1 and np.isfinite(strokes[0].path).all()
    np.testing.assert_allclose(strokes[0].path * [192, 128], [[10, 10], [30, 30], [60, 60]])
    w.handle_mouse_down(bad, 5)  # a stroke cannot start nowhere
    assert not w.canvas.drawing and len(w.scribbles) == 1


def test_a_whole_float_frame_index_is_that_frame(synthetic):
    w = ScribbleWidget(synthetic, width=192, autosave=False, frame_idx=3.0)
    assert w.frame_idx == 3 and type(w.frame_idx) is int
    w.frame_idx = 2.0
    assert w.canvas.frame_idx == 2 and w.frame_slider.value == 2
    w.object_id = 2.0
    w.add_stroke(np.float64(1.0), [[0.5, 0.5]])
    w.clear_frame(5.0)
    assert w.scribbles.annotated_frames == [1] and w.scribbles.frames[1][0].object_id == 2


def test_a_video_sequence_made_from_a_list_of_frames(synthetic):
    from simwidgets.video import VideoSequence

    w = ScribbleWidget(VideoSequence("listed", list(synthetic.frames)), width=192, autosave=False)
    assert w.n_frames == 8 and w.canvas.name == "listed"


def test_an_extreme_strip_gets_a_bounded_canvas():
    w = ScribbleWidget(np.zeros((2, 4000, 8, 3), np.uint8), width=640, autosave=False)
    assert w.canvas.canvas_size == (2560, 640)  # not 640x320000
    drag(w, [(0, 0), (640, 2560)])
    np.testing.assert_allclose(w.scribbles.frames[0][0].path, [[0, 0], [1, 1]])
