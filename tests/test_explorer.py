"""The similarity explorer, driven through its public handlers (the calls the browser makes).

Real data: bear frames 35..44 at a quarter of 480p with the official human scribble on
clip frame 4.  A hand-made video with a mean-colour embedding checks the provenance
against references whose order and votes are known by construction."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from simwidgets import viz  # noqa: E402
from simwidgets.errors import BadInputError  # noqa: E402
from simwidgets.apps.explorer import EmbeddingProbe, SimilarityExplorer  # noqa: E402
from simwidgets.models import EmbeddingModel  # noqa: E402
from simwidgets.scribbles import UNKNOWN  # noqa: E402
from simwidgets.session import InteractiveSession  # noqa: E402
from simwidgets.transfer import LabelTransfer, TransferConfig  # noqa: E402
from simwidgets.video import load_sample  # noqa: E402

from test_session import shrink_clip  # noqa: E402  (same tests folder)

ANNOTATED = 4  # the clip's frame with the human scribble (bear frame 39)
OTHER = 9


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def clip(davis_root):
    return shrink_clip(load_sample("bear", lazy=True), 35, 45, 4)


@pytest.fixture
def explorer(clip):
    return SimilarityExplorer(
        clip, {"baseline": "baseline", "untrained": "untrained"}, frame_idx=ANNOTATED, target_frame=OTHER, width=320
    )


def bear_pixel(clip, frame_idx=ANNOTATED):
    """A pixel well inside the bear: (x, y)."""
    rows, cols = np.nonzero(clip.masks[frame_idx] > 0)
    k = len(rows) // 2
    return int(cols[k]), int(rows[k])


def to_canvas(explorer, x, y):
    (ch, cw), (h, w) = explorer.canvas_size, explorer.image_size
    return (x + 0.5) * cw / w, (y + 0.5) * ch / h


def counting(model):
    """Wrap ``model.embed`` so calls can be counted (``model.embed_calls``)."""
    original = model.embed
    model.embed_calls = 0

    def embed(*args, **kwargs):
        model.embed_calls += 1
        return original(*args, **kwargs)

    model.embed = embed
    return model


# ----------------------------------------------------------------------------- clicks

def test_click_gives_the_directly_computed_similarity(explorer, clip):
    x, y = bear_pixel(clip)
    explorer.handle_mouse_down(*to_canvas(explorer, x, y))
    assert explorer.point == (x, y)
    assert set(explorer.results) == {"baseline", "untrained"}
    for name, result in explorer.results.items():
        model = explorer.probes[name].model
        stride = model.stride
        direct = model.embed(clip.frames[[ANNOTATED, OTHER]], device="cpu").numpy()  # no cache
        query = direct[0][:, y // stride, x // stride]
        expected_query = np.einsum("d,dhw->hw", query, direct[0])
        expected_target = np.einsum("d,dhw->hw", query, direct[1])
        assert result.query_map.shape == expected_query.shape == model.grid_size(*clip.size)
        # the cache stores float16: agreement to a few thousandths
        assert np.abs(result.query_map - expected_query).max() < 4e-3
        assert np.abs(result.target_map - expected_target).max() < 4e-3
        assert result.query_map[y // stride, x // stride] == pytest.approx(1.0, abs=4e-3)
        # the top-k marks are the k best cells of the target map
        k = explorer.top_k
        assert len(result.target_matches) == len(result.target_scores) == k
        best = np.sort(expected_target.reshape(-1))[::-1][:k]
        assert np.abs(result.target_scores - best).max() < 4e-3
        assert np.all(np.diff(result.target_scores) <= 0)
        # on the query frame the clicked cell itself is not listed as a match
        cells = {(mx // stride, my // stride) for mx, my in result.query_matches}
        assert (x // stride, y // stride) not in cells
    assert "ms" in explorer.status.value


def test_clicks_never_recompute_embeddings(explorer, clip):
    models = [counting(p.model) for p in explorer.probes.values()]
    computed = [p.cache.n_computed for p in explorer.probes.values()]
    assert computed == [2, 2]  # the two frames on show, embedded once at construction
    x, y = bear_pixel(clip)
    for dx in (0, 7, 19, -13):
        explorer.click(x + dx, y)
    explorer.top_k_slider.value = 8
    explorer.scale_toggle.value = "stretch"
    explorer.opacity_slider.value = 0.3
    explorer.handle_mouse_down(10, 10)
    assert [m.embed_calls for m in models] == [0, 0]
    assert [p.cache.n_computed for p in explorer.probes.values()] == computed
    # a new frame is embedded once, when it is first shown; never again
    explorer.show(target_frame=2)
    explorer.show(target_frame=OTHER)
    explorer.show(target_frame=2)
    explorer.click(x, y)
    assert [m.embed_calls for m in models] == [1, 1]
    assert [p.cache.n_computed for p in explorer.probes.values()] == [3, 3]


def test_options_change_marks_and_scale(explorer, clip):
    x, y = bear_pixel(clip)
    explorer.top_k_slider.value = 3
    explorer.click(x, y)
    assert all(len(r.target_matches) == 3 for r in explorer.results.values())
    assert all(r.vrange == (-1.0, 1.0) for r in explorer.results.values())
    explorer.scale_toggle.value = "stretch"
    for result in explorer.results.values():
        low = min(result.query_map.min(), result.target_map.min())
        high = max(result.query_map.max(), result.target_map.max())
        assert result.vrange == pytest.approx((low, high))
    # the same pixel of another query frame: same maps as the probe computes directly
    explorer.show(frame_idx=OTHER, target_frame=ANNOTATED)
    probe = explorer.probes["untrained"]
    assert np.array_equal(explorer.results["untrained"].query_map, probe.similarity(OTHER, x, y))
    assert np.array_equal(explorer.results["untrained"].target_map, probe.similarity(OTHER, x, y, ANNOTATED))
    fig = explorer.snapshot()
    assert len(fig.axes) == 2 * 2 + 2  # two maps per model, a colour bar per model


def test_explorer_bad_input(clip):
    explorer = SimilarityExplorer(clip, "baseline", width=200)
    assert list(explorer.probes) == ["model"]
    with pytest.raises(BadInputError, match="click a pixel"):
        explorer.snapshot()
    with pytest.raises(BadInputError, match="outside"):
        explorer.click(clip.size[1], 3)
    with pytest.raises(BadInputError, match="frame index"):
        explorer.show(frame_idx=clip.n_frames)
    with pytest.raises(BadInputError, match="at least one"):
        SimilarityExplorer(clip, {})
    with pytest.raises(BadInputError, match="top_k"):
        SimilarityExplorer(clip, "baseline", top_k=-1)
    other = LabelTransfer(clip.frames[:5], model="baseline")
    with pytest.raises(BadInputError, match="5-frame"):
        SimilarityExplorer(clip, {"short": other})
    with pytest.raises(BadInputError, match="no references"):
        explorer.probes["model"].provenance(0, 5, 5)


# ----------------------------------------------------------------------------- provenance

class MeanColour(EmbeddingModel):
    """Test embedding: the mean RGB of each 2 x 2 cell, unit length (so similarity = colour angle)."""

    arch = "test-mean-colour"
    pad_multiple = 1

    def __init__(self):
        super().__init__(dim=3, stride=2)

    def features(self, x):
        return F.avg_pool2d(x, 2, 2, ceil_mode=True)


A, B, C, D = (250, 10, 10), (10, 10, 250), (200, 60, 10), (10, 250, 10)
Q1, Q2 = (240, 20, 30), (20, 240, 30)


def paint(frame, cell, colour):
    r, c = cell
    frame[2 * r : 2 * r + 2, 2 * c : 2 * c + 2] = colour


@pytest.fixture
def hand_made():
    """3 frames 8 x 8 (grid 4 x 4), grey except a few coloured cells; references on frames 0 and 2."""
    frames = np.full((3, 8, 8, 3), 128, dtype=np.uint8)
    paint(frames[0], (0, 0), A)
    paint(frames[0], (3, 0), C)
    paint(frames[0], (0, 3), B)
    paint(frames[2], (2, 2), D)
    paint(frames[1], (1, 1), Q1)
    paint(frames[1], (2, 3), Q2)
    labels0 = np.full((8, 8), UNKNOWN, dtype=np.int64)
    labels0[0:2, 0:2] = 1  # A: object 1
    labels0[6:8, 0:2] = 1  # C: object 1
    labels0[0:2, 6:8] = 0  # B: background
    labels2 = np.full((8, 8), UNKNOWN, dtype=np.int64)
    labels2[4:6, 4:6] = 2  # D: object 2
    config = TransferConfig(top_k=3, temperature=0.05, background_margin=None, temporal=False)
    engine = LabelTransfer(frames, model=MeanColour(), config=config, device="cpu")
    return engine, {0: labels0, 2: labels2}


def unit(colour):
    v = np.asarray(colour, dtype=np.float64) / 255
    return v / np.linalg.norm(v)


def test_provenance_lists_the_right_reference_pixels(hand_made):
    engine, references = hand_made
    probe = EmbeddingProbe(engine, references=references)
    p = probe.provenance(1, 3, 2)  # pixel (x=3, y=2): cell (1, 1), colour Q1
    assert p.cell == (1, 1) and not p.clamped
    assert p.object_ids == [0, 1, 2]
    # nearest by colour angle: A, then C (both object 1, frame 0), then B (background)
    assert p.ref_frames.tolist() == [0, 0, 0]
    assert p.ref_cells.tolist() == [[0, 0], [3, 0], [0, 3]]
    assert p.ref_points.tolist() == [[0, 0], [0, 6], [6, 0]]
    assert p.ref_objects.tolist() == [1, 1, 0]
    sims = np.array([unit(Q1) @ unit(c) for c in (A, C, B)])
    assert np.allclose(p.similarities, sims, atol=2e-3)  # float16 cache
    weights = np.exp(sims / 0.05) / np.exp(sims / 0.05).sum()
    assert np.allclose(p.weights, weights, atol=2e-2)
    assert np.allclose(p.votes, [weights[2], weights[0] + weights[1], 0.0], atol=2e-2)
    assert p.label == 1
    # a pixel coloured like D takes object 2 from frame 2
    q = probe.provenance(1, 7, 5)  # cell (2, 3), colour Q2
    assert q.ref_frames[0] == 2 and q.ref_cells[0].tolist() == [2, 2] and q.ref_points[0].tolist() == [4, 4]
    assert q.label == 2
    # a pixel the user labelled keeps its label, and the provenance says so
    r = probe.provenance(0, 6, 1)  # cell (0, 3): the background reference B itself
    assert r.clamped and r.label == 0 and r.ref_cells[0].tolist() == [0, 3]
    assert r.similarities[0] == pytest.approx(1.0, abs=2e-3)
    fig = viz.show_provenance(engine.cache.frames, p)
    assert len(fig.axes) == 3  # the pixel, the one reference frame, the votes
    assert [bar.get_height() for bar in fig.axes[-1].patches] == pytest.approx(p.votes.tolist())
    text = str(p)
    assert "object 1" in text and "frame   0" in text
    assert [row["object_id"] for row in p.rows()] == [1, 1, 0]
    with pytest.raises(BadInputError, match="positive"):
        probe.provenance(1, 3, 2, k=0)


def test_provenance_votes_equal_the_transfer(clip):
    """Real data, the official scribble: provenance votes = the transfer's scribble-only vote."""
    session = InteractiveSession(clip, model="baseline")
    session.add_scribbles(clip.scribbles["001"])
    session.propagate()
    embedded = session.cache.n_computed
    explorer = SimilarityExplorer(clip, {"session": session}, frame_idx=OTHER, target_frame=ANNOTATED)
    probe = explorer.probes["session"]
    assert probe.cache is session.cache
    x, y = bear_pixel(clip, OTHER)
    results = explorer.click(x, y)
    assert session.cache.n_computed == embedded  # the session's embeddings were reused
    for max_references in (2048, 64):  # all reference cells, then a subsample
        session.configure(max_references=max_references)
        explorer.click(x, y)
        p = explorer.results["session"].provenance
        truth = session.transfer.propagate(session.references(), temporal=False)
        row, col = p.cell
        assert np.allclose(p.votes, truth.probabilities[OTHER][:, row, col].cpu().numpy(), atol=1e-5)
        # every listed reference really is a labelled (or far-background) cell of its frame
        labels = session.references()
        s = probe.stride
        for f, (r, c), obj in zip(p.ref_frames, p.ref_cells, p.ref_objects):
            block = labels[int(f)][r * s : (r + 1) * s, c * s : (c + 1) * s]
            if obj > 0:
                assert (block == obj).any()
            else:  # background: a user stroke there or a guess far from every object stroke
                assert (block == 0).any() or not (block > 0).any()
    assert results["session"].provenance is not None
    # a new stroke in the session: the provenance uses the new references at once
    session.configure(max_references=2048)
    assert OTHER not in probe.references()[1][:, 0].tolist()
    rows, cols = np.nonzero(clip.masks[OTHER] == 0)
    session.add_stroke(OTHER, [[(cols[0] + 0.5) / clip.size[1], (rows[0] + 0.5) / clip.size[0]]], 0)
    assert OTHER in probe.references()[1][:, 0].tolist()
