"""J, F, J&F, AUC and J&F@60s: known answers, input checks, and agreement with the
DAVIS benchmark's own implementation (davisinteractive) on the real masks in data/davis."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from simwidgets.errors import BadInputError
from simwidgets.evaluation.metrics import (
    MaskScores,
    auc,
    boundary_map,
    boundary_radius,
    evaluate_masks,
    f_measure,
    jaccard,
    metric_at,
)
from simwidgets.video import read_mask, sample_root

TOL = 1e-6


# --------------------------------------------------------------------------- helpers

def shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate the last two axes by (dy, dx), filling with background."""
    out = np.zeros_like(mask)
    h, w = mask.shape[-2:]
    src_y = slice(max(0, -dy), h - max(0, dy))
    dst_y = slice(max(0, dy), h - max(0, -dy))
    src_x = slice(max(0, -dx), w - max(0, dx))
    dst_x = slice(max(0, dx), w - max(0, -dx))
    out[..., dst_y, dst_x] = mask[..., src_y, src_x]
    return out


_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = ndimage.generate_binary_structure(2, 1)  # morphology within each frame only


def erode(masks: np.ndarray, iterations: int) -> np.ndarray:
    return ndimage.binary_erosion(masks, _IN_PLANE, iterations=iterations)


def dilate(masks: np.ndarray, iterations: int) -> np.ndarray:
    return ndimage.binary_dilation(masks, _IN_PLANE, iterations=iterations)


def square(h, w, top, left, size):
    mask = np.zeros((h, w), dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


@pytest.fixture(scope="module")
def real():
    """Ground-truth masks (object 1) of the three shipped sequences, as uint8 ``(T, H, W)``.

    Read with ``read_mask`` rather than ``load_sample`` to skip decoding the frames and
    checking ids over whole int64 videos: this module must stay fast.
    """
    masks = {}
    for name in ("bear", "tennis", "dog-agility"):
        paths = sorted((sample_root() / "Annotations" / "480p" / name).glob("*.png"))
        masks[name] = (np.stack([read_mask(p) for p in paths]) > 0).astype(np.uint8)
    return masks


@pytest.fixture(scope="module")
def di():
    from simwidgets.evaluation.davis_compat import import_davisinteractive

    try:
        return import_davisinteractive()
    except ImportError as error:
        pytest.skip(str(error))


def perturbation_cases(real) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, gt, pred) triples of real single-object masks covering many J/F regimes."""
    rng = np.random.default_rng(0)
    bear, tennis, dog = real["bear"], real["tennis"], real["dog-agility"]
    b = bear[::12]                                      # 7 frames of bear
    t = tennis[::10]                                    # 7 frames: thin legs and racket
    d = dog[::2]                                        # 13 frames
    noisy = d.copy()
    flip = rng.random(d.shape) < 0.002                  # salt-and-pepper: many tiny boundaries
    noisy[flip] = 1 - noisy[flip]
    edge = np.zeros_like(d[:4])
    edge[:, :, -50:] = 1                                # touches the right border
    edge[1, -30:, :] = 1                                # and the bottom border
    edge[2, -1, :] = 1                                  # the last row only
    edge[3, :, -1] = 1                                  # the last column only
    return [
        ("bear small shift", b, shift(b, 7, -12)),
        ("bear large shift", b, shift(b, -40, 90)),
        ("bear eroded", b, erode(b, 5)),
        ("bear dilated", b, dilate(b, 9)),
        ("bear other frame", b, np.roll(bear, 20, axis=0)[::12]),
        ("bear empty prediction", b[:3], np.zeros_like(b[:3])),
        ("bear full prediction", b[:3], np.ones_like(b[:3])),
        ("tennis vs shifted self", t, shift(t, 3, 3)),
        ("tennis one pixel", t, shift(t, 0, -1)),
        ("tennis other frame", t, np.roll(tennis, 5, axis=0)[::10]),
        ("dog shift", d, shift(d, 11, 4)),
        ("dog salt and pepper", d, noisy),
        ("border masks as prediction", d[:4], edge),
        ("border masks as truth", edge, d[:4]),
    ]


# --------------------------------------------------------------------------- agreement

def test_jaccard_and_f_agree_with_davisinteractive_on_perturbed_real_masks(real, di):
    all_j, all_f = [], []
    for name, gt, pred in perturbation_cases(real):
        ours = evaluate_masks(pred, gt)
        ref_j = di.metrics.batched_jaccard(gt, pred, average_over_objects=False)
        ref_f = di.metrics.batched_f_measure(gt, pred, average_over_objects=False)
        assert ours.j.shape == ref_j.shape == (len(gt), 1), name
        assert np.abs(ours.j - ref_j).max() <= TOL, name
        assert np.abs(ours.f - ref_f).max() <= TOL, name
        # the single-object functions say the same as evaluate_masks
        np.testing.assert_array_equal(jaccard(pred == 1, gt == 1), ours.j[:, 0])
        np.testing.assert_array_equal(f_measure(pred == 1, gt == 1), ours.f[:, 0])
        all_j.append(ours.j)
        all_f.append(ours.f)
    j, f = np.concatenate(all_j), np.concatenate(all_f)
    # the cases span the whole range, not just the easy ends
    assert j.min() == 0.0 and f.min() == 0.0
    assert np.count_nonzero((f > 0.05) & (f < 0.95)) > 30
    assert np.count_nonzero((j > 0.05) & (j < 0.95)) > 30


def test_multi_object_and_absent_object_agree_with_davisinteractive(real, di):
    bear, tennis = real["bear"][::10][:8], real["tennis"][::9][:8]
    gt = np.where(bear > 0, 1, np.where(tennis > 0, 2, 0))
    pred = np.where(shift(tennis, 4, -6) > 0, 2, np.where(shift(bear, -5, 8) > 0, 1, 0))
    pred[1] = 0                                              # one frame with nothing predicted
    ours = evaluate_masks(pred, gt, object_ids=[1, 2, 3])    # 3 is in neither: J = F = 1
    ref_j = di.metrics.batched_jaccard(gt, pred, average_over_objects=False, nb_objects=3)
    ref_f = di.metrics.batched_f_measure(gt, pred, average_over_objects=False, nb_objects=3)
    assert np.abs(ours.j - ref_j).max() <= TOL
    assert np.abs(ours.f - ref_f).max() <= TOL
    np.testing.assert_array_equal(ours.j[:, 2], 1.0)
    # per-frame averages as the robot ranks frames
    ref_mean = di.metrics.batched_jaccard(gt, pred, nb_objects=3)
    assert np.abs(ours.j.mean(axis=1) - ref_mean).max() <= TOL


@pytest.mark.parametrize("bound_th", [0.004, 0.02, 3])
def test_f_agrees_for_other_thresholds_and_image_sizes(real, di, bound_th):
    gt = real["tennis"][::10, 100:300, 300:660]              # 200x360 crop: another diagonal
    pred = dilate(shift(gt, 2, -3), 2).astype(np.int64)
    ours = f_measure(pred, gt, bound_th=bound_th)
    ref = di.metrics.batched_f_measure(gt, pred, bound_th=bound_th, nb_objects=1)
    assert np.abs(ours - ref).max() <= TOL
    assert 0.0 < ours.min() < 1.0


def test_auc_and_metric_at_60_agree_with_the_evaluation_summary(real, di):
    """Score a made-up interactive run on bear with our metrics, feed it to the benchmark's
    own report and summary, and rebuild its curve, AUC and J&F@60s independently."""
    service_cls = di.evaluation.service.EvaluationService
    storage = di.storage.LocalStorage()
    gt = real["bear"][::3]
    timings = [25.0, 20.0, 30.0, 12.0]
    jf_per_interaction = []
    for interaction, (erosion, timing) in enumerate(zip([15, 8, 3, 1], timings), start=1):
        pred = erode(gt, erosion).astype(np.int64)
        scores = evaluate_masks(pred, gt, object_ids=[1])
        jf_per_interaction.append(scores.jf_mean)
        frames = np.arange(len(gt))
        for scribble_idx in (1, 2, 3):                  # bear has 3 scribble samples in DAVIS
            storage.store_interactions_results(
                "user", "session", "bear", scribble_idx, interaction, timing,
                [1] * len(gt), frames.tolist(), scores.j[:, 0].tolist(), scores.f[:, 0].tolist(),
            )
    assert np.all(np.diff(jf_per_interaction) > 0)

    service = object.__new__(service_cls)               # no dataset root needed to summarise
    service.sequences = ["bear"]
    service.max_t, service.max_i = 120, 4
    service.avg_nb_objects = 1.0
    service.metric_to_optimize = "J_AND_F"
    service.time_threshold = 60
    summary = service.summarize_report(storage.get_report(session_id="session"))

    times = np.concatenate([[0.0], np.cumsum(timings), [1.0 * 120]])  # budget: objects * max_t
    values = np.concatenate([[0.0], jf_per_interaction, jf_per_interaction[-1:]])
    np.testing.assert_allclose(summary["curve"]["time"], times, atol=TOL)
    np.testing.assert_allclose(summary["curve"]["J_AND_F"], values, atol=TOL)
    assert abs(auc(times, values) - summary["auc"]) <= TOL
    assert abs(metric_at(times, values, 60) - summary["metric_at_threshold"]["J_AND_F"]) <= TOL
    # and straight from the benchmark's own curve
    curve_t, curve_v = summary["curve"]["time"], summary["curve"]["J_AND_F"]
    assert abs(auc(curve_t, curve_v) - summary["auc"]) <= TOL
    assert abs(metric_at(curve_t, curve_v, 60) - summary["metric_at_threshold"]["J_AND_F"]) <= TOL
    assert 0.0 < summary["auc"] < 1.0


# --------------------------------------------------------------------------- known answers

def test_identical_masks_score_one_and_disjoint_masks_zero():
    a = square(60, 80, 10, 10, 20)
    b = square(60, 80, 35, 50, 20)
    assert jaccard(a, a) == 1.0 and f_measure(a, a) == 1.0
    assert jaccard(a, b) == 0.0
    assert f_measure(a, b, bound_th=2) == 0.0


def test_empty_cases_follow_davis():
    empty = np.zeros((30, 40), dtype=bool)
    full = square(30, 40, 5, 5, 10)
    assert jaccard(empty, empty) == 1.0 and f_measure(empty, empty) == 1.0
    assert jaccard(empty, full) == 0.0 and f_measure(empty, full) == 0.0
    assert jaccard(full, empty) == 0.0 and f_measure(full, empty) == 0.0


def test_jaccard_of_shifted_square_is_overlap_over_union():
    a = square(50, 50, 10, 10, 10)
    b = square(50, 50, 10, 11, 10)                      # one column to the right
    assert jaccard(a, b) == pytest.approx(90 / 110, abs=1e-12)


def test_boundary_map_of_a_square_is_a_ring_offset_towards_the_origin():
    mask = square(10, 10, 2, 2, 4)                      # rows and columns 2..5
    ring = np.zeros((10, 10), dtype=bool)
    ring[1:6, 1:6] = True
    ring[2:5, 2:5] = False                              # 5x5 ring, rows/cols 1..5: 16 pixels
    np.testing.assert_array_equal(boundary_map(mask), ring)


def test_boundary_map_border_rule():
    full = np.ones((5, 6), dtype=bool)
    assert not boundary_map(full).any()                 # a full frame has no boundary
    bottom = np.zeros((5, 6), dtype=bool)
    bottom[-1, 2:] = True                               # on the last row: only left/right changes
    expected = np.zeros((5, 6), dtype=bool)
    expected[-2, 1:] = True                             # the row above sees it below
    expected[-1, 1] = True                              # change to the right on the last row
    np.testing.assert_array_equal(boundary_map(bottom), expected)


def test_f_with_a_spurious_blob_has_precision_one_half():
    gt = square(100, 100, 10, 10, 10)
    pred = gt | square(100, 100, 70, 70, 10)            # same-size blob far away
    # boundary of each square: 4 * 10 = 40 pixels; precision 40/80, recall 1 -> F = 2/3
    assert boundary_map(gt).sum() == 40
    assert f_measure(pred, gt) == pytest.approx(2 / 3, abs=1e-12)


def test_f_tolerance_is_ceil_of_fraction_of_diagonal():
    assert boundary_radius((480, 854)) == 8.0           # DAVIS 480p: ceil(7.84)
    assert boundary_radius((480, 854), 5) == 5.0
    gt = square(480, 854, 100, 100, 200)
    assert f_measure(shift(gt, 0, 8), gt) == 1.0        # within 8 px: every pixel matches
    assert f_measure(shift(gt, 0, 9), gt) < 1.0


def test_scores_dataclass_means(real):
    gt = real["dog-agility"]
    pred = shift(gt, 6, 0)
    scores = evaluate_masks(pred, gt)
    assert isinstance(scores, MaskScores) and scores.object_ids == (1,)
    assert scores.j.shape == scores.f.shape == scores.jf.shape == (len(gt), 1)
    assert scores.jf_mean == pytest.approx((scores.j.mean() + scores.f.mean()) / 2)
    assert scores.per_object[1]["J&F"] == pytest.approx(scores.jf_mean)
    np.testing.assert_allclose(scores.per_frame, scores.jf[:, 0])
    summary = scores.summary()
    assert summary["n_frames"] == len(gt) and summary["per_object"]["1"]["J"] == scores.j_mean
    assert 0.3 < scores.j_mean < 0.99


def test_auc_and_metric_at_by_hand():
    assert auc([0, 10, 20], [0.0, 1.0, 1.0]) == pytest.approx((5 + 10) / 20)
    assert auc([0, 0], [0.5, 0.7]) == 0.0
    assert metric_at([0, 40, 80], [0.0, 0.4, 0.8], 60) == pytest.approx(0.6)
    assert metric_at([0, 40, 80], [0.0, 0.4, 0.8], 100) == pytest.approx(0.8)


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize(
    "pred, gt, message",
    [
        (np.zeros((2, 5, 6), int), np.zeros((2, 5, 7), int), "shape"),
        (np.zeros((2, 5, 6), float), np.ones((2, 5, 6), int), "integer"),
        (-np.ones((2, 5, 6), int), np.ones((2, 5, 6), int), "negative"),
        (np.ones((2, 5, 6), int), np.zeros((2, 5, 6), int), "no object"),
        (np.ones((1, 2, 5, 6), int), np.ones((1, 2, 5, 6), int), r"\(T, H, W\)"),
    ],
)
def test_evaluate_masks_rejects_bad_input(pred, gt, message):
    with pytest.raises(BadInputError, match=message):
        evaluate_masks(pred, gt)


@pytest.mark.parametrize(
    "object_ids, message", [([0], "> 0"), ([1, 1], "duplicates"), ([1.5], "integers"), ([], "empty")]
)
def test_evaluate_masks_rejects_bad_object_ids(object_ids, message):
    gt = np.ones((1, 4, 4), int)
    with pytest.raises(BadInputError, match=message):
        evaluate_masks(gt, gt, object_ids=object_ids)


def test_single_object_functions_reject_bad_input():
    a = np.zeros((5, 6), bool)
    with pytest.raises(BadInputError, match="shape"):
        jaccard(a, np.zeros((5, 7), bool))
    with pytest.raises(BadInputError, match="dtype float"):
        f_measure(a.astype(float), a)
    with pytest.raises(BadInputError, match="bound_th"):
        f_measure(a, a, bound_th=-0.1)
    with pytest.raises(BadInputError, match="whole number"):
        f_measure(a, a, bound_th=2.5)


@pytest.mark.parametrize(
    "times, values, message",
    [
        ([0, 1, 2], [0, 1], "entries"),
        ([0, 2, 1], [0, 1, 1], "non-decreasing"),
        ([0, np.nan], [0, 1], "finite"),
        ([], [], "at least one"),
    ],
)
def test_curves_reject_bad_input(times, values, message):
    with pytest.raises(BadInputError, match=message):
        auc(times, values)
    with pytest.raises(BadInputError, match=message):
        metric_at(times, values)
