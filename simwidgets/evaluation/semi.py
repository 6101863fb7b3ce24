"""The semi-supervised protocol: frame 0's true mask propagated to every frame, scored.

One evaluator serves the CLI (``python -m simwidgets evaluate --protocol semi``), training
validation and the notebooks, so a number means the same wherever it is printed.  As in
the DAVIS semi-supervised benchmark, frame 0 (given) is not scored; J, F and J&F are
means over frames 1..T-1 of each video, and the summary is the mean over videos (each
video counts once, however long it is).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from ..errors import BadInputError
from ..video import resize_frame_and_mask
from .metrics import evaluate_masks

__all__ = ["evaluate_semi_supervised"]


def _frames_and_masks(video, max_frames: int | None, scale: float):
    """``(name, frames, masks)`` of a VideoSequence or a training VideoClip, the first
    ``max_frames`` frames, resized by ``scale`` (frames bilinear, masks nearest)."""
    name = getattr(video, "name", "video")
    if hasattr(video, "materialise"):  # a training clip: read frame by frame
        frames, masks = video.materialise(max_frames, scale)
        return name, frames, masks
    if video.masks is None:
        raise BadInputError(f"sequence {name!r} has no ground-truth masks to evaluate against")
    frames, masks = video.frames, video.masks
    if max_frames is not None:
        frames, masks = frames[:max_frames], masks[:max_frames]
    if scale != 1.0:
        pairs = [resize_frame_and_mask(frames[t], masks[t], scale) for t in range(len(masks))]
        frames, masks = np.stack([f for f, _ in pairs]), np.stack([m for _, m in pairs])
    return name, frames, masks


def evaluate_semi_supervised(
    videos: Iterable,
    model="default",
    config=None,
    device=None,
    max_frames: int | None = None,
    scale: float = 1.0,
    save_masks: str | Path | None = None,
    progress: Callable[[str, dict], None] | None = None,
    adapt: Mapping | None = None,
) -> dict:
    """Score label transfer from frame 0's mask on each video.

    Parameters
    ----------
    videos : :class:`~simwidgets.video.VideoSequence` objects with masks (lazy frames
        work) or training :class:`~simwidgets.training.VideoClip` objects; any iterable,
        so a generator loads one video at a time
    model : an EmbeddingModel or a name/path for :func:`~simwidgets.models.load_model`
    config : :class:`~simwidgets.transfer.TransferConfig`; None:
        ``TransferConfig.for_masks()`` (the defaults, with the ``top_k``, guided-filter
        radius and mirror averaging for full masks)
    max_frames, scale : evaluate on the first frames only, resized (training validation)
    save_masks : write ``save_masks/<name>/%05d.png`` for every video
    progress : called as ``progress(name, row)`` after each video
    adapt : test-time adaptation: ``None`` (off) or keyword arguments for
        :func:`simwidgets.training.adapt_to_references` (``{}`` for its defaults).  Before
        each video is labelled, a copy of the model is fine-tuned on frame 0's mask (its
        head only, pairs drawn from that frame's own cells), as OSVOS fine-tunes on the
        first frame; the time it takes counts in ``seconds``

    Returns
    -------
    ``{"sequences": {name: row}, "mean": {"J", "F", "J&F", "seconds_per_frame"}}``, each
    row with ``J``, ``F``, ``J&F``, ``n_frames``, ``seconds`` (adaptation + embedding +
    transfer), ``seconds_per_frame`` and, with ``adapt``, ``adapted`` (steps, seconds, first
    and last loss).
    """
    from ..export import write_masks
    from ..models import load_model
    from ..transfer import LabelTransfer, TransferConfig

    model = load_model(model)
    config = TransferConfig.for_masks() if config is None else config
    if adapt is not None:
        from ..training.adapt import adapt_to_references, checked_adapt_options

        adapt = checked_adapt_options(adapt)
    rows: dict[str, dict] = {}
    for video in videos:
        name, frames, masks = _frames_and_masks(video, max_frames, scale)
        if name in rows:
            raise BadInputError(f"sequence {name!r} given twice")
        start = time.perf_counter()
        video_model, adapted = model, None
        if adapt is not None:
            video_model, info = adapt_to_references(model, frames, {0: np.asarray(masks[0])}, config=config,
                                                    device=device, **adapt)
            adapted = {k: info[k] for k in ("steps", "seconds", "loss_first", "loss_last")}
        engine = LabelTransfer(frames, model=video_model, config=config, device=device)
        result = engine.propagate({0: np.asarray(masks[0])})
        seconds = time.perf_counter() - start
        scores = evaluate_masks(result.masks[1:], np.asarray(masks[1:]))
        n_frames = len(frames)
        rows[name] = {
            "J": scores.j_mean,
            "F": scores.f_mean,
            "J&F": scores.jf_mean,
            "n_frames": n_frames,
            "seconds": seconds,
            "seconds_per_frame": seconds / n_frames,
        }
        if adapt is not None:
            rows[name]["adapted"] = adapted
        if save_masks is not None:
            write_masks(result.masks, Path(save_masks) / name)
        if progress is not None:
            progress(name, rows[name])
    if not rows:
        raise BadInputError("no videos to evaluate")
    keys = ("J", "F", "J&F", "seconds_per_frame")
    mean = {k: float(np.mean([row[k] for row in rows.values()])) for k in keys}
    return {"sequences": rows, "mean": mean}
