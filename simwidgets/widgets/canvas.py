"""ScribbleCanvas: a layered ipycanvas on which a person paints DAVIS scribbles on video frames.

The canvas is the reusable component; :mod:`simwidgets.widgets.scribble_widget` puts a
control bar around it, and an application (propagation, confidence strips...) can put its
own.  What it does:

* four :class:`ipycanvas.MultiCanvas` layers, named by role: ``frame_layer`` (the video
  frame, sent as RGB, which ipycanvas encodes as JPEG), ``mask_layer`` (masks as an RGBA
  overlay, PNG), ``scribble_layer`` (finished strokes) and ``interaction_layer`` (the
  stroke in progress; the top layer, the one that receives mouse and key events);
* all state lives in Python (strokes as normalised coordinates in a
  :class:`~simwidgets.scribbles.Scribbles`, masks as label maps, traitlets for the frame,
  object, brush, opacity...), so :meth:`ScribbleCanvas.redraw` rebuilds every layer from
  it; it runs when a traitlet changes and whenever a browser view connects
  (``on_client_ready``), so a second view or a page reload shows the same picture;
* drawing is batched with ``hold_canvas`` (one message per redraw), and mouse moves are
  thinned (points closer than ``min_move`` canvas pixels are dropped, live feedback is
  sent at most every ``live_interval`` seconds) so a fast stroke cannot flood the kernel;
* every change (stroke, erase, undo, redo, clear, set) is written to the autosave file.

The event handlers are public (``handle_mouse_down(x, y)``, ``handle_key_down(key, ...)``)
so tests and scripts can drive the canvas exactly as the browser does.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import traitlets
import ipywidgets as widgets
from ipycanvas import MultiCanvas, hold_canvas
from PIL import Image

from .. import checks
from ..errors import BadInputError
from ..palette import MAX_OBJECTS, davis_palette, object_colour
from ..scribbles import Scribbles, Stroke
from ..video import LazyFrames, VideoSequence, validate_masks
from ..viz import mask_rgba
from .autosave import Autosave, AutosaveWarning, default_autosave_path, video_name
from .coords import canvas_size_for, canvas_to_normalised, normalised_to_canvas

__all__ = ["ScribbleCanvas", "ScribbleEvent", "as_frames", "as_label_maps", "mask_overlay"]

_PALETTE = davis_palette()
#: what a mouse drag does: paint a stroke, or remove the strokes it touches
TOOLS = ("brush", "eraser")


# --------------------------------------------------------------------------- input checks

def as_frames(frames) -> tuple[object, str | None, np.ndarray | None]:
    """Normalise what a user may pass as a video.

    Returns ``(frames, name, masks)`` where ``frames`` indexes to ``(H, W, 3)`` uint8
    frames (an array or :class:`~simwidgets.video.LazyFrames`), ``name`` is the sequence
    name if known and ``masks`` the sequence's ground truth if any.

    Accepts a :class:`~simwidgets.video.VideoSequence`, a ``(T, H, W, 3)`` uint8 array, a
    single ``(H, W, 3)`` frame, or a list of ``(H, W, 3)`` frames of one size (stacked);
    everything else is checked by :func:`simwidgets.checks.video_frames`.
    """
    if isinstance(frames, VideoSequence):
        return frames.frames, frames.name, frames.masks
    if isinstance(frames, LazyFrames):
        return frames, None, None
    if isinstance(frames, np.ndarray) and frames.ndim == 3 and frames.shape[-1] == 3:
        frames = frames[None]  # one frame
    return np.asarray(checks.video_frames(frames)), None, None


def as_label_maps(masks, expected_shape: tuple[int, ...], where: str = "masks") -> np.ndarray:
    """Check label maps for the overlay and return them as a uint8 copy.

    The overlay only needs object ids 0..255 (the DAVIS palette), so one byte per pixel is
    enough: bear's 82 frames at 854x480 take 34 MB as uint8 instead of 269 MB as int64.
    Everything is checked before anything is converted or stored, so a bad array leaves
    the canvas (its strokes and its previous masks) untouched.

    Parameters
    ----------
    masks : ``expected_shape`` array of object ids (any integer dtype, or bool)
    expected_shape : ``(T, H, W)`` of the video, or ``(H, W)`` for one frame
    where : how the error message names the array

    Returns
    -------
    ``expected_shape`` uint8 array (a new array, never a view of ``masks``)

    Raises
    ------
    BadInputError
        for another shape, a non-integer dtype, or an id outside 0..255.
    """
    return validate_masks(masks, expected_shape, where, palette_only=True)


def mask_overlay(mask: np.ndarray, canvas_size: tuple[int, int], opacity: float) -> np.ndarray:
    """RGBA overlay ``(canvas_height, canvas_width, 4)`` uint8 of a label map, in DAVIS colours.

    See :func:`simwidgets.viz.mask_rgba` (objects filled, outlined at twice the opacity).
    """
    return mask_rgba(mask, size=canvas_size, opacity=opacity)


@dataclass
class ScribbleEvent:
    """What changed, passed to ``on_change`` callbacks.

    Attributes
    ----------
    kind : ``"add"``, ``"erase"``, ``"clear"``, ``"set"``, ``"undo"`` or ``"redo"``
    frame_idx : the frame that changed, or ``None`` when several may have (``"set"``)
    scribbles : a copy of all scribbles after the change
    stroke : the stroke added or erased, when there is one
    time : ``time.time()`` when the change was committed (used to measure latency)
    """

    kind: str
    frame_idx: int | None
    scribbles: Scribbles
    stroke: Stroke | None = None
    time: float = field(default_factory=time.time)


# an undoable change: ("insert" | "delete", frame_idx, position, stroke) or ("replace", before, after)
_Action = tuple


def _rgb(colour: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % colour


def _tool_name(value, where: str) -> str:
    if not isinstance(value, str) or value not in TOOLS:
        raise BadInputError(f"{where} must be one of {', '.join(TOOLS)}; got {value!r}")
    return value


def _checked(trait: type, check: Callable) -> type:
    """A traitlet type whose values go through ``check(value, name)`` of :mod:`simwidgets.checks`.

    Without it a wrong type (``frame_idx = 2.5``, ``show_masks = "yes"``) raises a bare
    traitlets ``TraitError`` while a wrong value raises BadInputError; with it both read
    the same, and a whole float (``frame_idx = 2.0``, as sliders and JSON give) is frame 2.
    """
    class Checked(trait):
        def validate(self, obj, value):
            return super().validate(obj, check(value, self.name))

    Checked.__name__ = Checked.__qualname__ = f"Checked{trait.__name__}"
    return Checked


_WholeNumber = _checked(traitlets.Int, checks.whole_number)
_Number = _checked(traitlets.Float, checks.finite_float)
_Boolean = _checked(traitlets.Bool, checks.boolean)
_Tool = _checked(traitlets.Unicode, _tool_name)


class ScribbleCanvas(widgets.Box):
    """A layered canvas showing one frame of a video, its mask overlay and its scribbles.

    Parameters
    ----------
    frames : VideoSequence, ``(T, H, W, 3)`` uint8 array, LazyFrames, or list of frames
    masks : ``(T, H, W)`` integer label maps to overlay (0 = background, ids up to 255;
        kept as uint8), or None
    scribbles : initial :class:`Scribbles` (or DAVIS dict, or path of a DAVIS JSON file)
    width : canvas width in pixels; the height follows the video's aspect ratio
    autosave : path of the autosave file, ``True`` for ``<name>.scribbles.json`` in the
        current folder, ``False``/``None`` to disable; strokes that another widget or
        process saved there are never overwritten (this widget moves to
        ``<name>-2.scribbles.json`` and warns; see :mod:`simwidgets.widgets.autosave`)
    name : sequence name (taken from a VideoSequence; else derived from the frames)
    n_objects : number of objects offered (default: the largest id in the masks, the
        scribbles or a VideoSequence's ground truth; at least 1)
    min_move : a mouse move closer than this (canvas pixels) to the last point is dropped
    live_interval : seconds between two live updates of the stroke in progress

    Traitlets (observe them, link them to controls)
    -----------------------------------------------
    frame_idx, object_id, n_objects, brush_width (canvas pixels), opacity (0..1),
    show_masks, tool (``"brush"`` or ``"eraser"``); read-only: n_strokes, annotated_frames.
    """

    frame_idx = _WholeNumber(0)
    object_id = _WholeNumber(1)
    n_objects = _WholeNumber(1)
    brush_width = _Number(6.0)
    opacity = _Number(0.45)
    show_masks = _Boolean(True)
    tool = _Tool("brush")
    n_strokes = traitlets.Int(0, read_only=True)
    annotated_frames = traitlets.List(traitlets.Int(), read_only=True)

    def __init__(
        self,
        frames,
        masks=None,
        scribbles=None,
        width: int = 640,
        autosave: str | Path | bool | None = True,
        name: str | None = None,
        n_objects: int | None = None,
        min_move: float = 2.0,
        live_interval: float = 0.03,
        **kwargs,
    ):
        frames, seq_name, truth = as_frames(frames)
        self._frames = frames
        self._n_frames = int(frames.shape[0])
        self._image_size = (int(frames.shape[1]), int(frames.shape[2]))
        self._canvas_size = canvas_size_for(*self._image_size, width)
        self.name = name or seq_name or video_name(frames)
        self.min_move = float(min_move)
        self.live_interval = float(live_interval)
        self._t0 = time.monotonic()
        self._masks: list[np.ndarray | None] = [None] * self._n_frames
        self._undo: list[_Action] = []
        self._redo: list[_Action] = []
        self._callbacks: list[Callable[[ScribbleEvent], None]] = []
        self._stroke: list[tuple[float, float]] | None = None
        self._stroke_frame = 0
        self._stroke_object = 1
        self._stroke_start = 0.0
        self._live_sent = 0  # points of the stroke in progress already drawn live
        self._live_time = 0.0
        self._erasing = False
        self._ready = False

        if autosave is True:
            autosave = default_autosave_path(self.name)
        self.autosave = Autosave(autosave or None)

        ch, cw = self._canvas_size
        self.multi = MultiCanvas(4, width=cw, height=ch)
        self.frame_layer, self.mask_layer, self.scribble_layer, self.interaction_layer = (
            self.multi[i] for i in range(4)
        )
        super().__init__(children=[self.multi], **kwargs)
        self.add_class("simwidgets-scribble-canvas")

        # state: scribbles (explicit > autosave > empty), masks
        restored = self.autosave.restore(self._n_frames)
        if scribbles is not None:
            initial = self._coerce_scribbles(scribbles)
            if restored is not None and restored != initial:
                self.autosave.move_aside(
                    "replaced",
                    "scribbles were passed explicitly and differ from the autosaved ones",
                )
            self._scribbles = initial
        elif restored is not None:
            self._scribbles = restored
        else:
            self._scribbles = Scribbles(self._n_frames, self.name)
        if not self._scribbles.sequence:
            self._scribbles.sequence = self.name
        if masks is not None:
            self._set_masks_array(masks)
        largest = max(
            [1]
            + self._scribbles.object_ids
            + [int(m.max()) for m in self._masks if m is not None and m.size]
            + ([min(int(truth.max()), MAX_OBJECTS)] if truth is not None and truth.size else [])
        )
        self.n_objects = max(largest, int(n_objects) if n_objects is not None else 1)
        self._update_status()

        self.multi.on_mouse_down(self.handle_mouse_down)
        self.multi.on_mouse_move(self.handle_mouse_move)
        self.multi.on_mouse_up(self.handle_mouse_up)
        self.multi.on_mouse_out(self.handle_mouse_out)
        self.multi.on_key_down(self.handle_key_down)
        layers = (self.frame_layer, self.mask_layer, self.scribble_layer, self.interaction_layer)
        for index, layer in enumerate(layers):
            layer.on_client_ready(lambda index=index: self._redraw_layers([index]))
        self._ready = True
        self.redraw()

    # ------------------------------------------------------------------ properties
    @property
    def n_frames(self) -> int:
        return self._n_frames

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the video frames."""
        return self._image_size

    @property
    def canvas_size(self) -> tuple[int, int]:
        """``(canvas_height, canvas_width)`` of the displayed canvas."""
        return self._canvas_size

    @property
    def frames(self):
        return self._frames

    @property
    def scribbles(self) -> Scribbles:
        """A copy of the current scribbles (DAVIS format); change them with :meth:`set_scribbles`."""
        return self._scribbles.copy()

    @property
    def masks(self) -> list[np.ndarray | None]:
        """Per-frame overlay label maps, ``(H, W)`` uint8 (``None`` where a frame has none)."""
        return list(self._masks)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def drawing(self) -> bool:
        """True while a stroke is in progress (between mouse down and mouse up)."""
        return self._stroke is not None

    # ------------------------------------------------------------------ validation
    @traitlets.validate("frame_idx")
    def _valid_frame(self, proposal):
        return checks.frame_index(proposal["value"], self._n_frames)

    @traitlets.validate("object_id")
    def _valid_object(self, proposal):
        value = checks.object_id(proposal["value"])
        if value > self.n_objects:
            self.n_objects = value
        return value

    @traitlets.validate("n_objects")
    def _valid_n_objects(self, proposal):
        value = proposal["value"]
        if not 1 <= value <= MAX_OBJECTS:
            raise BadInputError(f"n_objects {value} is outside 1..{MAX_OBJECTS} (the palette's size)")
        return value

    @traitlets.validate("brush_width")
    def _valid_brush(self, proposal):
        value = float(proposal["value"])
        if not 0.5 <= value <= 200:
            raise BadInputError(f"brush_width must be within 0.5..200 canvas pixels; got {value}")
        return value

    @traitlets.validate("opacity")
    def _valid_opacity(self, proposal):
        value = float(proposal["value"])
        if not 0.0 <= value <= 1.0:
            raise BadInputError(f"opacity must be within 0..1; got {value}")
        return value

    def _coerce_scribbles(self, scribbles) -> Scribbles:
        if isinstance(scribbles, (str, Path)):
            scribbles = Scribbles.load(scribbles)
        elif isinstance(scribbles, dict):
            scribbles = Scribbles.from_dict(scribbles)
        elif not isinstance(scribbles, Scribbles):
            raise BadInputError(
                f"scribbles must be a Scribbles, a DAVIS dict or a JSON path; got {type(scribbles).__name__}"
            )
        if scribbles.n_frames != self._n_frames:
            raise BadInputError(
                f"frame-count mismatch: the scribbles describe {scribbles.n_frames} frames, "
                f"the video has {self._n_frames}"
            )
        return scribbles.copy()

    # ------------------------------------------------------------------ observers
    @traitlets.observe("frame_idx")
    def _on_frame(self, change):
        if self._ready:
            self.redraw()

    @traitlets.observe("opacity", "show_masks")
    def _on_overlay(self, change):
        if self._ready:
            self._redraw_layers([1])

    @traitlets.observe("brush_width")
    def _on_brush(self, change):
        if self._ready:
            self._redraw_layers([2])

    # ------------------------------------------------------------------ public API
    def on_change(self, callback: Callable[[ScribbleEvent], None], remove: bool = False) -> None:
        """Call ``callback(event)`` after every change of the scribbles (see :class:`ScribbleEvent`)."""
        if not callable(callback):
            raise BadInputError(f"on_change needs a callable; got {type(callback).__name__}")
        if remove:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
        elif callback not in self._callbacks:
            self._callbacks.append(callback)

    def set_scribbles(self, scribbles) -> None:
        """Replace all scribbles (a :class:`Scribbles`, DAVIS dict or JSON path); undoable."""
        new = self._coerce_scribbles(scribbles)
        if not new.sequence:
            new.sequence = self.name
        self._do(("replace", self._scribbles.copy(), new), kind="set", frame_idx=None)

    def add_stroke(self, frame_idx: int, path, object_id: int | None = None) -> Stroke:
        """Add a stroke from code: ``path`` is ``(N, 2)`` normalised ``(x, y)`` (DAVIS convention).

        This is what the browser's mouse produces, minus the mouse: notebooks in CI and
        scripts use it to stand in for a person.
        """
        object_id = self.object_id if object_id is None else object_id
        now = round(time.monotonic() - self._t0, 3)
        stroke = Stroke(np.asarray(path, dtype=np.float64), object_id, now, now)
        frame_idx = self._check_frame(frame_idx)
        if stroke.object_id > self.n_objects:
            self.n_objects = stroke.object_id
        position = len(self._scribbles.frames[frame_idx])
        self._do(("insert", frame_idx, position, stroke), kind="add", frame_idx=frame_idx, stroke=stroke)
        return stroke

    def clear_frame(self, frame_idx: int | None = None) -> None:
        """Remove every stroke of a frame (the current one by default); undoable."""
        frame_idx = self._check_frame(self.frame_idx if frame_idx is None else frame_idx)
        if not self._scribbles.frames[frame_idx]:
            return
        after = self._scribbles.copy()
        after.clear_frame(frame_idx)
        self._do(("replace", self._scribbles.copy(), after), kind="clear", frame_idx=frame_idx)

    def erase_at(self, x: float, y: float, frame_idx: int | None = None) -> list[Stroke]:
        """Erase the strokes of a frame that pass within the brush radius of canvas point ``(x, y)``.

        Each erased stroke is one undo step.  Returns the erased strokes.
        """
        frame_idx = self._check_frame(self.frame_idx if frame_idx is None else frame_idx)
        radius = self.brush_width / 2.0 + 3.0
        point = np.array([x, y], dtype=np.float64)
        erased = []
        strokes = self._scribbles.frames[frame_idx]
        for position in range(len(strokes) - 1, -1, -1):
            stroke = strokes[position]
            if _distance_to_polyline(point, normalised_to_canvas(stroke.path, self._canvas_size)) <= radius:
                self._do(("delete", frame_idx, position, stroke), kind="erase", frame_idx=frame_idx, stroke=stroke)
                erased.append(stroke)
        return erased

    def undo(self) -> bool:
        """Undo the last change (a stroke, an erase, a clear, a set); shows its frame. False if none."""
        if not self._undo:
            return False
        action = self._undo.pop()
        self._apply(_inverse(action))
        self._redo.append(action)
        self._after_change("undo", _action_frame(action), None)
        return True

    def redo(self) -> bool:
        """Redo the last undone change; False if none."""
        if not self._redo:
            return False
        action = self._redo.pop()
        self._apply(action)
        self._undo.append(action)
        self._after_change("redo", _action_frame(action), None)
        return True

    def set_masks(self, masks) -> None:
        """Overlay ``(T, H, W)`` label maps (0 = background), e.g. ground truth or propagated masks; None clears.

        The canvas keeps a uint8 copy (ids 0..255, one byte per pixel).  A mask of another
        shape, a non-integer dtype or an id outside 0..255 raises BadInputError and
        changes nothing (strokes and the previous masks stay).
        """
        if masks is None:
            self._masks = [None] * self._n_frames
        else:
            self._set_masks_array(masks)
            largest = max(int(m.max()) for m in self._masks if m is not None)
            if largest > self.n_objects:
                self.n_objects = largest
        self._redraw_layers([1])

    def set_mask(self, frame_idx: int, mask) -> None:
        """Overlay one frame's ``(H, W)`` label map (or None to remove it); redraws if it is shown."""
        frame_idx = self._check_frame(frame_idx)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.shape != self._image_size:
                raise BadInputError(
                    f"mask of shape {mask.shape} does not match the frames {self._image_size} (H, W)"
                )
            mask = as_label_maps(mask, self._image_size, f"mask of frame {frame_idx}")
            if mask.max() > self.n_objects:
                self.n_objects = int(mask.max())
        self._masks[frame_idx] = mask
        if frame_idx == self.frame_idx:
            self._redraw_layers([1])

    def next_frame(self, step: int = 1) -> None:
        """Move ``step`` frames forward (negative: back), stopping at the ends."""
        self.frame_idx = int(np.clip(self.frame_idx + step, 0, self._n_frames - 1))

    def previous_frame(self, step: int = 1) -> None:
        self.next_frame(-step)

    def add_object(self) -> int:
        """Offer one more object and select it; returns its id."""
        self.n_objects = self.n_objects + 1
        self.object_id = self.n_objects
        return self.object_id

    def save(self, path: str | Path, indent: int | None = None) -> None:
        """Write the scribbles as a DAVIS JSON file (atomically)."""
        self._scribbles.save(path, indent=indent)

    # ------------------------------------------------------------------ event handlers
    def handle_mouse_down(self, x: float, y: float) -> None:
        """Start a stroke (brush) or erase under the pointer (eraser); ``(x, y)`` in canvas pixels.

        A position that is not a finite number (see :meth:`_canvas_point`) is ignored.
        """
        point = self._canvas_point(x, y)
        if point is None:
            return
        if self.tool == "eraser":
            self._erasing = True
            self.erase_at(x, y)
            return
        if self._stroke is not None:  # a lost mouse-up: keep what was drawn
            self._finish_stroke()
        self._stroke = [point]
        self._stroke_frame = self.frame_idx
        self._stroke_object = self.object_id
        self._stroke_start = time.monotonic() - self._t0
        self._live_sent = 0
        self._live_time = 0.0
        self._draw_live(force=True)

    def handle_mouse_move(self, x: float, y: float) -> None:
        """Extend the stroke in progress; moves shorter than ``min_move`` pixels are dropped,
        and so is a position that is not finite (the rest of the stroke is kept)."""
        point = self._canvas_point(x, y)
        if point is None:
            return
        if self._erasing:
            self.erase_at(x, y)
            return
        if self._stroke is None:
            return
        last = self._stroke[-1]
        if (point[0] - last[0]) ** 2 + (point[1] - last[1]) ** 2 < self.min_move ** 2:
            return
        self._stroke.append(point)
        self._draw_live()

    def handle_mouse_up(self, x: float, y: float) -> None:
        """Finish the stroke: it joins the scribbles, the autosave file and the undo history."""
        if self._erasing:
            self._erasing = False
            return
        if self._stroke is None:
            return
        point = self._canvas_point(x, y)
        if point is not None and point != self._stroke[-1]:
            self._stroke.append(point)
        self._finish_stroke()

    def handle_mouse_out(self, x: float, y: float) -> None:
        """Leaving the canvas ends a stroke there (the mouse-up would never arrive)."""
        if self._erasing:
            self._erasing = False
            return
        if self._stroke is not None:
            self.handle_mouse_up(x, y)

    def handle_key_down(self, key: str, shift_key: bool = False, ctrl_key: bool = False, meta_key: bool = False) -> bool:
        """Keyboard shortcuts while the canvas has focus; returns True if the key did something.

        ========================  ===========================================
        ArrowRight / ArrowLeft    next / previous frame (with shift: 10 frames)
        Home / End                first / last frame
        0 .. 9                    select object (0 = background) if offered
        ``+``                     add an object
        z / shift+z (Z)           undo / redo (ctrl or cmd may be held)
        e                         toggle brush / eraser
        m                         toggle the mask overlay
        ========================  ===========================================
        """
        step = 10 if shift_key else 1
        if key == "ArrowRight":
            self.next_frame(step)
        elif key == "ArrowLeft":
            self.previous_frame(step)
        elif key == "Home":
            self.frame_idx = 0
        elif key == "End":
            self.frame_idx = self._n_frames - 1
        elif len(key) == 1 and key.isdigit():
            if int(key) > self.n_objects:
                return False
            self.object_id = int(key)
        elif key == "+":
            self.add_object()
        elif key in ("z", "Z"):
            if shift_key or key == "Z":
                return self.redo()
            return self.undo()
        elif key in ("e", "E"):
            self.tool = "eraser" if self.tool == "brush" else "brush"
        elif key in ("m", "M"):
            self.show_masks = not self.show_masks
        else:
            return False
        return True

    # ------------------------------------------------------------------ drawing
    def redraw(self) -> None:
        """Draw every layer from the Python state (idempotent)."""
        self._redraw_layers([0, 1, 2, 3])

    def display_frame(self, frame_idx: int) -> np.ndarray:
        """Frame ``frame_idx`` resized to the canvas, ``(canvas_height, canvas_width, 3)`` uint8."""
        frame = np.asarray(self._frames[frame_idx])
        ch, cw = self._canvas_size
        if frame.shape[:2] != (ch, cw):
            frame = np.asarray(Image.fromarray(frame).resize((cw, ch), Image.BILINEAR))
        return frame

    def _redraw_layers(self, layers) -> None:
        frame_idx = self.frame_idx
        with hold_canvas():
            if 0 in layers:
                self.frame_layer.put_image_data(self.display_frame(frame_idx), 0, 0)
            if 1 in layers:
                self.mask_layer.clear()
                mask = self._masks[frame_idx]
                if self.show_masks and mask is not None and self.opacity > 0:
                    overlay = mask_overlay(mask, self._canvas_size, self.opacity)
                    # send only the box around the objects: less PNG to encode and decode
                    rows = np.flatnonzero(overlay[..., 3].any(axis=1))
                    cols = np.flatnonzero(overlay[..., 3].any(axis=0))
                    if len(rows):
                        top, left = int(rows[0]), int(cols[0])
                        crop = overlay[top:rows[-1] + 1, left:cols[-1] + 1]
                        self.mask_layer.put_image_data(crop, left, top)
            if 2 in layers:
                self.scribble_layer.clear()
                for stroke in self._scribbles.frames[frame_idx]:
                    self._draw_stroke(self.scribble_layer, normalised_to_canvas(stroke.path, self._canvas_size), stroke.object_id)
            if 3 in layers:
                self.interaction_layer.clear()
                if self._stroke is not None and self._stroke_frame == frame_idx:
                    self._live_sent = 0
                    self._draw_live(force=True, hold=False)

    def _draw_stroke(self, layer, points: np.ndarray, object_id: int) -> None:
        """A stroke with a light halo (so background strokes, black, show on dark frames)."""
        width = self.brush_width
        colour = _rgb(object_colour(object_id))
        layer.line_cap = "round"
        layer.line_join = "round"
        if len(points) == 1:
            x, y = points[0]
            layer.fill_style = "rgba(255, 255, 255, 0.7)"
            layer.fill_circle(float(x), float(y), width / 2 + 1)
            layer.fill_style = colour
            layer.fill_circle(float(x), float(y), width / 2)
            return
        layer.line_width = width + 2
        layer.stroke_style = "rgba(255, 255, 255, 0.7)"
        layer.stroke_lines(points.tolist())
        layer.line_width = width
        layer.stroke_style = colour
        layer.stroke_lines(points.tolist())

    def _draw_live(self, force: bool = False, hold: bool = True) -> None:
        """Send the new part of the stroke in progress, at most every ``live_interval`` seconds."""
        now = time.monotonic()
        if not force and now - self._live_time < self.live_interval:
            return
        points = self._stroke[max(0, self._live_sent - 1):]
        self._live_time = now
        self._live_sent = len(self._stroke)
        layer = self.interaction_layer
        colour = _rgb(object_colour(self._stroke_object))

        def draw():
            layer.line_cap = "round"
            layer.line_join = "round"
            layer.line_width = self.brush_width
            layer.stroke_style = colour
            layer.fill_style = colour
            if len(points) == 1:
                layer.fill_circle(points[0][0], points[0][1], self.brush_width / 2)
            else:
                layer.stroke_lines([list(p) for p in points])

        if hold:
            with hold_canvas():
                draw()
        else:
            draw()

    # ------------------------------------------------------------------ internals
    def _canvas_point(self, x, y) -> tuple[float, float] | None:
        """The mouse position clipped to the canvas, or None when it is not two finite numbers.

        A browser (or a script driving the handlers) may report NaN or infinity for one
        move, e.g. while the pointer leaves the window; that point is dropped rather than
        letting it reach the stroke, whose check would then throw the whole stroke away.
        """
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            return None
        if not (math.isfinite(x) and math.isfinite(y)):
            return None
        ch, cw = self._canvas_size
        return (min(max(x, 0.0), float(cw)), min(max(y, 0.0), float(ch)))

    def _check_frame(self, frame_idx) -> int:
        return self._scribbles._check_frame(frame_idx)

    def _set_masks_array(self, masks) -> None:
        masks = as_label_maps(masks, (self._n_frames,) + self._image_size)
        self._masks = list(masks)  # per-frame views of one uint8 block

    def _finish_stroke(self) -> None:
        points, frame_idx = self._stroke, self._stroke_frame
        self._stroke = None
        path = canvas_to_normalised(np.array(points, dtype=np.float64), self._canvas_size)
        end = round(time.monotonic() - self._t0, 3)
        stroke = Stroke(path, self._stroke_object, round(self._stroke_start, 3), end)
        position = len(self._scribbles.frames[frame_idx])
        self._do(("insert", frame_idx, position, stroke), kind="add", frame_idx=frame_idx, stroke=stroke, live=True)

    def _do(self, action: _Action, kind: str, frame_idx: int | None, stroke: Stroke | None = None, live: bool = False) -> None:
        self._apply(action)
        self._undo.append(action)
        self._redo.clear()
        self._after_change(kind, frame_idx, stroke, live=live)

    def _apply(self, action: _Action) -> None:
        if action[0] == "insert":
            _, frame_idx, position, stroke = action
            self._scribbles.frames[frame_idx].insert(position, stroke)
        elif action[0] == "delete":
            _, frame_idx, position, stroke = action
            del self._scribbles.frames[frame_idx][position]
        else:
            self._scribbles = action[2].copy()

    def _after_change(self, kind: str, frame_idx: int | None, stroke: Stroke | None, live: bool = False) -> None:
        self.autosave.save(self._scribbles)
        self._update_status()
        if frame_idx is not None and frame_idx != self.frame_idx and kind in ("undo", "redo"):
            self.frame_idx = frame_idx  # show what was undone; redraws everything
        elif frame_idx is None or frame_idx == self.frame_idx:
            self._redraw_layers([2, 3] if live else [2])
        event = ScribbleEvent(kind, frame_idx, self._scribbles.copy(), stroke)
        for callback in list(self._callbacks):
            callback(event)

    def _update_status(self) -> None:
        self.set_trait("n_strokes", len(self._scribbles))
        self.set_trait("annotated_frames", self._scribbles.annotated_frames)


def _inverse(action: _Action) -> _Action:
    if action[0] == "insert":
        return ("delete",) + tuple(action[1:])
    if action[0] == "delete":
        return ("insert",) + tuple(action[1:])
    return ("replace", action[2], action[1])


def _action_frame(action: _Action) -> int | None:
    if action[0] in ("insert", "delete"):
        return action[1]
    before, after = action[1], action[2]
    changed = [i for i in range(before.n_frames) if before.frames[i] != after.frames[i]]
    return changed[0] if len(changed) == 1 else None


def _distance_to_polyline(point: np.ndarray, polyline: np.ndarray) -> float:
    """Euclidean distance from ``point`` (2,) to the polyline ``(N, 2)``."""
    if len(polyline) == 1:
        return float(np.hypot(*(point - polyline[0])))
    a, b = polyline[:-1], polyline[1:]
    ab = b - a
    length2 = np.maximum((ab ** 2).sum(axis=1), 1e-12)
    t = np.clip(((point - a) * ab).sum(axis=1) / length2, 0.0, 1.0)
    nearest = a + t[:, None] * ab
    return float(np.sqrt(((nearest - point) ** 2).sum(axis=1)).min())
