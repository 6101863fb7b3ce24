"""The similarity explorer: click a pixel, see what the embedding thinks is like it.

Label transfer is "a pixel takes the label of the reference pixels most similar to it",
so everything it does is visible in one picture: the cosine similarity of a pixel's
embedding to every other pixel.  Two parts:

* :class:`EmbeddingProbe` (no widget) answers the questions on one video's **cached**
  embeddings (those of a :class:`~simwidgets.transfer.LabelTransfer` or an
  :class:`~simwidgets.session.InteractiveSession`): the similarity map of a pixel over a
  frame, its top-k matches, and the **provenance** of its label (its nearest reference
  pixels and their votes, computed exactly as the transfer computes them);
* :class:`SimilarityExplorer` (an ipywidget) shows them live, for several embeddings side
  by side (the hand-crafted baseline and the learned model): click a pixel of the query
  frame and the heat maps of the query frame and of another chosen frame follow, with a
  colour bar and the top-k matches marked.

Three lines::

    from simwidgets.explorer import SimilarityExplorer
    explorer = SimilarityExplorer(sw.load_sample("bear"), {"baseline": "baseline", "learned": "default"})
    explorer            # click the bear

A frame is embedded the first time it is shown (once per model, kept in the cache); a
click only reads the cache and does one matrix-vector product per frame shown, so it
takes milliseconds.  This module imports torch; :mod:`simwidgets.widgets` stays torch-free.
"""
from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from typing import Mapping

import ipywidgets as widgets
import numpy as np
import torch
from ipycanvas import Canvas, MultiCanvas, hold_canvas
from PIL import Image

from .. import viz
from ..errors import BadInputError
from ..session import InteractiveSession
from ..transfer import LabelTransfer, References, nearest_votes
from ..widgets.canvas import as_frames
from ..widgets.coords import canvas_size_for, canvas_to_image_coordinates

__all__ = ["EmbeddingProbe", "Provenance", "ExplorerResult", "SimilarityExplorer", "SCALES"]

#: colour scales of the explorer: the full cosine range, or stretched to each model's maps
SCALES = ("fixed", "stretch")


# ----------------------------------------------------------------------------- provenance

@dataclass
class Provenance:
    """Why a pixel gets its label: its ``k`` nearest reference cells and their votes.

    The numbers are those of the label transfer's scribble/mask references (the global
    part of its vote); with ``temporal=True`` the transfer also lets the previous frames'
    predictions vote, and on an annotated frame it keeps the user's own labels
    (``clamped``).

    Attributes
    ----------
    frame_idx, point : the queried frame and pixel ``(x, y)``
    cell : its embedding grid cell ``(row, col)``
    object_ids : ids of the vote channels, background 0 first
    ref_frames : ``(k,)`` frame of each reference, nearest first
    ref_cells : ``(k, 2)`` their grid cells ``(row, col)``
    ref_points : ``(k, 2)`` their cell centres as pixel ``(x, y)``
    similarities : ``(k,)`` cosine similarity to the queried pixel
    weights : ``(k,)`` vote weights, ``softmax(similarity / temperature)``
    ref_labels : ``(k, C)`` each reference's label distribution over ``object_ids`` (a cell
        half covered by a stroke of object 1 and half by background votes half for each)
    votes : ``(C,)`` the weighted votes, summing to 1
    clamped : the pixel is itself labelled by the user, whose label wins over the vote
    user_labels : ``(C,)`` that user label distribution (None unless ``clamped``)
    temperature : of the softmax
    """

    frame_idx: int
    point: tuple[int, int]
    cell: tuple[int, int]
    object_ids: list[int]
    ref_frames: np.ndarray
    ref_cells: np.ndarray
    ref_points: np.ndarray
    similarities: np.ndarray
    weights: np.ndarray
    ref_labels: np.ndarray
    votes: np.ndarray
    clamped: bool = False
    user_labels: np.ndarray | None = None
    temperature: float = 0.05

    @property
    def ref_objects(self) -> np.ndarray:
        """``(k,)`` the object each reference mostly votes for."""
        return np.asarray(self.object_ids)[np.argmax(self.ref_labels, axis=1)]

    @property
    def label(self) -> int:
        """The object id the references vote for (the user's, if the pixel is ``clamped``)."""
        dist = self.user_labels if self.clamped and self.user_labels is not None else self.votes
        return int(self.object_ids[int(np.argmax(dist))])

    def vote_dict(self) -> dict[int, float]:
        """``{object_id: vote}``."""
        return {int(i): float(v) for i, v in zip(self.object_ids, self.votes)}

    def rows(self) -> list[dict]:
        """One dict per reference, nearest first (e.g. ``pandas.DataFrame(p.rows())``)."""
        return [
            {
                "rank": rank + 1,
                "frame_idx": int(self.ref_frames[rank]),
                "x": int(self.ref_points[rank, 0]),
                "y": int(self.ref_points[rank, 1]),
                "object_id": int(self.ref_objects[rank]),
                "similarity": float(self.similarities[rank]),
                "weight": float(self.weights[rank]),
            }
            for rank in range(len(self.ref_frames))
        ]

    def describe(self, max_rows: int | None = None) -> str:
        """Text: the label, the votes, then the nearest references (``max_rows`` at most)."""
        x, y = self.point
        votes = ", ".join(f"{'bg' if i == 0 else i}: {v:.2f}" for i, v in self.vote_dict().items())
        lines = [f"pixel ({x}, {y}) of frame {self.frame_idx} -> object {self.label}  (votes {votes})"]
        if self.clamped:
            lines.append("  the user labelled this pixel: the transfer keeps that label")
        rows = self.rows()
        for row in rows if max_rows is None else rows[:max_rows]:
            lines.append(
                f"  #{row['rank']:<2d} frame {row['frame_idx']:3d} ({row['x']:4d}, {row['y']:4d}) "
                f"object {row['object_id']}  similarity {row['similarity']:+.3f}  weight {row['weight']:.3f}"
            )
        if max_rows is not None and len(rows) > max_rows:
            lines.append(f"  ... {len(rows) - max_rows} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def to_html(self, title: str = "", max_rows: int | None = 8) -> str:
        """A compact HTML table (for the widget): label, votes, the nearest references."""
        votes = " &nbsp; ".join(
            f"<b>{'bg' if i == 0 else i}</b> {v:.2f}" for i, v in self.vote_dict().items()
        )
        head = f"<b>{html.escape(title)}</b><br>" if title else ""
        note = " (user-labelled: kept)" if self.clamped else ""
        rows = self.rows()
        shown = rows if max_rows is None else rows[:max_rows]
        cell = "style='padding:0 6px'"
        body = "".join(
            f"<tr><td {cell}>{r['rank']}</td><td {cell}>{r['frame_idx']}</td><td {cell}>({r['x']}, {r['y']})</td>"
            f"<td {cell}>{'bg' if r['object_id'] == 0 else r['object_id']}</td>"
            f"<td {cell}>{r['similarity']:+.3f}</td><td {cell}>{r['weight']:.3f}</td></tr>"
            for r in shown
        )
        more = f"<div>... {len(rows) - len(shown)} more</div>" if len(shown) < len(rows) else ""
        return (
            f"<div style='font-size:12px;line-height:1.25'>{head}label <b>{self.label}</b>{note} &middot; votes {votes}"
            "<table style='font-size:11px;line-height:1.15;border-collapse:collapse'><tr>"
            f"<th {cell}>#</th><th {cell}>frame</th><th {cell}>pixel</th><th {cell}>object</th>"
            f"<th {cell}>sim</th><th {cell}>weight</th></tr>{body}</table>{more}</div>"
        )


# ----------------------------------------------------------------------------- the probe

def _as_engine(source, frames, device) -> tuple[LabelTransfer, InteractiveSession | None]:
    if isinstance(source, InteractiveSession):
        return source.transfer, source
    if isinstance(source, LabelTransfer):
        return source, None
    if frames is None:
        raise BadInputError(
            f"a model given by name or object ({type(source).__name__}) needs the video frames to embed"
        )
    return LabelTransfer(frames, model=source, device=device), None


class EmbeddingProbe:
    """Similarity questions about one video, answered from cached embeddings.

    Parameters
    ----------
    source : an :class:`~simwidgets.session.InteractiveSession` or a
        :class:`~simwidgets.transfer.LabelTransfer` (their embedding cache is used and
        shared), or a model (name, checkpoint path or EmbeddingModel) for ``frames``
    frames : the video ``(T, H, W, 3)`` uint8, needed when ``source`` is a model
    references : scribbles (:class:`~simwidgets.scribbles.Scribbles`) or
        ``{frame_idx: (H, W) label map, -1 unknown}`` for :meth:`provenance`; when None, a
        session's current references are used
    device : compute device when a new LabelTransfer is made

    Pixel coordinates are ``(x, y)`` = (column, row) indices into the frame.
    """

    def __init__(self, source, frames=None, references=None, device=None):
        self.engine, self.session = _as_engine(source, frames, device)
        self.cache = self.engine.cache
        self.model = self.engine.model
        self.stride = self.engine.stride
        self.grid = self.engine.grid
        self.n_frames, self.height, self.width = self.engine.n_frames, self.engine.height, self.engine.width
        self._references = None
        self._built: tuple | None = None  # (source dict, config, class_ids, answer)
        self._recent: dict[int, torch.Tensor] = {}  # float32 copies of the frames last read
        if references is not None:
            self.set_references(references)

    # ------------------------------------------------------------------ coordinates
    def _check_frame(self, frame_idx) -> int:
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
            raise BadInputError(f"frame_idx must be an integer; got {frame_idx!r}")
        if not 0 <= frame_idx < self.n_frames:
            raise BadInputError(f"frame_idx {frame_idx} is outside the video (0..{self.n_frames - 1})")
        return int(frame_idx)

    def cell_of(self, x, y) -> tuple[int, int]:
        """Grid cell ``(row, col)`` holding pixel ``(x, y)``."""
        try:
            xf, yf = float(x), float(y)
        except (TypeError, ValueError):
            raise BadInputError(f"a pixel is two numbers (x, y); got {x!r}, {y!r}") from None
        if not (0 <= xf < self.width and 0 <= yf < self.height):
            raise BadInputError(f"pixel ({x}, {y}) is outside the {self.width}x{self.height} frame")
        row = min(int(yf) // self.stride, self.grid[0] - 1)
        col = min(int(xf) // self.stride, self.grid[1] - 1)
        return row, col

    def cell_centre(self, row, col) -> tuple[int, int]:
        """Pixel ``(x, y)`` at the centre of grid cell ``(row, col)`` (inside the frame)."""
        s = self.stride
        x = min(int(col) * s + (s - 1) // 2, self.width - 1)
        y = min(int(row) * s + (s - 1) // 2, self.height - 1)
        return x, y

    def cell_centres(self, cells) -> np.ndarray:
        """``(N, 2)`` pixel ``(x, y)`` of ``(N, 2)`` cells ``(row, col)``."""
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        s = self.stride
        x = np.minimum(cells[:, 1] * s + (s - 1) // 2, self.width - 1)
        y = np.minimum(cells[:, 0] * s + (s - 1) // 2, self.height - 1)
        return np.stack([x, y], axis=1)

    # ------------------------------------------------------------------ similarity
    def ensure(self, frame_indices) -> int:
        """Embed the listed frames not yet cached; returns how many were embedded."""
        before = self.cache.n_computed
        self.cache.ensure([self._check_frame(f) for f in frame_indices])
        return self.cache.n_computed - before

    def embedding(self, frame_idx: int) -> torch.Tensor:
        """``(D, h, w)`` float32 embedding of a frame, read from the cache.

        The cache stores float16; the float32 copies of the last few frames read are kept,
        so repeated clicks on the frames on show convert nothing.
        """
        frame_idx = self._check_frame(frame_idx)
        emb = self._recent.get(frame_idx)
        if emb is None:
            emb = self.cache[frame_idx]
            if len(self._recent) >= 4:
                self._recent.pop(next(iter(self._recent)))
            self._recent[frame_idx] = emb
        return emb

    def vector(self, frame_idx: int, x, y) -> torch.Tensor:
        """The ``(D,)`` embedding of pixel ``(x, y)`` of a frame (from the cache)."""
        row, col = self.cell_of(x, y)
        return self.embedding(frame_idx)[:, row, col]

    def similarity(self, frame_idx: int, x, y, target_frame: int | None = None) -> np.ndarray:
        """Cosine similarity ``(h, w)`` float32 of pixel ``(x, y)`` of ``frame_idx`` to every
        cell of ``target_frame`` (the same frame when None)."""
        query = self.vector(frame_idx, x, y)
        target = self.embedding(frame_idx if target_frame is None else target_frame)
        return torch.einsum("d,dhw->hw", query, target).cpu().numpy()

    def top_matches(self, similarity, k: int, exclude=None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar cells of a map: pixel ``(x, y)`` ``(k, 2)`` and similarities ``(k,)``.

        ``exclude`` is a cell ``(row, col)`` to skip (the query's own cell on its own frame,
        which is trivially the best match).
        """
        sim = np.asarray(similarity, dtype=np.float32)
        if sim.shape != tuple(self.grid):
            raise BadInputError(f"a similarity map of this video is {self.grid}; got {sim.shape}")
        if isinstance(k, bool) or int(k) != k or k < 0:
            raise BadInputError(f"k must be a non-negative integer; got {k!r}")
        flat = sim.reshape(-1).copy()
        if exclude is not None:
            flat[int(exclude[0]) * self.grid[1] + int(exclude[1])] = -np.inf
        k = min(int(k), int(np.isfinite(flat).sum()))
        if k == 0:
            return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.float32)
        best = np.argpartition(-flat, k - 1)[:k]
        best = best[np.argsort(-flat[best], kind="stable")]
        cells = np.stack(np.divmod(best, self.grid[1]), axis=1)
        return self.cell_centres(cells), flat[best]

    # ------------------------------------------------------------------ provenance
    def set_references(self, references) -> None:
        """Use these scribbles or label maps for :meth:`provenance` (checked now, built lazily)."""
        self._references = self.engine.normalise_references(references)
        self._built = None

    def _current_references(self) -> dict[int, np.ndarray] | None:
        if self._references is not None:
            return self._references
        if self.session is not None and self.session.annotated_frames:
            return self.session.references()
        return None

    @property
    def has_references(self) -> bool:
        return self._current_references() is not None

    def references(self) -> tuple[References, torch.Tensor, dict, list[int]]:
        """The transfer's reference cells, built once: ``(refs, positions, grids, class_ids)``.

        ``refs`` and ``grids`` are exactly what the transfer builds; ``positions``
        ``(N, 3)`` int64 gives each reference's ``(frame_idx, row, col)``.  Rebuilt only
        when the references (a session's new strokes) or the transfer's configuration
        change; building reads the cache (annotated frames are embedded once if not yet).
        """
        current = self._current_references()
        if current is None:
            raise BadInputError("no references: give scribbles or label maps (references=...) first")
        config = self.engine.config
        built = self._built
        if (
            built is not None
            and built[1] == config
            and built[0].keys() == current.keys()
            and all(built[0][f] is current[f] for f in current)
        ):
            return built[3]
        cells = self.engine.reference_cells(current, config=config)
        refs = self.engine.reference_table(cells)
        answer = (refs, cells.positions(), self.engine.clamps(cells), cells.class_ids)
        self._built = (dict(current), config, cells.class_ids, answer)
        return answer

    def provenance(self, frame_idx: int, x, y, k: int | None = None) -> Provenance:
        """The nearest reference pixels of pixel ``(x, y)`` and their votes.

        Uses the transfer's own references, ``top_k`` (unless ``k`` is given) and
        temperature, so the votes equal the transfer's scribble-only probabilities
        (``temporal=False``) for that pixel.
        """
        frame_idx = self._check_frame(frame_idx)
        refs, ref_positions, grids, class_ids = self.references()
        config = self.engine.config
        k = config.top_k if k is None else k
        if isinstance(k, bool) or int(k) != k or k < 1:
            raise BadInputError(f"k must be a positive integer; got {k!r}")
        k = min(int(k), len(refs))
        row, col = self.cell_of(x, y)
        query = self.embedding(frame_idx)[:, row, col]
        nearest = nearest_votes(query, refs.embeddings, refs.labels, k, config.temperature)
        positions = ref_positions[nearest.index.cpu()].numpy()
        clamped, user = False, None
        if frame_idx in grids:
            known, dist = grids[frame_idx]
            if bool(known[row, col]):
                clamped, user = True, dist[:, row, col].cpu().numpy()
        return Provenance(
            frame_idx=frame_idx,
            point=(int(x), int(y)),
            cell=(row, col),
            object_ids=list(class_ids),
            ref_frames=positions[:, 0],
            ref_cells=positions[:, 1:],
            ref_points=self.cell_centres(positions[:, 1:]),
            similarities=nearest.similarities.cpu().numpy(),
            weights=nearest.weights.cpu().numpy(),
            ref_labels=nearest.labels.cpu().numpy(),
            votes=nearest.votes.cpu().numpy(),
            clamped=clamped,
            user_labels=user,
            temperature=config.temperature,
        )


# ----------------------------------------------------------------------------- the widget

@dataclass
class ExplorerResult:
    """What the explorer shows for one model after a click.

    Attributes
    ----------
    query_map, target_map : ``(h, w)`` similarity of the clicked pixel to the query frame
        and to the other frame
    query_matches, target_matches : ``(k, 2)`` pixel ``(x, y)`` of the top-k cells (the
        clicked cell itself excluded on the query frame)
    query_scores, target_scores : ``(k,)`` their similarities
    provenance : :class:`Provenance` when the explorer has references, else None
    seconds : time to compute all of the above
    """

    query_map: np.ndarray
    target_map: np.ndarray
    query_matches: np.ndarray
    target_matches: np.ndarray
    query_scores: np.ndarray
    target_scores: np.ndarray
    provenance: Provenance | None = None
    seconds: float = 0.0
    vrange: tuple[float, float] = field(default=(-1.0, 1.0))


def _cross(layer, x: float, y: float, size: float = 9.0) -> None:
    for colour, width in (("black", 4), ("white", 2)):
        layer.stroke_style = colour
        layer.line_width = width
        layer.stroke_line(x - size, y, x + size, y)
        layer.stroke_line(x, y - size, x, y + size)


class SimilarityExplorer(widgets.VBox):
    """Click a pixel; see its similarity to every pixel of this frame and another, per model.

    Parameters
    ----------
    video : VideoSequence, ``(T, H, W, 3)`` uint8 array or LazyFrames
    models : ``{name: source}``, each source an InteractiveSession, a LabelTransfer (their
        cached embeddings are used) or a model name/path/EmbeddingModel (embedded here);
        one source alone is also accepted.  Default: the baseline and the shipped model.
    references : scribbles or label maps for the provenance panel (a session's own
        references are used when None)
    frame_idx, target_frame : the query frame and the other frame shown
    top_k : matches marked on each map
    width : width in pixels of each frame canvas
    cmap : matplotlib colormap of the heat maps
    device : compute device for models embedded here

    Attributes
    ----------
    probes : ``{name: EmbeddingProbe}``
    results : ``{name: ExplorerResult}`` of the last click (empty before the first)
    point : the clicked pixel ``(x, y)`` or None
    """

    def __init__(
        self,
        video,
        models=None,
        references=None,
        frame_idx: int = 0,
        target_frame: int | None = None,
        top_k: int = 5,
        width: int = 360,
        cmap: str = "inferno",
        device=None,
    ):
        frames, name, _ = as_frames(video)
        if models is None:
            models = {"baseline": "baseline", "learned": "default"}
        if not isinstance(models, Mapping):
            models = {"model": models}
        if not models:
            raise BadInputError("models must name at least one embedding")
        self.frames = frames
        self.name = name or ""
        self.n_frames = int(frames.shape[0])
        self.image_size = (int(frames.shape[1]), int(frames.shape[2]))
        self.probes: dict[str, EmbeddingProbe] = {}
        for model_name, source in models.items():
            probe = EmbeddingProbe(source, frames, references, device=device)
            if (probe.n_frames, probe.height, probe.width) != (self.n_frames,) + self.image_size:
                raise BadInputError(
                    f"model {model_name!r} holds a {probe.n_frames}-frame {probe.width}x{probe.height} video; "
                    f"the explorer shows {self.n_frames} frames of {self.image_size[1]}x{self.image_size[0]}"
                )
            self.probes[str(model_name)] = probe
        viz.colourbar_rgb(cmap=cmap)  # checks the colormap name now
        self.cmap = cmap
        self.canvas_size = canvas_size_for(*self.image_size, int(width))
        self.point: tuple[int, int] | None = None
        self.results: dict[str, ExplorerResult] = {}
        self._frame_cache: dict[int, np.ndarray] = {}
        self._busy = False

        last = self.n_frames - 1
        target_frame = min(last, frame_idx + 10) if target_frame is None else target_frame
        for value, what in ((frame_idx, "frame_idx"), (target_frame, "target_frame")):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= last:
                raise BadInputError(f"{what} must be a frame index in 0..{last}; got {value!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
            raise BadInputError(f"top_k must be a non-negative integer; got {top_k!r}")
        style = {"description_width": "initial"}
        self.query_slider = widgets.IntSlider(int(frame_idx), 0, last, description="query frame", style=style)
        self.target_slider = widgets.IntSlider(int(target_frame), 0, last, description="other frame", style=style)
        self.top_k_slider = widgets.IntSlider(int(top_k), 0, 20, description="top-k", style=style)
        self.scale_toggle = widgets.ToggleButtons(
            options=[("cosine -1..1", "fixed"), ("stretch", "stretch")], value="fixed",
            tooltips=["the full cosine range, same for every model", "each model's own min..max"],
        )
        self.opacity_slider = widgets.FloatSlider(0.65, min=0.0, max=1.0, step=0.05, description="opacity")
        self.status = widgets.HTML("Click a pixel of a query frame.")
        ch, cw = self.canvas_size
        self._views = {}
        rows, provenances = [], []
        for model_name in self.probes:
            query = MultiCanvas(2, width=cw, height=ch)  # the frame with its heat map, the marks
            target = MultiCanvas(2, width=cw, height=ch)
            bar = Canvas(width=64, height=ch)
            query.add_class("simwidgets-explorer-query")
            target.add_class("simwidgets-explorer-target")
            query.on_mouse_down(self.handle_mouse_down)
            for multi in (query, target):
                for index in range(2):
                    multi[index].on_client_ready(self.redraw)
            bar.on_client_ready(self.redraw)
            query_title, target_title = widgets.HTML(), widgets.HTML()
            provenance = widgets.HTML(layout=widgets.Layout(margin="0 24px 0 0"))
            self._views[model_name] = {
                "query": query, "target": target, "bar": bar,
                "query_title": query_title, "target_title": target_title, "provenance": provenance,
            }
            rows.append(
                widgets.VBox([
                    widgets.HTML(f"<b>{html.escape(model_name)}</b> &middot; "
                                 f"{html.escape(self.probes[model_name].model.arch)}, stride "
                                 f"{self.probes[model_name].stride}"),
                    widgets.HBox([widgets.VBox([query_title, query]), widgets.VBox([target_title, target]), bar]),
                ])
            )
            provenances.append(provenance)
        controls = widgets.VBox([
            widgets.HBox([self.query_slider, self.target_slider]),
            widgets.HBox([self.top_k_slider, self.opacity_slider, self.scale_toggle]),
        ])
        provenance_row = widgets.HBox(provenances)
        super().__init__([controls, *rows, provenance_row, self.status])
        self.add_class("simwidgets-similarity-explorer")
        for control in (self.query_slider, self.target_slider):
            control.observe(self._on_frames, names="value")
        self.top_k_slider.observe(self._on_options, names="value")
        self.scale_toggle.observe(self._on_options, names="value")
        self.opacity_slider.observe(lambda change: self.redraw(), names="value")
        self._embed_shown()
        for probe in self.probes.values():
            if probe.has_references:
                probe.references()  # built now, so that the first click is as quick as the next
        self.redraw()

    # ------------------------------------------------------------------ state
    @property
    def frame_idx(self) -> int:
        return int(self.query_slider.value)

    @property
    def target_frame(self) -> int:
        return int(self.target_slider.value)

    @property
    def top_k(self) -> int:
        return int(self.top_k_slider.value)

    @property
    def scale(self) -> str:
        return self.scale_toggle.value

    def show(self, frame_idx: int | None = None, target_frame: int | None = None) -> None:
        """Change the query and/or other frame (the clicked pixel stays where it is)."""
        last = self.n_frames - 1
        for value, what in ((frame_idx, "frame_idx"), (target_frame, "target_frame")):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= last
            ):
                raise BadInputError(f"{what} must be a frame index in 0..{last}; got {value!r}")
        self._busy = True
        try:
            if frame_idx is not None:
                self.query_slider.value = int(frame_idx)
            if target_frame is not None:
                self.target_slider.value = int(target_frame)
        finally:
            self._busy = False
        self._on_frames(None)

    # ------------------------------------------------------------------ events
    def handle_mouse_down(self, x: float, y: float) -> None:
        """A click at canvas ``(x, y)`` on a query canvas (what the browser calls)."""
        col, row = canvas_to_image_coordinates((x, y), self.canvas_size, self.image_size)
        height, width = self.image_size
        self.click(int(min(max(col, 0), width - 1)), int(min(max(row, 0), height - 1)))

    def click(self, x: int, y: int, frame_idx: int | None = None) -> dict[str, ExplorerResult]:
        """Query pixel ``(x, y)`` (image column, row) of the query frame (or of ``frame_idx``).

        Returns :attr:`results`; reads cached embeddings only.
        """
        if frame_idx is not None and frame_idx != self.frame_idx:
            self.show(frame_idx=frame_idx)
        first = next(iter(self.probes.values()))
        first.cell_of(x, y)  # checks the pixel
        self.point = (int(x), int(y))
        self._compute()
        self.redraw()
        return self.results

    def _on_frames(self, change) -> None:
        if self._busy:
            return
        self._embed_shown()
        if self.point is not None:
            self._compute()
        self.redraw()

    def _on_options(self, change) -> None:
        if self.point is not None:
            self._compute()
        self.redraw()

    def _embed_shown(self) -> None:
        """Embed the frames on show (each at most once per model: the cache keeps them)."""
        for probe in self.probes.values():
            probe.ensure({self.frame_idx, self.target_frame})

    def _compute(self) -> None:
        x, y = self.point
        q, t = self.frame_idx, self.target_frame
        results = {}
        for model_name, probe in self.probes.items():
            start = time.perf_counter()
            cell = probe.cell_of(x, y)
            query_map = probe.similarity(q, x, y)
            target_map = query_map if t == q else probe.similarity(q, x, y, t)
            query_matches, query_scores = probe.top_matches(query_map, self.top_k, exclude=cell)
            target_matches, target_scores = probe.top_matches(
                target_map, self.top_k, exclude=cell if t == q else None
            )
            provenance = probe.provenance(q, x, y) if probe.has_references else None
            if self.scale == "stretch":
                low = float(min(query_map.min(), target_map.min()))
                high = float(max(query_map.max(), target_map.max()))
                vrange = (low, high if high > low else low + 1e-6)
            else:
                vrange = (-1.0, 1.0)
            results[model_name] = ExplorerResult(
                query_map, target_map, query_matches, target_matches, query_scores, target_scores,
                provenance, time.perf_counter() - start, vrange,
            )
        self.results = results
        total = sum(r.seconds for r in results.values())
        self.status.value = (
            f"pixel ({x}, {y}) of frame {q} &middot; {1000 * total:.1f} ms for {len(results)} model(s), "
            "from cached embeddings"
        )

    # ------------------------------------------------------------------ drawing
    def _display_frame(self, frame_idx: int) -> np.ndarray:
        image = self._frame_cache.get(frame_idx)
        if image is None:
            ch, cw = self.canvas_size
            image = np.asarray(Image.fromarray(np.asarray(self.frames[frame_idx])).resize((cw, ch), Image.BILINEAR))
            if len(self._frame_cache) > 8:
                self._frame_cache.clear()
            self._frame_cache[frame_idx] = image
        return image

    def _to_canvas(self, points) -> np.ndarray:
        points = np.asarray(points, dtype=float).reshape(-1, 2) + 0.5  # pixel index -> its centre
        (ch, cw), (h, w) = self.canvas_size, self.image_size
        return points * np.array([cw / w, ch / h])

    def redraw(self) -> None:
        """Draw everything from the Python state (idempotent; runs when a view connects)."""
        q, t = self.frame_idx, self.target_frame
        opacity = float(self.opacity_slider.value)
        with hold_canvas():
            for model_name, view in self._views.items():
                result = self.results.get(model_name)
                view["query_title"].value = f"query frame {q}"
                view["target_title"].value = f"frame {t}"
                for key, frame, which in (("query", q, "query"), ("target", t, "target")):
                    multi = view[key]
                    image = self._display_frame(frame)
                    multi[1].clear()
                    if result is None:
                        multi[0].put_image_data(image, 0, 0)
                        continue
                    sim = result.query_map if which == "query" else result.target_map
                    low, high = result.vrange
                    # blended here and sent as RGB (JPEG): an RGBA layer would be a PNG per click
                    heat = viz.heatmap_rgba(sim, low, high, self.cmap, 1.0, size=self.canvas_size)[..., :3]
                    blended = image * (1.0 - opacity) + heat * opacity
                    multi[0].put_image_data(blended.astype(np.uint8), 0, 0)
                    matches = result.query_matches if which == "query" else result.target_matches
                    layer = multi[1]
                    layer.stroke_style = "cyan"
                    layer.line_width = 2
                    for rank, (cx, cy) in enumerate(self._to_canvas(matches), 1):
                        layer.stroke_circle(float(cx), float(cy), 6)
                        layer.fill_style = "cyan"
                        layer.font = "11px sans-serif"
                        layer.fill_text(str(rank), float(cx) + 7, float(cy) - 5)
                    if which == "query" or t == q:
                        (cx, cy), = self._to_canvas([self.point])
                        _cross(layer, float(cx), float(cy))
                self._draw_bar(view["bar"], result)
                view["provenance"].value = (
                    result.provenance.to_html(f"{model_name}: provenance of pixel {self.point}")
                    if result is not None and result.provenance is not None else ""
                )

    def _draw_bar(self, bar, result) -> None:
        low, high = (-1.0, 1.0) if result is None else result.vrange
        ch = self.canvas_size[0]
        bar.clear()
        length = max(2, ch - 24)
        bar.put_image_data(viz.colourbar_rgb(length, 12, self.cmap), 4, 12)
        bar.fill_style = "black"
        bar.font = "11px sans-serif"
        bar.fill_text(f"{high:+.2f}", 18, 20)
        bar.fill_text(f"{(low + high) / 2:+.2f}", 18, 12 + length / 2 + 4)
        bar.fill_text(f"{low:+.2f}", 18, 12 + length)

    def snapshot(self, width: float = 4.6):
        """The current view as a matplotlib figure (for notebooks read without a kernel)."""
        import matplotlib.pyplot as plt
        from matplotlib import cm, colors

        if not self.results:
            raise BadInputError("nothing to show yet: click a pixel (or call click(x, y)) first")
        names = list(self.results)
        aspect = self.image_size[0] / self.image_size[1]
        fig, axes = plt.subplots(len(names), 2, figsize=(2 * width + 1.2, (width * aspect + 0.5) * len(names)),
                                 squeeze=False, layout="constrained")
        q, t = self.frame_idx, self.target_frame
        for row, model_name in zip(axes, names):
            result = self.results[model_name]
            low, high = result.vrange
            viz.show_similarity(self.frames[q], result.query_map, self.point, result.query_matches, ax=row[0],
                                vmin=low, vmax=high, cmap=self.cmap, colorbar=False,
                                title=f"{model_name}: frame {q}, pixel {self.point}")
            viz.show_similarity(self.frames[t], result.target_map, self.point if t == q else None,
                                result.target_matches, ax=row[1], vmin=low, vmax=high, cmap=self.cmap,
                                colorbar=False, title=f"{model_name}: frame {t}, top {len(result.target_matches)}")
            mappable = cm.ScalarMappable(norm=colors.Normalize(low, high), cmap=self.cmap)
            fig.colorbar(mappable, ax=list(row), fraction=0.03, pad=0.01, label="cosine similarity")
        return fig
