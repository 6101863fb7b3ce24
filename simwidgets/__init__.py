"""simwidgets: similarity learning for dense label transfer, in Jupyter.

Three lines to segment a video from scribbles::

    import simwidgets as sw
    video = sw.load_sample("bear")
    masks = sw.propagate(video.frames, video.scribbles["001"])

See README.md and the notebooks for the method and the widgets.

Importing the package is light (numpy, Pillow): the torch-based parts (models, label
transfer, training) load on first use, so the widgets never pull in torch.  The folders
follow the data flow: ``video``/``scribbles`` (input) -> ``models`` (embeddings) ->
``transfer`` (labels from references) -> ``session`` (interactive rounds) ->
``evaluation`` (J, F, protocols); ``training`` learns the embedding; ``widgets`` and
``apps`` put it in a notebook.
"""
from importlib import import_module

__version__ = "0.1.0"

from .errors import BadInputError
from .palette import davis_palette, object_colour, save_indexed_png
from .scribbles import UNKNOWN, Scribbles, Stroke
from .video import (
    VideoSequence,
    list_sequences,
    load_davis_sequence,
    load_sample,
    sample_root,
    synthetic_video,
)

# name -> module, imported on first access (PEP 562)
_LAZY = {
    "propagate": "transfer",
    "LabelTransfer": "transfer",
    "TransferConfig": "transfer",
    "EmbeddingCache": "transfer",
    "load_model": "models",
    "save_checkpoint": "models",
    "EmbeddingModel": "models",
    "as_embedding": "models",
    "precompile": "models",
    "pick_device": "device",
    "describe_device": "device",
    "evaluate_masks": "evaluation",
    "jaccard": "evaluation",
    "f_measure": "evaluation",
    "auc": "evaluation",
    "metric_at": "evaluation",
    "evaluate_semi_supervised": "evaluation",
    "evaluate_interactive": "evaluation",
    "InteractiveSession": "session",
    "SegmentationApp": "apps",
    "SimilarityExplorer": "apps",
    "EmbeddingProbe": "apps",
    "ScribbleWidget": "widgets",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'simwidgets' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
