"""The canvas keeps its overlay masks as uint8 (ids 0..255) and refuses bad ones without
losing anything: strokes, undo history and the previous masks stay as they were."""
import numpy as np
import pytest

from simwidgets.errors import BadInputError
from simwidgets.widgets import ScribbleCanvas, mask_overlay
from simwidgets.widgets.canvas import as_label_maps


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def stored_bytes(canvas) -> int:
    return sum(m.nbytes for m in canvas.masks if m is not None)


def test_bear_masks_are_stored_as_one_byte_per_pixel(bear):
    canvas = ScribbleCanvas(bear, width=320, autosave=False)
    canvas.set_masks(bear.masks.astype(np.int64))  # a wider dtype is narrowed on the way in
    t, h, w = bear.masks.shape
    assert all(m.dtype == np.uint8 and m.shape == (h, w) for m in canvas.masks)
    assert stored_bytes(canvas) == t * h * w  # 33.6 MB for bear, not 8x that as int64
    for frame_idx in (0, 40, t - 1):
        assert np.array_equal(canvas.masks[frame_idx], bear.masks[frame_idx])
    # the overlay of the stored uint8 map is the overlay of the original ids
    assert np.array_equal(
        mask_overlay(canvas.masks[40], canvas.canvas_size, 0.5),
        mask_overlay(bear.masks[40], canvas.canvas_size, 0.5),
    )


def test_masks_passed_at_construction_are_uint8_too(synthetic):
    canvas = ScribbleCanvas(synthetic, masks=synthetic.masks.astype(np.int32), autosave=False)
    assert {m.dtype for m in canvas.masks} == {np.dtype(np.uint8)}
    assert canvas.n_objects == int(synthetic.masks.max())


def test_id_255_is_kept_and_bool_masks_are_accepted(synthetic):
    canvas = ScribbleCanvas(synthetic, autosave=False)
    masks = np.zeros(synthetic.masks.shape, dtype=np.int64)
    masks[2, :5, :5] = 255
    canvas.set_masks(masks)
    assert canvas.masks[2].dtype == np.uint8 and canvas.masks[2][0, 0] == 255
    assert canvas.n_objects == 255
    canvas.set_masks(synthetic.masks > 0)
    assert canvas.masks[2].dtype == np.uint8 and set(np.unique(canvas.masks[2])) <= {0, 1}


def test_stored_masks_are_a_copy(synthetic):
    canvas = ScribbleCanvas(synthetic, autosave=False)
    masks = synthetic.masks.astype(np.uint8)
    canvas.set_masks(masks)
    masks[:] = 7  # changing the caller's array afterwards must not change the overlay
    assert np.array_equal(canvas.masks[1], synthetic.masks[1])


def test_set_mask_of_one_frame_is_uint8(synthetic):
    canvas = ScribbleCanvas(synthetic, autosave=False)
    canvas.set_mask(3, np.full(synthetic.masks.shape[1:], 5, dtype=np.int64))
    assert canvas.masks[3].dtype == np.uint8 and canvas.masks[3].nbytes == synthetic.masks[3].size
    assert canvas.n_objects == 5


BAD = [
    # (what, how to break the (T, H, W) masks, message fragment)
    ("another frame size", lambda m: m[:, :-1], r"do not match the video .*\(T, H, W\)"),
    ("another frame count", lambda m: m[:-1], r"do not match the video"),
    ("float ids", lambda m: m.astype(np.float32), "integer object ids; got dtype float32"),
    ("an id above 255", lambda m: np.where(m > 0, 256, 0), "object id 256 is outside the palette"),
    ("a negative id", lambda m: np.where(m > 0, -1, 0), "object id -1 is outside the palette"),
]


@pytest.mark.parametrize("what, breaker, message", BAD, ids=[b[0] for b in BAD])
def test_bad_masks_are_named_and_change_nothing(synthetic, what, breaker, message):
    canvas = ScribbleCanvas(synthetic, autosave=False)
    canvas.add_stroke(2, [[0.2, 0.2], [0.4, 0.3]], object_id=1)
    canvas.add_stroke(2, [[0.6, 0.7], [0.8, 0.8]], object_id=0)
    canvas.set_masks(synthetic.masks)
    strokes_before, masks_before = canvas.scribbles, [m.copy() for m in canvas.masks]
    with pytest.raises(BadInputError, match=message):
        canvas.set_masks(breaker(synthetic.masks.astype(np.int64)))
    assert canvas.scribbles == strokes_before and canvas.n_strokes == 2
    assert all(np.array_equal(a, b) for a, b in zip(canvas.masks, masks_before))
    assert canvas.undo()  # the history survived too
    assert canvas.n_strokes == 1


def test_bad_single_mask_changes_nothing(synthetic):
    canvas = ScribbleCanvas(synthetic, autosave=False)
    canvas.add_stroke(0, [[0.5, 0.5]], object_id=1)
    canvas.set_mask(0, synthetic.masks[0])
    with pytest.raises(BadInputError, match="mask of frame 0: object id 300 is outside the palette"):
        canvas.set_mask(0, np.full(synthetic.masks.shape[1:], 300))
    with pytest.raises(BadInputError, match="mask of frame 0 must hold integer object ids"):
        canvas.set_mask(0, synthetic.masks[0].astype(float))
    assert np.array_equal(canvas.masks[0], synthetic.masks[0]) and canvas.n_strokes == 1


def test_as_label_maps_checks_before_converting():
    with pytest.raises(BadInputError, match=r"masks of shape \(2, 3\) do not match the video \(3, 2\) \(H, W\)"):
        as_label_maps(np.zeros((2, 3), int), (3, 2))
    with pytest.raises(BadInputError, match="got dtype <U1"):
        as_label_maps(np.array([["a"]]), (1, 1))
    out = as_label_maps(np.array([[0, 255]], dtype=np.int16), (1, 2))
    assert out.dtype == np.uint8 and out.tolist() == [[0, 255]]
