"""Pictures shared by the notebooks: mask overlays, scribbles, frame grids, score curves,
and views of an embedding.

Everything here works on numpy arrays and matplotlib only (no torch), so notebooks and
widgets can use it freely; embeddings may be given as numpy arrays or torch tensors
(converted on the way in, torch itself is never imported).  Colours are the DAVIS
palette everywhere: object 1 is red, 2 green, 3 yellow, ..., background is left
uncoloured (or drawn grey where it must be seen, as in scatter plots).

Embedding views (the instruments of notebook 03):

* :func:`pca_rgb` - the three main directions of a per-pixel embedding as RGB, one
  projection for a whole video so a colour means the same thing in every frame;
* :func:`sample_cells` + :func:`project_2d` + :func:`plot_projection` - sampled pixels
  in 2-D (PCA, or t-SNE when scikit-learn is installed), coloured by object;
* :func:`pair_similarities` + :func:`plot_similarity_histogram` - how similar pixels of
  the same object are compared with pixels of different objects: what training changes;
* :func:`heatmap_rgba` + :func:`show_similarity` - a similarity map over a frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from .errors import BadInputError
from .palette import MAX_OBJECTS, davis_palette
from .scribbles import Scribbles

__all__ = [
    "mask_rgba",
    "overlay",
    "draw_scribbles",
    "stroke_colour",
    "show_frames",
    "plot_frame_scores",
    "PCAColours",
    "fit_pca",
    "pca_rgb",
    "cell_labels",
    "CellSample",
    "sample_cells",
    "project_2d",
    "tsne_available",
    "plot_projection",
    "PairSimilarities",
    "pair_similarities",
    "plot_similarity_histogram",
    "heatmap_rgba",
    "colourbar_rgb",
    "show_similarity",
    "show_provenance",
]

_PALETTE = davis_palette()


def mask_rgba(mask: np.ndarray, size: tuple[int, int] | None = None, opacity: float = 0.5) -> np.ndarray:
    """RGBA image ``(h, w, 4)`` uint8 of a label map in DAVIS colours.

    Objects are filled with ``opacity`` and outlined at twice that (so boundaries stay
    visible at low opacity); background is transparent.  With ``size=(h, w)`` the label map
    is resized with nearest neighbour first, so no mixed ids appear at boundaries.
    """
    labels = np.asarray(mask)
    if labels.ndim != 2:
        raise BadInputError(f"a mask must be 2-D (H, W); got shape {labels.shape}")
    if labels.max(initial=0) > MAX_OBJECTS or labels.min(initial=0) < 0:
        raise BadInputError(f"mask values must be object ids in 0..{MAX_OBJECTS}")
    labels = labels.astype(np.uint8)
    if size is not None and labels.shape != tuple(size):
        h, w = size
        labels = np.asarray(Image.fromarray(labels, mode="L").resize((w, h), Image.NEAREST))
    fill = int(round(float(np.clip(opacity, 0, 1)) * 255))
    lut = np.empty((256, 4), dtype=np.uint8)
    lut[:, :3] = _PALETTE
    lut[:, 3] = fill
    lut[0, 3] = 0
    rgba = lut[labels]
    # boundaries: a pixel whose right or lower neighbour has another id (and that neighbour)
    horizontal = labels[:, :-1] != labels[:, 1:]
    vertical = labels[:-1] != labels[1:]
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:, :-1] |= horizontal
    edge[:, 1:] |= horizontal
    edge[:-1] |= vertical
    edge[1:] |= vertical
    edge &= labels > 0
    rgba[edge, 3] = min(255, 2 * fill)
    return rgba


def overlay(frame: np.ndarray, mask: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """The frame ``(H, W, 3)`` with the mask's objects blended in their DAVIS colours."""
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise BadInputError(f"a frame must have shape (H, W, 3); got {frame.shape}")
    mask = np.asarray(mask)
    if mask.shape != frame.shape[:2]:
        raise BadInputError(f"mask of shape {mask.shape} does not match the frame {frame.shape[:2]}")
    rgba = mask_rgba(mask, opacity=opacity).astype(np.float32)
    alpha = rgba[..., 3:] / 255.0
    return (frame * (1 - alpha) + rgba[..., :3] * alpha).astype(np.uint8)


def stroke_colour(object_id: int) -> tuple[float, float, float]:
    """The RGB (0..1) a stroke of ``object_id`` is drawn in: white for background (0), else
    the object's DAVIS palette colour, the colour of its mask."""
    if not object_id:
        return (1.0, 1.0, 1.0)
    return tuple(float(c) / 255.0 for c in _PALETTE[object_id])


def draw_scribbles(ax, scribbles: Scribbles, frame_idx: int, size: tuple[int, int], linewidth: float = 2.5):
    """Plot a frame's strokes on a matplotlib axis showing a ``size = (H, W)`` image.

    Object strokes are drawn in their DAVIS colour, background strokes in white, both inside
    a black outline: opaque, an object's colour is darker than its half-transparent mask, so
    the stroke reads as a dark line on it, and never as white.  (A white halo round object
    strokes made a thin object stroke read as a background one.)
    """
    height, width = size
    for stroke in scribbles.frames[frame_idx]:
        xy = stroke.pixel_path(height, width)
        colour = stroke_colour(stroke.object_id)
        ax.plot(xy[:, 0], xy[:, 1], "-", color="black", linewidth=linewidth + 1.5, solid_capstyle="round")
        ax.plot(xy[:, 0], xy[:, 1], "-", color=colour, linewidth=linewidth, solid_capstyle="round")


def show_frames(
    frames,
    masks=None,
    frame_indices: Sequence[int] | None = None,
    scribbles: Scribbles | None = None,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    width: float = 3.6,
    opacity: float = 0.5,
):
    """A grid of frames, with masks overlaid and scribbles drawn when given; returns the figure."""
    import matplotlib.pyplot as plt

    n_frames = len(frames)
    if frame_indices is None:
        frame_indices = np.linspace(0, n_frames - 1, min(ncols, n_frames)).round().astype(int).tolist()
    frame_indices = [int(i) for i in frame_indices]
    for i in frame_indices:
        if not 0 <= i < n_frames:
            raise BadInputError(f"frame_idx {i} is outside the video (0..{n_frames - 1})")
    ncols = min(ncols, len(frame_indices))
    nrows = -(-len(frame_indices) // ncols)
    first = np.asarray(frames[frame_indices[0]])
    aspect = first.shape[0] / first.shape[1]
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, width * aspect * nrows + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(frame_indices):
            continue
        t = frame_indices[k]
        image = np.asarray(frames[t])
        if masks is not None:
            image = overlay(image, np.asarray(masks[t]), opacity)
        ax.imshow(image)
        if scribbles is not None:
            draw_scribbles(ax, scribbles, t, image.shape[:2])
        ax.set_title(titles[k] if titles is not None else f"frame {t}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_frame_scores(values, label: str = "J&F", ax=None, annotated: Sequence[int] = (),
                      ylabel: str = "J&F", xlabel: str = "frame", **plot_kwargs):
    """Per-frame score curve (e.g. ``scores.per_frame``) with annotated frames marked.

    ``label`` names the curve in a legend (``"round 2"``); ``ylabel`` says what is plotted
    and ``xlabel`` which frame numbers (``"clip frame"`` or ``"video frame"``).
    """
    import matplotlib.pyplot as plt

    values = np.asarray(values, dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 2.6))
    ax.plot(np.arange(len(values)), values, label=label, **plot_kwargs)
    for t in annotated:
        ax.axvline(t, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    return ax


# ----------------------------------------------------------------------------- embedding views

_BACKGROUND_GREY = (0.55, 0.55, 0.55)


def _object_rgb(object_id: int) -> tuple[float, float, float]:
    """Matplotlib colour of an object id: DAVIS palette, background grey (visible on white)."""
    if int(object_id) <= 0:
        return _BACKGROUND_GREY
    return tuple(float(v) / 255.0 for v in _PALETTE[int(object_id)])


def _as_float_array(value) -> np.ndarray:
    """float32 numpy from a numpy array or a torch tensor on any device (torch is not imported)."""
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _embedding_video(embeddings) -> tuple[np.ndarray, bool]:
    """``(T, D, h, w)`` float32 and whether a single ``(D, h, w)`` frame was given.

    Accepts an array or tensor of either shape, a list of per-frame ``(D, h, w)`` arrays,
    or an embedding cache (anything with ``n_frames`` and ``cache[frame_idx]``).
    """
    if hasattr(embeddings, "n_frames") and hasattr(embeddings, "__getitem__") and not hasattr(embeddings, "shape"):
        embeddings = [embeddings[t] for t in range(int(embeddings.n_frames))]
    if isinstance(embeddings, (list, tuple)):
        if not embeddings:
            raise BadInputError("no embeddings given: the list is empty")
        embeddings = np.stack([_as_float_array(e) for e in embeddings])
    array = _as_float_array(embeddings)
    if array.ndim == 3:
        array, single = array[None], True
    elif array.ndim == 4:
        single = False
    else:
        raise BadInputError(
            f"embeddings must be (D, h, w) for a frame or (T, D, h, w) for a video; got shape {array.shape}"
        )
    if 0 in array.shape:
        raise BadInputError(f"embeddings of shape {array.shape} hold no vectors")
    if not np.isfinite(array).all():
        raise BadInputError("embeddings hold NaN or infinite values")
    return array, single


def _top_directions(vectors: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean ``(D,)``, the ``n`` main directions ``(n, D)`` and their variance fractions ``(n,)``.

    Each direction's sign is fixed (largest loading positive) so the same data always give
    the same colours.  Directions beyond the data's dimension are zero.
    """
    mean = vectors.mean(0)
    centred = (vectors - mean).astype(np.float64)
    covariance = centred.T @ centred / max(1, len(vectors) - 1)
    values, vecs = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    values, vecs = np.clip(values[order], 0, None), vecs[:, order].T
    dim = vectors.shape[1]
    components = np.zeros((n, dim))
    explained = np.zeros(n)
    m = min(n, dim)
    components[:m] = vecs[:m]
    total = values.sum()
    explained[:m] = values[:m] / total if total > 0 else 0.0
    for i in range(m):
        if components[i, np.argmax(np.abs(components[i]))] < 0:
            components[i] = -components[i]
    return mean.astype(np.float32), components.astype(np.float32), explained


@dataclass
class PCAColours:
    """A fixed map from embedding vectors to RGB: the three main directions of some data.

    Fitted once (on a frame or a whole video) and then applied to any frame, so a colour
    means the same region of embedding space in every frame: two pixels look alike exactly
    when the first three principal coordinates of their embeddings are alike.

    Attributes
    ----------
    mean : ``(D,)`` centre of the fitted vectors
    components : ``(3, D)`` unit directions, the first explaining most variance
    low, high : ``(3,)`` coordinates mapped to colour values 0 and 255 (1st / 99th percentiles
        of the fitted data, so a few outliers do not wash the picture out)
    explained : ``(3,)`` fraction of the variance along each direction
    """

    mean: np.ndarray
    components: np.ndarray
    low: np.ndarray
    high: np.ndarray
    explained: np.ndarray

    def project(self, embeddings) -> np.ndarray:
        """Principal coordinates ``(..., h, w, 3)`` of ``(D, h, w)`` or ``(T, D, h, w)`` embeddings."""
        array, single = _embedding_video(embeddings)
        if array.shape[1] != self.mean.shape[0]:
            raise BadInputError(
                f"embeddings have dimension {array.shape[1]}; this PCA was fitted on dimension {self.mean.shape[0]}"
            )
        coords = np.einsum("tdhw,kd->thwk", array - self.mean[None, :, None, None], self.components)
        return coords[0] if single else coords

    def colours(self, embeddings, size: tuple[int, int] | None = None) -> np.ndarray:
        """uint8 RGB ``(h, w, 3)`` (or ``(T, h, w, 3)``); resized to ``size=(H, W)`` if given.

        Resizing is nearest-neighbour: each grid cell stays one flat colour, so the picture
        shows the embedding's true resolution.
        """
        coords = self.project(embeddings)
        scaled = (coords - self.low) / (self.high - self.low)
        rgb = np.round(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
        if size is not None:
            rgb = _resize_images(rgb, size)
        return rgb


def _resize_images(images: np.ndarray, size: tuple[int, int], resample=Image.NEAREST) -> np.ndarray:
    """Resize ``(h, w, C)`` or ``(T, h, w, C)`` uint8 images to ``size=(H, W)``."""
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise BadInputError(f"size must be a positive (height, width); got {size}")
    single = images.ndim == 3
    batch = images[None] if single else images
    if batch.shape[1:3] == (height, width):
        return images
    out = np.stack([np.asarray(Image.fromarray(im).resize((width, height), resample)) for im in batch])
    return out[0] if single else out


def fit_pca(embeddings, max_samples: int = 50_000, seed: int = 0) -> PCAColours:
    """Fit :class:`PCAColours` to ``(D, h, w)`` or ``(T, D, h, w)`` embeddings.

    With a video, cells of every frame are pooled (at most ``max_samples``, drawn at random
    with ``seed``) so that one projection serves all frames.
    """
    array, _ = _embedding_video(embeddings)
    vectors = array.transpose(0, 2, 3, 1).reshape(-1, array.shape[1])
    if len(vectors) > max_samples:
        pick = np.random.default_rng(seed).choice(len(vectors), size=int(max_samples), replace=False)
        vectors = vectors[np.sort(pick)]
    mean, components, explained = _top_directions(vectors, 3)
    coords = (vectors - mean) @ components.T
    low = np.percentile(coords, 1, axis=0).astype(np.float32)
    high = np.percentile(coords, 99, axis=0).astype(np.float32)
    flat = (high - low) < 1e-12
    high[flat] = low[flat] + 1.0
    return PCAColours(mean, components, low, high, explained)


def pca_rgb(embeddings, pca: PCAColours | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """Per-pixel embeddings as RGB: uint8 ``(h, w, 3)`` for a frame, ``(T, h, w, 3)`` for a video.

    Parameters
    ----------
    embeddings : ``(D, h, w)`` or ``(T, D, h, w)`` (numpy, torch, a list of frames, or an
        embedding cache)
    pca : a fitted :class:`PCAColours`; when None one is fitted on all the frames given,
        so colours are consistent across the video (fit once with :func:`fit_pca` and pass
        it to compare frames embedded separately)
    size : ``(H, W)`` to resize to (nearest neighbour), e.g. the frame size for overlays
    """
    array, single = _embedding_video(embeddings)
    pca = fit_pca(array) if pca is None else pca
    rgb = pca.colours(array, size)
    return rgb[0] if single else rgb


def _infer_stride(frame_size: tuple[int, int], grid: tuple[int, int]) -> int:
    (height, width), (h, w) = frame_size, grid
    stride = max(-(-height // h), -(-width // w))
    if -(-height // stride) != h or -(-width // stride) != w:
        raise BadInputError(
            f"an embedding grid {h}x{w} does not fit {height}x{width} frames at any stride; pass stride="
        )
    return stride


def cell_labels(masks, grid: tuple[int, int], stride: int | None = None) -> np.ndarray:
    """Object id of each embedding grid cell, ``-1`` where a cell covers several ids.

    Parameters
    ----------
    masks : ``(H, W)`` or ``(T, H, W)`` object ids
    grid : ``(h, w)`` of the embeddings (``h = ceil(H / stride)``)
    stride : pixels per cell; inferred from the sizes when None

    Returns
    -------
    int64 ``(h, w)`` or ``(T, h, w)``.  Mixed cells are left out (``-1``) because their
    embedding describes a boundary, not an object: counting them would blur the
    same-object / different-object comparison.
    """
    labels = np.asarray(masks)
    single = labels.ndim == 2
    if single:
        labels = labels[None]
    if labels.ndim != 3:
        raise BadInputError(f"masks must be (H, W) or (T, H, W); got shape {labels.shape}")
    n_frames, height, width = labels.shape
    h, w = (int(v) for v in grid)
    stride = _infer_stride((height, width), (h, w)) if stride is None else int(stride)
    if -(-height // stride) != h or -(-width // stride) != w:
        raise BadInputError(f"grid {h}x{w} is not {height}x{width} frames at stride {stride}")
    labels = labels.astype(np.int16)
    padded = np.pad(labels, ((0, 0), (0, h * stride - height), (0, w * stride - width)), mode="edge")
    blocks = padded.reshape(n_frames, h, stride, w, stride)
    low, high = blocks.min(axis=(2, 4)), blocks.max(axis=(2, 4))
    result = np.where(low == high, low, -1).astype(np.int64)
    return result[0] if single else result


@dataclass
class CellSample:
    """Grid cells drawn from a video: their embeddings and where they come from.

    Attributes
    ----------
    vectors : ``(N, D)`` embeddings
    labels : ``(N,)`` object ids (0 = background)
    frame_indices : ``(N,)`` frame of each cell
    cells : ``(N, 2)`` (row, col) grid cell of each
    """

    vectors: np.ndarray
    labels: np.ndarray
    frame_indices: np.ndarray
    cells: np.ndarray

    def __len__(self) -> int:
        return int(len(self.labels))


def _pure_cells(array: np.ndarray, masks, stride) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices into ``(T, h, w)`` of cells with one object id, and those ids."""
    n_frames, _, h, w = array.shape
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or len(masks) != n_frames:
        raise BadInputError(
            f"masks must be (T, H, W) with one mask per embedded frame ({n_frames}); got shape {masks.shape}"
        )
    labels = cell_labels(masks, (h, w), stride).reshape(-1)
    flat = np.flatnonzero(labels >= 0)
    return flat, labels[flat]


def _gather(array: np.ndarray, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _, _, h, w = array.shape
    t, rest = np.divmod(flat, h * w)
    r, c = np.divmod(rest, w)
    return array[t, :, r, c], t, np.stack([r, c], axis=1)


def sample_cells(embeddings, masks, n_per_object: int = 300, seed: int = 0, stride: int | None = None) -> CellSample:
    """Draw up to ``n_per_object`` single-object grid cells of every object (and background).

    Parameters
    ----------
    embeddings : ``(T, D, h, w)`` (or one frame ``(D, h, w)``)
    masks : ``(T, H, W)`` ground-truth object ids of the same frames
    n_per_object : cells per object id, drawn uniformly over all frames and positions
    seed : random seed
    stride : pixels per grid cell (inferred when None)
    """
    array, _ = _embedding_video(embeddings)
    if n_per_object < 1:
        raise BadInputError(f"n_per_object must be at least 1; got {n_per_object}")
    flat, labels = _pure_cells(array, masks, stride)
    rng = np.random.default_rng(seed)
    chosen, chosen_labels = [], []
    for object_id in np.unique(labels):
        members = flat[labels == object_id]
        if len(members) > n_per_object:
            members = np.sort(rng.choice(members, size=n_per_object, replace=False))
        chosen.append(members)
        chosen_labels.append(np.full(len(members), object_id, dtype=np.int64))
    if not chosen:
        raise BadInputError("no grid cell lies inside a single object: the masks are too fragmented")
    vectors, frames, cells = _gather(array, np.concatenate(chosen))
    return CellSample(vectors, np.concatenate(chosen_labels), frames, cells)


def tsne_available() -> bool:
    """Whether :func:`project_2d` can use ``method="tsne"`` (scikit-learn installed)."""
    try:
        import sklearn.manifold  # noqa: F401
    except ImportError:
        return False
    return True


def project_2d(vectors, method: str = "pca", seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """2-D coordinates ``(N, 2)`` of ``(N, D)`` vectors, by PCA or t-SNE.

    PCA keeps global geometry (distances along the two main directions); t-SNE keeps
    neighbourhoods (who is near whom), which is what the k-nearest-neighbour transfer uses,
    but its distances between clusters mean little.  t-SNE needs scikit-learn.
    """
    vectors = _as_float_array(vectors)
    if vectors.ndim != 2 or len(vectors) < 3:
        raise BadInputError(f"project_2d needs (N, D) vectors with N >= 3; got shape {vectors.shape}")
    if method == "pca":
        mean, components, _ = _top_directions(vectors, 2)
        return (vectors - mean) @ components.T
    if method == "tsne":
        if not tsne_available():
            raise BadInputError("method='tsne' needs scikit-learn (pip install scikit-learn); method='pca' works without it")
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        perplexity = float(min(perplexity, (len(vectors) - 1) / 3))
        tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed)
        # one OpenMP thread: t-SNE's gradient loop slowed 10-70x when the cores were shared
        # (measured on a 2-core machine under load), and one thread is ~1 s per 1000 points
        with threadpool_limits(limits=1, user_api="openmp"):
            return tsne.fit_transform(vectors.astype(np.float32)).astype(np.float32)
    raise BadInputError(f"method must be 'pca' or 'tsne'; got {method!r}")


def plot_projection(points, labels, ax=None, title: str | None = None, size: float = 6.0):
    """Scatter 2-D points ``(N, 2)`` coloured by object id (DAVIS colours, background grey)."""
    import matplotlib.pyplot as plt

    points = np.asarray(points, dtype=float)
    labels = np.asarray(labels)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) != len(labels):
        raise BadInputError(f"points must be (N, 2) with one label each; got {points.shape} and {labels.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 4.0))
    for object_id in np.unique(labels):
        pick = labels == object_id
        name = "background" if object_id == 0 else f"object {int(object_id)}"
        ax.scatter(points[pick, 0], points[pick, 1], s=size, color=_object_rgb(object_id), label=name,
                   alpha=0.7, linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, markerscale=2, loc="best")
    return ax


@dataclass
class PairSimilarities:
    """Cosine similarities of sampled same-object and different-object cell pairs.

    Attributes
    ----------
    same : ``(n,)`` similarities of pairs with the same object id (background counts as one)
    different : ``(n,)`` similarities of pairs with different ids
    """

    same: np.ndarray
    different: np.ndarray

    @property
    def separation(self) -> float:
        """Probability that a same-object pair is more similar than a different-object pair.

        The area under the ROC curve of "same object?" predicted by similarity: 0.5 means
        the embedding cannot tell, 1.0 means a threshold separates the two perfectly.
        """
        from scipy.stats import rankdata

        ranks = rankdata(np.concatenate([self.same, self.different]))
        n_same, n_diff = len(self.same), len(self.different)
        return float((ranks[:n_same].sum() - n_same * (n_same + 1) / 2) / (n_same * n_diff))

    def __repr__(self) -> str:
        return (
            f"PairSimilarities(same {np.mean(self.same):.3f} ± {np.std(self.same):.3f}, different "
            f"{np.mean(self.different):.3f} ± {np.std(self.different):.3f}, separation {self.separation:.3f})"
        )


def pair_similarities(
    embeddings, masks, n_pairs: int = 20_000, seed: int = 0, stride: int | None = None
) -> PairSimilarities:
    """Sample ``n_pairs`` same-object and ``n_pairs`` different-object cell pairs.

    Pairs are drawn over all frames given (so within and across frames), balanced by
    object: a same-object pair first picks an id uniformly, then two of its cells; a
    different-object pair picks two distinct ids, then a cell of each.  Otherwise the large
    background would dominate both histograms.  Only cells inside one object count (see
    :func:`cell_labels`); a same-object pair is always two different cells; similarity is
    the cosine of the two embeddings.
    """
    array, _ = _embedding_video(embeddings)
    if n_pairs < 1:
        raise BadInputError(f"n_pairs must be at least 1; got {n_pairs}")
    flat, labels = _pure_cells(array, masks, stride)
    ids = np.unique(labels)
    if len(ids) < 2:
        raise BadInputError(
            "different-object pairs need at least two ids (an object and the background) in the masks"
        )
    members = [flat[labels == i] for i in ids]
    sizes = np.array([len(m) for m in members])
    rng = np.random.default_rng(seed)

    def cosines(a, b):
        va, _, _ = _gather(array, a)
        vb, _, _ = _gather(array, b)
        norms = np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1)
        return np.clip((va * vb).sum(1) / np.maximum(norms, 1e-12), -1.0, 1.0)

    def cells(groups, picks):
        return np.array([members[g][p] for g, p in zip(groups, picks)], dtype=np.int64)

    # same object: two different cells of one id (a cell is trivially similar to itself)
    pairable = np.flatnonzero(sizes >= 2)
    if len(pairable) == 0:
        raise BadInputError("same-object pairs need an id covering at least two grid cells")
    groups = pairable[rng.integers(len(pairable), size=n_pairs)]
    first = (rng.random(n_pairs) * sizes[groups]).astype(np.int64)
    second = (first + 1 + (rng.random(n_pairs) * (sizes[groups] - 1)).astype(np.int64)) % sizes[groups]
    same = cosines(cells(groups, first), cells(groups, second))
    # different objects: two distinct ids, a cell of each
    group_a = rng.integers(len(ids), size=n_pairs)
    group_b = (group_a + rng.integers(1, len(ids), size=n_pairs)) % len(ids)
    pick_a = (rng.random(n_pairs) * sizes[group_a]).astype(np.int64)
    pick_b = (rng.random(n_pairs) * sizes[group_b]).astype(np.int64)
    different = cosines(cells(group_a, pick_a), cells(group_b, pick_b))
    return PairSimilarities(same.astype(np.float32), different.astype(np.float32))


def plot_similarity_histogram(pairs, axes=None, bins: int = 60, sharey: bool = False):
    """Histograms of same-object vs different-object similarities, one panel per embedding.

    ``pairs`` is a :class:`PairSimilarities` or ``{name: PairSimilarities}``.  Returns the
    axes.  The further apart the two histograms, the easier the nearest-neighbour transfer:
    training should push the green one to 1 and the grey one down.
    """
    import matplotlib.pyplot as plt

    if isinstance(pairs, PairSimilarities):
        pairs = {"": pairs}
    if not isinstance(pairs, Mapping) or not pairs:
        raise BadInputError("pairs must be a PairSimilarities or a non-empty {name: PairSimilarities}")
    if axes is None:
        _, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.0), squeeze=False, sharey=sharey)
        axes = axes[0]
    axes = np.atleast_1d(axes)
    edges = np.linspace(-1, 1, bins + 1)
    for ax, (name, p) in zip(axes, pairs.items()):
        ax.hist(p.different, bins=edges, density=True, color="0.45", alpha=0.6, label="different objects")
        ax.hist(p.same, bins=edges, density=True, color="tab:green", alpha=0.6, label="same object")
        ax.set_xlabel("cosine similarity")
        ax.set_yticks([])
        ax.set_title(f"{name}{': ' if name else ''}separation {p.separation:.3f}", fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    return axes


def _colormap_lut(cmap: str) -> np.ndarray:
    """``(256, 3)`` uint8 colours of a matplotlib colormap."""
    import matplotlib

    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise BadInputError(f"unknown matplotlib colormap {cmap!r}") from None
    return np.round(colormap(np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def heatmap_rgba(
    values,
    vmin: float = -1.0,
    vmax: float = 1.0,
    cmap: str = "inferno",
    opacity: float = 0.65,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """RGBA uint8 ``(h, w, 4)`` (or ``size``) of a score map, e.g. a similarity map.

    Values are resized bilinearly first (the label transfer upsamples its scores the same
    way), then mapped through ``cmap`` between ``vmin`` and ``vmax`` (clipped); alpha is
    ``opacity`` everywhere, so the frame shows through.
    """
    values = _as_float_array(values)
    if values.ndim != 2:
        raise BadInputError(f"a heat map takes a 2-D (h, w) array; got shape {values.shape}")
    if not vmax > vmin:
        raise BadInputError(f"vmax must exceed vmin; got vmin={vmin}, vmax={vmax}")
    if size is not None and tuple(size) != values.shape:
        height, width = (int(v) for v in size)
        values = np.asarray(Image.fromarray(values, mode="F").resize((width, height), Image.BILINEAR))
    index = np.clip((values - vmin) / (vmax - vmin), 0, 1)
    index = np.nan_to_num(index * 255, nan=0).round().astype(np.uint8)
    rgba = np.empty(values.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = _colormap_lut(cmap)[index]
    rgba[..., 3] = int(round(float(np.clip(opacity, 0, 1)) * 255))
    return rgba


def colourbar_rgb(length: int = 256, thickness: int = 12, cmap: str = "inferno", vertical: bool = True) -> np.ndarray:
    """uint8 RGB image of a colour bar, high values at the top (vertical) or right."""
    if length < 2 or thickness < 1:
        raise BadInputError(f"a colour bar needs length >= 2 and thickness >= 1; got {length}, {thickness}")
    lut = _colormap_lut(cmap)
    ramp = lut[np.linspace(0, 255, length).round().astype(int)]
    if vertical:
        return np.repeat(ramp[::-1, None, :], thickness, axis=1)
    return np.repeat(ramp[None, :, :], thickness, axis=0)


def show_similarity(
    frame,
    similarity,
    point=None,
    matches=None,
    ax=None,
    vmin: float = -1.0,
    vmax: float = 1.0,
    cmap: str = "inferno",
    opacity: float = 0.65,
    colorbar: bool = True,
    title: str | None = None,
):
    """A similarity map ``(h, w)`` over a frame ``(H, W, 3)``, with the query and matches marked.

    ``point`` is the clicked pixel ``(x, y)`` (drawn as a white cross) when it lies on this
    frame; ``matches`` ``(k, 2)`` pixel ``(x, y)`` of the most similar cells (cyan rings,
    numbered by rank).  Returns the axis.
    """
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise BadInputError(f"a frame must have shape (H, W, 3); got {frame.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5.5 * frame.shape[0] / frame.shape[1]))
    rgba = heatmap_rgba(similarity, vmin, vmax, cmap, 1.0, size=frame.shape[:2]).astype(np.float32)
    blended = frame * (1 - opacity) + rgba[..., :3] * opacity
    ax.imshow(blended.astype(np.uint8))
    if matches is not None and len(matches):
        matches = np.asarray(matches, dtype=float).reshape(-1, 2)
        ax.scatter(matches[:, 0], matches[:, 1], s=90, facecolors="none", edgecolors="cyan", linewidths=1.6)
        for rank, (x, y) in enumerate(matches, 1):
            ax.annotate(str(rank), (x, y), xytext=(5, 4), textcoords="offset points", color="cyan", fontsize=7)
    if point is not None:
        x, y = point
        ax.plot([x], [y], marker="+", color="black", markersize=16, markeredgewidth=4)
        ax.plot([x], [y], marker="+", color="white", markersize=14, markeredgewidth=2)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        mappable = cm.ScalarMappable(norm=colors.Normalize(vmin, vmax), cmap=cmap)
        ax.figure.colorbar(mappable, ax=ax, fraction=0.035, pad=0.02, label="cosine similarity")
    return ax


def show_provenance(frames, provenance, title: str | None = None, width: float = 4.2, max_frames: int = 2):
    """Where a pixel's label comes from: the pixel, its nearest reference pixels, their votes.

    Parameters
    ----------
    frames : the video ``(T, H, W, 3)`` (array or LazyFrames)
    provenance : a :class:`simwidgets.apps.explorer.Provenance` (duck-typed: ``frame_idx``,
        ``point``, ``ref_frames``, ``ref_points``, ``ref_objects``, ``weights``,
        ``object_ids``, ``votes``)
    title : figure title (e.g. the model's name)
    max_frames : reference frames shown at most (those holding the heaviest references)

    Returns the figure: the query frame with the pixel (cross), then the reference
    frame(s) with the voting references (rings in their object's colour, white for
    background; ring area grows with the vote weight; numbered by rank), then the votes
    per object as bars.
    """
    import matplotlib.pyplot as plt

    p = provenance
    ref_frames = np.asarray(p.ref_frames)
    weights = np.asarray(p.weights, dtype=float)
    order = []
    for f in ref_frames[np.argsort(-weights, kind="stable")]:
        if int(f) not in order:
            order.append(int(f))
    shown = order[:max_frames]
    first = np.asarray(frames[p.frame_idx])
    aspect = first.shape[0] / first.shape[1]
    n_panels = 2 + len(shown)
    ratios = [1.0] * (1 + len(shown)) + [0.45]
    fig, axes = plt.subplots(1, n_panels, figsize=(width * (n_panels - 0.4), width * aspect + 0.9),
                             gridspec_kw={"width_ratios": ratios}, layout="constrained")
    ax = axes[0]
    ax.imshow(first)
    x, y = p.point
    ax.plot([x], [y], marker="+", color="black", markersize=16, markeredgewidth=4)
    ax.plot([x], [y], marker="+", color="white", markersize=14, markeredgewidth=2)
    ax.set_title(f"frame {p.frame_idx}: pixel ({x}, {y})", fontsize=10)
    ax.axis("off")
    points = np.asarray(p.ref_points, dtype=float)
    objects = np.asarray(p.ref_objects)
    scale = 220.0 / max(weights.max(initial=0.0), 1e-12)
    for ax, f in zip(axes[1:], shown):
        ax.imshow(np.asarray(frames[f]))
        for rank in np.flatnonzero(ref_frames == f)[::-1]:  # nearest drawn last, on top
            colour = _object_rgb(objects[rank]) if objects[rank] > 0 else (1.0, 1.0, 1.0)
            halo = "white" if objects[rank] > 0 else "black"
            size = 25 + weights[rank] * scale
            ax.scatter([points[rank, 0]], [points[rank, 1]], s=size, facecolors="none", edgecolors=halo,
                       linewidths=3.2)
            ax.scatter([points[rank, 0]], [points[rank, 1]], s=size, facecolors="none", edgecolors=colour,
                       linewidths=1.6)
            ax.annotate(str(rank + 1), tuple(points[rank]), xytext=(5, 4), textcoords="offset points",
                        color=colour, fontsize=7)
        n_here = int((ref_frames == f).sum())
        ax.set_title(f"reference frame {f}: {n_here} of the {len(ref_frames)} nearest", fontsize=10)
        ax.axis("off")
    ax = axes[-1]
    ids = [int(i) for i in p.object_ids]
    votes = np.asarray(p.votes, dtype=float)
    names = ["bg" if i == 0 else str(i) for i in ids]
    ax.bar(names, votes, color=[_object_rgb(i) for i in ids])
    ax.set_ylim(0, 1)
    ax.set_title("votes", fontsize=10)
    ax.set_xlabel("object")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig
