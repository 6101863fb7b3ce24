"""Bad-input catalogue, widget rows: each bad input raises BadInputError with a sentence that
names the problem (or, for a corrupt autosave, warns and moves the file aside)."""
import numpy as np
import pytest

from simwidgets.errors import BadInputError
from simwidgets.scribbles import Scribbles
from simwidgets.video import synthetic_video
from simwidgets.widgets import AutosaveWarning, ScribbleWidget

VIDEO = synthetic_video(n_frames=4, n_objects=2, height=32, width=48, seed=1)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def widget(**kwargs):
    return ScribbleWidget(VIDEO, width=96, autosave=False, **kwargs)


def _set(name, value):
    def run():
        setattr(widget(), name, value)
    return run


CATALOGUE = [
    # (row, what is done, message fragment)
    ("frames of mixed sizes",
     lambda: ScribbleWidget([np.zeros((32, 48, 3), np.uint8), np.zeros((30, 48, 3), np.uint8)], autosave=False),
     r"mixed sizes: frame 0 has shape \(32, 48, 3\), frame 1 has shape \(30, 48, 3\)"),
    ("frames not uint8", lambda: ScribbleWidget(VIDEO.frames.astype(np.float32), autosave=False), "uint8"),
    ("frames without colour channels", lambda: ScribbleWidget(VIDEO.masks, autosave=False), r"\(T, H, W, 3\)"),
    ("an empty list of frames", lambda: ScribbleWidget([], autosave=False), "at least one frame"),
    ("masks of another size", lambda: widget(masks=np.zeros((4, 30, 48), int)), "do not match the video"),
    ("masks of another frame count", lambda: widget(masks=np.zeros((5, 32, 48), int)), "do not match the video"),
    ("masks that are not ids", lambda: widget(masks=np.zeros((4, 32, 48), float)), "integer object ids"),
    ("masks with an id outside the palette", lambda: widget(masks=np.full((4, 32, 48), 300)), "300 is outside the palette"),
    ("one mask of another size", lambda: widget().set_mask(0, np.zeros((10, 10), int)), "does not match the frames"),
    ("an object id outside the palette", _set("object_id", 256), r"object_id 256 is outside 0..255"),
    ("a negative object id", _set("object_id", -1), r"object_id -1 is outside 0..255"),
    ("a frame index outside the video", _set("frame_idx", 4), r"frame_idx 4 is outside the video \(0..3\)"),
    ("an opacity above 1", _set("opacity", 1.5), "opacity must be within 0..1"),
    ("a zero brush", _set("brush_width", 0), "brush_width"),
    ("an unknown tool", _set("tool", "pen"), "tool must be one of brush, eraser; got 'pen'"),
    ("scribbles of another video", lambda: widget(scribbles=Scribbles(7)), "frame-count mismatch"),
    ("scribbles of a wrong type", lambda: widget(scribbles=[1, 2]), "Scribbles, a DAVIS dict or a JSON path"),
    ("a scribble file that does not exist", lambda: widget(scribbles="missing.json"), "not found"),
    ("a canvas narrower than 16 pixels", lambda: ScribbleWidget(VIDEO, width=10, autosave=False), "at least 16"),
    ("a stroke outside [0, 1] from code", lambda: widget().add_stroke(0, [[2.0, 0.5]]), r"normalised to \[0, 1\]"),
    ("an on_change that is not callable", lambda: widget().on_change(42), "callable"),
    # found by a hostile review: a wrong type reads like a wrong value (never a bare TraitError)
    ("a fractional frame index", _set("frame_idx", 2.5), r"frame_idx must be an integer; got 2\.5"),
    ("a frame index given as text", _set("frame_idx", "2"), r"frame_idx must be an integer; got '2'"),
    ("a frame index given as None", _set("frame_idx", None), r"frame_idx must be an integer; got None"),
    ("a fractional object id", _set("object_id", 1.5), r"object_id must be an integer; got 1\.5"),
    ("a NaN brush width", _set("brush_width", float("nan")), r"brush_width must be finite; got nan"),
    ("an opacity given as text", _set("opacity", "0.5"), r"opacity must be a number; got '0\.5'"),
    ("show_masks given as text", _set("show_masks", "no"), r"show_masks must be True or False; got 'no'"),
    ("a tool that is not text", _set("tool", 3), r"tool must be one of brush, eraser; got 3"),
    ("a generator of frames", lambda: ScribbleWidget((f for f in VIDEO.frames), autosave=False),
     r"frames must be a \(T, H, W, 3\) uint8 array or a list of \(H, W, 3\) frames; got generator"),
    ("a list of frames that are not images", lambda: ScribbleWidget([None, None], autosave=False),
     r"frames must be RGB with shape \(T, H, W, 3\); got shape \(2,\)"),
]


@pytest.mark.parametrize("row, action, message", CATALOGUE, ids=[row[0] for row in CATALOGUE])
def test_bad_input_is_named(row, action, message):
    with pytest.raises(BadInputError, match=message):
        action()


def test_an_autosave_path_that_is_a_folder(tmp_path):
    with pytest.raises(BadInputError, match="is a folder"):
        ScribbleWidget(VIDEO, autosave=tmp_path)


def test_a_corrupt_autosave_warns_and_is_moved_aside(tmp_path):
    path = tmp_path / "video.scribbles.json"
    path.write_bytes(b"\x89PNG not json at all")
    with pytest.warns(AutosaveWarning, match="moved to"):
        w = ScribbleWidget(VIDEO, autosave=path)
    assert len(w.scribbles) == 0
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("video.scribbles.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == b"\x89PNG not json at all"
