"""The label transfer over one video: sweeps through the frames, their blend, the masks.

:class:`LabelTransfer` ties the parts together: embeddings from its
:class:`~.cache.EmbeddingCache`, reference cells from :mod:`.references`, votes from the
kernels of :mod:`.knn`, and the candidates kept across rounds in two pools of
:mod:`.reuse`.  One round:

1. the references are checked and turned into a table of reference cells;
2. with ``temporal=True`` two sweeps run, forward from the first annotated frame and
   backward from the last, each frame using the previous ``n_context`` frames of its sweep
   as local references; frames between annotations get both sweeps, blended with weights
   that fall with the distance to the annotation each sweep started from;
3. the per-object scores on the embedding grid are upsampled to full resolution before the
   argmax, by a guided filter on the frame's colours (:mod:`.refine`; bilinearly with
   ``refine=False``), so mask edges follow the image's edges.

Work is chunked (queries in blocks, tiles in chunks, frames one at a time, one
preallocated score tensor for the video) so memory stays bounded for long videos.  Every
shortcut gives the same numbers as the plain computation (tests/test_transfer.py checks
each against a reference).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .. import checks
from ..errors import BadInputError
from ..models import load_model
from . import fused, fused_vote, fused_window, fusion, knn, refine
from .reach import ReferenceFade, rerank
from .cache import EmbeddingCache
from .config import TransferConfig
from .references import (
    ReferenceCells,
    References,
    cell_distributions,
    class_ids_of,
    normalise_references,
    reference_cells,
    reference_table,
)
from .reuse import CandidatePool, GlobalKey, GlobalOrigin, LocalKey, kept_rows

__all__ = ["LabelTransfer", "PropagationResult", "propagate"]


@dataclass
class PropagationResult:
    """Masks for every frame plus what a user needs to judge them.

    Attributes
    ----------
    masks : ``(T, H, W)`` uint8 object ids
    object_ids : the ids of the score channels, background 0 first
    confidence : ``(T,)`` mean over grid cells of the winning probability (1 = certain)
    entropy : ``(T,)`` mean normalised entropy of the votes (0 = certain)
    seconds : time the propagation took
    probabilities : ``(C, h, w)`` scores of every frame on the embedding grid
    span : ``(first, last)`` frames this round computed (the whole video unless it was a
        fused correction round); the others kept the previous round's result
    """

    masks: np.ndarray
    object_ids: list[int]
    confidence: np.ndarray
    entropy: np.ndarray
    seconds: float = 0.0
    probabilities: list[torch.Tensor] | None = field(default=None, repr=False)
    span: tuple[int, int] | None = None


class LabelTransfer:
    """Label transfer over one video with cached embeddings.

    Parameters
    ----------
    frames : uint8 ``(T, H, W, 3)`` array-like (LazyFrames works) or a list of frames
    model : an EmbeddingModel, or a name/path for :func:`simwidgets.models.load_model`
    config : :class:`TransferConfig`; keyword overrides may also be passed to :meth:`propagate`
    device : compute device (automatic when None)

    Attributes
    ----------
    local_pool, global_pool : the :class:`~.reuse.CandidatePool` of each frame's local and
        global candidates, kept across rounds (``pool.budget_bytes`` sets a budget; 0 keeps
        nothing)
    """

    #: default budget of the local candidates kept across rounds (an entry is
    #: ``h * w * top_k`` similarities and positions: 3 MB per frame and sweep at stride 4)
    LOCAL_CACHE_BYTES = 512 * 2**20
    #: default budget of the global candidates kept across rounds (3.3 MB per frame at
    #: stride 4 and top_k 20: 80 frames of 480p fit)
    GLOBAL_CACHE_BYTES = 384 * 2**20
    #: frames upsampled together in :meth:`_finish` (one interpolate call per batch)
    FINISH_BATCH = 8

    def __init__(self, frames, model="default", config: TransferConfig | None = None, device=None):
        if config is not None and not isinstance(config, TransferConfig):
            raise BadInputError(f"config must be a TransferConfig; got {type(config).__name__}")
        self.model = load_model(model)
        self.config = config or TransferConfig()
        self._cache = EmbeddingCache(self.model, frames, device=device, mirror=self.config.mirror)
        self.device = self._cache.device
        self.n_frames, self.height, self.width = self._cache.n_frames, self._cache.height, self._cache.width
        self.grid = self._cache.grid
        self.stride = self.model.stride
        # a frame has one local entry per sweep direction, one global entry
        self.local_pool = CandidatePool(self.LOCAL_CACHE_BYTES, 2 * self.n_frames, evict=True)
        self.global_pool = CandidatePool(self.GLOBAL_CACHE_BYTES, self.n_frames, evict=False, index_dtype=torch.int32)
        #: whether the global match uses the fused numba kernel (when installed; tests set
        #: False to compare it with the plain torch path)
        self.fused = fused.available()

    def frame(self, frame_idx: int) -> np.ndarray:
        """Frame ``frame_idx`` as ``(H, W, 3)`` uint8 RGB (decoded now if the frames are lazy)."""
        return np.asarray(self._cache.frames[checks.frame_index(frame_idx, self.n_frames)])

    def configured(self, **overrides) -> TransferConfig:
        """This transfer's options with ``overrides`` (checked), at its model's stride.

        ``mirror`` cannot change: the cached embeddings were made with or without the
        mirror image, and every kept candidate was matched against them."""
        config = self.config.with_options(**overrides)
        if config.mirror != self.cache.mirror:
            raise BadInputError(
                f"mirror is fixed when the transfer is made (its embeddings are cached with mirror="
                f"{self.cache.mirror}); start a new one with TransferConfig(mirror={config.mirror})"
            )
        return config.for_stride(self.stride)

    @property
    def cache(self) -> EmbeddingCache:
        """The embedding cache (fixed for the engine's life: the kept candidates come from it)."""
        return self._cache

    # --------------------------------------------------------------------- references
    def normalise_references(self, references) -> dict[int, np.ndarray]:
        """Checked ``{frame_idx: (H, W) label map}`` of this video from scribbles or label
        maps (:func:`~.references.normalise_references`)."""
        return normalise_references(references, self.n_frames, self.height, self.width, self.config.brush_width)

    def reference_cells(self, references, class_ids=None, config: TransferConfig | None = None,
                        background_frames=None) -> ReferenceCells:
        """The reference cells this transfer keeps for ``references`` (normalised here),
        located by frame and cell, with their label distributions; reads no embedding."""
        references = self.normalise_references(references)
        class_ids = class_ids_of(references) if class_ids is None else class_ids
        return reference_cells(references, class_ids, config or self.config, self.stride, self.grid,
                               background_frames)

    def build_references(self, references, class_ids: list[int], config: TransferConfig, background_frames=None):
        """The reference table of normalised references, plus each annotated frame's clamp
        ``{frame: (known (h, w), distribution (C, h, w))}``."""
        cells = reference_cells(references, class_ids, config, self.stride, self.grid, background_frames)
        return self.reference_table(cells), self.clamps(cells)

    def reference_table(self, cells: ReferenceCells) -> References:
        """The :class:`References` of the cells, embeddings read from the cache."""
        return reference_table(cells, self.cache.__getitem__, self.device)

    def clamps(self, cells: ReferenceCells) -> dict:
        """The cells' clamps with the distributions on the compute device."""
        return {f: (known, dist.to(self.device)) for f, (known, dist) in cells.clamps.items()}

    # --------------------------------------------------------------------- candidates
    def _topk(self, queries: torch.Tensor, keys: torch.Tensor, k: int):
        """The global match's top-``k``: numba's fused similarity-and-selection kernel on
        the CPU when numba is installed (several times faster than a matmul followed by
        ``torch.topk``, the same values to fp32 rounding), the torch kernel otherwise."""
        if self.fused and queries.device.type == "cpu":
            return fused.topk_dot(queries, keys, k)
        return knn.topk_global(queries, keys, k)

    def _global_candidates(self, frame_idx: int, query: torch.Tensor, refs: References, k: int):
        """Top-``k`` global references ``(values (N, k), index (N, k))`` of one frame, kept
        across rounds.

        A frame's candidates are kept with the blocks (each annotated frame's kept cells)
        they were taken from.  When the new table holds every one of those blocks (nothing
        was subsampled, or the subset came out the same: e.g. scribbles on one more frame
        with few reference cells in all, or another temperature), only the new blocks are
        matched and merged with the kept top-``k``, the kept indices moved to the blocks'
        new rows.  Otherwise (a block changed or went away, as when the capped subset is
        drawn again; another ``k``) the frame is matched afresh.
        """
        dim = query.shape[0]
        flat = query.reshape(dim, -1).T
        key = GlobalKey(frame_idx)
        kept = self.global_pool.get(key) if refs.blocks else None
        carried = kept_rows(kept.origin, refs, flat.device) if kept is not None and kept.origin.top_k == k else None
        if carried is None:
            values, index = self._topk(flat, refs.embeddings, k)
        else:
            mapping, new_rows = carried
            values, index = kept.values.clone(), mapping[kept.index.long()]
            if new_rows is not None:
                merge = fused.merge_topk_dot if self.fused and flat.device.type == "cpu" else knn.merge_topk
                values, index = merge(flat, refs.embeddings[new_rows], new_rows, values, index, min(k, len(refs)))
        if refs.blocks and len(refs) <= 2**31 - 1:  # indices are kept as int32
            self.global_pool.put(key, values, index, GlobalOrigin(k, refs.blocks))
        return values, index

    def _local_candidates(self, query, context_embeddings, config: TransferConfig, key: LocalKey | None):
        """Top-``k`` context cells within the spatial window of each query cell
        (``(values, positions)`` as :func:`~.knn.local_topk` gives: window positions,
        which the vote decodes), kept across rounds under ``key`` (the frame, its context
        frames and the options)."""
        kept = self.local_pool.get(key) if key is not None else None
        if kept is not None:
            return kept.values, kept.index
        if self.fused and query.device.type == "cpu":
            # one numba kernel walks each query's own window (2.5x the tiled matmul + top-k)
            values, position = fused_window.window_topk(query, context_embeddings, config.window, config.top_k,
                                                        knn.TILE)
        else:
            values, position = knn.local_topk(query, context_embeddings, config.window, config.top_k, knn.TILE)
        if key is not None:
            self.local_pool.put(key, values, position)
        return values, position

    # --------------------------------------------------------------------- sweeps
    def _sweep(self, order: list[int], refs, clamps, config, tick=None, out=None, finished=None,
               fade: ReferenceFade | None = None, accepted=None) -> dict[int, torch.Tensor]:
        """Label frames in ``order``, each with the previous ``n_context`` as context.

        ``fade`` (if given) lowers the scores of the correction frames' references by their
        distance in time to each frame before the vote (:mod:`.reach`).  ``accepted(t,
        probs)`` (if given) returns the scores frame ``t`` passes on as context: ``probs``
        unless the user accepts only an edit of that frame (:meth:`_accepted_scores`); the
        scores kept for the frame's own mask stay the raw ones (the caller edits the mask).

        ``tick()`` (if given) is called after each frame, for progress reports.  ``out(t)``
        (if given) returns the ``(C, h, w)`` view that receives frame ``t``'s scores: one
        preallocated tensor for the whole video instead of a thousand separate ones, which
        fragment the heap of long videos.  ``finished(t)`` (if given) is called once frame
        ``t``'s scores are written.
        """
        context: list[tuple[torch.Tensor, torch.Tensor]] = []
        context_frames: list[int] = []
        result = {}
        for frame_idx in order:
            query = self.cache[frame_idx]
            global_candidates = self._global_candidates(frame_idx, query, refs, config.top_k)
            if fade is not None:
                global_candidates = rerank(*global_candidates, fade.offsets(frame_idx, query.device))
            local_candidates = None
            if config.temporal and context:
                key = LocalKey(frame_idx, tuple(context_frames), config.window, config.top_k, knn.TILE)
                local_candidates = self._local_candidates(query, [e for e, _ in context], config, key)
            probs = fused_vote.vote_candidates(
                global_candidates, refs.labels, local_candidates, [p for _, p in context] if local_candidates else [],
                self.grid, config.top_k, config.temperature, config.window, knn.TILE, use_numba=self.fused,
            )
            if frame_idx in clamps:
                # on an annotated frame the user's labels are facts: clamp them
                known, dist = clamps[frame_idx]
                probs[:, known] = dist[:, known]
            if out is not None:
                probs = out(frame_idx).copy_(probs)
            result[frame_idx] = probs
            if config.temporal and config.n_context > 0:
                context.append((query, probs if accepted is None else accepted(frame_idx, probs)))
                context_frames.append(frame_idx)
                context = context[-config.n_context :]
                context_frames = context_frames[-config.n_context :]
            if tick is not None:
                tick()
            if finished is not None:
                finished(frame_idx)
        return result

    def _blend(self, store, annotated, refs, clamps, config, tick, done=None, span=None, fade=None,
               accepted=None) -> None:
        """Both temporal sweeps into ``store``; frames between the first and last
        annotation get both, weighted by ``1 / (1 + distance)`` to the annotation each
        sweep last passed.

        A frame is final as soon as the last sweep that labels it has passed (after the
        last annotation: the forward sweep; before the first: the backward one; in
        between: the backward one, blended at once with the forward result, which is
        complete by then); ``done(t)`` is called then, so results can stream out.

        ``span=(lo, hi)`` limits both sweeps to frames ``lo..hi`` (a fused correction
        round, :mod:`.fusion`); ``annotated`` must then lie inside it."""
        lo, hi = (0, self.n_frames - 1) if span is None else span
        first, last = annotated[0], annotated[-1]
        # frames first..last are labelled by both sweeps: the backward ones go aside
        aside = torch.empty((last - first + 1,) + tuple(store.shape[1:]), device=store.device)

        def forward_done(t):
            if t > last and done is not None:
                done(t)

        def backward_done(t):
            if t >= first:
                previous = max(a for a in annotated if a <= t)
                following = min(a for a in annotated if a >= t)
                w_f = 1.0 / (1 + t - previous)
                w_b = 1.0 / (1 + following - t)
                store[t] = (w_f * store[t] + w_b * aside[t - first]) / (w_f + w_b)
            if done is not None:
                done(t)

        self._sweep(list(range(first, hi + 1)), refs, clamps, config, tick, out=store.__getitem__,
                    finished=forward_done, fade=fade, accepted=accepted)
        self._sweep(list(range(last, lo - 1, -1)), refs, clamps, config, tick,
                    out=lambda t: aside[t - first] if t >= first else store[t], finished=backward_done, fade=fade,
                    accepted=accepted)

    # --------------------------------------------------------------------- public
    def propagate(self, references, progress: bool = False, callback=None, background_frames=None,
                  on_frame=None, previous: PropagationResult | None = None, changed_frames=None,
                  correction_frames=None, accepted_edits=None, **overrides) -> PropagationResult:
        """Label every frame.

        Parameters
        ----------
        references : :class:`~simwidgets.scribbles.Scribbles`, or ``{frame_idx: (H, W) int
            label map}`` with -1 for unknown pixels (a full ground-truth mask works too)
        progress : show tqdm progress bars
        background_frames : the annotated frames that may get automatic background cells
            (:func:`~.references.reference_cells`); None: every one that marks every
            object.  An interactive session passes the frames annotated before it showed
            any result: a correction stroke is drawn on what the user saw, not on a blank
            frame, so "far from this stroke" does not mean background there
        callback : called as ``callback(done, total)`` after each frame is labelled (a
            frame labelled in both temporal sweeps counts twice), e.g. for a widget's bar
        on_frame : called as ``on_frame(frame_idx, mask)`` with each frame's final
            ``(H, W)`` mask as soon as it is known, once per frame, while the round goes
            on (an app shows them as they come); the masks are those of the result
        previous, changed_frames : a correction round fused with the result it corrects
            (:mod:`.fusion`): ``previous`` is that result (same objects, same options),
            ``changed_frames`` the annotated frames whose references changed since.  Only
            the frames between the unchanged annotated frames around the changes are
            computed, and blended with ``previous`` by their distance to them; the other
            frames keep ``previous`` as it is
        correction_frames : the annotated frames whose references are corrections, drawn
            on a result the user saw; with ``correction_reach`` their global references
            weigh less in frames far from them (:mod:`.reach`).  None: no frame is
        accepted_edits : ``{frame_idx: edit}``, frames whose mask the user accepts only as
            ``edit(mask)`` of this round's ``(H, W)`` mask (an interactive session's
            corrected frames, :mod:`.local_edit`): as a sweep passes such a frame, the grid
            cells where the edit changes the mask take the edited labels before the frame
            serves as context, so its neighbours are propagated from what the user accepted
            (:meth:`_accepted_scores`).  The masks returned are not edited: that stays the
            caller's
        overrides : fields of :class:`TransferConfig` for this call only

        Returns
        -------
        PropagationResult with ``masks`` ``(T, H, W)`` uint8.
        """
        start = time.perf_counter()
        config = self.configured(**overrides)
        references = normalise_references(references, self.n_frames, self.height, self.width, config.brush_width)
        class_ids = class_ids_of(references)
        annotated = sorted(references)
        lo, hi, weights = 0, self.n_frames - 1, None
        if previous is not None:
            changed = self._checked_changes(previous, changed_frames, annotated, class_ids)
            kept = [f for f in annotated if f not in changed]
            weights = fusion.correction_weights(self.n_frames, changed, kept)
            lo, hi = fusion.correction_span(self.n_frames, changed, kept)
        span_annotated = [f for f in annotated if lo <= f <= hi]
        span_frames = range(lo, hi + 1)
        self.cache.ensure(progress=progress)
        refs, clamps = self.build_references(references, class_ids, config, background_frames)
        fade = ReferenceFade.of(refs, correction_frames, config.correction_reach, config.temperature)
        tick = None
        if callback is not None:
            total = ((hi - span_annotated[0] + 1) + (span_annotated[-1] - lo + 1)) if config.temporal else len(span_frames)
            counter = iter(range(1, total + 1))

            def tick():
                callback(next(counter), total)

        h, w = self.grid
        store = torch.empty((self.n_frames, len(class_ids), h, w), device=self.device)
        streamed = {}
        if previous is not None:
            for t in range(self.n_frames):
                if not lo <= t <= hi:  # beyond the unchanged annotations: the previous result
                    store[t] = previous.probabilities[t]
                    streamed[t] = (previous.masks[t].copy(), previous.confidence[t], previous.entropy[t])
                    if on_frame is not None:
                        on_frame(t, streamed[t][0])

        def fuse(t):
            if weights is not None and weights[t] < 1.0:
                store[t].mul_(float(weights[t])).add_(previous.probabilities[t], alpha=1.0 - float(weights[t]))

        def done(t):
            fuse(t)
            if on_frame is not None:
                mask, conf, ent = self._finish([store[t]], class_ids, [t], config)
                mask = self._keep_user_pixels(mask[0], references.get(t))
                streamed[t] = (mask, conf[0], ent[0])
                on_frame(t, mask)

        accepted = None
        if accepted_edits:
            def accepted(t, probs):
                edit = accepted_edits.get(t)
                return probs if edit is None else self._accepted_scores(probs, t, edit, references.get(t),
                                                                        class_ids, config)

        if config.temporal:
            self._blend(store, span_annotated, refs, clamps, config, tick, done, span=(lo, hi), fade=fade,
                        accepted=accepted)
        else:
            self._sweep(list(span_frames), refs, clamps, config, tick, out=store.__getitem__, finished=done,
                        fade=fade, accepted=accepted)
        probabilities = list(store)
        if on_frame is None:
            masks, confidence, entropy = self._finish(probabilities[lo:hi + 1], class_ids, span_frames, config)
            for t, frame_idx in enumerate(span_frames):
                streamed[frame_idx] = (self._keep_user_pixels(masks[t], references.get(frame_idx)),
                                       confidence[t], entropy[t])
        return PropagationResult(
            masks=np.stack([streamed[t][0] for t in range(self.n_frames)]),
            object_ids=class_ids,
            confidence=np.array([streamed[t][1] for t in range(self.n_frames)], np.float32),
            entropy=np.array([streamed[t][2] for t in range(self.n_frames)], np.float32),
            seconds=time.perf_counter() - start,
            probabilities=probabilities,
            span=(lo, hi),
        )

    def _checked_changes(self, previous, changed_frames, annotated, class_ids) -> list[int]:
        """The sorted changed frames of a fused correction round, once ``previous`` (the
        result it starts from) and they are checked against this round."""
        if not isinstance(previous, PropagationResult) or previous.probabilities is None:
            raise BadInputError("previous must be the PropagationResult of an earlier round of this video")
        if len(previous.probabilities) != self.n_frames or tuple(previous.probabilities[0].shape[1:]) != self.grid:
            raise BadInputError("previous is the result of another video (frame count or grid differ)")
        if list(previous.object_ids) != list(class_ids):
            raise BadInputError(
                f"previous labels objects {list(previous.object_ids)}, these references {list(class_ids)}: "
                "a round that adds or removes an object cannot be fused; propagate without previous"
            )
        if changed_frames is None:
            raise BadInputError("changed_frames is needed with previous: the annotated frames that changed")
        changed = sorted({checks.frame_index(f, self.n_frames) for f in changed_frames})
        if not changed or not set(changed) <= set(annotated):
            raise BadInputError(
                f"changed_frames must be annotated frames (annotated: {annotated}); got {changed}"
            )
        return changed

    def _accepted_scores(self, probs: torch.Tensor, frame_idx: int, edit, label_map, class_ids,
                         config: TransferConfig) -> torch.Tensor:
        """Frame ``frame_idx``'s ``(C, h, w)`` scores with the cells where ``edit`` changes the
        frame's mask set to the edited labels' share of the cell (a new tensor; ``probs``
        itself when the edit changes nothing).

        Why: a correction's new references also move cells of its own frame that no stroke
        asked to change (look-alikes of the stroke elsewhere in the frame); the session's
        local edit keeps those as the user saw them, but the sweep passed the raw scores
        on as context, and the neighbouring frames took the unasked-for change from there
        (scooter-gray, fold-0 model, interaction 7: the raw transfer of the corrected frame
        kept 3,541 of the 16,889 object pixels the user saw, the local edit kept the frame,
        0.664 -> 0.838, and the video fell 0.747 -> 0.441;
        ``benchmarks/results/interactive_kfold_corrected_context.md``)."""
        mask = self._finish([probs], class_ids, [frame_idx], config)[0][0]
        mask = self._keep_user_pixels(mask, label_map)
        edited = np.asarray(edit(mask.copy()))
        differs = edited != mask
        if not differs.any():
            return probs
        class_index = {int(c): i for i, c in enumerate(class_ids)}
        counts = cell_distributions(edited, class_index, self.stride, self.grid)
        share = counts / counts.sum(0, keepdim=True).clamp_min(1.0)
        cells = (cell_distributions(np.where(differs, 1, -1), {1: 0}, self.stride, self.grid)[0] > 0).to(probs.device)
        out = probs.clone()
        out[:, cells] = share.to(probs.device, probs.dtype)[:, cells]
        return out

    @staticmethod
    def _keep_user_pixels(mask: np.ndarray, label_map: np.ndarray | None) -> np.ndarray:
        """The user's own pixels keep their labels at full resolution (the clamp holds on
        the grid; upsampling alone would blur a thin stroke away)."""
        if label_map is not None:
            known = label_map >= 0
            mask[known] = label_map[known]
        return mask

    def preview(self, references, frame_idx: int, background_frames=None, correction_frames=None,
                **overrides) -> np.ndarray:
        """A quick ``(H, W)`` mask of one frame from the references alone (no temporal
        context), to show on screen at once while the whole round runs: it embeds only
        the annotated frames and this one, and votes this frame only."""
        config = self.configured(**overrides, temporal=False)
        frame_idx = checks.frame_index(frame_idx, self.n_frames)
        references = normalise_references(references, self.n_frames, self.height, self.width, config.brush_width)
        self.cache.ensure(sorted(set(references) | {frame_idx}))
        class_ids = class_ids_of(references)
        refs, clamps = self.build_references(references, class_ids, config, background_frames)
        fade = ReferenceFade.of(refs, correction_frames, config.correction_reach, config.temperature)
        probs = self._sweep([frame_idx], refs, clamps, config, fade=fade)[frame_idx]
        mask = self._finish([probs], class_ids, [frame_idx], config)[0][0]
        return self._keep_user_pixels(mask, references.get(frame_idx))

    def _finish(self, probabilities, class_ids, frame_indices, config: TransferConfig):
        """Upsample scores to full resolution, argmax, and per-frame confidence.

        Frames go in batches.  With two classes only the difference ``p1 - p0`` is
        upsampled (both the bilinear and the guided upsampling are linear in the scores,
        so its sign is the argmax of the two upsampled channels): half the work and no
        argmax pass.  With ``config.refine`` the upsampling is the guided filter of
        :mod:`.refine`, steered by the frames ``frame_indices``.
        """
        frame_indices = list(frame_indices)
        h, w = self.grid
        n_classes = len(class_ids)
        lut = np.asarray(class_ids, dtype=np.uint8)
        n_frames = len(probabilities)
        masks = np.empty((n_frames, self.height, self.width), dtype=np.uint8)
        confidence = np.empty(n_frames, dtype=np.float32)
        entropy = np.zeros(n_frames, dtype=np.float32)
        size = (h * self.stride, w * self.stride)
        for start in range(0, n_frames, self.FINISH_BATCH):
            stop = min(n_frames, start + self.FINISH_BATCH)
            probs = torch.stack(probabilities[start:stop])  # (B, C, h, w)
            confidence[start:stop] = probs.amax(1).mean((1, 2)).cpu().numpy()
            if n_classes == 1:
                masks[start:stop] = lut[0]
                continue
            ent = -(probs.clamp_min(1e-8).log() * probs).sum(1) / np.log(n_classes)
            entropy[start:stop] = ent.mean((1, 2)).cpu().numpy()
            if config.refine:
                scores = probs[:, 1:2] - probs[:, 0:1] if n_classes == 2 else probs
                guide = self.cache.frames[frame_indices[start:stop]]
                winner = refine.refined_labels(scores, guide, self.stride, config.refine_radius, config.refine_eps)
                masks[start:stop] = lut[winner] if n_classes > 2 else np.where(winner > 0, lut[1], lut[0])
            elif n_classes == 2:
                diff = probs[:, 1:2] - probs[:, 0:1]
                up = F.interpolate(diff, size=size, mode="bilinear", align_corners=False)
                winner = (up[:, 0, : self.height, : self.width] > 0).cpu().numpy()
                masks[start:stop] = np.where(winner, lut[1], lut[0])
            else:
                up = F.interpolate(probs, size=size, mode="bilinear", align_corners=False)
                winner = up[:, :, : self.height, : self.width].argmax(1).to(torch.uint8).cpu().numpy()
                masks[start:stop] = lut[winner]
        return masks, confidence, entropy


def propagate(frames, references, model="default", device=None, progress: bool = False, adapt=None,
              **config) -> np.ndarray:
    """Label every pixel of every frame from scribbles or reference masks.

    ``frames`` uint8 ``(T, H, W, 3)`` (or a list of frames); ``references`` a
    :class:`~simwidgets.scribbles.Scribbles` or ``{frame_idx: (H, W) label map}`` (``-1`` =
    unknown); ``model`` an EmbeddingModel or a name/path (``"default"``, ``"baseline"``, a
    checkpoint).  ``adapt`` fine-tunes a copy of the model on the references first
    (:func:`simwidgets.training.adapt_to_references`): ``None`` or ``False`` (the default)
    does not, ``True`` uses :data:`simwidgets.training.MASK_ADAPT` (chosen for a full mask
    on frame 0 with :meth:`TransferConfig.for_masks`'s options, as
    ``python -m simwidgets propagate --first-mask`` does by default), a dict gives its
    options.  Other keyword arguments are :class:`TransferConfig` fields.  Returns
    ``(T, H, W)`` uint8 masks.
    """
    options = TransferConfig().with_options(**config)  # checked before any model is loaded
    if adapt is not None and adapt is not False:
        from ..training.adapt import MASK_ADAPT, adapt_to_references, checked_adapt_options

        if adapt is not True and not isinstance(adapt, Mapping):
            raise BadInputError(f"adapt must be None, False, True or a dict of adapt_to_references options; "
                                f"got {adapt!r}")
        settings = dict(MASK_ADAPT) if adapt is True else checked_adapt_options(adapt)
        frames = checks.video_frames(frames)
        model, _ = adapt_to_references(load_model(model), frames, references, config=options, device=device,
                                       **settings)
    engine = LabelTransfer(frames, model=model, config=options, device=device)
    return engine.propagate(references, progress=progress).masks
