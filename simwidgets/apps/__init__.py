"""Apps: the widgets composed with a label-transfer session.

* :class:`SegmentationApp` -- scribble, propagate, correct, export (the interactive loop);
* :class:`SimilarityExplorer` / :class:`EmbeddingProbe` -- click a pixel, see its
  similarity to every pixel and where a label came from.

The views only turn events into calls; the session and the transfer never know a widget
exists (Cutie's split of GUI, controller and inference core).
"""
from .explorer import EmbeddingProbe, ExplorerResult, Provenance, SimilarityExplorer
from .segmentation import SegmentationApp

__all__ = [
    "SegmentationApp",
    "SimilarityExplorer",
    "EmbeddingProbe",
    "ExplorerResult",
    "Provenance",
]
