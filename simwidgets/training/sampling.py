"""Pixel-pair sampling: which pixels a similarity loss compares.

A dense embedding of a 256x256 crop at stride 8 has 1,024 cells; comparing all pairs of
two frames would be a million pairs, nearly all of them "background vs background".  The
loss would learn that background is similar to background and little else.  So training
compares a *sample* of cells, balanced two ways:

* every object (background included) contributes the same number of anchors, however
  small it is in the frame;
* every anchor gets one positive (a cell with the same label) and one negative (a cell
  with another label), so positive and negative pairs are exactly balanced.

Samples are drawn within one frame (``labels_b=None``) or across two frames of one video
(anchor in frame A, positive and negative in frame B): the second is what label transfer
needs, since references and queries live in different frames.  Labels may be dense masks
(every cell known) or sparse scribbles (``-1`` = unknown, as produced by
:meth:`simwidgets.scribbles.Scribbles.rasterize`); unknown cells are never sampled.
Optionally a fraction of the negatives are *hard*: cells of another label within a few
cells of the anchor's object, where mistakes at object boundaries are made.

Everything works on label maps already on the embedding grid
(:func:`labels_to_grid`), uses torch ops only and takes a ``torch.Generator``, so a
seed fixes every draw::

    ga, gb = labels_to_grid(mask_a, 8), labels_to_grid(mask_b, 8)
    triplets = sample_triplets(ga, gb, 256, hard_fraction=0.25, generator=torch.Generator().manual_seed(0))
    anchor_emb = gather_cells(emb_a, triplets.anchor)          # (256, D)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..checks import UNKNOWN
from ..errors import BadInputError

__all__ = [
    "UNKNOWN",
    "labels_to_grid",
    "boundary_band",
    "PixelTriplets",
    "PixelPairs",
    "sample_triplets",
    "sample_pairs",
    "gather_cells",
]



def _as_label_tensor(labels, name: str) -> torch.Tensor:
    if isinstance(labels, np.ndarray):
        labels = torch.from_numpy(np.ascontiguousarray(labels))
    if not isinstance(labels, torch.Tensor):
        raise BadInputError(f"{name} must be a numpy array or torch tensor of integer labels; got {type(labels).__name__}")
    if labels.dtype == torch.bool:
        labels = labels.long()
    if labels.is_floating_point() or labels.is_complex():
        raise BadInputError(f"{name} must hold integer labels; got dtype {labels.dtype}")
    if labels.ndim != 2:
        raise BadInputError(f"{name} must be a 2-D (h, w) label map; got shape {tuple(labels.shape)}")
    labels = labels.long()
    if labels.numel() and labels.min() < UNKNOWN:
        raise BadInputError(f"{name} holds label {int(labels.min())}; labels are >= 0, or -1 for unknown")
    return labels


def labels_to_grid(labels, stride: int) -> torch.Tensor:
    """Label map ``(H, W)`` -> ``(ceil(H/stride), ceil(W/stride))`` label of each grid cell.

    A cell takes the label most of its *known* pixels have (ties go to the smaller label),
    so a thin scribble crossing a cell still labels it; a cell with no known pixel is
    ``-1``.  This matches how the embedding grid of :class:`simwidgets.models.EmbeddingModel`
    covers the frame (cell ``(i, j)`` = pixels ``[i*stride, (i+1)*stride)``).
    """
    labels = _as_label_tensor(labels, "labels")
    if stride < 1:
        raise BadInputError(f"stride must be positive; got {stride}")
    if stride == 1:
        return labels.clone()
    h, w = labels.shape
    gh, gw = -(-h // stride), -(-w // stride)
    padded = F.pad(labels, (0, gw * stride - w, 0, gh * stride - h), value=UNKNOWN)
    values = torch.unique(padded[padded >= 0])
    if values.numel() == 0:
        return torch.full((gh, gw), UNKNOWN, dtype=torch.long, device=labels.device)
    # (K, gh, gw) counts of each label per cell
    onehot = (padded.unsqueeze(0) == values.view(-1, 1, 1)).float()
    counts = F.avg_pool2d(onehot.unsqueeze(0), stride, stride)[0] * stride * stride
    best = counts.argmax(0)  # first maximum = smallest label on ties
    grid = values[best]
    grid[counts.sum(0) == 0] = UNKNOWN
    return grid


def boundary_band(labels, width: int) -> torch.Tensor:
    """``(h, w)`` bool: known cells within ``width`` cells (Chebyshev) of a cell of another known label."""
    labels = _as_label_tensor(labels, "labels")
    if width < 1:
        return torch.zeros_like(labels, dtype=torch.bool)
    values = torch.unique(labels[labels >= 0])
    band = torch.zeros_like(labels, dtype=torch.bool)
    for value in values:
        inside = (labels == value).float()[None, None]
        near = F.max_pool2d(inside, 2 * width + 1, stride=1, padding=width)[0, 0] > 0
        band |= near & (labels >= 0) & (labels != value)
    return band


@dataclass(frozen=True)
class PixelTriplets:
    """Anchor / positive / negative cells, as flat indices into ``h * w`` grids.

    ``anchor`` indexes frame A's grid; ``positive`` and ``negative`` index frame B's
    grid (the same frame for within-frame samples).  ``label`` is the anchor's (= the
    positive's) label, ``negative_label`` the negative's; ``hard`` marks negatives drawn
    from the boundary band.  All are ``(N,)`` tensors.
    """

    anchor: torch.Tensor
    positive: torch.Tensor
    negative: torch.Tensor
    label: torch.Tensor
    negative_label: torch.Tensor
    hard: torch.Tensor

    def __len__(self) -> int:
        return int(self.anchor.numel())

    def as_pairs(self) -> "PixelPairs":
        """The ``2N`` pairs (anchor, positive) and (anchor, negative): exactly balanced."""
        return PixelPairs(
            index_a=torch.cat([self.anchor, self.anchor]),
            index_b=torch.cat([self.positive, self.negative]),
            same=torch.cat([torch.ones_like(self.anchor, dtype=torch.bool), torch.zeros_like(self.anchor, dtype=torch.bool)]),
        )


@dataclass(frozen=True)
class PixelPairs:
    """Pairs of cells: ``index_a`` in frame A, ``index_b`` in frame B, ``same`` label or not. ``(P,)`` each."""

    index_a: torch.Tensor
    index_b: torch.Tensor
    same: torch.Tensor

    def __len__(self) -> int:
        return int(self.index_a.numel())


def _draw(weights: torch.Tensor, n: int, generator) -> torch.Tensor:
    """``n`` indices drawn with replacement, proportionally to ``weights`` (1-D, some > 0)."""
    return torch.multinomial(weights, n, replacement=True, generator=generator)


def sample_triplets(
    labels_a,
    labels_b=None,
    n: int = 256,
    hard_fraction: float = 0.0,
    boundary_width: int = 2,
    generator: torch.Generator | None = None,
) -> PixelTriplets:
    """Draw ``n`` class-balanced (anchor, positive, negative) triplets of grid cells.

    Parameters
    ----------
    labels_a : ``(h, w)`` integer labels of frame A's grid, ``-1`` unknown
    labels_b : the same for frame B, or None to sample within frame A
    n : number of triplets (fewer anchors per label when some labels are missing)
    hard_fraction : fraction of negatives drawn near the anchor's object in frame B
        (within ``boundary_width`` cells of it); falls back to uniform when there are none
    generator : torch.Generator for reproducible draws

    Returns
    -------
    PixelTriplets; empty (length 0) when no label appears in both frames together with a
    second label in frame B, i.e. when no positive-negative contrast exists.

    Notes
    -----
    Anchors: each usable label gets ``n // n_labels`` anchors (the remainder goes to the
    first labels), uniform over its cells.  A label is usable when it is known in frame
    A, present in frame B and frame B holds at least one other known label.
    """
    labels_a = _as_label_tensor(labels_a, "labels_a")
    labels_b = labels_a if labels_b is None else _as_label_tensor(labels_b, "labels_b")
    if n < 0:
        raise BadInputError(f"n must be non-negative; got {n}")
    if not 0.0 <= hard_fraction <= 1.0:
        raise BadInputError(f"hard_fraction must lie in [0, 1]; got {hard_fraction}")
    device = labels_a.device
    flat_a, flat_b = labels_a.reshape(-1), labels_b.reshape(-1)
    known_b = flat_b >= 0
    values_b = torch.unique(flat_b[known_b])
    present_b = set(values_b.tolist())
    usable = [v for v in torch.unique(flat_a[flat_a >= 0]).tolist() if v in present_b] if len(present_b) > 1 else []
    empty = torch.zeros(0, dtype=torch.long, device=device)
    if not usable or n == 0:
        return PixelTriplets(empty, empty, empty, empty, empty, empty.bool())

    counts = [n // len(usable) + (1 if k < n % len(usable) else 0) for k in range(len(usable))]
    n_hard_total = 0
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("anchor", "positive", "negative", "label", "nlabel", "hard")}
    for value, count in zip(usable, counts):
        if count == 0:
            continue
        anchor = _draw((flat_a == value).float(), count, generator)
        positive = _draw((flat_b == value).float(), count, generator)
        other = (known_b & (flat_b != value)).float()
        negative = _draw(other, count, generator)
        hard = torch.zeros(count, dtype=torch.bool, device=device)
        n_hard = int(round(hard_fraction * count))
        if n_hard > 0:
            inside = (labels_b == value).float()[None, None]
            near = F.max_pool2d(inside, 2 * boundary_width + 1, stride=1, padding=boundary_width)[0, 0].reshape(-1) > 0
            band = (near & known_b & (flat_b != value)).float()
            if band.sum() > 0:
                negative[:n_hard] = _draw(band, n_hard, generator)
                hard[:n_hard] = True
                n_hard_total += n_hard
        parts["anchor"].append(anchor)
        parts["positive"].append(positive)
        parts["negative"].append(negative)
        parts["label"].append(torch.full((count,), value, dtype=torch.long, device=device))
        parts["nlabel"].append(flat_b[negative])
        parts["hard"].append(hard)
    cat = {k: torch.cat(v) for k, v in parts.items()}
    return PixelTriplets(cat["anchor"], cat["positive"], cat["negative"], cat["label"], cat["nlabel"], cat["hard"])


def sample_pairs(
    labels_a,
    labels_b=None,
    n_pairs: int = 512,
    hard_fraction: float = 0.0,
    boundary_width: int = 2,
    generator: torch.Generator | None = None,
) -> PixelPairs:
    """``n_pairs`` cell pairs, half same-label and half different-label, class-balanced anchors.

    A convenience over :func:`sample_triplets` (``n_pairs // 2`` triplets, each giving
    one positive and one negative pair); see it for the parameters.
    """
    if n_pairs % 2:
        raise BadInputError(f"n_pairs must be even (half positive, half negative); got {n_pairs}")
    return sample_triplets(labels_a, labels_b, n_pairs // 2, hard_fraction, boundary_width, generator).as_pairs()


def gather_cells(embedding: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows of a dense embedding: ``(D, h, w)`` and flat indices ``(N,)`` -> ``(N, D)``."""
    if embedding.ndim != 3:
        raise BadInputError(f"embedding must be (D, h, w); got shape {tuple(embedding.shape)}")
    return embedding.reshape(embedding.shape[0], -1)[:, index].t()
