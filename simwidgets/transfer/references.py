"""From what the user gave (scribbles, label maps) to the table of reference cells.

The transfer votes on the embedding grid, so references are grid cells, each with a label
*distribution* (a cell half covered by an object votes half for it).  The steps, each a
function here:

1. :func:`normalise_references` checks scribbles or label maps and returns
   ``{frame: (H, W) label map, -1 = unknown}`` (scribbles are rasterised);
2. :func:`reference_cells` picks the cells: every cell with a known pixel, plus automatic
   background cells far from every object on frames that mark every object, then, frame
   by frame, at most ``max_references`` of them (the user's first).  It needs only the
   labels, not the embeddings, so the similarity explorer can locate each reference;
3. :func:`reference_table` gathers the cells' embeddings into :class:`References`, each
   frame's rows named by a :class:`BlockKey` so the global candidates of a frame can be
   kept across rounds while a block is unchanged (:mod:`.reuse`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch

from .. import checks
from ..errors import BadInputError
from ..scribbles import Scribbles
from .config import TransferConfig

__all__ = [
    "BlockKey",
    "CellBlock",
    "ReferenceCells",
    "References",
    "background_cells",
    "cell_distributions",
    "class_ids_of",
    "normalise_references",
    "reference_cells",
    "reference_table",
    "references_from_scribbles",
    "frame_subset",
    "stratified_subset",
]


@dataclass(frozen=True)
class BlockKey:
    """What identifies one frame's consecutive rows of a reference table: the frame and
    its exact kept cells (``int64`` flat indices as bytes: hashable and compared exactly)."""

    frame: int
    cells: bytes

    @property
    def size(self) -> int:
        """Number of rows (cells) of the block."""
        return len(self.cells) // 8


@dataclass
class References:
    """Reference cells: embeddings ``(N, D)`` and label distributions ``(N, C)``.

    ``blocks`` names the consecutive rows of each annotated frame, in order; a table
    without blocks (made by hand) is never kept across rounds.
    """

    embeddings: torch.Tensor
    labels: torch.Tensor
    blocks: tuple[BlockKey, ...] = ()

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def block_starts(self) -> dict[BlockKey, int]:
        """First row of each block."""
        starts, offset = {}, 0
        for key in self.blocks:
            starts[key] = offset
            offset += key.size
        return starts


@dataclass(frozen=True)
class CellBlock:
    """The kept reference cells of one annotated frame.

    ``cells`` ``(n,)`` int64 flat grid indices ``row * w + col`` (sorted);
    ``labels`` ``(n, C)`` their label distributions over the class ids.
    """

    frame: int
    cells: torch.Tensor
    labels: torch.Tensor


@dataclass
class ReferenceCells:
    """The reference cells the transfer keeps, before any embedding is read.

    Attributes
    ----------
    class_ids : object ids of the label channels, background 0 first
    grid : ``(h, w)`` of the embedding grid
    blocks : one :class:`CellBlock` per annotated frame that keeps a cell, frames in order
    clamps : ``{frame: (known (h, w) bool, distribution (C, h, w))}``: the user's own labels
        of each annotated frame, which the transfer imposes on that frame after voting
    """

    class_ids: list[int]
    grid: tuple[int, int]
    blocks: tuple[CellBlock, ...]
    clamps: dict

    def __len__(self) -> int:
        return sum(len(b.cells) for b in self.blocks)

    def positions(self) -> torch.Tensor:
        """``(N, 3)`` int64 ``(frame, row, col)`` of every cell, in the table's row order."""
        w = self.grid[1]
        if not self.blocks:
            return torch.zeros((0, 3), dtype=torch.long)
        return torch.cat([
            torch.stack([torch.full_like(b.cells, b.frame), b.cells // w, b.cells % w], dim=1) for b in self.blocks
        ])

    def labels(self) -> torch.Tensor:
        """``(N, C)`` label distributions, in the table's row order."""
        return torch.cat([b.labels for b in self.blocks]) if self.blocks else torch.zeros((0, len(self.class_ids)))


# --------------------------------------------------------------------------- normalising
def references_from_scribbles(
    scribbles: Scribbles, height: int, width: int, brush_width: float = 3.0
) -> dict[int, np.ndarray]:
    """Rasterise every annotated frame: ``{frame_idx: (H, W) labels with -1 unknown}``."""
    return {f: scribbles.rasterize(f, height, width, brush_width) for f in scribbles.annotated_frames}


def normalise_references(references, n_frames: int, height: int, width: int, brush_width: float = 3.0):
    """Checked ``{frame_idx: (H, W) int label map}`` (-1 unknown) from scribbles or label maps.

    Frames without a single known pixel are dropped; nothing known at all is an error (a
    vote needs at least one reference).
    """
    if isinstance(references, Scribbles):
        if references.n_frames != n_frames:
            raise BadInputError(
                f"frame-count mismatch: scribbles for {references.n_frames} frames, video has {n_frames}"
            )
        references = references_from_scribbles(references, height, width, brush_width)
    if not isinstance(references, Mapping):
        raise BadInputError(
            "references must be Scribbles or a dict {frame_idx: (H, W) label map with -1 for unknown}"
        )
    result = {}
    for frame_idx, label_map in references.items():
        frame_idx = checks.frame_index(frame_idx, n_frames, "reference frame index")
        label_map = checks.label_map(label_map, (height, width), f"reference label map of frame {frame_idx}")
        if (label_map >= 0).any():
            result[frame_idx] = label_map
    if not result:
        raise BadInputError("no reference pixels: the scribbles or masks given are empty")
    return result


def class_ids_of(references: Mapping[int, np.ndarray]) -> list[int]:
    """Object ids named by normalised references, background 0 always first."""
    return sorted({0} | {int(v) for m in references.values() for v in np.unique(m) if v >= 0})


# --------------------------------------------------------------------------- cells
def cell_distributions(label_map: np.ndarray, class_index: dict[int, int], stride: int, grid) -> torch.Tensor:
    """Per-cell label counts ``(C, h, w)`` from a full-resolution label map.

    Each known pixel adds one vote to its cell; unknown pixels (-1) add nothing, so cells
    without known pixels get an all-zero column.
    """
    h, w = grid
    height, width = label_map.shape
    n_classes = len(class_index)
    lookup = np.full(256 + 1, -1, dtype=np.int64)
    for object_id, index in class_index.items():
        lookup[object_id + 1] = index
    cls = lookup[label_map.astype(np.int64) + 1]
    rows = np.arange(height) // stride
    cols = np.arange(width) // stride
    cell = rows[:, None] * w + cols[None, :]
    known = cls >= 0
    flat = cls[known] * (h * w) + cell[known]
    counts = np.bincount(flat, minlength=n_classes * h * w).astype(np.float32)
    return torch.from_numpy(counts.reshape(n_classes, h, w))


def background_cells(label_map: np.ndarray, stride: int, grid, margin: float) -> np.ndarray:
    """Boolean ``(h, w)``: cells farther than ``margin * diagonal`` from every object pixel.

    The distance is taken on the grid (cells are ``stride`` pixels apart), from the cells
    sampled at their centres; an object too thin to cover a centre still counts, through
    the cells its pixels fall in.
    """
    from scipy.ndimage import distance_transform_edt

    height, width = label_map.shape
    h, w = grid
    objects = label_map > 0
    if not objects.any():
        return np.zeros((h, w), dtype=bool)
    rows = np.minimum((np.arange(h) * stride + stride // 2), height - 1)
    cols = np.minimum((np.arange(w) * stride + stride // 2), width - 1)
    small = objects[np.ix_(rows, cols)]
    if not small.any():
        small = np.zeros_like(small)
        rr, cc = np.nonzero(objects)
        small[np.minimum(rr // stride, h - 1), np.minimum(cc // stride, w - 1)] = True
    distance = distance_transform_edt(~small) * stride
    return distance > margin * float(np.hypot(height, width))


def stratified_subset(dominant: torch.Tensor, limit: int) -> torch.Tensor:
    """Sorted positions of at most ``limit`` items, the same share for every dominant class
    (so small objects survive), drawn with a fixed seed: the same labels give the same cells."""
    generator = torch.Generator().manual_seed(0)
    classes = dominant.unique()
    share = max(1, limit // len(classes))
    keep = []
    for c in classes.tolist():
        members = torch.nonzero(dominant == c).flatten()
        if len(members) > share:
            members = members[torch.randperm(len(members), generator=generator)[:share]]
        keep.append(members)
    return torch.cat(keep).sort().values


def frame_subset(dominant: torch.Tensor, user: torch.Tensor, limit: int) -> torch.Tensor:
    """Sorted positions of the cells of one frame to keep, at most ``limit``.

    ``dominant`` is each cell's winning class, ``user`` whether a pixel of it was marked by
    the user (the rest are automatic background cells).  The user's cells are facts and
    all stay when they fit (a full mask does not: then a class-stratified subset of them);
    automatic background cells fill what is left, up to one class's share
    (``limit // classes``), since they are only a guess."""
    n_classes = max(1, int(dominant.max()) + 1) if len(dominant) else 1
    user_rows = torch.nonzero(user).flatten()
    auto_rows = torch.nonzero(~user).flatten()
    if len(user_rows) > limit:
        return user_rows[stratified_subset(dominant[user_rows], limit)]
    budget = min(limit - len(user_rows), max(1, limit // max(n_classes, 2)))
    if len(auto_rows) > budget:
        generator = torch.Generator().manual_seed(0)
        auto_rows = auto_rows[torch.randperm(len(auto_rows), generator=generator)[:budget]]
    return torch.cat([user_rows, auto_rows]).sort().values


def reference_cells(
    references: Mapping[int, np.ndarray], class_ids: list[int], config: TransferConfig, stride: int, grid,
    background_frames=None,
) -> ReferenceCells:
    """The reference cells of normalised references, with their label distributions.

    Automatic background cells (cells farther than ``config.background_margin`` of the
    frame diagonal from every object pixel) are added on annotated frames that mark every
    object, and only on ``background_frames`` when that is given: the first scribbles of
    the DAVIS protocol mark objects only, so far-away cells are the only background there;
    a correction stroke, on the other hand, is a small patch on a missed region, and "far
    from it" covers the correctly segmented rest of the object.

    Each frame's cells are capped on their own (:func:`frame_subset`), by a rule that
    depends on that frame's labels only: a correction on another frame then leaves every
    earlier frame's cells as they were, so their kept candidates stay valid and only the
    new frame is matched, and the new frame's own strokes are all kept, however many
    cells the earlier frames hold (a subset redrawn over all frames together diluted a
    correction's few hundred cells among thousands and let it miss its target).
    """
    class_index = {object_id: i for i, object_id in enumerate(class_ids)}
    frames, cell_lists, dists, clamps = [], [], [], {}
    all_objects = {c for c in class_ids if c > 0}
    for frame_idx, label_map in sorted(references.items()):
        counts = cell_distributions(label_map, class_index, stride, grid)
        user_total = counts.sum(0)
        marks_every_object = bool(all_objects) and all(counts[class_index[c]].any() for c in all_objects)
        # the user's labels are facts on their own frame: clamped there after voting
        clamps[frame_idx] = (user_total > 0, counts / user_total.clamp_min(1e-12))
        allowed = background_frames is None or frame_idx in background_frames
        if config.background_margin is not None and marks_every_object and allowed:
            # background examples far from every object stroke (a hypothesis, so not
            # clamped; object strokes drawn later near a cell take it out again)
            background = torch.from_numpy(background_cells(label_map, stride, grid, config.background_margin))
            counts[0][background & (user_total == 0)] = 1.0
        flat = counts.reshape(len(class_ids), -1)
        total = flat.sum(0)
        cells = torch.nonzero(total > 0).flatten()
        dist = flat[:, cells] / total[cells]
        keep = frame_subset(dist.argmax(0), (user_total.reshape(-1) > 0)[cells], config.max_references)
        frames.append(frame_idx)
        cell_lists.append(cells[keep])
        dists.append(dist[:, keep])
    blocks = tuple(
        CellBlock(frame, cells, dist.T) for frame, cells, dist in zip(frames, cell_lists, dists) if len(cells)
    )
    return ReferenceCells(list(class_ids), tuple(grid), blocks, clamps)


def reference_table(cells: ReferenceCells, embedding: Callable[[int], torch.Tensor], device) -> References:
    """The :class:`References` of the cells: each cell's embedding read from its frame's
    ``(D, h, w)`` ``embedding(frame)``, labels on ``device``, one :class:`BlockKey` per frame."""
    h, w = cells.grid
    embeddings, labels, blocks = [], [], []
    for block in cells.blocks:
        embeddings.append(embedding(block.frame).reshape(-1, h * w)[:, block.cells.to(device)].T)
        labels.append(block.labels.to(device))
        blocks.append(BlockKey(block.frame, block.cells.numpy().tobytes()))
    return References(torch.cat(embeddings), torch.cat(labels), tuple(blocks))
