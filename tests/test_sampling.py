"""Pixel-pair sampling: grid labels, balance, validity, sparse labels, hard negatives, seeding."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from simwidgets.errors import BadInputError
from simwidgets.training.sampling import (
    UNKNOWN,
    boundary_band,
    gather_cells,
    labels_to_grid,
    sample_pairs,
    sample_triplets,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_labels_to_grid_majority_and_unknown():
    labels = np.full((8, 12), UNKNOWN)
    labels[0:4, 0:4] = 2          # whole cell (0, 0)
    labels[0:4, 4:8] = 1
    labels[0, 4:7] = 3            # 3 pixels of 3 vs 13 of 1 -> 1
    labels[5, 9] = 4              # a single known pixel decides cell (1, 2)
    grid = labels_to_grid(labels, 4)
    assert grid.shape == (2, 3)
    assert grid.tolist() == [[2, 1, UNKNOWN], [UNKNOWN, UNKNOWN, 4]]


def test_labels_to_grid_pads_ragged_edges(synthetic):
    mask = synthetic.masks[0][:61, :90]  # not multiples of 8
    grid = labels_to_grid(mask, 8)
    assert grid.shape == (8, 12)
    # every grid cell is known (dense mask), and each label is one present in its cell
    assert (grid >= 0).all()
    for i in range(8):
        for j in range(12):
            assert int(grid[i, j]) in set(np.unique(mask[i * 8:(i + 1) * 8, j * 8:(j + 1) * 8]).tolist())


def test_labels_to_grid_keeps_thin_scribbles(bear):
    scribbles = bear.scribbles["001"]
    frame_idx = scribbles.annotated_frames[0]
    h, w = bear.size
    raster = scribbles.rasterize(frame_idx, h, w)
    grid = labels_to_grid(raster, 8)
    # every scribbled object survives on the coarse grid, and unknown stays unknown elsewhere
    assert set(np.unique(raster[raster >= 0]).tolist()) == set(torch.unique(grid[grid >= 0]).tolist())
    assert (grid == UNKNOWN).float().mean() > 0.5


def test_bad_labels_raise():
    with pytest.raises(BadInputError, match="integer"):
        labels_to_grid(np.zeros((4, 4), dtype=np.float32), 2)
    with pytest.raises(BadInputError, match="2-D"):
        labels_to_grid(np.zeros((2, 4, 4), dtype=np.int64), 2)
    with pytest.raises(BadInputError, match="-1 for unknown"):
        sample_triplets(np.full((4, 4), -3), n=4)
    with pytest.raises(BadInputError, match="even"):
        sample_pairs(np.zeros((4, 4), dtype=np.int64), n_pairs=3)


def test_triplets_are_valid_and_class_balanced(synthetic):
    a = labels_to_grid(synthetic.masks[0], 4)
    b = labels_to_grid(synthetic.masks[5], 4)
    t = sample_triplets(a, b, n=300, generator=gen())
    fa, fb = a.reshape(-1), b.reshape(-1)
    assert len(t) == 300
    assert torch.equal(fa[t.anchor], t.label)
    assert torch.equal(fb[t.positive], t.label)
    assert torch.equal(fb[t.negative], t.negative_label)
    assert (t.negative_label != t.label).all()
    # background and the three objects: equal anchor counts however small the object is
    labels, counts = torch.unique(t.label, return_counts=True)
    assert labels.tolist() == [0, 1, 2, 3]
    assert counts.tolist() == [75, 75, 75, 75]
    area = torch.bincount(fa, minlength=4)
    assert area.max() > 3 * area.min()  # the balance is not a property of the frame itself


def test_pairs_are_exactly_balanced(synthetic):
    grid = labels_to_grid(synthetic.masks[2], 4)
    pairs = sample_pairs(grid, n_pairs=200, generator=gen(1))
    flat = grid.reshape(-1)
    assert len(pairs) == 200
    assert int(pairs.same.sum()) == 100
    assert torch.equal(flat[pairs.index_a] == flat[pairs.index_b], pairs.same)


def test_sparse_labels_never_sample_unknown(bear):
    scribbles = bear.scribbles["001"]
    frame_idx = scribbles.annotated_frames[0]
    h, w = bear.size
    grid = labels_to_grid(scribbles.rasterize(frame_idx, h, w), 8)
    gt_grid = labels_to_grid(bear.masks[frame_idx + 3], 8)
    t = sample_triplets(grid, gt_grid, n=128, generator=gen())
    assert len(t) > 0
    assert (grid.reshape(-1)[t.anchor] >= 0).all()
    # within the sparse frame too
    t2 = sample_triplets(grid, None, n=64, generator=gen())
    flat = grid.reshape(-1)
    assert (flat[t2.anchor] >= 0).all() and (flat[t2.positive] >= 0).all() and (flat[t2.negative] >= 0).all()


def test_no_contrast_gives_empty_sample():
    only_background = torch.zeros(6, 6, dtype=torch.long)
    assert len(sample_triplets(only_background, n=10)) == 0
    unknown = torch.full((6, 6), UNKNOWN)
    assert len(sample_triplets(unknown, n=10)) == 0
    # label 2 only in frame A: it cannot have a positive in B, so only labels 0 and 1 are used
    a = torch.zeros(6, 6, dtype=torch.long); a[:2] = 1; a[4:] = 2
    b = torch.zeros(6, 6, dtype=torch.long); b[:3] = 1
    t = sample_triplets(a, b, n=10, generator=gen())
    assert set(t.label.tolist()) == {0, 1}


def test_hard_negatives_lie_near_the_object():
    labels = torch.zeros(40, 40, dtype=torch.long)
    labels[15:25, 15:25] = 1
    t = sample_triplets(labels, n=400, hard_fraction=0.5, boundary_width=2, generator=gen())
    ys, xs = t.negative // 40, t.negative % 40
    hard_of_object = t.hard & (t.label == 1)
    assert int(hard_of_object.sum()) == 100
    # hard negatives of object 1 are background cells at most 2 cells from the square
    dist = torch.maximum((13 - ys).clamp(min=0).maximum(ys - 26), (13 - xs).clamp(min=0).maximum(xs - 26))
    near = (ys >= 13) & (ys <= 26) & (xs >= 13) & (xs <= 26)
    assert near[hard_of_object].all()
    # uniform negatives of object 1 mostly fall far away (the band is 96 of 1500 background cells)
    easy = ~t.hard & (t.label == 1)
    assert near[easy].float().mean() < 0.3
    del dist


def test_boundary_band():
    labels = torch.zeros(10, 10, dtype=torch.long)
    labels[4:6, 4:6] = 1
    labels[0, 0] = UNKNOWN
    band = boundary_band(labels, 1)
    assert band[3:7, 3:7].all()                 # the square and the ring around it
    assert int(band.sum()) == 16
    assert not band[0, 0]


def test_seeded_draws_repeat():
    labels = torch.randint(0, 3, (16, 16), generator=gen(5))
    t1 = sample_triplets(labels, n=50, hard_fraction=0.3, generator=gen(7))
    t2 = sample_triplets(labels, n=50, hard_fraction=0.3, generator=gen(7))
    t3 = sample_triplets(labels, n=50, hard_fraction=0.3, generator=gen(8))
    assert torch.equal(t1.anchor, t2.anchor) and torch.equal(t1.negative, t2.negative)
    assert not torch.equal(t1.anchor, t3.anchor)


def test_gather_cells():
    emb = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    rows = gather_cells(emb, torch.tensor([0, 5, 11]))
    assert rows.tolist() == [[0, 12], [5, 17], [11, 23]]


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(2, 12), w=st.integers(2, 12), n_labels=st.integers(1, 4),
    unknown=st.floats(0, 0.8), n=st.integers(0, 40), seed=st.integers(0, 1000),
)
def test_any_label_map_gives_valid_triplets(h, w, n_labels, unknown, n, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, n_labels, (h, w), generator=g)
    labels[torch.rand(h, w, generator=g) < unknown] = UNKNOWN
    t = sample_triplets(labels, n=n, hard_fraction=0.5, generator=g)
    flat = labels.reshape(-1)
    if len(t):
        assert len(t) == n
        assert (flat[t.anchor] == t.label).all() and (flat[t.positive] == t.label).all()
        assert (flat[t.negative] >= 0).all() and (flat[t.negative] != t.label).all()
    else:
        assert n == 0 or torch.unique(flat[flat >= 0]).numel() < 2
