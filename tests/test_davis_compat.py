"""The davisinteractive compatibility layer: each repair proven on real data, offline."""
from __future__ import annotations

import shutil
import sys
import urllib.request

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from simwidgets.evaluation.davis_compat import (
    ROBOT_SEED,
    check_davis_root,
    import_davisinteractive,
    offline_davis,
    stage_davis_root,
)
from simwidgets.errors import BadInputError
from simwidgets.evaluation.metrics import auc, evaluate_masks, metric_at
from simwidgets.video import read_mask, sample_root


@pytest.fixture(scope="module")
def di():
    try:
        return import_davisinteractive()
    except ImportError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
def bear():
    """bear's ground truth as object 1, ``(82, 480, 854)`` uint8 (frames not decoded)."""
    paths = sorted((sample_root() / "Annotations" / "480p" / "bear").glob("*.png"))
    return (np.stack([read_mask(p) for p in paths]) > 0).astype(np.uint8)


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """bear (scribble 001 only) and tennis (its only scribble, 003) staged for davisinteractive."""
    root = tmp_path_factory.mktemp("davis") / "DAVIS"
    mapping = stage_davis_root(sample_root(), root, ["bear", "tennis"], scribbles={"bear": ["001"]})
    return root, mapping


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt fails the test loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"davisinteractive tried to download {args[:1]}")

    import six.moves.urllib.request as six_request  # what davisinteractive calls

    for module in (urllib.request, six_request):
        monkeypatch.setattr(module, "urlretrieve", refuse)
        monkeypatch.setattr(module, "urlopen", refuse)


def box_prediction(gt):
    pred = np.zeros_like(gt)
    pred[:, 100:300, 200:500] = 1
    return pred


# --------------------------------------------------------------------------- import

def test_import_is_idempotent(di):
    again = import_davisinteractive()
    assert again is di
    service = di.evaluation.service.EvaluationService
    # wrapped once, not once per call
    assert not hasattr(service.summarize_report.__wrapped__, "__wrapped__")
    assert not hasattr(di.robot.interactive_robot.medial_axis.__wrapped__, "__wrapped__")


def test_missing_package_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "davisinteractive", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"scripts/setup\.sh --test"):
        import_davisinteractive()


def test_numpy_aliases_make_the_benchmark_metrics_run(di, bear):
    assert np.int is int and np.float is float
    assert np.dtype(np.bool) == np.dtype(bool)
    assert np.trapz([1.0, 1.0], [0.0, 2.0]) == 2.0
    pred = box_prediction(bear[:5])
    j = di.metrics.batched_jaccard(bear[:5], pred)        # uses np.int and np.float
    assert np.allclose(j, evaluate_masks(pred, bear[:5]).j[:, 0])


# --------------------------------------------------------------------------- robot

def test_networkx_alias_and_robot_scribbles_are_deterministic(di, bear):
    assert nx.from_scipy_sparse_matrix is nx.from_scipy_sparse_array
    robot = di.robot.InteractiveScribblesRobot()
    gt = bear[::4]
    pred = box_prediction(gt)
    first = robot.interact("bear", pred, gt, nb_objects=1)
    second = robot.interact("bear", pred, gt, nb_objects=1)
    frames = [i for i, strokes in enumerate(first["scribbles"]) if strokes]
    assert len(frames) == 1                                # the robot scribbles on one frame
    strokes = first["scribbles"][frames[0]]
    assert {s["object_id"] for s in strokes} == {0, 1}     # background and the bear
    assert [s["path"] for s in strokes] == [s["path"] for s in second["scribbles"][frames[0]]]
    assert all(len(s["path"]) == 1000 for s in strokes)


def test_the_robot_needed_a_fixed_seed(di, bear):
    """The skeleton of a real error mask has ties: two seeds give two skeletons, so an
    unseeded medial_axis (a fresh generator each call) varied from run to run."""
    from skimage.morphology import medial_axis

    pred = box_prediction(bear)
    error = np.pad((bear[0] == 1) & (pred[0] != 1), 1)
    assert not np.array_equal(medial_axis(error, rng=ROBOT_SEED), medial_axis(error, rng=ROBOT_SEED + 1))
    patched = di.robot.interactive_robot.medial_axis
    np.testing.assert_array_equal(patched(error), medial_axis(error, rng=ROBOT_SEED))


# --------------------------------------------------------------------------- summary

def test_summary_works_on_pandas_2_reports(di, bear):
    """The report the local storage builds has object columns; the summary's
    groupby().mean() fails on them with pandas >= 2 unless our wrapper casts them."""
    storage = di.storage.LocalStorage()
    gt = bear[::4]
    scores = [evaluate_masks(box_prediction(gt) * (k < 2) + gt * (k >= 2), gt) for k in range(3)]
    for interaction, score in enumerate(scores, start=1):
        for scribble_idx in (1, 2, 3):
            storage.store_interactions_results(
                "me", "s1", "bear", scribble_idx, interaction, 10.0 * interaction,
                [1] * len(gt), list(range(len(gt))), score.j[:, 0].tolist(), score.f[:, 0].tolist(),
            )
    report = storage.get_report(session_id="s1")
    assert report["jaccard"].dtype == object and report["session_id"].dtype == object
    service_cls = di.evaluation.service.EvaluationService
    service = object.__new__(service_cls)
    service.sequences, service.max_t, service.max_i = ["bear"], None, 3
    service.metric_to_optimize, service.time_threshold, service.avg_nb_objects = "J", 60, 1.0
    if int(pd.__version__.split(".")[0]) >= 2:
        with pytest.raises(TypeError, match="agg function failed"):
            service_cls.summarize_report.__wrapped__(service, report)
    summary = service.summarize_report(report)
    # budget without max_t: max interactions x longest interaction = 3 x 30 s
    times = [0.0, 10.0, 30.0, 60.0, 90.0]
    values = [0.0] + [s.j_mean for s in scores] + [scores[-1].j_mean]
    np.testing.assert_allclose(summary["curve"]["time"], times)
    np.testing.assert_allclose(summary["curve"]["J"], values, atol=1e-9)
    assert summary["auc"] == pytest.approx(auc(times, values), abs=1e-9)
    assert summary["metric_at_threshold"]["J"] == pytest.approx(metric_at(times, values, 60), abs=1e-9)
    assert values[-1] == 1.0 and 0.0 < values[1] < 0.5


# --------------------------------------------------------------------------- offline roots

def test_shipped_sample_is_not_usable_as_is_and_says_why():
    # data/davis keeps DAVIS 2016 binary masks (and one RGB export), read raw by davisinteractive
    with pytest.raises(BadInputError, match="stage_davis_root"):
        check_davis_root(sample_root(), ["bear"])


def test_staged_root_has_what_davisinteractive_needs(staged):
    root, mapping = staged
    assert mapping == {"bear": {1: "001"}, "tennis": {1: "003"}}
    info = check_davis_root(root, ["bear", "tennis"])
    assert info["bear"].num_frames == 82 and info["tennis"].num_frames == 70
    assert info["tennis"].num_objects == 1 and info["tennis"].size == (480, 854)
    assert info["bear"].num_scribbles == 1 and info["bear"].has_images
    assert (root / "Scribbles" / "tennis" / "001.json").read_bytes() == (
        sample_root() / "Scribbles" / "tennis" / "003.json"
    ).read_bytes()


def test_offline_session_runs_and_restores_metadata(di, staged, bear, no_network, tmp_path):
    root, _ = staged
    davis = di.dataset.Davis
    n_train, tennis_objects = len(davis.sets["train"]), davis.dataset["tennis"]["num_objects"]
    submitted = 0
    with offline_davis(root, ["bear"]) as info:
        assert davis.sets["train"] == ["bear"] and davis.dataset["bear"]["num_scribbles"] == 1
        with di.session.DavisInteractiveSession(
            davis_root=str(root), subset="train", max_nb_interactions=1, report_save_dir=str(tmp_path)
        ) as session:
            while session.next():
                sequence, scribbles, _ = session.get_scribbles()
                assert sequence == "bear" and len(scribbles["scribbles"]) == info["bear"].num_frames
                session.submit_masks(box_prediction(bear))
                submitted += 1
            summary = session.get_global_summary()
    assert submitted == 1
    expected = evaluate_masks(box_prediction(bear), bear).jf_mean
    assert summary["curve"]["J_AND_F"][1] == pytest.approx(expected, abs=1e-6)
    assert len(davis.sets["train"]) == n_train
    assert davis.dataset["tennis"]["num_objects"] == tennis_objects
    assert davis.dataset["bear"]["num_scribbles"] == 3


def test_missing_files_raise_instead_of_downloading(di, staged, no_network, tmp_path):
    root, _ = staged
    # the package's own metadata says bear has 3 scribble files; only 001 is staged
    with pytest.raises(BadInputError, match="002.json"):
        di.dataset.Davis(davis_root=str(root)).check_files(["bear"])
    broken = tmp_path / "DAVIS"
    shutil.copytree(root, broken, symlinks=True)
    (broken / "Annotations" / "480p" / "bear" / "00040.png").unlink()
    with pytest.raises(BadInputError, match="without gaps.*00040.png was expected"):
        check_davis_root(broken, ["bear"])
    with pytest.raises(BadInputError, match="does not exist"):
        check_davis_root(tmp_path / "nowhere", ["bear"])
    with pytest.raises(BadInputError, match="no annotations"):
        check_davis_root(broken, ["dog-agility"])
