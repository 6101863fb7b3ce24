"""Bad-input catalogue, transfer rows: options, frames and overrides of the label transfer
raise BadInputError with a sentence naming the problem (never a TypeError from deep inside)."""
import numpy as np
import pytest

from simwidgets.errors import BadInputError
from simwidgets.transfer import LabelTransfer, TransferConfig, propagate
from simwidgets.video import synthetic_video

VIDEO = synthetic_video(n_frames=3, n_objects=1, height=16, width=24, seed=1)
MASKS = {0: VIDEO.masks[0]}


def engine():
    return LabelTransfer(VIDEO.frames, model="baseline")


CATALOGUE = [
    # (what is wrong, action, message pattern)
    ("top_k of 2.5", lambda: TransferConfig(top_k=2.5), r"top_k must be an integer; got 2\.5"),
    ("top_k as text", lambda: TransferConfig(top_k="3"), r"top_k must be an integer; got '3'"),
    ("top_k of 0", lambda: TransferConfig(top_k=0), "top_k must be at least 1"),
    ("window of 2.5", lambda: TransferConfig(window=2.5), r"window must be an integer; got 2\.5"),
    ("window as text", lambda: TransferConfig(window="3"), "window must be an integer"),
    ("a negative window", lambda: TransferConfig(window=-1), "window must be 0 or more"),
    ("n_context of 1.5", lambda: TransferConfig(n_context=1.5), "n_context must be an integer"),
    ("n_context as text", lambda: TransferConfig(n_context="3"), "n_context must be an integer"),
    ("temporal as the text 'no'", lambda: TransferConfig(temporal="no"), "temporal must be True or False; got 'no'"),
    ("temporal as 1", lambda: TransferConfig(temporal=1), "temporal must be True or False"),
    ("an infinite temperature", lambda: TransferConfig(temperature=float("inf")), "temperature must be finite"),
    ("a NaN temperature", lambda: TransferConfig(temperature=float("nan")), "temperature must be finite"),
    ("a zero temperature", lambda: TransferConfig(temperature=0), "temperature must be positive"),
    ("max_references of 0", lambda: TransferConfig(max_references=0), "max_references must be at least 1"),
    ("a negative background_margin", lambda: TransferConfig(background_margin=-0.1),
     "background_margin must be 0 or more"),
    ("a NaN background_margin", lambda: TransferConfig(background_margin=float("nan")),
     "background_margin must be finite"),
    ("a zero brush_width", lambda: TransferConfig(brush_width=0), "brush_width must be positive"),
    ("a misspelt option to propagate()", lambda: propagate(VIDEO.frames, MASKS, model="baseline", topk=5),
     r"unknown transfer option 'topk'; valid options: top_k, temperature, .*max_references"),
    ("a misspelt override to LabelTransfer.propagate", lambda: engine().propagate(MASKS, temporl=False),
     r"unknown transfer option 'temporl'; valid options: top_k"),
    ("a bad override to LabelTransfer.propagate", lambda: engine().propagate(MASKS, top_k="3"),
     "top_k must be an integer"),
    ("a config that is not a TransferConfig", lambda: LabelTransfer(VIDEO.frames, model="baseline", config={}),
     "config must be a TransferConfig"),
    ("frames of mixed sizes in a list",
     lambda: LabelTransfer([VIDEO.frames[0], VIDEO.frames[1][:-1]], model="baseline"), "mixed sizes"),
    ("frames without colour channels", lambda: LabelTransfer(VIDEO.masks, model="baseline"),
     r"\(T, H, W, 3\)"),
    ("frames not uint8", lambda: LabelTransfer(VIDEO.frames.astype(np.float32), model="baseline"), "uint8"),
    ("an empty list of frames", lambda: propagate([], MASKS, model="baseline"), "at least one frame"),
    ("a reference frame outside the video", lambda: engine().propagate({3: VIDEO.masks[0]}),
     r"reference frame index 3 is outside the video \(0..2\)"),
    ("a reference label map of another size", lambda: engine().propagate({0: VIDEO.masks[0][:-1]}),
     "reference label map of frame 0 has shape"),
]


@pytest.mark.parametrize("row, action, message", CATALOGUE, ids=[row[0] for row in CATALOGUE])
def test_bad_input_is_named(row, action, message):
    with pytest.raises(BadInputError, match=message) as caught:
        action()
    assert "\n" not in str(caught.value)


def test_a_list_of_frames_is_stacked():
    """A list of (H, W, 3) frames is a video: the same masks as the array."""
    from_list = propagate(list(VIDEO.frames), MASKS, model="baseline")
    assert np.array_equal(from_list, propagate(VIDEO.frames, MASKS, model="baseline"))


def test_options_keep_their_canonical_types():
    config = TransferConfig(top_k=np.int64(5), window=3.0, temperature=1, temporal=np.bool_(False))
    assert (type(config.top_k), type(config.window), type(config.temperature), type(config.temporal)) == (
        int, int, float, bool)
    assert config.with_options() is config and config.with_options(top_k=6).top_k == 6
