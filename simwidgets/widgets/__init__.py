"""Jupyter widgets of simwidgets (ipycanvas / ipywidgets; this package never imports torch).

* :class:`ScribbleWidget` - paint DAVIS scribbles on a video, with controls and autosave;
* :class:`ScribbleCanvas` - the reusable layered canvas inside it (no controls);
* coordinate conversions between canvas, image and normalised DAVIS coordinates.
"""
from .autosave import AutosaveWarning, default_autosave_path
from .canvas import ScribbleCanvas, ScribbleEvent, mask_overlay
from .coords import (
    canvas_size_for,
    canvas_to_image_coordinates,
    canvas_to_normalised,
    image_to_canvas_coordinates,
    normalised_to_canvas,
)
from .scribble_widget import ScribbleWidget

__all__ = [
    "ScribbleWidget",
    "ScribbleCanvas",
    "ScribbleEvent",
    "AutosaveWarning",
    "default_autosave_path",
    "mask_overlay",
    "canvas_size_for",
    "canvas_to_image_coordinates",
    "image_to_canvas_coordinates",
    "canvas_to_normalised",
    "normalised_to_canvas",
]
