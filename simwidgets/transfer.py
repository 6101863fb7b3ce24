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

Work is chunked (queries in blocks, tiles in chunks, frames one at a time) so memory stays
bounded for long videos; embeddings come from an :class:`EmbeddingCache` (float16), so new
scribbles never recompute them, and the label-free part of the temporal match (each frame's
nearest context cells) is kept across rounds within a memory budget, so a correction round
redoes only what the new scribbles change.  Every shortcut gives the same numbers as the
plain computation (tests/test_transfer.py checks each against a reference).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .device import pick_device
from .errors import BadInputError
from .models import EmbeddingModel, load_model
from .scribbles import UNKNOWN, Scribbles

__all__ = [
    "TransferConfig",
    "EmbeddingCache",
    "References",
    "PropagationResult",
    "LabelTransfer",
    "propagate",
    "references_from_scribbles",
]


@dataclass(frozen=True)
class TransferConfig:
    """Options of the label transfer.

    Attributes
    ----------
    top_k : number of nearest references that vote for a query cell
    temperature : softmax temperature of the votes (smaller = nearest dominate)
    temporal : also use earlier frames' predictions as references (local window)
    n_context : how many previous frames serve as context when ``temporal``
    window : radius, in grid cells, of the spatial window for context references
    brush_width : pixel width used to rasterise scribble strokes
    background_margin : on every annotated frame where every object is marked, cells that no
        stroke covers and that lie farther than this fraction of the frame diagonal from all
        object strokes serve as background references (the DAVIS protocol's first human
        scribbles mark objects only, and a few background strokes rarely cover the scene);
        a frame where only some objects are marked says nothing about the rest of it, so it
        gets none; ``None`` disables it
    max_references : cap on the scribble/mask reference cells of all annotated frames
        together (a class-stratified random subset is kept: a full reference mask has tens
        of thousands of cells, and the temporal context already carries its detail)
    """

    top_k: int = 20
    temperature: float = 0.05
    temporal: bool = True
    n_context: int = 3
    window: int = 12
    brush_width: float = 3.0
    background_margin: float | None = 0.15
    max_references: int = 2048

    def __post_init__(self):
        if self.top_k < 1:
            raise BadInputError(f"top_k must be at least 1; got {self.top_k}")
        if not self.temperature > 0:
            raise BadInputError(f"temperature must be positive; got {self.temperature}")
        if self.n_context < 0 or self.window < 0:
            raise BadInputError("n_context and window must be non-negative")


class EmbeddingCache:
    """Embeddings of one video, computed once per frame and kept (float16) for reuse.

    ``n_computed`` counts frames actually embedded, so reuse can be checked.
    """

    def __init__(self, model: EmbeddingModel, frames, device=None, batch_size: int = 4, dtype=torch.float16):
        shape = tuple(frames.shape)
        if len(shape) != 4 or shape[3] != 3:
            raise BadInputError(f"frames must have shape (T, H, W, 3); got {shape}")
        self.model = model
        self.frames = frames
        self.device = pick_device(device)
        self.batch_size = batch_size
        self.n_frames, self.height, self.width = shape[:3]
        self.grid = model.grid_size(self.height, self.width)
        self.storage_device = self.device if self.device.type == "cuda" else torch.device("cpu")
        self._store = torch.empty((self.n_frames, model.dim) + self.grid, dtype=dtype, device=self.storage_device)
        self._done = np.zeros(self.n_frames, dtype=bool)
        self.n_computed = 0

    def ensure(self, frame_indices=None, progress: bool = False) -> None:
        """Embed the frames not yet cached (all frames when ``frame_indices`` is None)."""
        wanted = range(self.n_frames) if frame_indices is None else frame_indices
        missing = [int(i) for i in wanted if not self._done[int(i)]]
        if not missing:
            return
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(missing), desc="embedding frames", unit="frame")
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            chunk = np.stack([np.asarray(self.frames[i]) for i in batch])
            emb = self.model.embed(chunk, device=self.device, batch_size=self.batch_size)
            self._store[batch] = emb.to(self.storage_device, self._store.dtype)
            self._done[batch] = True
            self.n_computed += len(batch)
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()

    def __getitem__(self, frame_idx: int) -> torch.Tensor:
        """``(D, h, w)`` float32 embedding of one frame on the compute device."""
        self.ensure([frame_idx])
        return self._store[frame_idx].to(self.device, torch.float32)

    @property
    def nbytes(self) -> int:
        return self._store.numel() * self._store.element_size()


@dataclass
class References:
    """Reference cells: embeddings ``(N, D)`` and label distributions ``(N, C)``."""

    embeddings: torch.Tensor
    labels: torch.Tensor
    #: ``((key, length), ...)``: the consecutive blocks of rows and what identifies each
    #: (its frame and exact cells); references without blocks are never cached
    blocks: tuple = ()

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])


@dataclass
class PropagationResult:
    """Masks for every frame plus what a user needs to judge them.

    Attributes
    ----------
    masks : ``(T, H, W)`` uint8 object ids
    object_ids : the ids of the score channels, background 0 first
    confidence : ``(T,)`` mean over grid cells of the winning probability (1 = certain)
    entropy : ``(T,)`` mean normalised entropy of the votes (0 = certain)
    """

    masks: np.ndarray
    object_ids: list[int]
    confidence: np.ndarray
    entropy: np.ndarray
    seconds: float = 0.0
    probabilities: list[torch.Tensor] | None = field(default=None, repr=False)


def references_from_scribbles(
    scribbles: Scribbles, height: int, width: int, brush_width: float = 3.0
) -> dict[int, np.ndarray]:
    """Rasterise every annotated frame: ``{frame_idx: (H, W) labels with -1 unknown}``."""
    return {f: scribbles.rasterize(f, height, width, brush_width) for f in scribbles.annotated_frames}


def _cell_distributions(label_map: np.ndarray, class_index: dict[int, int], stride: int, grid) -> torch.Tensor:
    """Per-cell label distributions ``(C, h, w)`` from a full-resolution label map.

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


def _background_cells(label_map: np.ndarray, stride: int, grid, margin: float) -> np.ndarray:
    """Boolean ``(h, w)``: cells farther than ``margin * diagonal`` from every object pixel."""
    from scipy.ndimage import distance_transform_edt

    height, width = label_map.shape
    h, w = grid
    objects = label_map > 0
    if not objects.any():
        return np.zeros((h, w), dtype=bool)
    rows = np.minimum((np.arange(h) * stride + stride // 2), height - 1)
    cols = np.minimum((np.arange(w) * stride + stride // 2), width - 1)
    small = objects[np.ix_(rows, cols)]
    # distance on the grid, in pixels (approximately: grid cells are stride pixels apart)
    if not small.any():
        small = np.zeros_like(small)
        rr, cc = np.nonzero(objects)
        small[np.minimum(rr // stride, h - 1), np.minimum(cc // stride, w - 1)] = True
    distance = distance_transform_edt(~small) * stride
    return distance > margin * float(np.hypot(height, width))


def _stratified_subset(dominant: torch.Tensor, limit: int) -> torch.Tensor:
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


class LabelTransfer:
    """Label transfer over one video with cached embeddings.

    Parameters
    ----------
    frames : uint8 ``(T, H, W, 3)`` array-like (LazyFrames works)
    model : an EmbeddingModel, or a name/path for :func:`simwidgets.models.load_model`
    config : :class:`TransferConfig`; keyword overrides may also be passed to :meth:`propagate`
    device : compute device (automatic when None)
    """

    def __init__(self, frames, model="default", config: TransferConfig | None = None, device=None):
        self.model = load_model(model)
        self.config = config or TransferConfig()
        self.cache = EmbeddingCache(self.model, frames, device=device)
        self.device = self.cache.device
        self.n_frames, self.height, self.width = self.cache.n_frames, self.cache.height, self.cache.width
        self.grid = self.cache.grid
        self.stride = self.model.stride
        #: memory for local top-k kept across rounds (3 MB per frame and sweep at stride 4)
        self.local_cache_bytes = self.LOCAL_CACHE_BYTES
        self._local_cache: OrderedDict = OrderedDict()  # key -> slot of the pool
        self._local_pool: tuple[torch.Tensor, torch.Tensor] | None = None
        #: memory for each frame's global top-k kept across rounds (3.3 MB per frame at
        #: stride 4 and top_k 20: 80 frames of 480p fit)
        self.global_cache_bytes = self.GLOBAL_CACHE_BYTES
        self._global_cache: dict = {}  # frame -> (k, cache id, blocks, slot of the pool)
        self._global_pool: tuple[torch.Tensor, torch.Tensor] | None = None

    # --------------------------------------------------------------------- references
    def _normalise_references(self, references) -> dict[int, np.ndarray]:
        if isinstance(references, Scribbles):
            if references.n_frames != self.n_frames:
                raise BadInputError(
                    f"frame-count mismatch: scribbles for {references.n_frames} frames, video has {self.n_frames}"
                )
            references = references_from_scribbles(
                references, self.height, self.width, self.config.brush_width
            )
        if not isinstance(references, Mapping):
            raise BadInputError(
                "references must be Scribbles or a dict {frame_idx: (H, W) label map with -1 for unknown}"
            )
        result = {}
        for frame_idx, label_map in references.items():
            if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
                raise BadInputError(f"reference frame index must be an integer; got {frame_idx!r}")
            if not 0 <= frame_idx < self.n_frames:
                raise BadInputError(f"reference frame_idx {frame_idx} is outside the video (0..{self.n_frames - 1})")
            label_map = np.asarray(label_map)
            if label_map.shape != (self.height, self.width):
                raise BadInputError(
                    f"reference mask for frame {frame_idx} has shape {label_map.shape}; "
                    f"the frames are {(self.height, self.width)}"
                )
            if not (np.issubdtype(label_map.dtype, np.integer) or label_map.dtype == bool):
                raise BadInputError(f"reference mask for frame {frame_idx} must hold integers; got {label_map.dtype}")
            label_map = label_map.astype(np.int64)
            if label_map.size and (label_map.min() < UNKNOWN or label_map.max() > 255):
                raise BadInputError(
                    f"reference mask for frame {frame_idx} holds ids outside -1..255 "
                    f"({label_map.min()}..{label_map.max()})"
                )
            if (label_map >= 0).any():
                result[int(frame_idx)] = label_map
        if not result:
            raise BadInputError("no reference pixels: the scribbles or masks given are empty")
        return result

    def build_references(self, references: dict[int, np.ndarray], class_ids: list[int], config: TransferConfig):
        """Reference cells of all annotated frames, plus the per-frame label grids.

        When there are more than ``max_references`` cells in all, a class-stratified,
        seeded subset is kept over all frames together, so each class keeps the same share
        however many frames are annotated.  (A cap per frame instead would let every
        corrected frame add its own thousand background cells: on bear, a third correction
        then took the baseline from J&F 0.91 to 0.70.)  ``refs.blocks`` names each frame's
        rows by the frame and the exact cells kept: a frame whose kept cells are unchanged
        keeps its global candidates across rounds (:meth:`_global_candidates`); when the
        subset is drawn again, the candidates are matched afresh.
        """
        class_index = {object_id: i for i, object_id in enumerate(class_ids)}
        frames, cell_lists, dists, grids = [], [], [], {}
        all_objects = {c for c in class_ids if c > 0}
        h, w = self.grid
        for frame_idx, label_map in sorted(references.items()):
            counts = _cell_distributions(label_map, class_index, self.stride, self.grid)
            user_total = counts.sum(0)
            marks_every_object = bool(all_objects) and all(counts[class_index[c]].any() for c in all_objects)
            # the user's labels are facts on their own frame: clamped there after voting
            grids[frame_idx] = (user_total > 0, (counts / user_total.clamp_min(1e-12)).to(self.device))
            if config.background_margin is not None and marks_every_object:
                # background examples far from every object stroke (a hypothesis, so not
                # clamped; object strokes drawn later near a cell take it out again)
                background = torch.from_numpy(
                    _background_cells(label_map, self.stride, self.grid, config.background_margin)
                )
                counts[0][background & (user_total == 0)] = 1.0
            flat = counts.reshape(len(class_ids), -1)
            total = flat.sum(0)
            cells = torch.nonzero(total > 0).flatten()
            frames.append(frame_idx)
            cell_lists.append(cells)
            dists.append(flat[:, cells] / total[cells])
        sizes = [len(c) for c in cell_lists]
        if sum(sizes) > config.max_references:
            keep = _stratified_subset(torch.cat(dists, 1).argmax(0), config.max_references)
            bounds = np.cumsum([0] + sizes)
            picks = [keep[(keep >= a) & (keep < b)] - a for a, b in zip(bounds[:-1], bounds[1:])]
            cell_lists = [cells[p] for cells, p in zip(cell_lists, picks)]
            dists = [dist[:, p] for dist, p in zip(dists, picks)]
        embeddings, labels, blocks = [], [], []
        for frame_idx, cells, dist in zip(frames, cell_lists, dists):
            if len(cells) == 0:
                continue
            embeddings.append(self.cache[frame_idx].reshape(-1, h * w)[:, cells.to(self.device)].T)
            labels.append(dist.T.to(self.device))
            blocks.append(((frame_idx, cells.numpy().tobytes()), len(cells)))
        refs = References(torch.cat(embeddings), torch.cat(labels), tuple(blocks))
        return refs, grids

    # --------------------------------------------------------------------- kernel
    #: default budget of the cross-round cache of local top-k candidates
    LOCAL_CACHE_BYTES = 512 * 2**20
    #: default budget of the cross-round cache of global top-k candidates
    GLOBAL_CACHE_BYTES = 384 * 2**20
    #: queries per block of the global matmul (measured on 2 cores with 1,400-2,048
    #: references: 1024-2048 fastest, 8192 1.4x slower, 512 1.2x slower)
    _GLOBAL_BLOCK = 1024
    #: side, in grid cells, of the query tiles of the local window match
    _TILE = 8
    #: score bytes per chunk of tiles in the local match (bounds memory; 32 MiB measured
    #: faster than 2 or 8 MiB and as fast as whole frames here)
    _LOCAL_CHUNK_BYTES = 32 * 2**20

    @staticmethod
    def _topk_global(queries: torch.Tensor, refs: References, k: int):
        """Top-``k`` similarities ``(N, k)`` and reference indices of ``(N, D)`` queries.

        Queries go in blocks into one reused ``(block, N_refs)`` score buffer, so memory
        stays bounded whatever the number of queries, and ``topk`` writes straight into the
        result (no per-block tensors to concatenate).
        """
        n = queries.shape[0]
        k = min(k, len(refs))
        values = queries.new_empty((n, k))
        index = torch.empty((n, k), dtype=torch.long, device=queries.device)
        keys = refs.embeddings.T.contiguous()
        block = LabelTransfer._GLOBAL_BLOCK
        scores = None
        for start in range(0, n, block):
            stop = min(n, start + block)
            if scores is None or scores.shape[0] != stop - start:
                scores = queries.new_empty((stop - start, keys.shape[1]))
            torch.mm(queries[start:stop], keys, out=scores)
            torch.topk(scores, k, dim=1, out=(values[start:stop], index[start:stop]))
        return values, index

    def _global_candidates(self, frame_idx: int, query: torch.Tensor, refs: References, k: int):
        """Top-``k`` global references ``(values (N, k), index (N, k))`` of one frame, kept
        across rounds.

        The match does not depend on any label, so a frame's candidates are kept with the
        blocks (each annotated frame's kept reference cells, :meth:`build_references`) they
        were taken from.  When the new references hold every one of those blocks (nothing
        was subsampled, or the subset came out the same: e.g. scribbles on one more frame
        with few reference cells in all, or another temperature), only the new blocks are
        matched and merged with the kept top-``k`` -- the top-``k`` of a union is the
        top-``k`` of the parts' top-``k`` -- and the kept indices are moved to the blocks'
        new rows.  Otherwise (a block changed or went away, as when the capped subset is
        drawn again; other ``k``) the frame is matched afresh.

        Kept in a pool of at most :attr:`global_cache_bytes` (filled in order and never
        evicted: the sweeps visit frames in the same order every round, where least-recently
        used eviction would throw out every frame just before it is needed again).
        """
        dim = query.shape[0]
        flat = query.reshape(dim, -1).T
        entry = self._global_cache.get(frame_idx)
        starts, offset = {}, 0
        for key, length in refs.blocks:
            starts[key] = offset
            offset += length
        usable = (
            entry is not None and refs.blocks and entry[0] == k and entry[1] == id(self.cache)
            and all(key in starts for key, _ in entry[2])
        )
        if not usable:
            values, index = self._topk_global(flat, refs, k)
        else:
            _, _, old_blocks, slot = entry
            kept_values = self._global_pool[0][slot]
            mapping = torch.cat([torch.arange(length) + starts[key] for key, length in old_blocks]).to(flat.device)
            kept_index = mapping[self._global_pool[1][slot].long()]
            old = {key for key, _ in old_blocks}
            new_rows = [torch.arange(length) + starts[key] for key, length in refs.blocks if key not in old]
            values, index = kept_values.clone(), kept_index
            if new_rows:
                new_rows = torch.cat(new_rows).to(flat.device)
                values, index = self._merge_global(
                    flat, refs.embeddings[new_rows], new_rows, values, index, min(k, len(refs))
                )
        if refs.blocks and len(refs) <= 2**31 - 1:
            self._remember_global(frame_idx, k, refs.blocks, values, index)
        return values, index

    def _merge_global(self, queries, new_keys, new_rows, values, index, k):
        """Merge the matches of new references (``new_keys`` ``(M, D)``, rows ``new_rows``
        of the reference table) into the kept top-``k`` ``values``/``index`` (in place
        when ``k`` were kept; widened when fewer were).

        Only new similarities above a query's kept ``k``-th can enter its top-``k``; there
        are few (about ``k * M / N_old`` when the new frame looks like the old ones), so
        they are picked out of each block of scores by a comparison and merged with the
        kept ``k`` by a top-``k`` over ``k + P`` columns (``P`` the most any query in the
        block has), not over all ``M``: 1.5x faster than a plain top-``k`` here.
        """
        if values.shape[1] < k:  # fewer references than k before: everything is merged
            new_values, new_index = self._topk_global(queries, References(new_keys, new_keys[:, :0]), k)
            merged, pick = torch.cat([values, new_values], 1).topk(k, dim=1)
            return merged, torch.gather(torch.cat([index, new_rows[new_index]], 1), 1, pick)
        keys = new_keys.T.contiguous()
        block = self._GLOBAL_BLOCK
        scores = None
        for start in range(0, queries.shape[0], block):
            stop = min(queries.shape[0], start + block)
            n = stop - start
            if scores is None or scores.shape[0] != n:
                scores = queries.new_empty((n, keys.shape[1]))
            torch.mm(queries[start:stop], keys, out=scores)
            rows, cols = (scores > values[start:stop, -1:]).nonzero(as_tuple=True)
            if len(rows) == 0:
                continue
            # scatter each query's few winners into a (n, P) block padded with -inf
            counts = torch.bincount(rows, minlength=n)
            slot = torch.arange(len(rows), device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
            width = int(counts.max())
            padded_values = scores.new_full((n, width), float("-inf"))
            padded_index = index.new_zeros((n, width))
            padded_values[rows, slot] = scores[rows, cols]
            padded_index[rows, slot] = new_rows[cols]
            merged, pick = torch.cat([values[start:stop], padded_values], 1).topk(k, dim=1)
            index[start:stop] = torch.gather(torch.cat([index[start:stop], padded_index], 1), 1, pick)
            values[start:stop] = merged
        return values, index

    def _remember_global(self, frame_idx, k, blocks, values, index) -> None:
        """Keep one frame's global top-``k`` in the pool (allocated once, pages touched
        only as slots fill); a frame that finds the pool full is simply not kept."""
        pool = self._global_pool
        if pool is None or pool[0].shape[1:] != values.shape:
            entry_bytes = values.numel() * (values.element_size() + 4)
            slots = min(self.global_cache_bytes // entry_bytes, self.n_frames)
            self._global_cache.clear()
            self._global_pool = None
            if slots < 1:
                return
            pool = self._global_pool = (values.new_empty((slots,) + tuple(values.shape)),
                                        torch.empty((slots,) + tuple(values.shape), dtype=torch.int32,
                                                    device=values.device))
        entry = self._global_cache.get(frame_idx)
        if entry is not None:
            slot = entry[3]
        elif len(self._global_cache) < pool[0].shape[0]:
            slot = len(self._global_cache)
        else:
            return
        pool[0][slot].copy_(values)
        pool[1][slot].copy_(index)
        self._global_cache[frame_idx] = (k, id(self.cache), tuple(blocks), slot)

    def _local_candidates(self, query, context, config, cache_key=None):
        """Top-``k`` context cells within the spatial window of each query cell.

        The similarities do not depend on any label, so for a ``cache_key`` (the frame, its
        context frames and the options) the top-``k`` is kept across rounds (LRU, at most
        :attr:`local_cache_bytes`): a correction round redoes only the global references
        and the votes, with exactly the same candidates.

        The grid is cut into square tiles of ``_TILE`` cells; each tile's queries are
        compared (one batched matmul per chunk of tiles) with the context cells of the tile
        grown by ``window`` on every side.  Cells outside a query's own window get ``-inf``
        from an additive mask; cells outside the frame get ``-inf`` through an extra
        channel (``1`` in the queries, ``0`` or ``-inf`` in the keys), so no boolean mask of
        the score size is ever built.  Labels are not gathered here: the caller gathers
        them once, after merging with the global candidates.

        Returns
        -------
        values : ``(h*w, k)`` similarities
        index : ``(h*w, k)`` indices into the context cells stacked as ``(n_ctx * h * w)``
        """
        dim, h, w = query.shape
        radius, tile = config.window, self._TILE
        size = tile + 2 * radius
        slot = self._local_cache.get(cache_key) if cache_key is not None else None
        if slot is not None:
            self._local_cache.move_to_end(cache_key)
            values, position = self._local_pool[0][slot], self._local_pool[1][slot]
        else:
            values, position = self._local_topk(query, context, config)
            if cache_key is not None:
                self._remember_local(cache_key, values, position)
        # window position (ctx, r, c) of a cell's tile -> cell ctx*h*w + row*w + col
        position = position.long()
        ctx_i, rest = position // (size * size), position % (size * size)
        rows = torch.arange(h, device=query.device) // tile * tile - radius
        cols = torch.arange(w, device=query.device) // tile * tile - radius
        row = rest // size + rows.repeat_interleave(w)[:, None]
        col = rest % size + cols.repeat(h)[:, None]
        # a pick outside the frame has -inf similarity (zero weight): any valid index will do
        return values, ctx_i * (h * w) + row.clamp(0, h - 1) * w + col.clamp(0, w - 1)

    def _remember_local(self, key, values, position) -> None:
        """Keep one frame's local top-``k`` in a slot of the pool, evicting the least
        recently used frame when every slot is taken.

        The pool is two big tensors allocated once (their pages become resident only as
        slots fill): thousands of separate few-MB entries interleaved with the kernel's
        temporaries fragmented the heap and doubled the resident memory of long videos.
        """
        pool = self._local_pool
        if pool is None or pool[0].shape[1:] != values.shape or pool[1].dtype != position.dtype:
            entry = values.numel() * values.element_size() + position.numel() * position.element_size()
            slots = min(self.local_cache_bytes // entry, 2 * self.n_frames)
            self._local_cache.clear()
            if slots < 1:
                self._local_pool = None
                return
            pool = self._local_pool = (
                values.new_empty((slots,) + tuple(values.shape)),
                position.new_empty((slots,) + tuple(position.shape)),
            )
        if len(self._local_cache) < pool[0].shape[0]:
            slot = len(self._local_cache)
        else:
            _, slot = self._local_cache.popitem(last=False)
        pool[0][slot].copy_(values)
        pool[1][slot].copy_(position)
        self._local_cache[key] = slot

    def _local_topk(self, query, context, config):
        """The local match itself: ``(h*w, k)`` similarities and window positions."""
        dim, h, w = query.shape
        n_ctx = len(context)
        radius, tile = config.window, self._TILE
        size = tile + 2 * radius
        nty, ntx = -(-h // tile), -(-w // tile)
        hp, wp = nty * tile, ntx * tile
        device, channels = query.device, dim + 1
        # keys, channels last, padded by `radius` (and up to whole tiles), validity channel last
        keys = query.new_zeros((n_ctx, hp + 2 * radius, wp + 2 * radius, channels))
        keys[..., dim] = float("-inf")
        for i, (emb, _) in enumerate(context):
            keys[i, radius : radius + h, radius : radius + w, :dim] = emb.permute(1, 2, 0)
            keys[i, radius : radius + h, radius : radius + w, dim] = 0.0
        s_ctx, s_row, s_col, _ = keys.stride()
        # (nty, ntx, n_ctx, size, size, channels): the window of every tile, a view
        windows = keys.as_strided(
            (nty, ntx, n_ctx, size, size, channels), (tile * s_row, tile * s_col, s_ctx, s_row, s_col, 1)
        )
        queries = query.new_zeros((hp, wp, channels))
        queries[:h, :w, :dim] = query.permute(1, 2, 0)
        queries[..., dim] = 1.0
        queries = queries.view(nty, tile, ntx, tile, channels).transpose(1, 2).reshape(nty * ntx, tile * tile, channels)
        # additive mask of each query's exact square window inside its tile
        offs = torch.arange(tile, device=device)
        key_pos = torch.arange(size, device=device) - radius
        near_r = (key_pos[None, :] - offs[:, None]).abs() <= radius  # (tile, size)
        near = (near_r[:, None, :, None] & near_r[None, :, None, :]).reshape(tile * tile, size * size)
        bias = torch.zeros(near.shape, device=device).masked_fill_(~near, float("-inf")).repeat(1, n_ctx)
        n_keys = n_ctx * size * size
        k = min(config.top_k, n_keys)
        n_tiles = nty * ntx
        values = query.new_empty((n_tiles, tile * tile, k))
        index = torch.empty((n_tiles, tile * tile, k), dtype=torch.long, device=device)
        per_chunk = max(1, self._LOCAL_CHUNK_BYTES // (tile * tile * n_keys * 4))
        row_step, col_step = (per_chunk // ntx, ntx) if per_chunk >= ntx else (1, per_chunk)
        for ty0 in range(0, nty, row_step):
            ty1 = min(nty, ty0 + row_step)
            for tx0 in range(0, ntx, col_step):
                tx1 = min(ntx, tx0 + col_step)
                start, stop = ty0 * ntx + tx0, (ty1 - 1) * ntx + tx1  # tiles in order
                block = windows[ty0:ty1, tx0:tx1].reshape(stop - start, n_keys, channels)
                scores = torch.bmm(queries[start:stop], block.transpose(1, 2))
                scores += bias
                torch.topk(scores, k, dim=-1, out=(values[start:stop], index[start:stop]))
        position = index.to(torch.int16 if n_keys <= 2**15 else torch.int32)

        def untile(x):
            x = x.view(nty, ntx, tile, tile, -1).transpose(1, 2).reshape(hp, wp, -1)
            return x[:h, :w].reshape(h * w, -1)

        return untile(values).contiguous(), untile(position).contiguous()

    def _vote_frame(
        self,
        query: torch.Tensor,
        refs: References,
        context: list[tuple[torch.Tensor, torch.Tensor]],
        config: TransferConfig,
        cache_key=None,
        global_candidates: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Probabilities ``(C, h, w)`` of one frame from global references and context frames.

        ``query`` is ``(D, h, w)``; each context entry is ``(embedding (D, h, w), probs (C, h, w))``.
        The ``top_k`` votes are taken over the union of the global references and the
        context cells inside each query's window; labels are gathered once, for the
        ``top_k`` winners only.  ``global_candidates`` (``(values, index)`` of the global
        references, from :meth:`_global_candidates`) skips the global match.
        """
        dim, h, w = query.shape
        n_classes = refs.labels.shape[1]
        if global_candidates is None:
            global_candidates = self._topk_global(query.reshape(dim, -1).T, refs, config.top_k)
        values, index = global_candidates
        table = refs.labels
        if context:
            local_values, local_index = self._local_candidates(query, context, config, cache_key)
            values = torch.cat([values, local_values], dim=1)
            index = torch.cat([index, local_index + len(refs)], dim=1)
            k = min(config.top_k, values.shape[1])
            values, pick = values.topk(k, dim=1)
            index = torch.gather(index, 1, pick)
            context_labels = torch.stack([probs for _, probs in context]).permute(0, 2, 3, 1)
            table = torch.cat([refs.labels, context_labels.reshape(-1, n_classes)])
        weights = torch.softmax(values / config.temperature, dim=1)  # values may be cached: no in-place
        weights = torch.nan_to_num_(weights, nan=0.0)
        probs = torch.bmm(weights[:, None, :], table[index])[:, 0]  # (N, C)
        return probs.T.reshape(n_classes, h, w)

    def _sweep(self, order: list[int], refs, grids, config, tick=None, out=None) -> dict[int, torch.Tensor]:
        """Label frames in ``order``, each with the previous ``n_context`` as context.

        ``tick()`` (if given) is called after each frame, for progress reports.  ``out(t)``
        (if given) returns the ``(C, h, w)`` view that receives frame ``t``'s scores: one
        preallocated tensor for the whole video instead of a thousand separate ones, which
        fragmented the heap of long videos.
        """
        context: list[tuple[torch.Tensor, torch.Tensor]] = []
        context_frames: list[int] = []
        result = {}
        for frame_idx in order:
            query = self.cache[frame_idx]
            key = (id(self.cache), frame_idx, tuple(context_frames), config.window, config.top_k, self._TILE)
            candidates = self._global_candidates(frame_idx, query, refs, config.top_k)
            probs = self._vote_frame(query, refs, context if config.temporal else [], config, key, candidates)
            if frame_idx in grids:
                # on an annotated frame the user's labels are facts: clamp them
                known, dist = grids[frame_idx]
                probs[:, known] = dist[:, known]
            if out is not None:
                probs = out(frame_idx).copy_(probs)
            result[frame_idx] = probs
            if config.temporal and config.n_context > 0:
                context.append((query, probs))
                context_frames.append(frame_idx)
                context = context[-config.n_context :]
                context_frames = context_frames[-config.n_context :]
            if tick is not None:
                tick()
        return result

    # --------------------------------------------------------------------- public
    def propagate(self, references, progress: bool = False, callback=None, **overrides) -> PropagationResult:
        """Label every frame.

        Parameters
        ----------
        references : :class:`Scribbles`, or ``{frame_idx: (H, W) int label map}`` with -1
            for unknown pixels (a full ground-truth mask works too)
        progress : show tqdm progress bars
        callback : called as ``callback(done, total)`` after each frame is labelled (a
            frame labelled in both temporal sweeps counts twice), e.g. for a widget's bar
        overrides : fields of :class:`TransferConfig` for this call only

        Returns
        -------
        PropagationResult with ``masks`` ``(T, H, W)`` uint8.
        """
        import time

        start = time.perf_counter()
        config = replace(self.config, **overrides) if overrides else self.config
        references = self._normalise_references(references)
        class_ids = sorted({0} | {int(v) for m in references.values() for v in np.unique(m) if v >= 0})
        self.cache.ensure(progress=progress)
        refs, grids = self.build_references(references, class_ids, config)
        annotated = sorted(references)
        tick = None
        if callback is not None:
            total = (self.n_frames - annotated[0] + annotated[-1] + 1) if config.temporal else self.n_frames
            counter = iter(range(1, total + 1))

            def tick():
                callback(next(counter), total)

        h, w = self.grid
        store = torch.empty((self.n_frames, len(class_ids), h, w), device=self.device)
        if config.temporal:
            first, last = annotated[0], annotated[-1]
            # frames first..last are labelled by both sweeps: the backward ones go aside
            aside = torch.empty((last - first + 1, len(class_ids), h, w), device=self.device)
            forward = self._sweep(list(range(first, self.n_frames)), refs, grids, config, tick, out=store.__getitem__)
            backward = self._sweep(
                list(range(last, -1, -1)), refs, grids, config, tick,
                out=lambda t: aside[t - first] if t >= first else store[t],
            )
            for t in range(first, last + 1):
                previous = max(a for a in annotated if a <= t)
                following = min(a for a in annotated if a >= t)
                w_f = 1.0 / (1 + t - previous)
                w_b = 1.0 / (1 + following - t)
                store[t] = (w_f * forward[t] + w_b * backward[t]) / (w_f + w_b)
            del forward, backward, aside
        else:
            self._sweep(list(range(self.n_frames)), refs, grids, config, tick, out=store.__getitem__)
        probabilities = list(store)
        masks, confidence, entropy = self._finish(probabilities, class_ids)
        return PropagationResult(
            masks=masks,
            object_ids=class_ids,
            confidence=confidence,
            entropy=entropy,
            seconds=time.perf_counter() - start,
            probabilities=probabilities,
        )

    #: frames upsampled together in :meth:`_finish` (one interpolate call per batch)
    _FINISH_BATCH = 8

    def _finish(self, probabilities, class_ids):
        """Upsample scores to full resolution, argmax, and per-frame confidence.

        Frames go in batches.  With two classes only the difference ``p1 - p0`` is
        upsampled (bilinear interpolation is linear, so its sign is the argmax of the two
        upsampled channels): half the interpolation work and no argmax pass.
        """
        h, w = self.grid
        n_classes = len(class_ids)
        lut = np.asarray(class_ids, dtype=np.uint8)
        n_frames = len(probabilities)
        masks = np.empty((n_frames, self.height, self.width), dtype=np.uint8)
        confidence = np.empty(n_frames, dtype=np.float32)
        entropy = np.zeros(n_frames, dtype=np.float32)
        size = (h * self.stride, w * self.stride)
        for start in range(0, n_frames, self._FINISH_BATCH):
            stop = min(n_frames, start + self._FINISH_BATCH)
            probs = torch.stack(probabilities[start:stop])  # (B, C, h, w)
            confidence[start:stop] = probs.amax(1).mean((1, 2)).cpu().numpy()
            if n_classes == 1:
                masks[start:stop] = lut[0]
                continue
            ent = -(probs.clamp_min(1e-8).log() * probs).sum(1) / np.log(n_classes)
            entropy[start:stop] = ent.mean((1, 2)).cpu().numpy()
            if n_classes == 2:
                diff = probs[:, 1:2] - probs[:, 0:1]
                up = F.interpolate(diff, size=size, mode="bilinear", align_corners=False)
                winner = (up[:, 0, : self.height, : self.width] > 0).cpu().numpy()
                masks[start:stop] = np.where(winner, lut[1], lut[0])
            else:
                up = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
                winner = up[:, :, : self.height, : self.width].argmax(1).to(torch.uint8).cpu().numpy()
                masks[start:stop] = lut[winner]
        return masks, confidence, entropy


def propagate(frames, references, model="default", device=None, progress: bool = False, **config) -> np.ndarray:
    """Label every pixel of every frame from scribbles or reference masks.

    ``frames`` uint8 ``(T, H, W, 3)``; ``references`` a :class:`Scribbles` or
    ``{frame_idx: (H, W) label map}`` (``-1`` = unknown); ``model`` an EmbeddingModel or a
    name/path (``"default"``, ``"baseline"``, a checkpoint).  Keyword arguments are
    :class:`TransferConfig` fields.  Returns ``(T, H, W)`` uint8 masks.
    """
    engine = LabelTransfer(frames, model=model, config=TransferConfig(**config), device=device)
    return engine.propagate(references, progress=progress).masks
