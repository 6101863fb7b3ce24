"""The bad-input catalogue: every way of handing simwidgets unusable input, and the error
that names the problem.

Each row is ``(what is wrong, action(tmp_path), message pattern)``.  The action must raise
:class:`BadInputError` (never a bare numpy / PIL / torch exception) whose one-line message
matches the pattern.  Later capabilities add their rows here (or in a
``test_bad_input_<capability>.py`` beside it) in the same form.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from simwidgets.device import pick_device
from simwidgets.errors import BadInputError
from simwidgets.evaluation import evaluate_masks
from simwidgets.export import overlay_animation, write_masks
from simwidgets.models import SmallFCN, load_model, save_checkpoint
from simwidgets.palette import object_colour, save_indexed_png
from simwidgets.scribbles import Scribbles, Stroke
from simwidgets.video import (
    LazyFrames,
    VideoSequence,
    list_sequences,
    load_davis_sequence,
    read_image,
    read_mask,
    synthetic_video,
)

DAVIS_ROOT = Path(__file__).resolve().parent.parent / "data" / "davis"
BEAR_FRAME = DAVIS_ROOT / "JPEGImages" / "480p" / "bear" / "00000.jpg"
BEAR_MASK = DAVIS_ROOT / "Annotations" / "480p" / "bear" / "00000.png"
VIDEO = synthetic_video(n_frames=4, n_objects=2, height=24, width=32, seed=5)
T, H, W = VIDEO.masks.shape


# --------------------------------------------------------------------------- helpers

def toy_folder(tmp: Path, name: str = "toy", masks: bool = True) -> Path:
    """A valid 4-frame DAVIS folder (PNG frames, indexed masks) to break in one place."""
    frame_dir = tmp / "JPEGImages" / "480p" / name
    frame_dir.mkdir(parents=True)
    for i, frame in enumerate(VIDEO.frames):
        Image.fromarray(frame).save(frame_dir / f"{i:05d}.png")
    if masks:
        for i, mask in enumerate(VIDEO.masks):
            save_indexed_png(mask, tmp / "Annotations" / "480p" / name / f"{i:05d}.png")
    return tmp


def frame_path(root: Path, i: int, name: str = "toy") -> Path:
    return root / "JPEGImages" / "480p" / name / f"{i:05d}.png"


def mask_path(root: Path, i: int, name: str = "toy") -> Path:
    return root / "Annotations" / "480p" / name / f"{i:05d}.png"


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def copy_truncated(source: Path, target: Path, keep: float = 0.5) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    return truncate(target, keep)


def load_toy(root: Path, **kwargs):
    return load_davis_sequence(root, "toy", **kwargs)


def break_frame(tmp, i, content):
    root = toy_folder(tmp)
    frame_path(root, i).write_bytes(content)
    return load_toy(root)


def with_mask(tmp, mask: np.ndarray, i: int = 1):
    root = toy_folder(tmp)
    save_indexed_png(mask, mask_path(root, i))
    return load_toy(root)


def with_scribble_file(tmp, data, stem="001"):
    root = toy_folder(tmp)
    folder = root / "Scribbles" / "toy"
    folder.mkdir(parents=True)
    (folder / f"{stem}.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return load_toy(root)


def stroke_json(path=((0.1, 0.2), (0.3, 0.4)), object_id=1, **extra):
    return {"path": [list(p) for p in path], "object_id": object_id, "start_time": 0, "end_time": 1, **extra}


def scribble_json(frames=None, n_frames=T, **extra):
    frames = frames if frames is not None else {0: [stroke_json()]}
    return {"scribbles": [frames.get(i, []) for i in range(n_frames)], "sequence": "toy", **extra}


def from_json(data, n_frames=None):
    return Scribbles.from_json(data if isinstance(data, str) else json.dumps(data), n_frames=n_frames)


def scribbles_with_stroke():
    s = Scribbles(T, "toy")
    s.add_stroke(0, [[0.1, 0.1]], 1)
    return s


def lazy_then_read(tmp):
    root = toy_folder(tmp)
    truncate(frame_path(root, 2))
    video = load_toy(root, lazy=True)  # the first frame is fine, so this succeeds ...
    return video.frames[2]  # ... and the bad frame fails when it is decoded


def nan_checkpoint(tmp):
    model = SmallFCN(dim=8, stride=8, width=8)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    return save_checkpoint(model, tmp / "nan.pt")


def a_file(tmp: Path) -> Path:
    path = tmp / "taken"
    path.write_text("a file where a folder should be")
    return path


def session():
    from simwidgets.session import InteractiveSession

    return InteractiveSession(VIDEO.frames, model="baseline")


def saved_checkpoint(tmp):
    path = tmp / "model.pt"
    save_checkpoint(SmallFCN(dim=8, stride=8, width=8), path)
    return path


# --------------------------------------------------------------------------- catalogue

CATALOGUE = [
    # ---- folders and sequences
    ("missing DAVIS root folder", lambda tmp: load_davis_sequence(tmp / "nowhere", "bear"),
     r"not a DAVIS root: .*nowhere.*JPEGImages does not exist"),
    ("missing folder when listing sequences", lambda tmp: list_sequences(tmp / "nowhere"),
     r"not a DAVIS root: .*nowhere"),
    ("unknown sequence", lambda tmp: load_davis_sequence(DAVIS_ROOT, "zebra"),
     r"unknown sequence 'zebra' .*\(known: bear, dog-agility, tennis\)"),
    ("sequence folder without frames",
     lambda tmp: ((tmp / "JPEGImages" / "480p" / "empty").mkdir(parents=True), load_davis_sequence(tmp, "empty")),
     r"sequence 'empty' has no frames"),
    # ---- images
    ("image file missing", lambda tmp: read_image(tmp / "gone.jpg"), r"image file not found: .*gone\.jpg"),
    ("corrupt image bytes", lambda tmp: break_frame(tmp, 1, b"\x89PNG garbage" * 20),
     r"cannot decode image .*00001\.png: corrupt or truncated"),
    ("empty image file", lambda tmp: break_frame(tmp, 3, b""),
     r"cannot decode image .*00003\.png: corrupt or truncated"),
    ("truncated JPEG (real bear frame)", lambda tmp: read_image(copy_truncated(BEAR_FRAME, tmp / "bear.jpg")),
     r"cannot decode image .*bear\.jpg: corrupt or truncated"),
    ("truncated PNG frame in a sequence",
     lambda tmp: (truncate(frame_path(toy_folder(tmp), 2), 0.6), load_toy(tmp)),
     r"cannot decode image .*00002\.png: corrupt or truncated"),
    ("truncated frame of a lazy video, found when decoded", lazy_then_read,
     r"cannot decode image .*00002\.png: corrupt or truncated"),
    ("frames of mixed sizes",
     lambda tmp: (Image.fromarray(np.zeros((H + 2, W, 3), np.uint8)).save(frame_path(toy_folder(tmp), 3)), load_toy(tmp)),
     r"frames of mixed sizes: .*00003\.png is 32x26, the first frame is 32x24"),
    ("a video without frames", lambda tmp: LazyFrames([]), r"a video needs at least one frame"),
    ("frames without colour channels", lambda tmp: VideoSequence("x", VIDEO.masks.astype(np.uint8)),
     r"frames must be RGB with shape \(T, H, W, 3\); got shape \(4, 24, 32\)"),
    ("frames not uint8", lambda tmp: VideoSequence("x", VIDEO.frames.astype(np.float32)),
     r"frames must be uint8 RGB \(0\.\.255\); got dtype float32"),
    # ---- masks
    ("mask file missing", lambda tmp: read_mask(tmp / "gone.png"), r"mask file not found: .*gone\.png"),
    ("corrupt mask", lambda tmp: (mask_path(toy_folder(tmp), 0).write_bytes(b"not a png at all"), load_toy(tmp)),
     r"cannot decode mask .*00000\.png: corrupt or truncated"),
    ("truncated mask (real bear mask)", lambda tmp: read_mask(copy_truncated(BEAR_MASK, tmp / "m.png", 0.3)),
     r"cannot decode mask .*m\.png: corrupt or truncated"),
    ("mask of the wrong size on disk", lambda tmp: with_mask(tmp, np.zeros((H, W + 5), int)),
     r"mask .*00001\.png is 37x24, the frames are 32x24"),
    ("masks of the wrong size in memory", lambda tmp: VideoSequence("x", VIDEO.frames, VIDEO.masks[:, :, :-1]),
     r"masks of shape \(4, 24, 31\) do not match the video \(4, 24, 32\)"),
    ("frame-count mismatch between frames and masks",
     lambda tmp: (mask_path(toy_folder(tmp), 3).unlink(), load_toy(tmp)),
     r"frame-count mismatch in 'toy': 4 frames but 3 masks"),
    ("frame-count mismatch of masks in memory", lambda tmp: VideoSequence("x", VIDEO.frames, VIDEO.masks[:3]),
     r"masks of shape \(3, 24, 32\) do not match the video \(4, 24, 32\)"),
    ("negative object id in masks", lambda tmp: VideoSequence("x", VIDEO.frames, VIDEO.masks.astype(np.int64) - 1),
     r"masks hold a negative object id \(-1\)"),
    ("masks that are not integer ids", lambda tmp: VideoSequence("x", VIDEO.frames, VIDEO.masks * 0.5),
     r"masks must hold integer object ids; got dtype float64"),
    ("saving a negative object id", lambda tmp: save_indexed_png(np.full((3, 3), -2), tmp / "m.png"),
     r"mask values must be object ids in 0\.\.255; got -2\.\.-2"),
    ("saving an object id beyond the palette", lambda tmp: save_indexed_png(np.full((3, 3), 300), tmp / "m.png"),
     r"object ids in 0\.\.255; got 300\.\.300"),
    ("saving a 3-D mask", lambda tmp: save_indexed_png(np.zeros((2, 3, 3), int), tmp / "m.png"),
     r"a mask must be 2-D \(H, W\); got shape \(2, 3, 3\)"),
    ("saving a mask of fractional ids", lambda tmp: save_indexed_png(np.full((3, 3), 1.5), tmp / "m.png"),
     r"mask values must be integer object ids; got dtype float64"),
    ("colour of an unknown object id", lambda tmp: object_colour(-3), r"object id -3 is outside the palette"),
    # ---- scribble coordinates
    ("scribble x above 1", lambda tmp: Stroke([[0.5, 0.5], [1.2, 0.5]], 1),
     r"coordinates must be normalised to \[0, 1\] .*got values in \[0\.5, 1\.2\]"),
    ("scribble y below 0", lambda tmp: scribbles_with_stroke().add_stroke(1, [[0.5, -0.1]], 1),
     r"coordinates must be normalised to \[0, 1\] .*\[-0\.1, 0\.5\]"),
    ("scribble NaN coordinate in a file", lambda tmp: from_json(scribble_json({2: [stroke_json(((0.1, float("nan")),))]})),
     r"frame 2, stroke 0: path holds NaN or infinite coordinates"),
    ("scribble infinite coordinate", lambda tmp: Stroke([[np.inf, 0.5]], 1), r"NaN or infinite"),
    ("scribble NaN in pixel coordinates",
     lambda tmp: scribbles_with_stroke().add_pixel_stroke(0, [(np.nan, 3)], 1, height=H, width=W),
     r"NaN or infinite"),
    ("pixel stroke leaving the frame",
     lambda tmp: scribbles_with_stroke().add_pixel_stroke(0, [(3, H + 1)], 1, height=H, width=W),
     r"frame 0: stroke leaves the 32x24 frame"),
    ("scribble coordinates outside [0, 1] in a scribble file of a sequence",
     lambda tmp: with_scribble_file(tmp, scribble_json({1: [stroke_json(((1.5, 0.5),))]})),
     r"001\.json: frame 1, stroke 0: coordinates must be normalised to \[0, 1\]"),
    ("scribble path that is not pairs", lambda tmp: Stroke([[0.1, 0.2, 0.3]], 1),
     r"path must be a list of \[x, y\] pairs; got shape \(1, 3\)"),
    ("scribble path of words", lambda tmp: from_json(scribble_json({0: [stroke_json((("left", "top"),))]})),
     r"frame 0, stroke 0: path must be a list of \[x, y\] numbers"),
    # ---- scribble structure and keys
    ("unknown top-level key", lambda tmp: from_json(scribble_json(annotator="me")),
     r"unknown keys \['annotator'\]"),
    ("unknown stroke key", lambda tmp: from_json(scribble_json({1: [stroke_json(colour="red")]})),
     r"frame 1, stroke 0: unknown keys \['colour'\]"),
    ("missing scribbles list", lambda tmp: from_json({"sequence": "toy"}), r"missing the 'scribbles' list"),
    ("missing stroke path", lambda tmp: from_json(scribble_json({0: [{"object_id": 1}]})),
     r"frame 0, stroke 0: missing 'path'"),
    ("missing stroke object id", lambda tmp: from_json(scribble_json({0: [{"path": [[0.1, 0.1]]}]})),
     r"frame 0, stroke 0: missing 'object_id'"),
    ("stroke that is not an object", lambda tmp: from_json(scribble_json({0: [[0.1, 0.2]]})),
     r"frame 0, stroke 0: a stroke must be a JSON object"),
    ("frames that are not lists", lambda tmp: from_json({"scribbles": [{}, []]}),
     r"'scribbles' must be a list with one list of strokes per frame"),
    ("scribbles that are not JSON", lambda tmp: Scribbles.from_json("{'scribbles': []"), r"not valid JSON"),
    ("scribbles JSON that is not an object", lambda tmp: from_json([[], []]),
     r"scribbles must be a JSON object; got list"),
    ("scribble file missing", lambda tmp: Scribbles.load(tmp / "001.json"), r"scribble file not found: .*001\.json"),
    ("scribble file that is a folder", lambda tmp: ((tmp / "002.json").mkdir(), Scribbles.load(tmp / "002.json")),
     r"cannot read scribble file .*002\.json"),
    ("scribble file that is binary", lambda tmp: ((tmp / "b.json").write_bytes(b"\xff\xfe\x00\x9f"), Scribbles.load(tmp / "b.json")),
     r"scribble file .*b\.json is not UTF-8 text"),
    # ---- object ids
    ("negative object id in a stroke", lambda tmp: from_json(scribble_json({0: [stroke_json(object_id=-1)]})),
     r"frame 0, stroke 0: object_id -1 is outside 0\.\.255 \(0 = background\)"),
    ("object id beyond the palette", lambda tmp: Stroke([[0.1, 0.1]], 256), r"object_id 256 is outside 0\.\.255"),
    ("fractional object id", lambda tmp: from_json(scribble_json({0: [stroke_json(object_id=1.5)]})),
     r"object_id must be an integer; got 1\.5"),
    ("object id given as text", lambda tmp: Stroke([[0.1, 0.1]], "1"), r"object_id must be an integer; got '1'"),
    ("object id given as a boolean", lambda tmp: Stroke([[0.1, 0.1]], True), r"object_id must be an integer; got True"),
    ("unknown object id for this video",
     lambda tmp: Scribbles.from_dict(scribble_json({3: [stroke_json(object_id=9)]})).check_object_ids(VIDEO.object_ids),
     r"frame 3: unknown object id 9 \(this video has objects \[1, 2\]\)"),
    # ---- frame counts and frame indices
    ("scribble file with the wrong frame count",
     lambda tmp: with_scribble_file(tmp, scribble_json(n_frames=T + 2)),
     r"001\.json: frame-count mismatch: the scribbles describe 6 frames, the video has 4"),
    ("scribbles with the wrong frame count", lambda tmp: from_json(scribble_json(n_frames=3), n_frames=T),
     r"frame-count mismatch: the scribbles describe 3 frames, the video has 4"),
    ("merging rounds of different frame counts", lambda tmp: scribbles_with_stroke().merge(Scribbles(T + 1)),
     r"frame-count mismatch: cannot merge scribbles of 5 frames into 4 frames"),
    ("stroke on a frame outside the video", lambda tmp: scribbles_with_stroke().add_stroke(T, [[0.1, 0.1]], 1),
     r"frame_idx 4 is outside the video \(0\.\.3\)"),
    ("negative frame index", lambda tmp: scribbles_with_stroke().rasterize(-1, H, W),
     r"frame_idx -1 is outside the video \(0\.\.3\)"),
    ("frame index that is not a whole number", lambda tmp: scribbles_with_stroke().pop_stroke(1.5),
     r"frame_idx must be an integer; got 1\.5"),
    # ---- empty scribbles
    ("empty stroke path", lambda tmp: from_json(scribble_json({0: [stroke_json(path=())]})),
     r"frame 0, stroke 0: empty path \(a stroke needs at least one point\)"),
    ("empty pixel stroke", lambda tmp: scribbles_with_stroke().add_pixel_stroke(0, [], 1, height=H, width=W),
     r"empty path"),
    ("empty scribbles list (no frames)", lambda tmp: from_json({"scribbles": [], "sequence": "toy"}),
     r"the 'scribbles' list is empty \(no frames\)"),
    ("scribbles for zero frames", lambda tmp: Scribbles(0), r"Scribbles needs n_frames >= 1; got 0"),
    ("removing a stroke from an empty frame", lambda tmp: scribbles_with_stroke().pop_stroke(2),
     r"frame 2 has no stroke to remove"),
    # ---- rasterising
    ("zero brush width", lambda tmp: scribbles_with_stroke().rasterize(0, H, W, brush_width=0),
     r"brush_width must be positive; got 0"),
    ("NaN brush width", lambda tmp: scribbles_with_stroke().rasterize(0, H, W, brush_width=float("nan")),
     r"brush_width must be positive; got nan"),
    ("rasterising into an empty frame", lambda tmp: scribbles_with_stroke().rasterize(0, 0, W),
     r"cannot rasterise into a 32x0 frame"),
    # ---- synthetic videos, devices, checkpoints
    ("synthetic video too small", lambda tmp: synthetic_video(height=4),
     r"synthetic_video needs .* at least 8x8 pixels; got .*128x4"),
    ("synthetic video with negative objects", lambda tmp: synthetic_video(n_objects=-1),
     r"n_objects >= 0 .*got n_frames=12, n_objects=-1"),
    ("unknown device", lambda tmp: pick_device("gpu"), r"unknown device 'gpu'"),
    ("truncated checkpoint", lambda tmp: load_model(truncate(saved_checkpoint(tmp))),
     r"cannot read checkpoint .*model\.pt: corrupt, truncated"),
    ("checkpoint that is not one", lambda tmp: (torch.save({"a": 1}, tmp / "x.pt"), load_model(tmp / "x.pt")),
     r"x\.pt is not a simwidgets embedding checkpoint"),
    ("a folder given as a checkpoint", lambda tmp: load_model(tmp), r"is a folder; a checkpoint is a \.pt file"),
    ("checkpoint of NaN weights", lambda tmp: load_model(nan_checkpoint(tmp)),
     r"NaN or infinite weights in \d+ tensor\(s\) .*training diverged"),
    # ---- scores, exports, sessions
    ("scoring zero frames", lambda tmp: evaluate_masks(np.zeros((0, H, W), np.uint8), np.zeros((0, H, W), np.uint8),
                                                       object_ids=[1]),
     r"pred has no pixels to score \(shape \(0, 24, 32\)\)"),
    ("exporting masks into a file", lambda tmp: write_masks(VIDEO.masks, a_file(tmp)),
     r"mask folder .*taken is a file; give a folder"),
    ("exporting masks under a file", lambda tmp: write_masks(VIDEO.masks, a_file(tmp) / "masks"),
     r"mask folder .*masks lies under .*taken, which is a file"),
    ("a GIF under a file", lambda tmp: overlay_animation(VIDEO.frames, VIDEO.masks, a_file(tmp) / "a.gif"),
     r"animation .*a\.gif lies under .*taken, which is a file"),
    ("a fractional frame index", lambda tmp: session().add_stroke(1.5, [[0.5, 0.5]], 1),
     r"frame_idx must be an integer; got 1\.5"),
    ("a NaN frame index", lambda tmp: session().add_stroke(float("nan"), [[0.5, 0.5]], 1),
     r"frame_idx must be an integer; got nan"),
    ("a text object id", lambda tmp: session().add_stroke(0, [[0.5, 0.5]], "1"),
     r"frame 0: object id must be an integer; got '1'"),
    ("a mask of floats for a session", lambda tmp: session().add_mask(0, VIDEO.masks[0].astype(float)),
     r"mask for frame 0 must hold integer object ids; got dtype float64"),
    ("a mask with id 300 for a session", lambda tmp: session().add_mask(0, np.full((H, W), 300)),
     r"mask for frame 0 holds id 300, outside -1\.\.255"),
]


@pytest.mark.parametrize("row, action, message", CATALOGUE, ids=[row for row, _, _ in CATALOGUE])
def test_bad_input_is_named(tmp_path, row, action, message):
    with pytest.raises(BadInputError, match=message) as caught:
        action(tmp_path)
    text = str(caught.value)
    assert "\n" not in text, f"{row}: the message should be one line: {text!r}"
    assert isinstance(caught.value, ValueError)  # generic `except ValueError` still works


def test_catalogue_rows_are_unique():
    rows = [row for row, _, _ in CATALOGUE]
    assert len(rows) == len(set(rows))


def test_the_toy_folder_itself_is_valid(tmp_path):
    """The rows above break one thing each in a folder that otherwise loads."""
    video = load_toy(toy_folder(tmp_path))
    np.testing.assert_array_equal(video.frames, VIDEO.frames)
    np.testing.assert_array_equal(video.masks, VIDEO.masks)
    assert from_json(scribble_json(), n_frames=T).annotated_frames == [0]
