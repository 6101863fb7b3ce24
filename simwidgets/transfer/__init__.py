"""Dense label transfer: label every pixel of every frame from a few reference pixels.

The method of the paper in one sentence: a pixel takes the label its nearest reference
pixels vote for, nearest meaning most similar in the learned embedding space.  Here:

1. references are grid cells whose label is known (from scribbles rasterised to a label
   map with ``-1`` for unknown, or from a full mask), each with a label *distribution*
   (a cell half covered by an object votes half for it);
2. for each query cell the ``top_k`` most similar references vote, weighted by
   ``softmax(similarity / temperature)``, for every object, background included;
3. optionally (``temporal=True``) each frame also uses the predictions of the few frames
   before it (in the direction of propagation) as references, restricted to a spatial
   window around the query: the label-propagation recipe of self-supervised
   correspondence learning, which keeps objects coherent through a video;
4. the per-object scores on the embedding grid are upsampled bilinearly to full
   resolution before the argmax, so masks follow the grid smoothly.

The modules follow the data flow:

* :mod:`.config` -- :class:`TransferConfig`, the options, checked;
* :mod:`.cache` -- :class:`EmbeddingCache`, each frame embedded once (new scribbles never
  recompute an embedding);
* :mod:`.references` -- scribbles or label maps -> reference cells -> :class:`References`;
* :mod:`.knn` -- the nearest-neighbour kernels and the vote, each beside a plain reference;
* :mod:`.fused` -- the global match's similarity and top-k in one numba kernel (when numba
  is installed; the torch kernel of :mod:`.knn` otherwise);
* :mod:`.reuse` -- the candidates kept across rounds, so a correction round redoes only
  what the new scribbles change;
* :mod:`.fusion` -- how far a correction reaches: a correction round blended with the
  result it corrects (``fuse_corrections``);
* :mod:`.reach` -- how far a correction's own references reach in time: they weigh less in
  frames far from their frame (``correction_reach``);
* :mod:`.local_edit` -- a correction changes its own frame only where its strokes reach
  (``local_corrections``, ``local_depth``);
* :mod:`.geodesic` -- how far a stroke reaches, measured along the frame: its change stops
  at the image's edges (``local_edge_cost``);
* :mod:`.engine` -- :class:`LabelTransfer`: the sweeps, their blend, the masks.
"""
from .cache import EmbeddingCache
from .config import TransferConfig
from . import fusion, local_edit
from .engine import LabelTransfer, PropagationResult, propagate
from .knn import NearestVotes, nearest_votes
from .references import (
    CellBlock,
    ReferenceCells,
    References,
    class_ids_of,
    normalise_references,
    reference_cells,
    references_from_scribbles,
)

__all__ = [
    "TransferConfig",
    "EmbeddingCache",
    "References",
    "PropagationResult",
    "LabelTransfer",
    "propagate",
    "references_from_scribbles",
    "normalise_references",
    "class_ids_of",
    "reference_cells",
    "ReferenceCells",
    "CellBlock",
    "nearest_votes",
    "NearestVotes",
]
