"""ScribbleWidget: the scribble canvas with a control bar, ready to display in a notebook.

::

    from simwidgets.widgets import ScribbleWidget
    w = ScribbleWidget(sw.load_sample("bear"))   # strokes autosave to bear.scribbles.json
    w                                           # paint; then w.scribbles is a DAVIS Scribbles

The controls are plain ipywidgets linked to the canvas traitlets; the canvas
(:class:`~simwidgets.widgets.canvas.ScribbleCanvas`, ``w.canvas``) knows nothing about
them, so an application can reuse it with other controls.
"""
from __future__ import annotations

from pathlib import Path

import ipywidgets as widgets

from ..palette import object_colour
from ..scribbles import Scribbles, Stroke
from .canvas import ScribbleCanvas, ScribbleEvent

__all__ = ["ScribbleWidget"]

_HELP = (
    "Paint on the frame. Keys in JupyterLab (click the canvas first): ←/→ frame (shift: ±10), "
    "0–9 object, + new object, z undo, shift+z redo, e eraser, m masks. "
    "In Notebook 7 use the buttons: its own shortcuts take the keys."
)


def _text_colour(rgb: tuple[int, int, int]) -> str:
    r, g, b = rgb
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"


class ScribbleWidget(widgets.VBox):
    """Paint DAVIS scribbles for several objects on the frames of a video.

    Parameters are those of :class:`~simwidgets.widgets.canvas.ScribbleCanvas`:
    ``frames`` (VideoSequence, ``(T, H, W, 3)`` uint8 array or list of frames), ``masks``
    (``(T, H, W)`` label maps to overlay), ``scribbles`` (initial Scribbles, DAVIS dict or
    path), ``width`` (canvas pixels), ``autosave`` (path, True for
    ``<name>.scribbles.json`` in the current folder, False to disable), ``name``,
    ``n_objects``.

    Attributes
    ----------
    canvas : the ScribbleCanvas (traitlets ``frame_idx``, ``object_id``, ``brush_width``,
        ``opacity``, ``show_masks``, ``tool`` live there; observe them on it)
    scribbles : a copy of the current :class:`~simwidgets.scribbles.Scribbles`
    """

    def __init__(self, frames, masks=None, scribbles=None, width: int = 640, autosave=True, **kwargs):
        canvas_keys = {
            "name", "n_objects", "min_move", "live_interval",
            "frame_idx", "object_id", "brush_width", "opacity", "show_masks", "tool",
        }
        canvas_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in canvas_keys}
        self.canvas = ScribbleCanvas(
            frames, masks=masks, scribbles=scribbles, width=width, autosave=autosave, **canvas_kwargs
        )
        c = self.canvas
        last = c.n_frames - 1

        # navigation
        self.prev_button = widgets.Button(icon="chevron-left", tooltip="previous frame (←)", layout=widgets.Layout(width="36px"))
        self.next_button = widgets.Button(icon="chevron-right", tooltip="next frame (→)", layout=widgets.Layout(width="36px"))
        self.frame_slider = widgets.IntSlider(
            value=c.frame_idx, min=0, max=max(last, 0), description="frame",
            continuous_update=False, disabled=last == 0, style={"description_width": "44px"},
            layout=widgets.Layout(width="420px"),
        )
        self.frame_label = widgets.Label()
        self.prev_button.on_click(lambda _: c.previous_frame())
        self.next_button.on_click(lambda _: c.next_frame())
        widgets.link((self.frame_slider, "value"), (c, "frame_idx"))

        # objects and tools
        self.object_box = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.add_object_button = widgets.Button(description="+ object", tooltip="add an object (+)", layout=widgets.Layout(width="80px"))
        self.add_object_button.on_click(lambda _: c.add_object())
        self.tool_buttons = widgets.ToggleButtons(
            options=[("brush", "brush"), ("eraser", "eraser")], value=c.tool,
            tooltips=["paint strokes", "click or drag over strokes to remove them (e)"],
            style={"button_width": "64px"},
        )
        widgets.link((self.tool_buttons, "value"), (c, "tool"))
        self.brush_slider = widgets.FloatSlider(
            value=c.brush_width, min=1, max=30, step=1, description="brush", readout_format=".0f",
            style={"description_width": "44px"}, layout=widgets.Layout(width="250px"),
        )
        widgets.link((self.brush_slider, "value"), (c, "brush_width"))
        self.undo_button = widgets.Button(icon="undo", tooltip="undo (z)", layout=widgets.Layout(width="36px"))
        self.redo_button = widgets.Button(icon="repeat", tooltip="redo (shift+z)", layout=widgets.Layout(width="36px"))
        self.clear_button = widgets.Button(description="clear frame", tooltip="remove this frame's strokes (undoable)", layout=widgets.Layout(width="96px"))
        self.undo_button.on_click(lambda _: c.undo())
        self.redo_button.on_click(lambda _: c.redo())
        self.clear_button.on_click(lambda _: c.clear_frame())

        # masks
        self.masks_checkbox = widgets.Checkbox(value=c.show_masks, description="masks", indent=False, layout=widgets.Layout(width="70px"))
        widgets.link((self.masks_checkbox, "value"), (c, "show_masks"))
        self.opacity_slider = widgets.FloatSlider(
            value=c.opacity, min=0, max=1, step=0.05, description="opacity",
            style={"description_width": "56px"}, layout=widgets.Layout(width="270px"),
        )
        widgets.link((self.opacity_slider, "value"), (c, "opacity"))

        # which frames carry scribbles, and the autosave status
        self.timeline = widgets.HTML()
        self.status = widgets.HTML()

        c.observe(self._refresh_objects, names=["object_id", "n_objects"])
        c.observe(self._refresh_status, names=["frame_idx", "n_strokes", "annotated_frames"])
        c.observe(self._refresh_history, names=["n_strokes"])
        c.on_change(self._after_change)
        self._refresh_objects()
        self._refresh_status()
        self._refresh_history()

        nav = widgets.HBox([self.prev_button, self.frame_slider, self.next_button, self.frame_label])
        tools = widgets.HBox(
            [self.object_box, self.add_object_button, self.tool_buttons, self.brush_slider,
             self.undo_button, self.redo_button, self.clear_button],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
        )
        for slider in (self.frame_slider, self.brush_slider, self.opacity_slider):
            slider.layout.flex = "0 0 auto"  # never squeezed to nothing by a neighbour
        view = widgets.HBox([self.masks_checkbox, self.opacity_slider])
        help_line = widgets.HTML(f"<small>{_HELP}</small>")
        super().__init__(children=[tools, c, nav, self.timeline, view, self.status, help_line], **kwargs)
        self.add_class("simwidgets-scribble-widget")

    # ------------------------------------------------------------------ delegated API
    scribbles = property(lambda self: self.canvas.scribbles, doc="A copy of the current Scribbles (DAVIS format).")
    masks = property(lambda self: self.canvas.masks, doc="Per-frame overlay label maps.")
    n_frames = property(lambda self: self.canvas.n_frames)
    autosave_path = property(lambda self: self.canvas.autosave.path, doc="Where strokes are autosaved (None: off).")

    def _delegate(name):  # noqa: N805 - a small property factory for the canvas traitlets
        return property(
            lambda self: getattr(self.canvas, name),
            lambda self, value: setattr(self.canvas, name, value),
            doc=f"The canvas traitlet ``{name}``.",
        )

    frame_idx = _delegate("frame_idx")
    object_id = _delegate("object_id")
    n_objects = _delegate("n_objects")
    brush_width = _delegate("brush_width")
    opacity = _delegate("opacity")
    show_masks = _delegate("show_masks")
    tool = _delegate("tool")
    del _delegate

    def set_scribbles(self, scribbles) -> None:
        """Replace all scribbles (Scribbles, DAVIS dict or JSON path); undoable."""
        self.canvas.set_scribbles(scribbles)

    def set_masks(self, masks) -> None:
        """Overlay ``(T, H, W)`` label maps (None clears)."""
        self.canvas.set_masks(masks)

    def set_mask(self, frame_idx: int, mask) -> None:
        """Overlay one frame's ``(H, W)`` label map (None removes it)."""
        self.canvas.set_mask(frame_idx, mask)

    def add_stroke(self, frame_idx: int, path, object_id: int | None = None) -> Stroke:
        """Add a stroke from code (normalised ``(x, y)`` path); see ScribbleCanvas.add_stroke."""
        return self.canvas.add_stroke(frame_idx, path, object_id)

    def on_change(self, callback, remove: bool = False) -> None:
        """Call ``callback(event)`` (a ScribbleEvent) after every change of the scribbles."""
        self.canvas.on_change(callback, remove=remove)

    def undo(self) -> bool:
        return self.canvas.undo()

    def redo(self) -> bool:
        return self.canvas.redo()

    def clear_frame(self, frame_idx: int | None = None) -> None:
        self.canvas.clear_frame(frame_idx)

    def add_object(self) -> int:
        return self.canvas.add_object()

    def save(self, path: str | Path, indent: int | None = None) -> None:
        """Write the scribbles as a DAVIS JSON file."""
        self.canvas.save(path, indent=indent)

    def redraw(self) -> None:
        self.canvas.redraw()

    # the synthetic-event handlers, for tests and scripts
    def handle_mouse_down(self, x, y):
        self.canvas.handle_mouse_down(x, y)

    def handle_mouse_move(self, x, y):
        self.canvas.handle_mouse_move(x, y)

    def handle_mouse_up(self, x, y):
        self.canvas.handle_mouse_up(x, y)

    def handle_key_down(self, key, shift_key=False, ctrl_key=False, meta_key=False) -> bool:
        return self.canvas.handle_key_down(key, shift_key, ctrl_key, meta_key)

    def __repr__(self) -> str:
        c = self.canvas
        return (
            f"ScribbleWidget({c.name!r}, {c.n_frames} frames, frame_idx={c.frame_idx}, "
            f"object_id={c.object_id}, {c.n_strokes} strokes on frames {c.annotated_frames})"
        )

    # ------------------------------------------------------------------ controls
    def _refresh_objects(self, change=None) -> None:
        c = self.canvas
        buttons = []
        for object_id in range(0, c.n_objects + 1):
            colour = object_colour(object_id)
            selected = object_id == c.object_id
            label = "bg" if object_id == 0 else str(object_id)
            button = widgets.Button(
                description=("● " if selected else "") + label,
                tooltip=f"paint {'background' if object_id == 0 else f'object {object_id}'} (key {object_id})"
                if object_id <= 9 else f"paint object {object_id}",
                layout=widgets.Layout(width="52px", border="3px solid #222" if selected else "3px solid transparent"),
            )
            button.style.button_color = "#%02x%02x%02x" % colour
            button.style.text_color = _text_colour(colour)
            button.style.font_weight = "bold" if selected else "normal"
            button.on_click(lambda _, object_id=object_id: setattr(c, "object_id", object_id))
            buttons.append(button)
        self.object_buttons = buttons
        self.object_box.children = buttons

    def _refresh_status(self, change=None) -> None:
        c = self.canvas
        self.frame_label.value = f"/ {c.n_frames - 1}"
        annotated = set(c.annotated_frames)
        cells = []
        for frame_idx in range(c.n_frames):
            colour = "#e6550d" if frame_idx in annotated else "#d9d9d9"
            border = "2px solid #000" if frame_idx == c.frame_idx else "2px solid transparent"
            cells.append(
                f'<div title="frame {frame_idx}" style="flex:1;min-width:2px;max-width:14px;height:12px;'
                f'background:{colour};border-bottom:{border};margin-right:1px"></div>'
            )
        self.timeline.value = (
            '<div style="display:flex;width:%dpx" title="frames with scribbles (orange)">%s</div>'
            % (c.canvas_size[1], "".join(cells))
        )
        where = c.autosave.path
        saved = f"autosave → <code>{where}</code>" if where is not None else "autosave off"
        if c.autosave.last_error:
            saved = f"<b style='color:#b00'>autosave failed: {c.autosave.last_error}</b>"
        frames = c.annotated_frames
        shown = ", ".join(map(str, frames[:12])) + (" …" if len(frames) > 12 else "")
        self.status.value = (
            f"<small>{c.n_strokes} strokes on frames [{shown}] · {saved}</small>"
        )

    def _after_change(self, event) -> None:
        """After any change: the history buttons, and the status (the autosave file may have moved)."""
        self._refresh_history()
        self._refresh_status()

    def _refresh_history(self, change=None) -> None:
        self.undo_button.disabled = not self.canvas.can_undo
        self.redo_button.disabled = not self.canvas.can_redo
