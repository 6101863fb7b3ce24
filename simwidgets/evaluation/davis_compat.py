"""Run the official ``davisinteractive`` 1.0.4 package on today's Python stack, offline.

``davisinteractive`` is the DAVIS interactive benchmark's own code (evaluation service,
scribble robot, metrics).  simwidgets calls it as a reference: the tests check our
metrics against it, and the interactive protocol drives its robot and session.  It was
last released in 2019 and breaks on current numpy, networkx, pandas and scikit-image;
:func:`import_davisinteractive` imports it after repairing each break by
monkeypatching (nothing in site-packages is edited).  The fixes, and why:

1. **numpy aliases.**  The package uses ``np.int``, ``np.float`` and ``np.bool``
   (removed in numpy 1.24; ``np.bool`` came back in numpy 2) and ``np.trapz``
   (deprecated in numpy 2.0, absent from the installed 2.4; ``np.trapezoid`` replaces
   it).  Each alias is set on numpy
   only if missing, to the builtin type or ``np.trapezoid``: exactly what the names
   meant.  Must happen before the import because ``Davis.load_annotations`` evaluates
   ``dtype=np.int`` as a default argument.
2. **networkx.**  The robot builds its skeleton graph with
   ``nx.from_scipy_sparse_matrix``, removed in networkx 3.0;
   ``nx.from_scipy_sparse_array`` is the same function under its new name (same
   ``weight`` edge attribute) and is aliased to the old name if missing.
3. **pandas >= 2 summary.**  ``EvaluationService.summarize_report`` calls
   ``groupby(...).mean()`` on the session report, whose columns are all ``object``
   dtype (the report starts as an empty frame) and include the string ``session_id``;
   pandas 2 refuses ("agg function failed [how->mean,dtype->object]").  The method is
   wrapped: the report's numeric columns are cast to int/float and ``session_id`` is
   dropped (the original drops it right after the mean anyway), then the original runs.
4. **Deterministic robot.**  scikit-image >= 0.19 ``medial_axis`` breaks ties with a
   fresh random generator, so the robot's scribbles changed from run to run on the
   same masks.  The robot module's ``medial_axis`` is replaced by one that passes
   ``rng=ROBOT_SEED``; identical masks now give identical scribbles, which makes the
   interactive benchmark repeatable.
5. **Offline dataset.**  ``Davis.check_files`` (called when an evaluation service
   starts) downloads the full DAVIS 2017 scribbles or annotations zip into the root's
   *parent* folder whenever one expected file is missing.  Here it never downloads:
   a missing file raises :class:`~simwidgets.errors.BadInputError` naming it.

Known library bugs left as they are (the benchmark's behaviour is the reference):
``utils.scribbles.fuse_scribbles`` mutates its first argument, so after the first
interaction a session's accumulated scribbles hold the initial strokes twice (pass
copies when calling it yourself); ``scribbles2points`` returns (frame, x, y) columns
and scales wrongly on non-square images (use :mod:`simwidgets.scribbles` instead).

Running the benchmark locally on a DAVIS-layout root (e.g. the sample in ``data/davis``)
needs three more things, which :func:`stage_davis_root` and :func:`offline_davis` do:

* **indexed annotations**: ``Davis.load_annotations`` uses raw PNG values as object
  ids, so DAVIS 2016 binary masks (0/255) must be rewritten as 0/1;
* **scribble files numbered 001, 002, ...**: the service asks for exactly
  ``1..num_scribbles`` (tennis ships only ``003.json``);
* **metadata and subset**: the service evaluates every sequence of the chosen subset
  listed in the package's bundled ``davis.json`` (60 for ``train``) with that file's
  frame, object and scribble counts (DAVIS 2017 ones: tennis has 2 objects there).
  :func:`offline_davis` temporarily registers the local sequences with the counts found
  on disk and makes the subset hold just them.

Example::

    stage_davis_root("data/davis", tmp / "DAVIS", ["bear"])
    with offline_davis(tmp / "DAVIS", ["bear"]):
        di = import_davisinteractive()
        with di.session.DavisInteractiveSession(davis_root=str(tmp / "DAVIS"),
                subset="train", max_nb_interactions=8, report_save_dir=tmp) as sess:
            ...

``host='localhost'`` (the default) runs the evaluation service in-process; pass
``report_save_dir`` because the session writes CSV reports there (default: the
current directory).
"""
from __future__ import annotations

import functools
import importlib
import inspect
import json
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
from PIL import Image

from ..errors import BadInputError

__all__ = [
    "import_davisinteractive",
    "ROBOT_SEED",
    "DavisSequenceFiles",
    "check_davis_root",
    "stage_davis_root",
    "offline_davis",
]

ROBOT_SEED = 0
"""Seed given to ``medial_axis`` so the scribble robot is deterministic."""

RESOLUTION = "480p"
INSTALL_HINT = (
    "davisinteractive is not installed; it is only needed for the benchmark and its "
    "tests: run `bash scripts/setup.sh --test` (it installs davisinteractive==1.0.4 with "
    "--no-deps after its real dependencies, see README)"
)

_FIXED = "_simwidgets_fix"  # attribute marking functions this module installed


# --------------------------------------------------------------------------- the fixes

def _fix_numpy() -> None:
    for name, value in (("int", int), ("float", float), ("bool", bool)):
        if not hasattr(np, name):
            setattr(np, name, value)
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid


def _fix_networkx() -> None:
    import networkx as nx

    if not hasattr(nx, "from_scipy_sparse_matrix"):
        nx.from_scipy_sparse_matrix = nx.from_scipy_sparse_array


_REPORT_INTS = ("scribble_idx", "interaction", "object_id", "frame")
_REPORT_FLOATS = ("jaccard", "contour", "j_and_f", "timing")


def _numeric_report(df):
    """The session report with numeric dtypes and without the string ``session_id``."""
    df = df.drop(columns=["session_id"], errors="ignore").copy()
    for column in _REPORT_INTS:
        if column in df:
            df[column] = df[column].astype("int64")
    for column in _REPORT_FLOATS:
        if column in df:
            df[column] = df[column].astype("float64")
    return df


def _fix_summary(service_module: ModuleType) -> None:
    cls = service_module.EvaluationService
    original = cls.summarize_report
    if getattr(original, _FIXED, False):
        return

    @functools.wraps(original)
    def summarize_report(self, df):
        return original(self, _numeric_report(df))

    setattr(summarize_report, _FIXED, True)
    cls.summarize_report = summarize_report


def _fix_robot(robot_module: ModuleType) -> None:
    original = robot_module.medial_axis
    if getattr(original, _FIXED, False):
        return
    if "rng" not in inspect.signature(original).parameters:
        return  # scikit-image < 0.19 breaks ties deterministically already

    @functools.wraps(original)
    def medial_axis(image, mask=None, return_distance=False, *, rng=None):
        return original(image, mask, return_distance, rng=ROBOT_SEED if rng is None else rng)

    setattr(medial_axis, _FIXED, True)
    robot_module.medial_axis = medial_axis


def _fix_downloads(davis_module: ModuleType) -> None:
    cls = davis_module.Davis
    if getattr(cls.check_files, _FIXED, False):
        return

    def check_files(self, sequences):
        """Check the annotation and scribble files exist; never download (simwidgets fix)."""
        for seq in sequences:
            entry = cls.dataset[seq]
            needed = [
                Path(self.davis_root) / cls.SCRIBBLES_SUBDIR / seq / f"{i:03d}.json"
                for i in range(1, entry["num_scribbles"] + 1)
            ] + [
                Path(self.davis_root) / cls.ANNOTATIONS_SUBDIR / cls.RESOLUTION / seq / f"{i:05d}.png"
                for i in range(entry["num_frames"])
            ]
            missing = [p for p in needed if not p.exists()]
            if missing:
                raise BadInputError(
                    f"DAVIS root {self.davis_root} lacks {len(missing)} file(s) for sequence "
                    f"{seq!r}, e.g. {missing[0]}; davisinteractive would try to download the "
                    "whole DAVIS 2017 archive, simwidgets works offline instead: use "
                    "simwidgets.evaluation.davis_compat.offline_davis() with the local sequences"
                )
        return True

    def no_download(self):
        raise BadInputError(
            f"davisinteractive tried to download DAVIS files into {self.davis_root}; "
            "simwidgets works offline: check the root with check_davis_root()"
        )

    for function in (check_files, no_download):
        setattr(function, _FIXED, True)
    cls.check_files = check_files
    cls._download_scribbles = no_download
    cls._download_annotations = no_download


def import_davisinteractive() -> ModuleType:
    """Import ``davisinteractive`` with every fix in the module docstring applied.

    Idempotent and cheap after the first call.  The submodules used by simwidgets
    (``dataset``, ``metrics``, ``robot``, ``evaluation``, ``session``, ``utils``) are
    imported and reachable as attributes of the returned package.

    Raises
    ------
    ImportError
        If davisinteractive is not installed (the message says how to install it).
    """
    _fix_numpy()
    try:
        package = importlib.import_module("davisinteractive")
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    _fix_networkx()
    modules = {}
    for name in (
        "dataset.davis",
        "metrics",
        "robot.interactive_robot",
        "evaluation.service",
        "session",
        "utils.scribbles",
    ):
        modules[name] = importlib.import_module(f"davisinteractive.{name}")
    _fix_summary(modules["evaluation.service"])
    _fix_robot(modules["robot.interactive_robot"])
    _fix_downloads(modules["dataset.davis"])
    return package


# --------------------------------------------------------------------------- offline roots

@dataclass(frozen=True)
class DavisSequenceFiles:
    """What a DAVIS root holds for one sequence, in the form davisinteractive reads it.

    Attributes
    ----------
    name : sequence name
    num_frames : annotation files ``00000.png`` .. ``{num_frames-1:05d}.png``
    num_objects : the largest object id in the annotations (ids run 1..num_objects)
    size : ``(height, width)`` of the annotations
    num_scribbles : scribble files ``001.json`` .. ``{num_scribbles:03d}.json``
    has_images : whether ``JPEGImages/480p/<name>`` holds one JPEG per frame
    """

    name: str
    num_frames: int
    num_objects: int
    size: tuple[int, int]
    num_scribbles: int
    has_images: bool


def _check_sequence(root: Path, seq: str) -> DavisSequenceFiles:
    ann_dir = root / "Annotations" / RESOLUTION / seq
    if not ann_dir.is_dir():
        raise BadInputError(f"DAVIS root {root} has no annotations for sequence {seq!r} ({ann_dir} is missing)")
    names = sorted(p.name for p in ann_dir.glob("*.png"))
    expected = [f"{i:05d}.png" for i in range(len(names))]
    if not names:
        raise BadInputError(f"sequence {seq!r} has no annotation PNGs in {ann_dir}")
    if names != expected:
        first_bad = next(n for n, e in zip(names, expected) if n != e)
        raise BadInputError(
            f"annotations of {seq!r} must be numbered 00000.png, 00001.png, ... without gaps; "
            f"found {first_bad} where {expected[names.index(first_bad)]} was expected"
        )
    size = None
    max_id = 0
    for name in names:
        path = ann_dir / name
        try:
            with Image.open(path) as image:
                values = np.asarray(image)
        except OSError as error:
            raise BadInputError(f"cannot decode annotation {path}: {error}") from None
        if values.ndim != 2:
            raise BadInputError(
                f"annotation {path} is not a single-channel (indexed) PNG; davisinteractive "
                "reads pixel values as object ids: use stage_davis_root() to rewrite it"
            )
        if size is None:
            size = values.shape
        elif values.shape != size:
            raise BadInputError(f"annotation {path} is {values.shape[1]}x{values.shape[0]}, "
                                f"the first one is {size[1]}x{size[0]}")
        max_id = max(max_id, int(values.max()))
    if max_id == 255:
        raise BadInputError(
            f"annotations of {seq!r} hold the value 255: davisinteractive reads pixel values "
            "as object ids, so binary 0/255 masks (DAVIS 2016) must be rewritten as 0/1; "
            "use stage_davis_root()"
        )
    if max_id == 0:
        raise BadInputError(f"annotations of {seq!r} hold no object (only background)")

    scribble_dir = root / "Scribbles" / seq
    count = 0
    while (scribble_dir / f"{count + 1:03d}.json").is_file():
        count += 1
    if count == 0:
        found = sorted(p.name for p in scribble_dir.glob("*.json")) if scribble_dir.is_dir() else []
        raise BadInputError(
            f"sequence {seq!r} needs scribble files numbered from 001.json in {scribble_dir} "
            f"(found {found or 'none'}); stage_davis_root() renumbers them"
        )
    for i in range(1, count + 1):
        path = scribble_dir / f"{i:03d}.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise BadInputError(f"cannot read scribble file {path}: {error}") from None
        if not isinstance(data, dict) or data.get("sequence") != seq:
            raise BadInputError(f"scribble file {path} is not for sequence {seq!r}")
        frames = data.get("scribbles")
        if not isinstance(frames, list) or len(frames) != len(names):
            got = len(frames) if isinstance(frames, list) else "no"
            raise BadInputError(
                f"scribble file {path} has {got} frame lists but {seq!r} has {len(names)} frames"
            )
    image_dir = root / "JPEGImages" / RESOLUTION / seq
    has_images = all((image_dir / f"{i:05d}.jpg").is_file() for i in range(len(names)))
    return DavisSequenceFiles(
        name=seq,
        num_frames=len(names),
        num_objects=max_id,
        size=(int(size[0]), int(size[1])),
        num_scribbles=count,
        has_images=has_images,
    )


def check_davis_root(root: str | Path, sequences: Iterable[str]) -> dict[str, DavisSequenceFiles]:
    """Check that ``root`` holds what davisinteractive needs for ``sequences``, offline.

    Needed per sequence: ``Annotations/480p/<seq>/00000.png ...`` (every frame,
    single-channel, values = object ids, one size), ``Scribbles/<seq>/001.json ...``
    (numbered from 001, each for this sequence with one list per frame).  Images are
    optional (the evaluation never reads them) and reported in ``has_images``.

    Returns
    -------
    ``{sequence: DavisSequenceFiles}`` with the counts found on disk.

    Raises
    ------
    BadInputError
        Naming the first missing or unusable file; this is the point where
        davisinteractive itself would start a download.
    """
    root = Path(root)
    if not root.is_dir():
        raise BadInputError(f"DAVIS root {root} does not exist")
    sequences = list(sequences)
    if not sequences or any(not isinstance(s, str) or not s for s in sequences):
        raise BadInputError(f"sequences must be a non-empty list of names; got {sequences!r}")
    return {seq: _check_sequence(root, seq) for seq in sequences}


def stage_davis_root(
    src_root: str | Path,
    dst_root: str | Path,
    sequences: Iterable[str],
    scribbles: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, dict[int, str]]:
    """Copy sequences into a root that davisinteractive can use as it is.

    Annotations are rewritten as indexed PNGs of object ids (binary 0/255 masks become
    0/1, as :func:`simwidgets.video.load_davis_sequence` reads them); the chosen scribble
    files are copied byte for byte under the names ``001.json, 002.json, ...``; the
    JPEG folder is linked (copied where links are not possible).  ``src_root`` is never
    modified.

    Parameters
    ----------
    src_root : a DAVIS-layout root, e.g. :func:`simwidgets.video.sample_root`
    dst_root : where to write (created; the staged sequences' folders are replaced)
    sequences : names to stage
    scribbles : optional ``{sequence: [stem, ...]}`` choosing which scribble files
        (by stem, e.g. ``["003"]``) to stage and in which order; default all, sorted

    Returns
    -------
    ``{sequence: {new_index: original_stem}}``, e.g. ``{"tennis": {1: "003"}}``.
    """
    from ..export import write_masks
    from ..video import load_davis_sequence

    src_root, dst_root = Path(src_root), Path(dst_root)
    sequences = list(sequences)
    scribbles = dict(scribbles or {})
    unknown = sorted(set(scribbles) - set(sequences))
    if unknown:
        raise BadInputError(f"scribbles given for sequences not being staged: {unknown}")
    mapping: dict[str, dict[int, str]] = {}
    for seq in sequences:
        video = load_davis_sequence(src_root, seq, lazy=True)
        if video.masks is None:
            raise BadInputError(f"sequence {seq!r} in {src_root} has no annotations to stage")
        src_scribbles = src_root / "Scribbles" / seq
        available = sorted(p.stem for p in src_scribbles.glob("*.json")) if src_scribbles.is_dir() else []
        chosen = list(scribbles.get(seq, available))
        missing = [stem for stem in chosen if stem not in available]
        if missing or not chosen:
            raise BadInputError(
                f"sequence {seq!r}: scribble files {missing or 'none'} not found in {src_scribbles} "
                f"(available: {available or 'none'})"
            )

        ann_dir = dst_root / "Annotations" / RESOLUTION / seq
        scr_dir = dst_root / "Scribbles" / seq
        img_dir = dst_root / "JPEGImages" / RESOLUTION / seq
        for folder in (ann_dir, scr_dir):
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
        if img_dir.is_symlink() or img_dir.is_file():
            img_dir.unlink()
        elif img_dir.exists():
            shutil.rmtree(img_dir)
        img_dir.parent.mkdir(parents=True, exist_ok=True)
        src_images = (src_root / "JPEGImages" / RESOLUTION / seq).resolve()
        try:
            img_dir.symlink_to(src_images, target_is_directory=True)
        except OSError:
            shutil.copytree(src_images, img_dir)

        write_masks(video.masks, ann_dir)
        mapping[seq] = {}
        for index, stem in enumerate(chosen, start=1):
            shutil.copyfile(src_scribbles / f"{stem}.json", scr_dir / f"{index:03d}.json")
            mapping[seq][index] = stem
    return mapping


@contextmanager
def offline_davis(
    root: str | Path, sequences: Iterable[str], subset: str = "train"
) -> Iterator[dict[str, DavisSequenceFiles]]:
    """Make davisinteractive evaluate exactly ``sequences`` from ``root``, offline.

    Inside the ``with`` block, ``Davis.sets[subset]`` holds just ``sequences`` and each
    sequence's entry in ``Davis.dataset`` carries the frame, object and scribble counts
    and the image size found on disk (:func:`check_davis_root`), so an
    ``EvaluationService``/``DavisInteractiveSession`` built there asks for no other
    file.  Run the whole session inside the block: its final summary reads the same
    metadata.  Everything is restored on exit.  This changes class-level state of the
    package: do not run two such blocks at once in one process.

    Parameters
    ----------
    root : DAVIS root to check (see :func:`stage_davis_root` to make one)
    sequences : the sequences to evaluate
    subset : ``"train"``, ``"val"`` or ``"trainval"`` (the local connector accepts only
        these); pass the same name as the session's ``subset``

    Yields
    ------
    ``{sequence: DavisSequenceFiles}``
    """
    valid = ("train", "val", "trainval")
    if subset not in valid:
        raise BadInputError(f"subset must be one of {valid} (davisinteractive's local connector); got {subset!r}")
    package = import_davisinteractive()
    info = check_davis_root(root, sequences)
    davis = package.dataset.Davis
    saved_entries = {seq: davis.dataset.get(seq) for seq in info}
    had_subset = subset in davis.sets
    saved_subset = davis.sets.get(subset)
    try:
        for seq, files in info.items():
            entry = dict(saved_entries[seq] or {"attributes": [], "eval_t": False, "year": 2016})
            entry.update(
                name=seq,
                num_frames=files.num_frames,
                num_objects=files.num_objects,
                num_scribbles=files.num_scribbles,
                image_size=[files.size[1], files.size[0]],
                set=subset,
            )
            davis.dataset[seq] = entry
        davis.sets[subset] = list(info)
        yield info
    finally:
        for seq, entry in saved_entries.items():
            if entry is None:
                davis.dataset.pop(seq, None)
            else:
                davis.dataset[seq] = entry
        if had_subset:
            davis.sets[subset] = saved_subset
        else:
            davis.sets.pop(subset, None)
