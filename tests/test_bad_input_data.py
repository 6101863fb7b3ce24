"""Bad-input catalogue, data-layer rows found by a hostile-but-realistic review: DAVIS
folders, masks and scribble files that are wrong in a way a real user's data can be.

Rows have the form of :mod:`tests.test_bad_input`: ``(what is wrong, action(tmp_path),
message pattern)``; the action must raise :class:`BadInputError` with a one-line message.
Folders and files that may not be read are simulated (the tests run as root, whom
``chmod`` does not stop) by making the call that reads them raise ``PermissionError``.
Below the catalogue, the inputs that are valid and must be read right (frame order,
pairing of masks with frames by number, 16-bit binary masks).
"""
from __future__ import annotations

import builtins
import contextlib
import json
import os
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image

from simwidgets.errors import BadInputError
from simwidgets.palette import save_indexed_png
from simwidgets.scribbles import Scribbles, Stroke
from simwidgets.video import VideoSequence, list_sequences, load_davis_sequence, synthetic_video

VIDEO = synthetic_video(n_frames=4, n_objects=2, height=24, width=32, seed=5)
T, H, W = VIDEO.masks.shape
NESTED = "[" * 100_000 + "]" * 100_000


# --------------------------------------------------------------------------- helpers

def toy_folder(tmp: Path, name: str = "toy", frame_names=None, mask_names=None, masks=None) -> Path:
    """A DAVIS folder of VIDEO's frames (PNG) and masks, under the file names given."""
    frame_names = frame_names or [f"{i:05d}.png" for i in range(T)]
    mask_names = [f"{i:05d}.png" for i in range(T)] if mask_names is None else mask_names
    masks = VIDEO.masks if masks is None else masks
    frame_dir = tmp / "JPEGImages" / "480p" / name
    frame_dir.mkdir(parents=True)
    for frame, file_name in zip(VIDEO.frames, frame_names):
        Image.fromarray(frame).save(frame_dir / file_name)
    for mask, file_name in zip(masks, mask_names):
        save_indexed_png(mask, tmp / "Annotations" / "480p" / name / file_name)
    return tmp


def load_toy(root: Path, **kwargs):
    return load_davis_sequence(root, "toy", **kwargs)


def save_16bit(mask: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint16)).save(path)


def with_16bit_masks(tmp, masks):
    root = toy_folder(tmp, mask_names=[])
    for i, mask in enumerate(masks):
        save_16bit(mask, root / "Annotations" / "480p" / "toy" / f"{i:05d}.png")
    return load_toy(root)


@contextlib.contextmanager
def listing_denied(folder: Path):
    """``folder`` may not be listed, as for a folder of mode 0o000 (``Path.iterdir``)."""
    original = Path.iterdir

    def iterdir(self):
        if Path(self) == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return original(self)

    with mock.patch.object(Path, "iterdir", iterdir):
        yield


@contextlib.contextmanager
def reading_denied(path: Path):
    """``path`` may not be opened, as for a file of mode 0o000 (``open`` and ``Path.read_text``)."""
    original_open, original_read = builtins.open, Path.read_text

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file) == path:
            raise PermissionError(13, "Permission denied", str(file))
        return original_open(file, *args, **kwargs)

    def read_text(self, *args, **kwargs):
        if Path(self) == path:
            raise PermissionError(13, "Permission denied", str(self))
        return original_read(self, *args, **kwargs)

    with mock.patch.object(builtins, "open", guarded_open), mock.patch.object(Path, "read_text", read_text):
        yield


def denied_listing(relative: str, action=load_toy):
    def run(tmp):
        root = toy_folder(tmp)
        scribble_dir = root / "Scribbles" / "toy"
        scribble_dir.mkdir(parents=True)
        Scribbles(T, "toy").save(scribble_dir / "001.json")
        with listing_denied(root / relative):
            return action(root)
    return run


def denied_reading(relative: str):
    def run(tmp):
        root = toy_folder(tmp)
        with reading_denied(root / relative):
            return load_toy(root)
    return run


def denied_scribble_file(path: Path):
    Scribbles(T).save(path)
    with reading_denied(path):
        return Scribbles.load(path)


def scribble_file(tmp, text: str):
    (tmp / "001.json").write_text(text)
    return Scribbles.load(tmp / "001.json")


def stroke_json(**extra):
    return {"path": [[0.1, 0.2]], "object_id": 1, "start_time": 0, "end_time": 1, **extra}


def from_json(stroke):
    return Scribbles.from_json(json.dumps({"scribbles": [[stroke], []], "sequence": "toy"}))


def symlink_loop(relative: str):
    def run(tmp):
        root = toy_folder(tmp, name="real")
        loop = root / relative
        loop.parent.mkdir(parents=True, exist_ok=True)
        if relative.startswith("Annotations"):
            (root / "JPEGImages" / "480p" / "loop").symlink_to(root / "JPEGImages" / "480p" / "real")
        loop.symlink_to(loop.name)  # a link to itself
        return load_davis_sequence(root, "loop")
    return run


# --------------------------------------------------------------------------- catalogue

CATALOGUE = [
    # ---- folders that cannot be read: never "unknown", never silently without masks
    ("frame folder that may not be listed", denied_listing("JPEGImages/480p/toy"),
     r"cannot read frame folder .*JPEGImages/480p/toy: permission denied"),
    ("DAVIS folder that may not be listed", denied_listing("JPEGImages/480p", list_sequences),
     r"cannot read DAVIS folder .*JPEGImages/480p: permission denied"),
    ("mask folder that may not be listed", denied_listing("Annotations/480p/toy"),
     r"cannot read mask folder .*Annotations/480p/toy: permission denied"),
    ("scribble folder that may not be listed", denied_listing("Scribbles/toy"),
     r"cannot read scribble folder .*Scribbles/toy: permission denied"),
    ("frame that may not be read", denied_reading("JPEGImages/480p/toy/00002.png"),
     r"cannot read image .*00002\.png: permission denied"),
    ("mask that may not be read", denied_reading("Annotations/480p/toy/00001.png"),
     r"cannot read mask .*00001\.png: permission denied"),
    ("scribble file that may not be read", lambda tmp: denied_scribble_file(tmp / "s.json"),
     r"cannot read scribble file .*s\.json: permission denied"),
    # ---- symlinks
    ("sequence folder that is a symlink loop", symlink_loop("JPEGImages/480p/loop"),
     r"sequence folder .*loop is a symlink loop: it cannot be resolved"),
    ("mask folder that is a symlink loop", symlink_loop("Annotations/480p/loop"),
     r"mask folder .*Annotations/480p/loop is a symlink loop"),
    ("sequence folder that is a broken symlink",
     lambda tmp: ((toy_folder(tmp) / "JPEGImages" / "480p" / "gone").symlink_to(tmp / "nowhere"),
                  load_davis_sequence(tmp, "gone")),
     r"sequence folder .*gone is a symlink to .*nowhere, which does not exist"),
    # ---- masks paired with frames by number
    ("masks numbered differently from the frames",
     lambda tmp: load_toy(toy_folder(tmp, mask_names=[f"{i:05d}.png" for i in range(1, T + 1)])),
     r"masks of 'toy' do not match its frames by number; frame 00000\.png has no mask in .*Annotations/480p/toy"),
    ("only the first frame annotated (a semi-supervised set)",
     lambda tmp: load_toy(toy_folder(tmp, mask_names=["00000.png"])),
     r"frame-count mismatch in 'toy': 4 frames but 1 masks; frame 00001\.png has no mask"),
    ("a mask whose number no frame has",
     lambda tmp: (save_indexed_png(VIDEO.masks[0], toy_folder(tmp) / "Annotations" / "480p" / "toy" / "00009.png"),
                  load_toy(tmp)),
     r"frame-count mismatch in 'toy': 4 frames but 5 masks; mask 00009\.png has no frame of that number"),
    ("two masks of the same frame number",
     lambda tmp: (save_indexed_png(VIDEO.masks[3], toy_folder(tmp, mask_names=[f"{i:05d}.png" for i in range(3)])
                                   / "Annotations" / "480p" / "toy" / "1.png"), load_toy(tmp)),
     r"masks 00001\.png and 1\.png of 'toy' have the same frame number 1"),
    # ---- 16-bit masks
    ("16-bit mask with an id beyond the palette",
     lambda tmp: with_16bit_masks(tmp, [np.where(VIDEO.masks[i] > 0, 300 if i == 1 else 1, 0) for i in range(T)]),
     r"mask .*00001\.png holds object id 300; ids must be 0\.\.255 \(the DAVIS palette\)"),
    # ---- videos without frames
    ("a video of zero frames in memory", lambda tmp: VideoSequence("x", np.zeros((0, H, W, 3), np.uint8)),
     r"frames must hold at least one frame of at least one pixel; got shape \(0, 24, 32, 3\)"),
    ("a video of an empty list of frames", lambda tmp: VideoSequence("x", []),
     r"a video needs at least one frame; got an empty list"),
    # ---- scribble files
    ("deeply nested scribble JSON", lambda tmp: Scribbles.from_json(NESTED), r"scribbles: JSON nested too deeply"),
    ("deeply nested scribble file", lambda tmp: scribble_file(tmp, NESTED),
     r"001\.json: scribbles: JSON nested too deeply"),
    ("scribble sequence name that is not text",
     lambda tmp: Scribbles.from_dict({"scribbles": [[]], "sequence": [["bear"]]}),
     r"'sequence' must be a name \(text\); got list"),
    ("NaN stroke time in a file", lambda tmp: from_json(stroke_json(start_time=float("nan"))),
     r"frame 0, stroke 0: start_time must be finite; got nan"),
    ("infinite stroke time in a file", lambda tmp: from_json(stroke_json(end_time=float("inf"))),
     r"frame 0, stroke 0: end_time must be finite; got inf"),
    ("stroke time that is text", lambda tmp: from_json(stroke_json(end_time="2.5s")),
     r"frame 0, stroke 0: end_time must be a number; got '2\.5s'"),
    ("stroke time that is a boolean", lambda tmp: from_json(stroke_json(start_time=True)),
     r"start_time must be a number; got True"),
    ("NaN stroke time from code", lambda tmp: Stroke([[0.1, 0.1]], 1, start_time=float("nan")),
     r"stroke: start_time must be finite; got nan"),
    ("stroke time from code that is a list", lambda tmp: Scribbles(T).add_stroke(0, [[0.1, 0.1]], 1, end_time=[1]),
     r"stroke: end_time must be a number; got \[1\]"),
]


@pytest.mark.parametrize("row, action, message", CATALOGUE, ids=[row for row, _, _ in CATALOGUE])
def test_bad_input_is_named(tmp_path, row, action, message):
    with pytest.raises(BadInputError, match=message) as caught:
        action(tmp_path)
    text = str(caught.value)
    assert "\n" not in text, f"{row}: the message should be one line: {text!r}"


def test_catalogue_rows_are_unique():
    rows = [row for row, _, _ in CATALOGUE]
    assert len(rows) == len(set(rows))


# --------------------------------------------------------------------------- valid input, read right

def test_frames_are_ordered_by_the_number_in_their_names(tmp_path):
    """0.png, 1.png, ..., 10.png: 10.png is the last frame, not the third."""
    n = 11
    frames = np.stack([np.full((8, 8, 3), 20 * i, np.uint8) for i in range(n)])
    folder = tmp_path / "JPEGImages" / "480p" / "count"
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i}.png")
    video = load_davis_sequence(tmp_path, "count")
    np.testing.assert_array_equal(video.frames, frames)
    np.testing.assert_array_equal(load_davis_sequence(tmp_path, "count", lazy=True).frames[10], frames[10])


def test_natural_order_of_names():
    from simwidgets.video import natural_key

    names = ["frame10.png", "Frame2.png", "frame1.png", "b.png", "a.png", "007.png", "7.png"]
    assert sorted(names, key=natural_key) == ["007.png", "7.png", "a.png", "b.png", "frame1.png", "Frame2.png", "frame10.png"]
    davis = [f"{i:05d}.jpg" for i in range(120)]
    assert sorted(davis, key=natural_key) == sorted(davis), "zero-padded DAVIS names keep their order"


def test_ten_or_more_frames_get_their_own_masks(tmp_path):
    """Frames 0.jpg..11.jpg and masks 0.png..11.png: each mask on the frame of its number."""
    n = 12
    frames = np.zeros((n, 8, 8, 3), np.uint8)
    masks = np.zeros((n, 8, 8), np.uint8)
    for i in range(n):
        masks[i, : i % 8 + 1] = 1 + i % 3
    for i in range(n):
        Image.fromarray(frames[i]).save(_mkdir(tmp_path / "JPEGImages" / "480p" / "m") / f"{i}.jpg")
        save_indexed_png(masks[i], tmp_path / "Annotations" / "480p" / "m" / f"{i}.png")
    np.testing.assert_array_equal(load_davis_sequence(tmp_path, "m").masks, masks)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_a_16_bit_binary_mask_is_object_1(tmp_path):
    """0/65535 is the 16-bit form of DAVIS 2016's 0/255: one object, id 1 (not 65535)."""
    binary = (VIDEO.masks > 0).astype(np.uint16) * 65535
    video = with_16bit_masks(tmp_path, binary)
    assert video.masks.dtype == np.uint8 and video.object_ids == [1]
    np.testing.assert_array_equal(video.masks, VIDEO.masks > 0)


def test_a_16_bit_label_image_with_small_ids_keeps_them(tmp_path):
    video = with_16bit_masks(tmp_path, VIDEO.masks)
    np.testing.assert_array_equal(video.masks, VIDEO.masks)
    assert video.object_ids == [1, 2]


def test_an_8_bit_binary_mask_is_still_object_1(tmp_path):
    root = toy_folder(tmp_path, mask_names=[])
    for i, mask in enumerate(VIDEO.masks):
        path = _mkdir(root / "Annotations" / "480p" / "toy") / f"{i:05d}.png"
        Image.fromarray((mask > 0).astype(np.uint8) * 255, mode="L").save(path)
    assert load_toy(root).object_ids == [1]


def test_stroke_times_stay_as_they_were_and_none_is_allowed():
    s = from_json(stroke_json(start_time=None, end_time=3))
    stroke = s.frames[0][0]
    assert stroke.start_time is None and stroke.end_time == 3 and isinstance(stroke.end_time, int)
    assert Stroke([[0.1, 0.1]], 1, np.int64(2), np.float32(1.5)).to_dict()["start_time"] == 2
    json.loads(s.to_json())  # numpy times are written as plain JSON numbers


def test_scribble_json_is_never_written_with_a_nan_token(tmp_path):
    s = Scribbles(2, "toy")
    s.add_stroke(0, [[0.1, 0.1]], 1, start_time=0.5)
    s.frames[0][0].start_time = float("nan")  # changed behind the check's back
    with pytest.raises(ValueError):
        s.save(tmp_path / "s.json")
    assert not (tmp_path / "s.json").exists()


def test_a_video_sequence_of_a_list_of_frames_is_stacked():
    video = VideoSequence("x", list(VIDEO.frames), VIDEO.masks)
    assert isinstance(video.frames, np.ndarray) and video.n_frames == T


def test_the_shipped_sample_and_davis2016_layout_still_load(davis_root):
    for name in list_sequences(davis_root):
        video = load_davis_sequence(davis_root, name, lazy=True)
        assert video.masks is not None and video.masks.shape[0] == video.n_frames
