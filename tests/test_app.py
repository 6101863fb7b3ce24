"""The segmentation app driven through its public handlers (the calls the browser makes):
paint with the mouse, press Propagate, click the confidence strip, ask for a suggestion,
undo and re-propagate, change options, export, and survive a failing round.  Real data: a
short clip of bear at a quarter of 480p, so a round takes a second or two."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from simwidgets.apps.segmentation import STRIP_HEIGHT, SegmentationApp
from simwidgets.export import overlay_animation, overlay_video
from simwidgets.errors import BadInputError
from simwidgets.video import load_sample, read_mask, synthetic_video

from test_session import shrink_clip  # noqa: E402  (same tests folder)

ANNOTATED = 4  # the clip's frame with the human scribble (bear frame 39)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # autosave and exports default to the current folder


@pytest.fixture(scope="module")
def clip(davis_root):
    return shrink_clip(load_sample("bear", lazy=True), 35, 45, 4)


def image_to_canvas(app, rows, cols):
    ch, cw = app.canvas.canvas_size
    h, w = app.canvas.image_size
    return [((c + 0.5) * cw / w, (r + 0.5) * ch / h) for r, c in zip(rows, cols)]


def drag(app, points):
    canvas = app.canvas
    canvas.handle_mouse_down(*points[0])
    for point in points[1:]:
        canvas.handle_mouse_move(*point)
    canvas.handle_mouse_up(*points[-1])


def paint(app, clip, frame_idx, value, object_id, n=4, seed=0):
    """Dabs (one-point strokes) on ``n`` pixels where the truth is ``value``."""
    rows, cols = np.nonzero(clip.masks[frame_idx] == value)
    pick = np.random.default_rng(seed).choice(len(rows), n, replace=False)
    app.canvas.frame_idx = frame_idx
    app.canvas.object_id = object_id
    for point in image_to_canvas(app, rows[pick], cols[pick]):
        drag(app, [point])


@pytest.fixture
def app(clip):
    return SegmentationApp(clip, model="baseline", width=320, autosave=False, background=False)


@pytest.fixture
def painted(app, clip):
    """The bear painted as object 1 (a drag along its body) plus background dabs."""
    app.canvas.frame_idx = ANNOTATED
    rows, cols = np.nonzero(clip.masks[ANNOTATED] == 1)
    order = np.argsort(cols)
    body = image_to_canvas(app, rows[order][:: max(1, len(order) // 6)], cols[order][:: max(1, len(order) // 6)])
    app.canvas.object_id = 1
    drag(app, body[1:-1])
    paint(app, clip, ANNOTATED, 0, 0, n=12)
    return app


def test_initial_state(app, clip):
    assert app.propagate_button.disabled is False
    assert app.suggest_button.disabled and app.export_button.disabled
    assert app.result is None and app.masks is None and not app.busy
    assert app.strip_image.shape == (STRIP_HEIGHT, app.canvas.canvas_size[1], 3)
    assert "Propagate" in app.status.value
    assert app.canvas.masks == [None] * clip.n_frames


def test_propagate_without_strokes_says_so(app):
    app.propagate_button.click()
    assert "no strokes yet" in app.status.value
    assert app.result is None and not app.busy and app.propagate_button.disabled is False


def test_propagate_shows_masks_on_every_frame(painted, clip):
    app = painted
    busy, stages = [], []
    app.observe(lambda change: busy.append(change["new"]), names="busy")
    app.progress.observe(lambda change: stages.append((app.progress.description, change["new"])), names="value")
    before = app.strip_image.copy()
    app.propagate_button.click()
    assert busy == [True, False]
    assert {stage for stage, _ in stages} == {"embedding", "propagating"}
    assert max(value for _, value in stages) == 1.0
    assert app.progress.layout.visibility == "hidden"
    result = app.result
    assert result.masks.shape == clip.masks.shape
    for frame_idx in range(clip.n_frames):  # the overlay of every frame is the new mask
        assert np.array_equal(app.canvas.masks[frame_idx], result.masks[frame_idx])
    assert (result.masks[7] == 1).any()  # another frame than the painted one got the bear
    assert "round 1" in app.status.value
    assert not app.suggest_button.disabled and not app.export_button.disabled
    # the strip now has confidence bars, and they follow the entropy
    assert not np.array_equal(app.strip_image, before)
    heights = [(app.strip_image[_bar_rows(), _columns(app, f)].sum(axis=(1, 2)) < 235 * 3 * _columns(app, f).size).sum()
               for f in range(clip.n_frames)]
    assert heights[int(np.argmax(result.entropy))] == max(heights)


def _bar_rows():
    return slice(4, STRIP_HEIGHT)


def _columns(app, frame_idx):
    n, width = app.session.n_frames, app.strip.width
    columns = np.minimum((np.arange(width) * n) // width, n - 1)
    inner = np.flatnonzero(columns == frame_idx)
    return inner[1:-1]  # the outermost columns may carry the current-frame marker


def test_strip_click_shows_the_frame(app, clip):
    width = app.strip.width
    app.handle_strip_click(width - 1, 5)
    assert app.frame_idx == clip.n_frames - 1
    app.handle_strip_click(0, 5)
    assert app.frame_idx == 0
    x = (6 + 0.5) * width / clip.n_frames
    app.handle_strip_click(x, 10)
    assert app.frame_idx == 6
    # the current frame is marked black, frames with strokes orange
    assert (app.strip_image[:, _columns(app, 6)[0] - 1] == 0).all() or (app.strip_image[:, _columns(app, 6)[-1] + 1] == 0).all()


def test_annotated_frames_marked_on_strip(painted):
    app = painted
    app.canvas.frame_idx = 0
    orange = (app.strip_image[:4] == (230, 85, 13)).all(axis=(0, 2))
    columns = np.minimum((np.arange(app.strip.width) * app.session.n_frames) // app.strip.width, app.session.n_frames - 1)
    assert set(columns[orange]) == {ANNOTATED}


def test_suggest_undo_and_correct(painted, clip):
    app = painted
    app.propagate_button.click()
    app.suggest_button.click()
    suggested = app.frame_idx
    assert suggested != ANNOTATED and 0 <= suggested < clip.n_frames
    assert suggested == app.session.suggest_frame()
    assert f"suggested frame {suggested}" in app.status.value
    # corrections on the suggested frame, the last one undone
    paint(app, clip, suggested, 0, 0, n=3, seed=1)
    assert app.canvas.undo()
    paint(app, clip, suggested, 1, 1, n=3, seed=2)
    app.propagate_button.click()
    assert app.session.scribbles == app.canvas.scribbles  # the undone stroke is not there
    assert len(app.session.scribbles.frames[suggested]) == 5
    record = app.session.history[-1]
    assert record.round == 2 and record.frames == [suggested] and record.n_strokes == 5
    assert record.n_embedded == 0  # the video was embedded once, in round 1
    # a stroke erased and the round re-run: the session follows the canvas again
    app.canvas.clear_frame(suggested)
    app.propagate_button.click()
    assert app.session.scribbles == app.canvas.scribbles
    assert app.session.history[-1].frames == [suggested]


def test_options_apply_to_the_next_round(painted):
    app = painted
    app.temporal_checkbox.value = False
    app.top_k_slider.value = 5
    app.window_slider.value = 3
    app.propagate_button.click()
    config = app.session.config
    assert (config.temporal, config.top_k, config.window) == (False, 5, 3)
    assert config.temperature == pytest.approx(app.temperature_slider.value)


def test_exports(painted, clip, tmp_path):
    app = painted
    app.export_button.click()  # disabled state is cosmetic: a click before a round explains itself
    assert "press Propagate first" in app.status.value
    app.propagate_button.click()
    app.export_path.value = str(tmp_path / "out")
    app.export_button.click()
    written = sorted((tmp_path / "out").glob("*.png"))
    assert [p.name for p in written] == [f"{i:05d}.png" for i in range(clip.n_frames)]
    for i, path in enumerate(written):
        with Image.open(path) as image:
            assert image.mode == "P"
        assert np.array_equal(read_mask(path), app.result.masks[i])
    app.export_format.value = "GIF overlay"
    assert app.export_path.value.endswith("_overlay.gif")  # the path follows the format
    app.export_path.value = str(tmp_path / "anim.gif")
    app.export_button.click()
    with Image.open(tmp_path / "anim.gif") as gif:
        assert gif.n_frames == clip.n_frames and gif.size == (480, 270)
        gif.seek(ANNOTATED)
        frame = np.asarray(gif.convert("RGB")).astype(int)
    # the bear is tinted red (DAVIS object 1), the background keeps its colours
    bear = np.asarray(Image.fromarray(app.result.masks[ANNOTATED]).resize((480, 270), Image.NEAREST)) == 1
    assert (frame[bear, 0] - frame[bear, 1]).mean() > (frame[~bear, 0] - frame[~bear, 1]).mean() + 30
    assert "anim.gif" in app.status.value


def test_coco_and_mp4_exports_read_back(painted, clip, tmp_path):
    """COCO run-length JSON decodes (pycocotools) to exactly the masks; the MP4 decodes
    (PyAV) to every frame, with the object tinted where the masks say."""
    import av
    from pycocotools.coco import COCO

    from simwidgets.export import read_coco

    app = painted
    app.propagate_button.click()
    app.export_format.value = "COCO RLE"
    app.export_path.value = str(tmp_path / "masks.json")
    app.export_button.click()
    assert np.array_equal(read_coco(tmp_path / "masks.json"), app.result.masks)
    coco = COCO(str(tmp_path / "masks.json"))
    assert len(coco.getImgIds()) == clip.n_frames and coco.getCatIds() == [1]
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[ANNOTATED]))[0]
    assert np.array_equal(coco.annToMask(ann).astype(bool), app.result.masks[ANNOTATED] == 1)
    app.export_format.value = "MP4 overlay"
    app.export_path.value = str(tmp_path / "overlay.mp4")
    app.export_button.click()
    with av.open(str(tmp_path / "overlay.mp4")) as video:
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    height, width = clip.frames.shape[1:3]
    assert len(frames) == clip.n_frames and frames[0].shape[:2] == (height - height % 2, width - width % 2)
    frame = frames[ANNOTATED].astype(int)
    bear = app.result.masks[ANNOTATED][: frame.shape[0], : frame.shape[1]] == 1
    assert (frame[bear, 0] - frame[bear, 1]).mean() > (frame[~bear, 0] - frame[~bear, 1]).mean() + 30
    assert "overlay.mp4" in app.status.value


def test_imported_masks_become_references(clip, tmp_path):
    """A folder of masks named by frame number (here: the true mask of one frame, from
    another tool) is a reference like a stroke: that frame comes out as given."""
    from simwidgets.palette import save_indexed_png

    folder = tmp_path / "given"
    folder.mkdir()
    save_indexed_png(clip.masks[3], folder / "00003.png")
    app = SegmentationApp(clip, model="baseline", autosave=False, background=False)
    app.import_path.value = str(folder)
    app.import_button.click()
    assert "frames 3" in app.status.value
    app.propagate_button.click()
    assert np.mean(app.result.masks[3] == clip.masks[3]) > 0.97  # cells are clamped; pixels upsampled
    save_indexed_png(clip.masks[0], folder / "00099.png")
    app.import_button.click()  # a mask for a frame the video does not have
    assert "for frame 99; the video has frames 0.." in app.status.value


def test_failed_round_leaves_the_widget_consistent(painted, clip, monkeypatch):
    app = painted
    app.propagate_button.click()
    masks_before = [m.copy() for m in app.canvas.masks]
    result_before = app.result
    original = app.session.propagate

    def failing(callback=None, **kwargs):
        callback("propagating", 3, 10)  # fail half way through
        raise RuntimeError("out of memory")

    monkeypatch.setattr(app.session, "propagate", failing)
    paint(app, clip, ANNOTATED, 0, 0, n=2, seed=5)
    app.propagate_button.click()
    assert "propagation failed" in app.status.value and "out of memory" in app.status.value
    assert not app.busy and app.propagate_button.disabled is False and not app.export_button.disabled
    assert app.progress.layout.visibility == "hidden"
    assert app.result is result_before
    assert all(np.array_equal(a, b) for a, b in zip(app.canvas.masks, masks_before))
    app.export_format.value = "GIF overlay"  # a later, different error replaces the message
    app.export_path.value = "overlay.mp4"
    app.export_button.click()
    assert "give a .gif path" in app.status.value and "out of memory" not in app.status.value
    monkeypatch.setattr(app.session, "propagate", original)
    app.propagate_button.click()  # and the next round works, with the new strokes
    assert app.session.n_rounds == 2 and "round 2" in app.status.value


def test_busy_app_refuses_a_second_round(painted):
    app = painted
    app.busy = True
    with pytest.raises(BadInputError, match="already running"):
        app.propagate()
    app.busy = False


def test_long_video_strip(tmp_path):
    """More frames than strip columns: every column maps to a frame, the marker still shows."""
    video = synthetic_video(n_frames=700, n_objects=1, height=8, width=8, seed=0)
    app = SegmentationApp(video, model="baseline", width=320, autosave=False)
    app.frame_idx = 699
    assert (app.strip_image[:, -1] == 0).all()
    app.handle_strip_click(319.9, 3)  # the last column holds frames 698 and 699
    assert app.frame_idx in (698, 699)
    app.handle_strip_click(160, 3)
    assert app.frame_idx == 350


def test_overlay_animation_bad_input(clip, tmp_path):
    with pytest.raises(BadInputError, match="GIF"):
        overlay_animation(clip.frames, clip.masks, tmp_path / "a.mp4")
    with pytest.raises(BadInputError, match="give a .mp4 path"):
        overlay_video(clip.frames, clip.masks, tmp_path / "a.gif")
    with pytest.raises(BadInputError, match="frames but"):
        overlay_animation(clip.frames, clip.masks[:3], tmp_path / "a.gif")
    with pytest.raises(BadInputError, match="fps"):
        overlay_animation(clip.frames, clip.masks, tmp_path / "a.gif", fps=0)


def test_app_continues_an_existing_session(clip):
    from simwidgets.session import InteractiveSession

    session = InteractiveSession(clip, model="baseline")
    session.add_scribbles(clip.scribbles["001"])
    first = session.propagate()
    app = SegmentationApp(clip, session=session, width=320, autosave=False)
    assert app.session is session and app.canvas.scribbles == session.scribbles
    assert np.array_equal(app.canvas.masks[3], first.masks[3])  # the session's masks are the overlay
    assert not app.suggest_button.disabled and not app.export_button.disabled
    paint(app, clip, 8, 0, 0, n=3)
    app.propagate()
    assert session.n_rounds == 2 and session.history[-1].n_embedded == 0
    assert session.history[-1].frames == [8]
    with pytest.raises(BadInputError, match="the session is for a 10-frame"):
        SegmentationApp(clip.frames[:5], session=session, autosave=False)
    with pytest.raises(BadInputError, match="must be an InteractiveSession"):
        SegmentationApp(clip, session="nope", autosave=False)


def test_the_button_runs_the_round_in_the_background_with_a_preview(clip):
    """Propagate (background mode, the default): the frame on screen shows a preview from
    the strokes alone before the round ends, the kernel is free meanwhile, and the final
    masks replace the preview."""
    app = SegmentationApp(clip, model="baseline", width=320, autosave=False)
    assert app.background
    paint(app, clip, ANNOTATED, 1, 0)
    paint(app, clip, ANNOTATED, 0, 0, n=2, seed=3)
    app.canvas.frame_idx = 7
    release = threading.Event()
    seen = {}
    original = app.session.propagate

    def slow(callback=None, **kwargs):
        seen["preview"] = None if app.canvas.masks[7] is None else app.canvas.masks[7].copy()
        release.wait(30)  # the round is "long": the test thread goes on meanwhile
        return original(callback=callback, **kwargs)

    app.session.propagate = slow
    app.propagate_button.click()
    assert app.busy and not app.cancel_button.disabled and app.propagate_button.disabled
    app.canvas.frame_idx = 3  # the widget is usable while the round runs
    release.set()
    app.wait(120)
    assert not app.busy and app.session.n_rounds == 1
    preview = seen["preview"]
    assert preview is not None and preview.shape == clip.masks[7].shape
    assert np.mean((preview > 0) == (clip.masks[7] > 0)) > 0.8  # the bear, roughly, at once
    assert np.array_equal(app.canvas.masks[7], app.result.masks[7])  # the round's masks replaced it


def test_the_round_streams_each_frame_in_as_it_is_final(clip):
    """While the round runs, each frame's final mask reaches the canvas as soon as it is
    known, once per frame: the user sees the video fill in, and the last mask shown is the
    round's."""
    app = SegmentationApp(clip, model="baseline", width=320, autosave=False)
    paint(app, clip, ANNOTATED, 1, 0)
    paint(app, clip, ANNOTATED, 0, 0, n=2, seed=3)
    shown = []
    original = app.canvas.set_mask

    def logging_set_mask(frame_idx, mask):
        shown.append((frame_idx, None if mask is None else np.array(mask), app.busy))
        original(frame_idx, mask)

    app.canvas.set_mask = logging_set_mask
    app.start_propagation()
    app.wait(120)
    assert not app.busy and app.session.n_rounds == 1
    during = [(f, m) for f, m, busy in shown if busy]
    preview_frame = during[0][0]  # the preview of the frame on screen comes first
    streamed = during[1:]
    assert sorted(f for f, _ in streamed) == list(range(clip.n_frames))  # every frame, once
    for frame_idx, mask in streamed:
        assert np.array_equal(mask, app.result.masks[frame_idx])
    assert preview_frame == app.canvas.frame_idx


def test_cancel_leaves_the_session_as_it_was(clip):
    app = SegmentationApp(clip, model="baseline", width=320, autosave=False)
    paint(app, clip, ANNOTATED, 1, 0)
    app.propagate()  # round 1, in the calling thread
    first = app.result
    masks_before = [m.copy() for m in app.canvas.masks]
    paint(app, clip, ANNOTATED, 0, 0, n=2, seed=5)
    started = threading.Event()
    original = app._on_progress

    def on_progress(stage, done, total):
        started.set()
        time.sleep(0.05)
        original(stage, done, total)

    app._on_progress = on_progress
    app.start_propagation()
    assert started.wait(60)
    app.cancel()
    app.wait(120)
    assert not app.busy and "cancelled" in app.status.value
    assert app.session.n_rounds == 1 and app.result is first
    assert all(np.array_equal(a, b) for a, b in zip(app.canvas.masks, masks_before))  # the preview is gone
    app._on_progress = original
    app.propagate()  # the strokes drawn before the cancelled round count now
    assert app.session.n_rounds == 2 and app.session.history[-1].frames == [ANNOTATED]
