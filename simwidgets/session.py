"""Interactive rounds on one video: add scribbles, propagate, look, correct, propagate again.

The paper's method is interactive: a person scribbles, the labels spread to every frame,
the person corrects the worst frame, the labels spread again.  :class:`InteractiveSession`
holds what survives between rounds (in the spirit of SAM 2's video predictor, one object
per video instead of a state passed around):

* the **embeddings** of every frame (a :class:`~simwidgets.transfer.LabelTransfer` and its
  cache), computed once: later rounds only redo the nearest-neighbour votes, which is what
  makes a correction cheap;
* the **scribbles of all rounds**, accumulated in one :class:`~simwidgets.scribbles.Scribbles`
  and rasterised in order, so a later stroke overrides an earlier one under it: a correction
  can add pixels to any object, background included, or take them away from one;
* the last **result** (masks, per-frame confidence and entropy) and a **history** of rounds
  with their timings.

Three lines::

    session = InteractiveSession(video, model="default")
    session.add_scribbles(video.scribbles["001"])
    result = session.propagate()          # masks for every frame

then ``session.suggest_frame()`` names the frame the method is least sure about (no
ground truth needed), a person scribbles there, and ``session.propagate()`` again.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Mapping

import numpy as np

from . import checks
from .errors import BadInputError
from .scribbles import UNKNOWN, Scribbles, Stroke, rasterize_strokes
from .transfer import LabelTransfer, PropagationResult, TransferConfig, class_ids_of
from .transfer.local_edit import edge_distance, local_changes

__all__ = ["InteractiveSession", "RoundRecord", "SUGGESTION_CRITERIA"]

#: how :meth:`InteractiveSession.suggest_frame` ranks frames (highest score = least sure)
SUGGESTION_CRITERIA = ("entropy", "confidence")


@dataclass
class RoundRecord:
    """One round: the references added since the previous propagation and what it cost.

    Attributes
    ----------
    round : 1 for the first propagation, 2 for the next...
    frames : frames that received new strokes or masks in this round
    n_strokes : strokes added in this round
    object_ids : object ids present in all references after this round (0 included)
    seconds : wall time of the propagation (embedding included)
    embed_seconds : part of ``seconds`` spent embedding frames (0 once the cache is full)
    n_embedded : frames embedded during this round (the whole video in round 1, then 0)
    changed_frames : frames whose mask differs from the previous round's (all in round 1)
    seconds_per_frame : ``seconds`` divided by the number of frames
    """

    round: int
    frames: list[int]
    n_strokes: int
    object_ids: list[int]
    seconds: float
    embed_seconds: float
    n_embedded: int
    changed_frames: list[int] = field(default_factory=list)
    seconds_per_frame: float = 0.0


def _stroke_difference(before, after) -> tuple[list[Stroke], list[Stroke]]:
    """``(added, removed)``: the strokes of ``after`` not in ``before`` and those of ``before``
    not in ``after``, counted as multisets (the same stroke drawn twice counts twice)."""
    added, removed = list(after), []
    for stroke in before:
        if stroke in added:
            added.remove(stroke)
        else:
            removed.append(stroke)
    return added, removed


def _as_video(frames):
    """``(frames, name)`` from a VideoSequence, an array or a LazyFrames."""
    name = ""
    if hasattr(frames, "frames") and hasattr(frames, "name"):  # VideoSequence
        frames, name = frames.frames, frames.name
    return checks.video_frames(frames), name


class InteractiveSession:
    """Scribble -> propagate -> correct rounds over one video, with cached embeddings.

    Parameters
    ----------
    frames : a :class:`~simwidgets.video.VideoSequence`, a ``(T, H, W, 3)`` uint8 array or
        :class:`~simwidgets.video.LazyFrames`
    model : an EmbeddingModel, or a name/path for :func:`simwidgets.models.load_model`
        (``"default"`` = the shipped model, ``"baseline"``...)
    config : :class:`~simwidgets.transfer.TransferConfig` (top_k, temperature, temporal,
        window, n_context, brush_width...); change it later with :meth:`configure`
    device : compute device (automatic when None)

    Attributes
    ----------
    transfer : the :class:`~simwidgets.transfer.LabelTransfer` (its ``cache.n_computed``
        counts embedded frames)
    result : the last :class:`~simwidgets.transfer.PropagationResult`, or None
    history : list of :class:`RoundRecord`, one per propagation
    """

    def __init__(self, frames, model="default", config: TransferConfig | None = None, device=None):
        frames, name = _as_video(frames)
        self.name = name
        self.transfer = LabelTransfer(frames, model=model, config=config, device=device)
        self.n_frames = self.transfer.n_frames
        self.height, self.width = self.transfer.height, self.transfer.width
        self.result: PropagationResult | None = None
        self.history: list[RoundRecord] = []
        self._clear_inputs()

    def _clear_inputs(self) -> None:
        self._scribbles = Scribbles(self.n_frames, self.name)
        self._masks: dict[int, np.ndarray] = {}
        self._pending_frames: set[int] = set()
        self._pending_strokes = 0
        #: each frame's label map, under ``(strokes, brush width, its correction mask used)``
        self._raster: dict[int, tuple[tuple[int, float, bool], np.ndarray]] = {}
        #: the options and references of the last round (what a fused correction compares)
        self._last_round: tuple[TransferConfig, dict[int, np.ndarray]] | None = None
        #: frames annotated before any result was shown: only these may get automatic
        #: background cells (a correction is drawn on what the user saw)
        self._blank_frames: set[int] = set()
        #: the strokes of each frame as the last round saw them
        self._shown_strokes: dict[int, list[Stroke]] = {}
        #: frames corrected after a result was shown: ``{frame: (mask the user saw, labels
        #: of that correction's strokes, -1 elsewhere)}``, for ``local_corrections``
        self._corrected: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        #: ``{frame: {(reach, depth, edge cost): memo}}``: each correction's depth bounds
        #: (``local_changes(memo=...)``), dropped whenever ``_corrected[frame]`` changes
        self._edit_memo: dict[int, dict] = {}
        #: ``correction_masks``: ``{frame: corrected mask}``, each corrected frame's labels
        #: as a full reference mask (under its strokes, like a mask of the user's own)
        self._correction_masks: dict[int, np.ndarray] = {}
        #: ``reference_depth``: ``{frame: (H, W) float}``, each correction stroke pixel's
        #: distance to the edge of the mask the user saw (pixels; inf elsewhere)
        self._stroke_depth: dict[int, np.ndarray] = {}

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> TransferConfig:
        return self.transfer.config

    @property
    def cache(self):
        """The embedding cache (``cache.n_computed`` = frames embedded so far)."""
        return self.transfer.cache

    @property
    def scribbles(self) -> Scribbles:
        """A copy of all strokes added so far, rounds in order (DAVIS format)."""
        return self._scribbles.copy()

    @property
    def annotated_frames(self) -> list[int]:
        """Frames that carry a stroke or a reference mask."""
        return sorted(set(self._scribbles.annotated_frames) | set(self._masks))

    @property
    def object_ids(self) -> list[int]:
        """Object ids named by the references so far (0 = background, when scribbled)."""
        ids = set(self._scribbles.object_ids)
        for mask in self._masks.values():
            ids |= {int(v) for v in np.unique(mask) if v >= 0}
        return sorted(ids)

    @property
    def masks(self) -> np.ndarray | None:
        """``(T, H, W)`` uint8 masks of the last propagation (None before the first)."""
        return None if self.result is None else self.result.masks

    @property
    def n_rounds(self) -> int:
        return len(self.history)

    def configure(self, **options) -> TransferConfig:
        """Change propagation options (TransferConfig fields) for the next rounds.

        The embeddings stay cached: only ``top_k``, ``temperature``, ``temporal``,
        ``window``... change, so the next :meth:`propagate` is as fast as a correction.
        """
        self.transfer.configured(**options)  # checked first: mirror cannot change
        self.transfer.config = self.transfer.config.with_options(**options)
        self._raster.clear()  # brush_width may have changed
        return self.transfer.config

    # ------------------------------------------------------------------ inputs
    def _check_frame(self, frame_idx) -> int:
        return checks.frame_index(frame_idx, self.n_frames)

    @staticmethod
    def _check_object(object_id, where: str) -> int:
        return checks.object_id(object_id, f"{where}: object id")

    def _as_strokes(self, scribbles) -> list[tuple[int, Stroke]]:
        """Every accepted input form as ``[(frame_idx, Stroke), ...]``, fully checked."""
        if isinstance(scribbles, Scribbles):
            if scribbles.n_frames != self.n_frames:
                raise BadInputError(
                    f"frame-count mismatch: the scribbles describe {scribbles.n_frames} frames, "
                    f"the video has {self.n_frames}"
                )
            return [(f, s) for f, s in scribbles]
        if isinstance(scribbles, Mapping) and "scribbles" in scribbles:  # DAVIS dict
            return self._as_strokes(Scribbles.from_dict(dict(scribbles), n_frames=self.n_frames))
        if not isinstance(scribbles, Mapping):
            raise BadInputError(
                "scribbles must be Scribbles, a DAVIS dict {'scribbles': [...]} or "
                f"{{frame_idx: [strokes]}}; got {type(scribbles).__name__}"
            )
        pairs = []
        for frame_idx, strokes in scribbles.items():
            frame_idx = self._check_frame(frame_idx)
            if isinstance(strokes, (Stroke, Mapping)):
                strokes = [strokes]
            for k, stroke in enumerate(strokes):
                where = f"frame {frame_idx}, stroke {k}"
                if isinstance(stroke, Mapping):
                    if "path" not in stroke or "object_id" not in stroke:
                        raise BadInputError(f"{where}: a stroke needs 'path' and 'object_id'")
                    self._check_object(stroke["object_id"], where)
                    stroke = Stroke(stroke["path"], stroke["object_id"], stroke.get("start_time"), stroke.get("end_time"))
                elif not isinstance(stroke, Stroke):
                    raise BadInputError(f"{where}: expected a Stroke or a dict; got {type(stroke).__name__}")
                pairs.append((frame_idx, stroke))
        return pairs

    def add_scribbles(self, scribbles) -> list[int]:
        """Add a round of strokes; they count from the next :meth:`propagate` on.

        Strokes are drawn over everything added before (a background stroke over an
        object's pixels makes them background).  Nothing is added if any stroke is
        invalid: the check happens before the first one is stored.

        Parameters
        ----------
        scribbles : :class:`~simwidgets.scribbles.Scribbles` of this video, a DAVIS dict
            (e.g. what the davisinteractive robot returns), or ``{frame_idx: [stroke, ...]}``
            where a stroke is a :class:`~simwidgets.scribbles.Stroke` or
            ``{"path": [[x, y], ...] normalised to [0, 1], "object_id": k}``

        Returns
        -------
        The frames that received strokes, sorted.
        """
        pairs = self._as_strokes(scribbles)
        for frame_idx, stroke in pairs:
            self._check_object(stroke.object_id, f"frame {frame_idx}")
        for frame_idx, stroke in pairs:
            self._scribbles.frames[frame_idx].append(
                Stroke(stroke.path.copy(), stroke.object_id, stroke.start_time, stroke.end_time)
            )
            self._pending_frames.add(frame_idx)
        self._pending_strokes += len(pairs)
        return sorted({f for f, _ in pairs})

    def set_scribbles(self, scribbles) -> list[int]:
        """Replace every stroke by ``scribbles`` (same forms as :meth:`add_scribbles`).

        For an editor that keeps the strokes itself (the segmentation app, where a person
        may undo or erase): the frames whose strokes changed count as this round's
        frames.  Masks given with :meth:`add_mask` stay.  Returns the changed frames.
        """
        pairs = self._as_strokes(scribbles)
        for frame_idx, stroke in pairs:
            self._check_object(stroke.object_id, f"frame {frame_idx}")
        new = Scribbles(self.n_frames, self.name)
        for frame_idx, stroke in pairs:
            new.frames[frame_idx].append(Stroke(stroke.path.copy(), stroke.object_id, stroke.start_time, stroke.end_time))
        changed = [f for f in range(self.n_frames) if new.frames[f] != self._scribbles.frames[f]]
        for frame_idx in changed:
            added, _ = _stroke_difference(self._scribbles.frames[frame_idx], new.frames[frame_idx])
            self._pending_strokes += len(added)
        self._scribbles = new
        self._pending_frames.update(changed)
        for frame_idx in changed:
            self._raster.pop(frame_idx, None)
        return changed

    def add_stroke(self, frame_idx: int, path, object_id: int) -> Stroke:
        """Add one stroke: ``path`` ``(N, 2)`` normalised ``(x, y)`` = ``(col / W, row / H)``."""
        frame_idx = self._check_frame(frame_idx)
        self._check_object(object_id, f"frame {frame_idx}")
        stroke = Stroke(path, object_id)
        self.add_scribbles({frame_idx: [stroke]})
        return stroke

    def add_mask(self, frame_idx: int, mask) -> None:
        """Give a full (or partial) label map of one frame as references.

        ``mask`` is ``(H, W)`` integer object ids, ``-1`` for pixels left unknown; strokes
        on the same frame are drawn over it.  Replaces an earlier mask of that frame.
        """
        frame_idx = self._check_frame(frame_idx)
        mask = checks.label_map(mask, (self.height, self.width), f"mask for frame {frame_idx}").astype(np.int64)
        self._masks[frame_idx] = mask
        self._raster.pop(frame_idx, None)
        self._corrected.pop(frame_idx, None)  # a mask of the user's own is final there
        self._edit_memo.pop(frame_idx, None)
        self._stroke_depth.pop(frame_idx, None)
        self._pending_frames.add(frame_idx)

    def references(self) -> dict[int, np.ndarray]:
        """``{frame_idx: (H, W) int64 label map, -1 unknown}`` of every annotated frame.

        A frame's reference mask (if any) first, then its strokes in the order they were
        added.  Rasterisations are cached per frame and redone only when it changes.
        """
        return self._references(self.config)

    def _references(self, config: TransferConfig) -> dict[int, np.ndarray]:
        """:meth:`references` under ``config``: a corrected frame's mask
        (``correction_masks``) stands under its strokes only while that option is on."""
        brush = config.brush_width
        corrected = self._correction_masks if config.correction_masks else {}
        result = {}
        for frame_idx in self.annotated_frames:
            strokes = self._scribbles.frames[frame_idx]
            key = (len(strokes), brush, frame_idx in corrected)
            cached = self._raster.get(frame_idx)
            if cached is not None and cached[0] == key:
                result[frame_idx] = cached[1]
                continue
            labels = self._masks.get(frame_idx, corrected.get(frame_idx))
            labels = np.full((self.height, self.width), UNKNOWN, np.int64) if labels is None else labels.copy()
            if strokes:
                drawn = rasterize_strokes(strokes, self.height, self.width, brush)
                labels[drawn >= 0] = drawn[drawn >= 0]
            self._raster[frame_idx] = (key, labels)
            result[frame_idx] = labels
        return result

    # ------------------------------------------------------------------ rounds
    def propagate(self, callback: Callable[[str, int, int], None] | None = None, on_frame=None,
                  **overrides) -> PropagationResult:
        """Label every frame from all references so far; record the round.

        Parameters
        ----------
        callback : called as ``callback(stage, done, total)`` while working, ``stage``
            ``"embedding"`` (frames embedded) then ``"propagating"`` (frames labelled), so
            a progress bar can follow; it must not touch the session
        on_frame : called as ``on_frame(frame_idx, mask)`` with each frame's final mask as
            soon as it is known, while the round goes on (see
            :meth:`~simwidgets.transfer.LabelTransfer.propagate`); it must not touch the session
        overrides : TransferConfig fields for this round only

        Returns
        -------
        :class:`~simwidgets.transfer.PropagationResult` (also kept as :attr:`result`).
        """
        config = self.config.with_options(**overrides)  # checked: a bad option raises here
        references = self._references(config)
        if not references:
            raise BadInputError("nothing to propagate: add scribbles (or a mask) first")
        start = time.perf_counter()
        before = self.cache.n_computed
        self._embed(callback)
        embed_seconds = time.perf_counter() - start
        kwargs = {} if on_frame is None else {"on_frame": on_frame}
        if callback is not None:
            kwargs["callback"] = lambda done, total: callback("propagating", done, total)
        if self.result is None:  # frames scribbled before any result was shown
            self._blank_frames |= set(references)
        kwargs.update(self._fusion(references, config))
        local = self._local_edits(config)
        if config.correction_masks and local:
            # the corrected frames are now clamped to their masks: nothing left to edit
            references, local = self._make_correction_masks(references, local, config), {}
        transferred, hidden = self._deep_references(references, config)
        for frame_idx, pixels in hidden.items():  # the hidden stroke pixels keep their labels
            edit = local.get(frame_idx, lambda mask: mask)
            local[frame_idx] = (lambda mask, edit=edit, pixels=pixels, labels=references[frame_idx]:
                                np.where(pixels, labels, edit(mask)).astype(mask.dtype))
        edited: dict[int, np.ndarray] = {}  # each corrected frame edited once, streamed or not
        if local and on_frame is not None:
            def stream(t, mask):
                if t in local:
                    mask = edited[t] = local[t](mask)
                on_frame(t, mask)

            kwargs["on_frame"] = stream
        if config.corrected_context and local:
            kwargs["accepted_edits"] = local
        result = self.transfer.propagate(transferred, background_frames=self._background_frames(references),
                                         correction_frames=self._correction_frames(references),
                                         **kwargs, **overrides)
        for frame_idx, edit in local.items():
            result.masks[frame_idx] = edited[frame_idx] if frame_idx in edited else edit(result.masks[frame_idx])
        self._last_round = (config, references)
        self._shown_strokes = {f: list(s) for f, s in enumerate(self._scribbles.frames) if s}
        seconds = time.perf_counter() - start
        if self.result is None or self.result.masks.shape != result.masks.shape:
            changed = list(range(self.n_frames))
        else:
            differs = (self.result.masks != result.masks).reshape(self.n_frames, -1).any(1)
            changed = np.flatnonzero(differs).tolist()
        self.history.append(
            RoundRecord(
                round=len(self.history) + 1,
                frames=sorted(self._pending_frames),
                n_strokes=self._pending_strokes,
                object_ids=list(result.object_ids),
                seconds=seconds,
                embed_seconds=embed_seconds,
                n_embedded=self.cache.n_computed - before,
                changed_frames=changed,
                seconds_per_frame=seconds / self.n_frames,
            )
        )
        self._pending_frames, self._pending_strokes = set(), 0
        self.result = result
        return result

    def _local_edits(self, config: TransferConfig) -> dict[int, Callable[[np.ndarray], np.ndarray]]:
        """``{frame: edit}`` for ``local_corrections``: each frame corrected after its result
        was shown keeps the mask the user saw, except for what its strokes ask for where
        they reach (:func:`~simwidgets.transfer.local_edit.local_changes`).

        A frame's correction is the strokes added there since the last round, taken
        against the mask of that round; a later correction of the same frame starts again
        from what was shown then.  A frame whose earlier strokes were taken away (undo),
        or that has a mask of the user's own, is transferred whole."""
        if self.result is None:
            return {}
        for frame_idx in sorted(self._pending_frames):
            if frame_idx in self._masks:
                continue
            added, removed = _stroke_difference(self._shown_strokes.get(frame_idx, []),
                                                self._scribbles.frames[frame_idx])
            if removed:  # an earlier stroke was taken away: no longer a correction
                self._corrected.pop(frame_idx, None)
                self._edit_memo.pop(frame_idx, None)
                self._stroke_depth.pop(frame_idx, None)
                if self._correction_masks.pop(frame_idx, None) is not None:
                    self._raster.pop(frame_idx, None)
            elif added:
                drawn = rasterize_strokes(added, self.height, self.width, self.config.brush_width)
                self._corrected[frame_idx] = (self.result.masks[frame_idx].copy(), drawn)
                self._edit_memo.pop(frame_idx, None)
                depth = self._stroke_depth.setdefault(frame_idx, np.full(drawn.shape, np.inf, np.float32))
                fresh = edge_distance(self.result.masks[frame_idx], drawn)
                depth[drawn >= 0] = fresh[drawn >= 0]
        if not config.local_corrections:
            return {}
        edits = {}
        reach = max(1, int(self.transfer.stride))  # a grid cell: the transfer's own resolution
        nearest, depth = config.local_nearest_stroke, config.local_depth
        edge_cost = config.local_edge_cost if depth is not None else None
        for frame_idx, (seen, drawn) in self._corrected.items():
            # the depth bound depends on the correction, not on the new transfer: computed
            # once per correction and these options, reused every round (and in the sweeps)
            memos = self._edit_memo.setdefault(frame_idx, {})
            memo = memos.setdefault((reach, depth, edge_cost), {})
            image = self._frame_image(frame_idx, memos) if edge_cost else None
            edits[frame_idx] = (lambda mask, seen=seen, drawn=drawn, reach=reach, nearest=nearest, depth=depth,
                                image=image, edge_cost=edge_cost, memo=memo:
                                local_changes(seen, mask, drawn, reach, nearest, depth, image, edge_cost, memo))
        return edits

    def _frame_image(self, frame_idx: int, memos: dict) -> np.ndarray:
        """The frame for ``local_edge_cost``, decoded once per correction (frames may be lazy)."""
        if "image" not in memos:
            memos["image"] = np.asarray(self.transfer.frame(frame_idx))
        return memos["image"]

    def _deep_references(self, references, config: TransferConfig):
        """``reference_depth``: the references the transfer gets, without the correction
        stroke pixels that lie less than ``reference_depth`` grid cells from the edge of the
        mask the user saw with their label, and ``{frame: those pixels}`` (they keep their
        labels on their frame at full resolution, but as reference cells they would be
        cells that straddle that edge, their embedding partly of the other side)."""
        if config.reference_depth is None or not self._stroke_depth:
            return references, {}
        limit = config.reference_depth * self.transfer.stride
        hidden = {}
        for frame_idx, depth in self._stroke_depth.items():
            if frame_idx in references:
                shallow = (depth < limit) & (references[frame_idx] >= 0)
                if shallow.any():
                    hidden[frame_idx] = shallow
        if not hidden:
            return references, {}
        kept = {f: np.where(hidden[f], UNKNOWN, m) if f in hidden else m for f, m in references.items()}
        return {f: m for f, m in kept.items() if (m >= 0).any()}, hidden

    def _make_correction_masks(self, references, local, config: TransferConfig) -> dict[int, np.ndarray]:
        """``correction_masks``: the frames corrected in this round get their corrected
        mask (the mask the user saw, edited by :func:`~simwidgets.transfer.local_edit.local_changes`
        against a quick transfer of that frame from this round's references) as their
        reference labels; returns the references with them."""
        background = self._background_frames(references)
        for frame_idx in sorted(self._pending_frames & set(local)):
            proposed = self.transfer.preview(references, frame_idx, background_frames=background,
                                             correction_frames=self._correction_frames(references))
            self._correction_masks[frame_idx] = local[frame_idx](proposed).astype(np.int64)
            self._raster.pop(frame_idx, None)
        return self._references(config)

    def _fusion(self, references, config: TransferConfig) -> dict:
        """``previous`` and ``changed_frames`` for the engine when this round is a correction
        that can be fused with the last result (``fuse_corrections``, :mod:`~simwidgets.transfer.fusion`):
        same options, same objects, no annotated frame removed, and the references of at
        least one frame changed.  Anything else is a full round."""
        if not config.fuse_corrections or self.result is None or self._last_round is None:
            return {}
        last_config, last_references = self._last_round
        if config != last_config or not set(last_references) <= set(references):
            return {}
        if list(class_ids_of(references)) != list(self.result.object_ids):
            return {}
        changed = [f for f in references
                   if f not in last_references or not np.array_equal(references[f], last_references[f])]
        if not changed:
            return {}
        return {"previous": self.result, "changed_frames": changed}

    def preview(self, frame_idx: int) -> np.ndarray:
        """A quick ``(H, W)`` mask of one frame from the references so far alone (no
        temporal context): what the app shows at once while the whole round runs."""
        references = self.references()
        if not references:
            raise BadInputError("nothing to propagate: add scribbles (or a mask) first")
        return self.transfer.preview(references, frame_idx, background_frames=self._background_frames(references),
                                     correction_frames=self._correction_frames(references))

    def _background_frames(self, references) -> set[int]:
        """The annotated frames that may get automatic background cells: those scribbled
        before any result was shown (all of them, before the first round)."""
        return self._blank_frames | (set(references) if self.result is None else set())

    def _correction_frames(self, references) -> set[int]:
        """The annotated frames whose references are corrections (``correction_reach``):
        corrected after a result was shown, and neither scribbled before the first result
        nor masked by the user (those references hold in every frame)."""
        return (set(self._corrected) & set(references)) - self._blank_frames - set(self._masks)

    def _embed(self, callback) -> None:
        """Fill the embedding cache, a batch at a time so ``callback`` can report progress."""
        cache = self.cache
        before = cache.n_computed  # the cache embeds each frame once: this counts cached frames
        if before >= self.n_frames:
            return
        total = self.n_frames - before
        if callback is not None:
            callback("embedding", 0, total)
        step = max(1, cache.batch_size)
        for start in range(0, self.n_frames, step):
            done = cache.n_computed
            cache.ensure(range(start, min(start + step, self.n_frames)))
            if callback is not None and cache.n_computed > done:
                callback("embedding", cache.n_computed - before, total)

    def uncertainty(self, by: str = "entropy") -> np.ndarray:
        """``(T,)`` per-frame uncertainty of the last result, higher = less sure.

        ``"entropy"``: mean normalised entropy of the votes; ``"confidence"``: one minus
        the mean winning probability.  Both come from the transfer scores alone (no
        ground truth), so they work on any video.
        """
        if by not in SUGGESTION_CRITERIA:
            raise BadInputError(f"by must be one of {SUGGESTION_CRITERIA}; got {by!r}")
        if self.result is None:
            raise BadInputError("no propagation yet: call propagate() before asking for uncertainty")
        if by == "entropy":
            return np.asarray(self.result.entropy, dtype=np.float64)
        return 1.0 - np.asarray(self.result.confidence, dtype=np.float64)

    def suggest_frame(self, by: str = "entropy", exclude: Iterable[int] | None = None) -> int:
        """The frame to annotate next: the least certain one not yet annotated.

        Parameters
        ----------
        by : ``"entropy"`` or ``"confidence"`` (see :meth:`uncertainty`)
        exclude : frames to skip (default: the annotated ones, whose labels are already
            the user's; when every frame is excluded, all frames are candidates)

        Returns
        -------
        A frame index in ``0..T-1``.
        """
        scores = self.uncertainty(by)
        skip = set(self.annotated_frames if exclude is None else (self._check_frame(f) for f in exclude))
        candidates = [f for f in range(self.n_frames) if f not in skip] or list(range(self.n_frames))
        return int(max(candidates, key=lambda f: (scores[f], -f)))

    def reset(self) -> None:
        """Forget all scribbles, masks, results and history; keep the cached embeddings."""
        self._clear_inputs()
        self.result = None
        self.history = []

    def timings(self) -> list[dict]:
        """The history as plain dicts (round, seconds, embed_seconds...), e.g. for a table."""
        return [asdict(record) for record in self.history]

    def __repr__(self) -> str:
        return (
            f"InteractiveSession({self.name!r}, {self.n_frames} frames {self.width}x{self.height}, "
            f"{len(self._scribbles)} strokes on frames {self.annotated_frames}, {self.n_rounds} rounds)"
        )
