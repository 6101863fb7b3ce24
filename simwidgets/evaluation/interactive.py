"""The DAVIS interactive protocol, offline: scribble, predict, let the robot correct, repeat.

The protocol of the DAVIS 2018 interactive challenge (Caelles et al., arXiv:1803.00557),
run with the benchmark's own code (``davisinteractive``: its session, evaluation service
and scribble robot, in-process with ``host='localhost'``, made to work offline and
deterministic by :mod:`simwidgets.evaluation.davis_compat`).  For every sequence:

1. the method gets a first scribble: the official human one where the root has one
   (``Scribbles/<seq>/*.json``; the first by name unless ``scribble`` says otherwise),
   otherwise the one the robot draws against an empty prediction (an object scribble on
   the first frame where the object is);
2. it predicts masks for every frame (an :class:`~simwidgets.session.InteractiveSession`,
   embeddings cached across interactions); davisinteractive times the prediction (from
   handing out the scribbles to receiving the masks) and scores J and F on every frame;
3. the robot picks the worst frame (lowest J&F among frames not yet annotated; lowest J
   with ``metric="J"``, the 2018 challenge's rule) and scribbles on its false negatives
   (object ids) and false positives (background, 0);
4. 2-3 repeat, up to ``interactions`` times or until the time budget (``max_time`` per
   object, the challenge's 30 s per interaction by default) runs out.

The benchmark then draws J&F against accumulated time (averaged over samples), and reports
its area divided by the time budget (**AUC**) and its value at 60 s (**J&F@60s**).  Both
are computed by ``EvaluationService.summarize_report``, for all sequences together (the
``mean``) and for each sequence alone (the same function, given one sequence).  The same
function also scores the same predictions in J alone (``AUC_J``, ``J@60s``), as the 2018
challenge did (davisinteractive 1.0 and the 2019 challenge score J&F).

Two details matter on DAVIS 2016 roots (binary masks): the annotations are staged as 0/1
(davisinteractive reads pixel values as ids) and a human scribble naming more objects
than the ground truth has (tennis/003: player 1, racket 2, one binary mask) has its ids
folded into object 1, which is what the mask calls them.

Typical use::

    from simwidgets.evaluation.interactive import evaluate_interactive
    results = evaluate_interactive("data/davis", ["bear", "tennis"], model="default")
    results["mean"]            # {"AUC": ..., "J&F@60s": ..., "J&F": ..., ...}
    results["sequences"]["bear"]["interactions"]   # the per-interaction curve
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import BadInputError

__all__ = ["evaluate_interactive", "CHALLENGE_SECONDS_PER_INTERACTION", "MAX_INTERACTIONS"]

#: the DAVIS 2018 challenge's time budget: 30 s per object for each interaction
CHALLENGE_SECONDS_PER_INTERACTION = 30.0
#: davisinteractive silently caps a session at 16 interactions
MAX_INTERACTIONS = 16
#: our metric names -> davisinteractive's ``metric_to_optimize``
_METRICS = {"J&F": "J_AND_F", "J": "J"}
_SUBSET = "train"  # the local connector's subsets are train/val/trainval; offline_davis fills it


def _robot(di):
    from davisinteractive.evaluation.service import ROBOT_DEFAULT_PARAMETERS

    return di.robot.InteractiveScribblesRobot(**ROBOT_DEFAULT_PARAMETERS)


def _fold_object_ids(scribble: dict, n_objects: int) -> tuple[dict, bool]:
    """Map stroke ids above ``n_objects`` to object 1 when the ground truth is binary."""
    ids = {s["object_id"] for strokes in scribble["scribbles"] for s in strokes}
    extra = sorted(i for i in ids if i > n_objects)
    if not extra:
        return scribble, False
    if n_objects != 1:
        raise BadInputError(
            f"scribble of {scribble.get('sequence')!r} names objects {extra} but the ground "
            f"truth has only {n_objects}; cannot tell which object they are"
        )
    for strokes in scribble["scribbles"]:
        for stroke in strokes:
            if stroke["object_id"] > 1:
                stroke["object_id"] = 1
    return scribble, True


def _stage(davis_root: Path, stage: Path, name: str, choice: str | None, di) -> dict:
    """Stage one sequence for davisinteractive; returns how its first scribble was made."""
    from ..export import write_masks
    from .davis_compat import stage_davis_root
    from ..video import load_davis_sequence

    video = load_davis_sequence(davis_root, name, lazy=True)
    if video.masks is None:
        raise BadInputError(f"sequence {name!r} has no ground-truth masks (Annotations/480p/{name}) to evaluate against")
    n_objects = int(video.masks.max())
    if n_objects == 0:
        raise BadInputError(f"sequence {name!r}: the ground truth holds no object")
    available = sorted(video.scribbles)
    if choice is not None and choice not in available:
        raise BadInputError(f"sequence {name!r} has no scribble file {choice}.json (available: {available or 'none'})")
    scribble_file = stage / "Scribbles" / name / "001.json"
    if available:
        stem = choice or available[0]
        stage_davis_root(davis_root, stage, [name], scribbles={name: [stem]})
        data, folded = _fold_object_ids(json.loads(scribble_file.read_text()), n_objects)
        if folded:
            scribble_file.write_text(json.dumps(data))
        return {"start": "human", "scribble": stem, "ids_folded": folded, "n_objects": n_objects,
                "n_frames": video.n_frames}
    write_masks(video.masks, stage / "Annotations" / "480p" / name)
    first = _robot(di).interact(name, np.zeros_like(video.masks), video.masks, nb_objects=n_objects)
    scribble_file.parent.mkdir(parents=True, exist_ok=True)
    scribble_file.write_text(json.dumps(first))
    return {"start": "robot", "scribble": None, "ids_folded": False, "n_objects": n_objects,
            "n_frames": video.n_frames}


def _summarize(service, report, sequences: Sequence[str]) -> dict:
    """davisinteractive's summary restricted to ``sequences`` (its own code does the maths),
    scored in J&F (``AUC``, ``J&F@60s``) and in J alone (``AUC_J``, ``J@60s``).  The
    curve's times do not depend on the metric: one ``time`` list, one list per metric."""
    from davisinteractive.dataset import Davis

    saved = service.sequences, service.avg_nb_objects, service.metric_to_optimize
    summaries = {}
    try:
        service.sequences = list(sequences)
        service.avg_nb_objects = float(np.mean([Davis.dataset[s]["num_objects"] for s in sequences]))
        rows = report[report["sequence"].isin(list(sequences))]
        for ours, theirs in _METRICS.items():
            service.metric_to_optimize = theirs
            summaries[ours] = service.summarize_report(rows.copy())
    finally:
        service.sequences, service.avg_nb_objects, service.metric_to_optimize = saved
    jf, j = summaries["J&F"], summaries["J"]
    return {
        "AUC": float(jf["auc"]),
        "J&F@60s": float(jf["metric_at_threshold"]["J_AND_F"]),
        "AUC_J": float(j["auc"]),
        "J@60s": float(j["metric_at_threshold"]["J"]),
        "curve": {"time": [float(t) for t in jf["curve"]["time"]],
                  "J&F": [float(v) for v in jf["curve"]["J_AND_F"]],
                  "J": [float(v) for v in j["curve"]["J"]]},
    }


def _frame_scores(report, name: str, interaction: int) -> dict[int, tuple[float, float, float]]:
    """``{frame: (J&F, J, F)}`` (means over objects) of one interaction's prediction."""
    part = report[(report["sequence"] == name) & (report["interaction"] == interaction)]
    means = part.groupby("frame")[["j_and_f", "jaccard", "contour"]].mean()
    return {int(f): (float(r.j_and_f), float(r.jaccard), float(r.contour)) for f, r in means.iterrows()}


def _corrected_frames(report, name: str, interactions: list[dict]) -> list[dict]:
    """For each correction (interaction 2 on): the frames the robot scribbled on, with
    their J&F in the prediction before the correction and in the one after it (``before``,
    ``after``), and J and F apart (``J_before``...: a correction can raise J and lower F, or
    the other way).  The corrected frame's own score should never fall: the user drew on
    what was wrong."""
    rows = []
    for previous, current in zip(interactions, interactions[1:]):
        before = _frame_scores(report, name, previous["interaction"])
        after = _frame_scores(report, name, current["interaction"])
        for frame in current.get("scribbled_frames", []):
            if frame in before and frame in after:
                (jf0, j0, f0), (jf1, j1, f1) = before[frame], after[frame]
                rows.append({"interaction": current["interaction"], "frame": int(frame), "before": jf0,
                             "after": jf1, "J_before": j0, "J_after": j1, "F_before": f0, "F_after": f1})
    return rows


def _interaction_rows(report, name: str) -> list[dict]:
    """Per interaction: J, F, J&F (mean over frames, then objects) and davisinteractive's timing."""
    rows = []
    seq = report[report["sequence"] == name]
    for interaction, part in seq.groupby("interaction"):
        per_object = part.groupby("object_id")[["jaccard", "contour", "j_and_f", "timing"]].mean()
        rows.append({
            "interaction": int(interaction),
            "J": float(per_object["jaccard"].mean()),
            "F": float(per_object["contour"].mean()),
            "J&F": float(per_object["j_and_f"].mean()),
            "seconds": float(per_object["timing"].mean()),
        })
    return rows


def evaluate_interactive(
    davis_root,
    sequences: Sequence[str] | None = None,
    model="default",
    config=None,
    device=None,
    interactions: int = 8,
    max_time: float | str | None = "challenge",
    save_masks=None,
    progress: Callable[[str, dict], None] | None = None,
    scribble: Mapping[str, str] | None = None,
    keep_scribbles: bool = False,
    work_dir=None,
    adapt: Mapping | None = None,
    metric: str = "J&F",
    on_prediction: Callable[[str, int], None] | None = None,
) -> dict:
    """Run the DAVIS interactive protocol on sequences of a DAVIS-layout root.

    Parameters
    ----------
    davis_root : folder with ``JPEGImages/480p/<seq>``, ``Annotations/480p/<seq>`` and
        optionally ``Scribbles/<seq>/*.json`` (e.g. ``data/davis``); never modified
    sequences : names (default: every sequence of the root)
    model : EmbeddingModel or name/path for :func:`simwidgets.models.load_model`
    config : :class:`~simwidgets.transfer.TransferConfig` (None: defaults)
    device : compute device (automatic when None)
    interactions : robot rounds per sequence, 1..16 (the challenge used 8)
    max_time : seconds per object for the whole sample; ``"challenge"`` (default) is
        30 s x ``interactions``; ``None`` means no time limit (the AUC is then normalised
        by ``interactions`` x the slowest prediction, davisinteractive's rule)
    save_masks : folder; the final masks go to ``<folder>/<seq>/%05d.png`` (DAVIS palette)
    progress : called as ``progress(name, row)`` when a sequence is done
    on_prediction : called as ``on_prediction(name, k)`` after the ``k``-th prediction of
        a sequence is submitted (``k`` counts from 1; a sequence gives at most
        ``interactions`` predictions, fewer when its time budget runs out, and the last
        one may arrive after the budget: davisinteractive then does not score it)
    scribble : ``{sequence: stem}`` choosing the human scribble file (default: the first)
    keep_scribbles : also return every scribble given to the method (DAVIS dicts)
    work_dir : where to stage the root and write davisinteractive's CSV reports
        (default: a temporary folder, removed afterwards)
    adapt : test-time adaptation: ``None`` (off) or keyword arguments for
        :func:`simwidgets.training.adapt_to_references` (``{}`` for its defaults).  On each
        sequence's first interaction a copy of the model is fine-tuned on the first
        scribble, inside the timed prediction, and that copy embeds the video; later
        interactions reuse it (adapting again would mean embedding again)
    metric : which metric the robot minimises to choose the frame it corrects:
        ``"J&F"`` (davisinteractive 1.0's default, the 2019 challenge) or ``"J"`` (the
        2018 challenge).  Either way every result is scored both ways

    Returns
    -------
    ``{"sequences": {name: row}, "mean": {...}, "curve": {...}, "settings": {...}}``.  A
    row holds the final ``J``, ``F``, ``J&F``, the sequence's ``AUC`` and ``J&F@60s`` (the
    curve scored in J&F), ``AUC_J`` and ``J@60s`` (the same curve scored in J alone, as
    the 2018 challenge did), ``curve`` (davisinteractive's points: ``time`` with ``J&F``
    and ``J``), ``interactions`` (one entry per
    interaction: J, F, J&F, ``seconds`` as davisinteractive timed it, ``predict_seconds``
    of the propagation alone, ``scribbled_frames`` the frames whose scribbles it used:
    the human's, then each time the robot's worst frame), ``start`` (``"human"``
    or ``"robot"``), ``adapted`` (the test-time adaptation's steps, seconds and losses, or
    None), ``n_frames``, ``n_objects`` and ``seconds_per_frame`` (mean
    prediction time per frame).  ``mean`` holds davisinteractive's summary over all
    sequences (``AUC``, ``J&F@60s``, ``AUC_J``, ``J@60s``) and the means of the final J,
    F, J&F and of ``seconds_per_frame`` (all floats); ``settings`` the run's settings,
    ``metric`` among them.
    """
    from .davis_compat import import_davisinteractive, offline_davis
    from ..models import load_model
    from ..export import write_masks
    from ..scribbles import Scribbles
    from ..session import InteractiveSession
    from ..video import list_sequences, load_davis_sequence

    di = import_davisinteractive()
    davis_root = Path(davis_root)
    if not davis_root.is_dir():
        raise BadInputError(f"DAVIS root {davis_root} does not exist")
    names = list(sequences) if sequences else list_sequences(davis_root)
    if not names:
        raise BadInputError(f"no sequences to evaluate in {davis_root}")
    if len(set(names)) != len(names):
        raise BadInputError(f"sequences named twice: {names}")
    if isinstance(interactions, bool) or not isinstance(interactions, (int, np.integer)) or not (
        1 <= interactions <= MAX_INTERACTIONS
    ):
        raise BadInputError(
            f"interactions must be an integer in 1..{MAX_INTERACTIONS} (davisinteractive's cap); got {interactions!r}"
        )
    if max_time == "challenge":
        max_time = CHALLENGE_SECONDS_PER_INTERACTION * interactions
    elif max_time is not None and not (isinstance(max_time, (int, float)) and max_time > 0):
        raise BadInputError(f"max_time must be positive seconds, 'challenge' or None; got {max_time!r}")
    if metric not in _METRICS:
        raise BadInputError(f"metric must be one of {sorted(_METRICS)}; got {metric!r}")
    scribble = dict(scribble or {})
    unknown = sorted(set(scribble) - set(names))
    if unknown:
        raise BadInputError(f"scribble choices given for sequences not evaluated: {unknown}")
    model = load_model(model)
    if adapt is not None:
        from ..training.adapt import adapt_to_references, checked_adapt_options

        adapt = checked_adapt_options(adapt)

    owned = tempfile.TemporaryDirectory(prefix="simwidgets-davis-") if work_dir is None else None
    work = Path(owned.name if owned else work_dir)
    stage = work / "DAVIS"
    try:
        starts = {name: _stage(davis_root, stage, name, scribble.get(name), di) for name in names}
        runs: dict[str, dict] = {}
        with offline_davis(stage, names, subset=_SUBSET):
            with di.session.DavisInteractiveSession(
                host="localhost", davis_root=str(stage), subset=_SUBSET, shuffle=False,
                max_time=max_time, max_nb_interactions=int(interactions), report_save_dir=str(work / "reports"),
                metric_to_optimize=_METRICS[metric],
            ) as davis:
                current = None
                rows = {}

                def close(name):
                    """Save the masks, score the sequence (progress), free the embeddings."""
                    run = runs[name]
                    session = run.pop("session")
                    run["frames"] = [record.frames for record in session.history]
                    if save_masks is not None and session.result is not None:
                        write_masks(session.result.masks, Path(save_masks) / name)
                    rows[name] = _sequence_row(name, run, davis.get_report(), davis.connector.service,
                                               starts[name], keep_scribbles)
                    if progress is not None:
                        progress(name, rows[name])

                while davis.next():
                    name, scribbles, new_sample = davis.get_scribbles(only_last=True)
                    if new_sample:
                        if current is not None:
                            close(current)
                        current = name
                        video = load_davis_sequence(davis_root, name, lazy=True)
                        runs[name] = {"log": [], "scribbles": [], "adapted": None}
                        sequence_model = model
                        if adapt is not None:
                            first = Scribbles.from_dict(scribbles, n_frames=video.n_frames)
                            sequence_model, info = adapt_to_references(model, video.frames, first, device=device,
                                                                       config=config, **adapt)
                            runs[name]["adapted"] = {k: info[k] for k in ("steps", "seconds", "loss_first", "loss_last")}
                        runs[name]["session"] = InteractiveSession(video, model=sequence_model, config=config,
                                                                   device=device)
                    run = runs[current]
                    session = run["session"]
                    session.add_scribbles(scribbles)
                    result = session.propagate()
                    run["log"].append(session.history[-1].seconds)
                    if keep_scribbles:
                        run["scribbles"].append(scribbles)
                    davis.submit_masks(result.masks.astype(np.int64))
                    if on_prediction is not None:
                        on_prediction(current, len(run["log"]))
                if current is not None:
                    close(current)
                overall = _summarize(davis.connector.service, davis.get_report(), names)
                rows = {name: rows[name] for name in names}  # in the order asked
    finally:
        if owned is not None:
            owned.cleanup()

    final = ("J", "F", "J&F", "seconds_per_frame")
    mean = {k: overall[k] for k in ("AUC", "J&F@60s", "AUC_J", "J@60s")}
    mean.update({k: float(np.mean([r[k] for r in rows.values()])) for k in final})
    return {
        "sequences": rows,
        "mean": mean,
        "curve": overall["curve"],
        "settings": {
            "interactions": int(interactions),
            "max_time_per_object": max_time,
            "metric": metric,
            "robot_seed": _robot_seed(),
            "adapt": adapt,
            "davisinteractive": getattr(di, "__version__", "1.0.4"),
            "network_precision": _precision_name(model, device),
        },
    }


def _precision_name(model, device) -> str:
    """What the model's network ran in (hand-made features always run in float32)."""
    from ..device import autocast_dtype, pick_device, precision_name

    return precision_name(autocast_dtype(pick_device(device)) if getattr(model, "reduced_precision", False) else None)


def _robot_seed() -> int:
    from .davis_compat import ROBOT_SEED

    return ROBOT_SEED


def _sequence_row(name, run, report, service, start, keep_scribbles) -> dict:
    """One sequence's results: davisinteractive's per-interaction scores and summary."""
    interactions = _interaction_rows(report, name)
    predict = run["log"] if run else []
    frames = run["frames"] if run else []
    for i, row in enumerate(interactions):  # evaluated interactions are the first ones
        row["predict_seconds"] = predict[i] if i < len(predict) else None
        row["scribbled_frames"] = frames[i] if i < len(frames) else []
    corrected = _corrected_frames(report, name, interactions)
    summary = _summarize(service, report, [name])
    last = interactions[-1] if interactions else {"J": 0.0, "F": 0.0, "J&F": 0.0}
    n_frames = start["n_frames"]
    row = {
        "J": last["J"],
        "F": last["F"],
        "J&F": last["J&F"],
        "AUC": summary["AUC"],
        "J&F@60s": summary["J&F@60s"],
        "AUC_J": summary["AUC_J"],
        "J@60s": summary["J@60s"],
        "n_interactions": len(interactions),
        "n_frames": n_frames,
        "n_objects": start["n_objects"],
        "start": start["start"],
        "scribble": start["scribble"],
        "ids_folded": start["ids_folded"],
        "adapted": run["adapted"] if run else None,
        "seconds": float(sum(predict)),
        "seconds_per_frame": float(np.mean(predict) / n_frames) if predict else 0.0,
        "interactions": interactions,
        "corrected": corrected,
        "curve": summary["curve"],
    }
    if keep_scribbles:
        row["scribbles"] = run["scribbles"] if run else []
    return row
