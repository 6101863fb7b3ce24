"""simwidgets: similarity learning for dense label transfer, in Jupyter.

Three lines to segment a video from scribbles::

    import simwidgets as sw
    video = sw.load_sample("bear")
    masks = sw.propagate(video.frames, video.scribbles["001"])

See README.md and the notebooks for the method and the widgets.
"""
__version__ = "0.1.0"

from .errors import BadInputError
from .scribbles import Scribbles, Stroke, UNKNOWN
from .video import VideoSequence, load_davis_sequence, load_sample, list_sequences, sample_root, synthetic_video
from .palette import davis_palette, object_colour, save_indexed_png
