"""viz: overlays and embedding views (PCA colours, cell labels, 2-D projections, pair
similarities, heat maps, figures).  Embeddings come from the real bear clip (baseline and
untrained network) or are built by hand where the right answer must be known exactly."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from simwidgets import viz  # noqa: E402
from simwidgets.errors import BadInputError  # noqa: E402
from simwidgets.models import load_model  # noqa: E402
from simwidgets.video import load_sample  # noqa: E402

from test_session import shrink_clip  # noqa: E402  (same tests folder)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def clip(davis_root):
    """bear frames 35..42 at a quarter of 480p (120 x 213)."""
    return shrink_clip(load_sample("bear", lazy=True), 35, 43, 4)


@pytest.fixture(scope="module")
def embedded(clip):
    """``{name: (T, D, h, w) float32}`` for the baseline and the untrained network (run in
    float32 everywhere, so the pictures these tests reason about are the same on any CPU)."""
    return {name: load_model(name).embed(clip.frames, device="cpu", precision="fp32").numpy()
            for name in ("baseline", "untrained")}


def clusters(n_per=200, dim=8, seed=0, spread=0.05):
    """Unit vectors around one orthogonal direction per class: classes 0, 1, 2."""
    rng = np.random.default_rng(seed)
    vectors, labels = [], []
    for c in range(3):
        centre = np.zeros(dim)
        centre[c] = 1.0
        v = centre + spread * rng.standard_normal((n_per, dim))
        vectors.append(v / np.linalg.norm(v, axis=1, keepdims=True))
        labels.append(np.full(n_per, c))
    return np.concatenate(vectors).astype(np.float32), np.concatenate(labels)


# ----------------------------------------------------------------------------- PCA colours

def test_pca_rgb_shapes_and_range(embedded, clip):
    emb = embedded["untrained"]
    t, d, h, w = emb.shape
    video = viz.pca_rgb(emb)
    assert video.shape == (t, h, w, 3) and video.dtype == np.uint8
    frame = viz.pca_rgb(emb[2])
    assert frame.shape == (h, w, 3) and frame.dtype == np.uint8
    full = viz.pca_rgb(emb, size=clip.size)
    assert full.shape == (t,) + clip.size + (3,)
    # the 1st..99th percentiles span 0..255: the picture uses the whole range of each channel
    assert (video.reshape(-1, 3).min(0) == 0).all() and (video.reshape(-1, 3).max(0) == 255).all()
    # a torch tensor, a list of frames and an embedding-cache-like object give the same picture
    assert np.array_equal(viz.pca_rgb(torch.from_numpy(emb)), video)
    assert np.array_equal(viz.pca_rgb(list(emb)), video)

    class Cache:
        n_frames = t

        def __getitem__(self, i):
            return torch.from_numpy(emb[i])

    assert np.array_equal(viz.pca_rgb(Cache()), video)


def test_pca_colours_stable_across_frames(embedded):
    emb = embedded["untrained"]
    pca = viz.fit_pca(emb)
    video = viz.pca_rgb(emb, pca)
    # one projection for the whole video: each frame coloured alone gets the same colours
    for t in range(len(emb)):
        assert np.array_equal(pca.colours(emb[t]), video[t])
    # the same frame twice in a video: identical pictures
    repeated = np.concatenate([emb, emb[:1]])
    rgb = viz.pca_rgb(repeated)
    assert np.array_equal(rgb[0], rgb[-1])
    # frame order does not matter: reversing the video reverses the pictures
    backwards = viz.pca_rgb(emb[::-1].copy())
    assert np.abs(backwards[::-1].astype(int) - video.astype(int)).max() <= 1
    # a frame coloured by its own PCA generally differs: that is why a video needs one
    own = viz.pca_rgb(emb[0])
    assert np.abs(own.astype(int) - video[0].astype(int)).mean() > 5


def test_fit_pca_finds_the_main_directions():
    rng = np.random.default_rng(1)
    # variance 9, 4, 1, 0.01 along axes 2, 0, 3, 1: the components must come out in that order
    scales = np.array([2.0, 0.1, 3.0, 1.0])
    vectors = rng.standard_normal((4000, 4)) * scales
    emb = vectors.T.reshape(4, 40, 100).astype(np.float32)
    pca = viz.fit_pca(emb)
    assert np.allclose(np.abs(pca.components), np.eye(4)[[2, 0, 3]], atol=0.05)
    assert np.allclose(pca.components @ pca.components.T, np.eye(3), atol=1e-5)
    assert np.allclose(pca.explained, np.array([9, 4, 1]) / 14.01, atol=0.02)
    # two clusters along the first direction become the darkest and brightest red
    two = np.zeros((4, 1, 2), dtype=np.float32)
    two[2, 0, 0], two[2, 0, 1] = -10, 10
    red = pca.colours(two)[0, :, 0]
    assert sorted(red.tolist()) == [0, 255]


def test_pca_rejects_bad_embeddings():
    with pytest.raises(BadInputError, match="D, h, w"):
        viz.pca_rgb(np.zeros((4, 5)))
    bad = np.ones((3, 4, 4), dtype=np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(BadInputError, match="NaN"):
        viz.pca_rgb(bad)
    pca = viz.fit_pca(np.random.default_rng(0).standard_normal((5, 4, 4)))
    with pytest.raises(BadInputError, match="dimension"):
        pca.colours(np.zeros((6, 4, 4)))


# ----------------------------------------------------------------------------- cells and samples

def test_cell_labels_hand_made():
    mask = np.zeros((10, 12), dtype=np.int64)  # stride 4: grid 3 x 3, last row padded
    mask[0:4, 4:8] = 1        # cell (0, 1): pure object 1
    mask[4:6, 8:12] = 2       # cell (1, 2): half object 2 -> mixed
    mask[8:10, 0:4] = 3       # cell (2, 0): rows 8..9 only exist, all object 3 -> pure
    labels = viz.cell_labels(mask, (3, 3))
    expected = np.array([[0, 1, 0], [0, 0, -1], [3, 0, 0]])
    assert np.array_equal(labels, expected)
    assert np.array_equal(viz.cell_labels(mask[None], (3, 3), stride=4), expected[None])
    with pytest.raises(BadInputError, match="stride"):
        viz.cell_labels(mask, (3, 3), stride=2)


def test_sample_cells_matches_masks(embedded, clip):
    emb = embedded["baseline"]
    sample = viz.sample_cells(emb, clip.masks, n_per_object=50, seed=3)
    assert sample.vectors.shape == (len(sample), emb.shape[1])
    assert sorted(np.unique(sample.labels).tolist()) == [0, 1]
    assert all((sample.labels == c).sum() == 50 for c in (0, 1))
    truth = viz.cell_labels(clip.masks, emb.shape[2:])
    t, (r, c) = sample.frame_indices, sample.cells.T
    assert np.array_equal(truth[t, r, c], sample.labels)
    assert np.array_equal(emb[t, :, r, c], sample.vectors)
    with pytest.raises(BadInputError, match="one mask per embedded frame"):
        viz.sample_cells(emb, clip.masks[:3])


def test_project_2d_pca_keeps_planar_geometry():
    rng = np.random.default_rng(0)
    plane = rng.standard_normal((100, 2)) * [3.0, 1.0]
    basis = np.linalg.qr(rng.standard_normal((6, 2)))[0].T  # (2, 6) orthonormal rows
    points = viz.project_2d(plane @ basis + 5.0)
    assert points.shape == (100, 2)
    d_in = np.linalg.norm(plane[:, None] - plane[None], axis=-1)
    d_out = np.linalg.norm(points[:, None] - points[None], axis=-1)
    assert np.allclose(d_in, d_out, atol=1e-4)
    with pytest.raises(BadInputError, match="pca' or 'tsne"):
        viz.project_2d(plane, method="umap")


@pytest.mark.skipif(not viz.tsne_available(), reason="t-SNE needs scikit-learn")
def test_project_2d_tsne_keeps_clusters_apart():
    vectors, labels = clusters(n_per=60)
    points = viz.project_2d(vectors, method="tsne", seed=0)
    assert points.shape == (180, 2)
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[d.argmin(1)] == labels).mean() > 0.95


# ----------------------------------------------------------------------------- pair similarities

def test_pair_similarities_separated_and_random_embeddings():
    # hand-made: every object has its own orthogonal direction -> same ~ 1, different ~ 0
    masks = np.zeros((2, 16, 24), dtype=np.int64)
    masks[:, :, 8:16] = 1
    masks[:, :, 16:] = 2
    emb = np.zeros((2, 3, 4, 6), dtype=np.float32)
    labels = viz.cell_labels(masks, (4, 6))
    for c in range(3):
        emb[:, c][labels == c] = 1.0
    pairs = viz.pair_similarities(emb, masks, n_pairs=500)
    assert np.allclose(pairs.same, 1.0) and np.allclose(pairs.different, 0.0)
    assert pairs.separation == 1.0
    # random embeddings say nothing about objects: separation near 0.5
    noise = np.random.default_rng(0).standard_normal((2, 16, 4, 6)).astype(np.float32)
    chance = viz.pair_similarities(noise, masks, n_pairs=4000)
    assert abs(chance.separation - 0.5) < 0.04
    assert chance.same.min() >= -1 and chance.same.max() <= 1


def test_separation_is_the_pairwise_win_rate():
    rng = np.random.default_rng(2)
    pairs = viz.PairSimilarities(rng.normal(0.3, 0.2, 300), rng.normal(0.0, 0.2, 250))
    wins = (pairs.same[:, None] > pairs.different[None]).mean() + 0.5 * (
        pairs.same[:, None] == pairs.different[None]).mean()
    assert pairs.separation == pytest.approx(wins, abs=1e-12)


def test_pair_similarities_on_real_embeddings(embedded, clip):
    for name, emb in embedded.items():
        pairs = viz.pair_similarities(emb, clip.masks, n_pairs=3000)
        assert len(pairs.same) == len(pairs.different) == 3000
        for values in (pairs.same, pairs.different):
            assert values.min() >= -1.0001 and values.max() <= 1.0001
        assert 0.0 <= pairs.separation <= 1.0
        assert "separation" in repr(pairs)
    only_background = np.zeros_like(clip.masks)
    with pytest.raises(BadInputError, match="two ids"):
        viz.pair_similarities(embedded["baseline"], only_background)


# ----------------------------------------------------------------------------- heat maps and figures

def test_heatmap_rgba_maps_range_and_size():
    values = np.array([[-1.0, 0.0], [1.0, 5.0]], dtype=np.float32)
    rgba = viz.heatmap_rgba(values, vmin=-1, vmax=1, cmap="viridis", opacity=0.5)
    lut = viz._colormap_lut("viridis")
    assert rgba.shape == (2, 2, 4) and rgba.dtype == np.uint8
    assert np.array_equal(rgba[0, 0, :3], lut[0]) and np.array_equal(rgba[1, 0, :3], lut[255])
    assert np.array_equal(rgba[1, 1, :3], lut[255])  # clipped above vmax
    assert (rgba[..., 3] == 128).all()
    big = viz.heatmap_rgba(values, size=(20, 30))
    assert big.shape == (20, 30, 4)
    bar = viz.colourbar_rgb(100, 8, "viridis")
    assert bar.shape == (100, 8, 3)
    assert np.array_equal(bar[0, 0], lut[255]) and np.array_equal(bar[-1, 0], lut[0])
    with pytest.raises(BadInputError, match="vmax"):
        viz.heatmap_rgba(values, vmin=1, vmax=1)
    with pytest.raises(BadInputError, match="colormap"):
        viz.heatmap_rgba(values, cmap="no-such-map")


def test_figures_draw_what_they_are_given(embedded, clip):
    emb = embedded["untrained"]
    sample = viz.sample_cells(emb, clip.masks, n_per_object=40)
    ax = viz.plot_projection(viz.project_2d(sample.vectors), sample.labels, title="pca")
    assert len(ax.collections) == 2  # one scatter per id
    pairs = {name: viz.pair_similarities(e, clip.masks, n_pairs=500) for name, e in embedded.items()}
    axes = viz.plot_similarity_histogram(pairs)
    assert len(axes) == 2 and "separation" in axes[0].get_title()
    sim = np.random.default_rng(0).uniform(-1, 1, emb.shape[2:])
    ax = viz.show_similarity(clip.frames[0], sim, point=(50, 60), matches=[(10, 10), (20, 30)])
    assert len(ax.images) == 1 and len(ax.collections) == 1
    # existing helpers keep working
    over = viz.overlay(clip.frames[0], clip.masks[0])
    assert over.shape == clip.frames[0].shape
    assert (over[clip.masks[0] == 0] == clip.frames[0][clip.masks[0] == 0]).all()
    fig = viz.show_frames(clip.frames, clip.masks, frame_indices=[0, 3], scribbles=clip.scribbles["001"])
    assert len(fig.axes) == 2


def test_stroke_colours_tell_objects_from_background():
    """An object stroke never looks like a background (white) one, and two objects'
    strokes never look alike: each is drawn in its mask's DAVIS colour."""
    from simwidgets.palette import object_colour
    from simwidgets.viz import stroke_colour

    assert stroke_colour(0) == (1.0, 1.0, 1.0)
    colours = [stroke_colour(i) for i in range(1, 256)]
    assert len(set(colours)) == len(colours) and (1.0, 1.0, 1.0) not in colours
    for object_id, colour in enumerate(colours, start=1):
        assert np.allclose(np.array(colour) * 255, object_colour(object_id))
