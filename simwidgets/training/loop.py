"""Training the pixel embedding: Siamese pairs of frames, sampled pixels, a similarity loss.

One training step, as in the paper:

1. pick a video and two of its frames (a few frames apart), the *reference* and the
   *target*; crop the same window from both (random scale, flip, independent colour
   jitter), so the network must recognise an object through motion, deformation and
   lighting changes;
2. embed both crops with the **same** network (Siamese: shared weights);
3. sample class-balanced (anchor, positive, negative) cells within each frame and across
   the two frames (:mod:`simwidgets.training.sampling`);
4. apply the similarity loss (:mod:`simwidgets.training.losses`, the paper's pairwise logistic
   loss by default) and take an optimiser step.

Every ``val_every`` steps the model is scored the way it will be used: semi-supervised
label transfer (the ground-truth mask of frame 0 propagated to every frame by
label transfer) on held-out videos by
:func:`simwidgets.evaluation.evaluate_semi_supervised`; the best model so far is saved.

Three lines::

    from simwidgets.training import TrainConfig, VideoClip, train
    clips = [VideoClip.from_sequence(v) for v in my_videos]
    result = train(clips, val_clips, TrainConfig(steps=500), out="my_model.pt")

or from a shell: ``python -m simwidgets train --davis-root ROOT --out model.pt``.
"""
from __future__ import annotations

import copy
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..device import describe_device, pick_device
from .. import __version__
from ..errors import BadInputError
from ..evaluation.semi import evaluate_semi_supervised
from ..models import EmbeddingModel, build_model, save_checkpoint
from .config import PRETRAINED_ARCHS, TrainConfig
from .data import PairSampler, VideoClip
from .losses import SimilarityLoss, make_loss
from .sampling import gather_cells, labels_to_grid, sample_triplets

__all__ = ["TrainResult", "train", "batch_loss"]



def batch_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: SimilarityLoss,
    n_triplets: int,
    hard_fraction: float,
    boundary_width: int,
    generator: torch.Generator,
    stride: int,
) -> tuple[torch.Tensor, int]:
    """Loss of a pair batch: triplets within each frame and across each pair's frames.

    ``embeddings (2B, D, h, w)``, ``labels (2B, S, S)`` at pixel resolution.  Labels of
    different pairs are offset so that InfoNCE never treats "object 1 of video A" and
    "object 1 of video B" as the same.  Returns ``(loss, n_triplets_used)``.
    """
    anchors, positives, negatives, a_labels, n_labels = [], [], [], [], []
    for i in range(0, embeddings.shape[0], 2):
        grid_a = labels_to_grid(labels[i], stride)
        grid_b = labels_to_grid(labels[i + 1], stride)
        offset = (i // 2) * 1000
        for src, dst, ga, gb in ((i, i, grid_a, None), (i + 1, i + 1, grid_b, None), (i, i + 1, grid_a, grid_b)):
            t = sample_triplets(ga, gb, n_triplets, hard_fraction, boundary_width, generator)
            if len(t) == 0:
                continue
            anchors.append(gather_cells(embeddings[src], t.anchor.to(embeddings.device)))
            positives.append(gather_cells(embeddings[dst], t.positive.to(embeddings.device)))
            negatives.append(gather_cells(embeddings[dst], t.negative.to(embeddings.device)))
            a_labels.append(t.label + offset)
            n_labels.append(t.negative_label + offset)
    if not anchors:
        zero = embeddings.sum() * 0.0
        return zero, 0
    a, p, n = torch.cat(anchors), torch.cat(positives), torch.cat(negatives)
    lab = (torch.cat(a_labels).to(a.device), torch.cat(n_labels).to(a.device))
    return loss_fn(a.float(), p.float(), n.float(), labels=lab), int(a.shape[0])



@dataclass
class TrainResult:
    """What a run produced.

    Attributes
    ----------
    model : the model at its best validation score (the last one without validation)
    history : one dict per step: ``step, loss, lr, seconds``
    validation : one dict per validation: ``step, J&F, per_sequence, seconds_per_frame``
    best_step, best_score : where the best validation J&F was reached
    record : the training record written into the checkpoint
    path : checkpoint path, when ``out`` was given
    """

    model: EmbeddingModel
    history: list[dict]
    validation: list[dict]
    best_step: int
    best_score: float
    record: dict
    loss_fn: SimilarityLoss | None = None
    path: Path | None = None


def _machine() -> str:
    return f"{platform.node() or 'unknown'}: {platform.system()} {platform.machine()}, {describe_device()}"


def _build(config: TrainConfig) -> EmbeddingModel:
    options = dict(config.arch_options)
    if config.arch in PRETRAINED_ARCHS and config.weights is not None:
        options["weights"] = config.weights
    return build_model(config.arch, **options)


def _set_train_mode(model: EmbeddingModel, frozen: bool) -> None:
    model.train()
    backbone = getattr(model, "backbone", None)
    if backbone is not None and frozen:
        backbone.eval()


def train(
    train_clips: Sequence[VideoClip],
    val_clips: Sequence[VideoClip] = (),
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    model: EmbeddingModel | None = None,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train an embedding on pairs of frames; validate; save the best checkpoint.

    Parameters
    ----------
    train_clips : videos with masks to draw pairs from
    val_clips : held-out videos for semi-supervised J&F (may be empty)
    config : :class:`TrainConfig` (defaults when None)
    out : checkpoint path; written at each new best validation score (at the end when
        there is no validation)
    model : start from this model instead of building ``config.arch`` (fine-tuning)
    progress : tqdm.auto progress bar (notebook widget or terminal)
    command : the command line to record (defaults to ``sys.argv``)
    log : called with one line of text at each validation (e.g. ``print``)
    """
    config = config or TrainConfig()
    torch.manual_seed(config.seed)
    device = pick_device(config.device)
    model = _build(config) if model is None else model
    model.to(device)
    frozen = config.freeze_backbone and hasattr(model, "backbone")
    if frozen:
        for p in model.backbone.parameters():
            p.requires_grad_(False)
    loss_fn = make_loss(config.loss, **config.loss_options).to(device)
    params = [p for p in model.parameters() if p.requires_grad] + list(loss_fn.parameters())
    if not params:
        raise BadInputError("nothing to train: every parameter is frozen")
    optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(1, config.steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return config.lr * (step + 1) / warmup
        progress_ = (step - warmup) / max(1, config.steps - warmup)
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(progress_, 1.0)))

    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    sampler = PairSampler(train_clips, config.crop, config.scale_range, config.max_gap, seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    record = {
        "command": command if command is not None else " ".join(shlex.quote(a) for a in sys.argv),
        "config": config.to_record(),
        "train_sequences": [c.name for c in train_clips],
        "val_sequences": [c.name for c in val_clips],
        "machine": _machine(),
        "library_version": __version__,
        "torch_version": torch.__version__,
        "steps": 0,
        "seconds": 0.0,
    }
    history: list[dict] = []
    validation: list[dict] = []
    best = {"score": -math.inf, "step": -1, "state": None}
    path = Path(out) if out is not None else None
    start = time.perf_counter()

    def validate(step: int) -> None:
        scores = evaluate_semi_supervised(val_clips, model, max_frames=config.val_max_frames,
                                          scale=config.val_scale, device=device)
        per_sequence = {name: round(row["J&F"], 4) for name, row in scores["sequences"].items()}
        score = scores["mean"]["J&F"]
        entry = {"step": step, "J&F": score, "per_sequence": per_sequence,
                 "seconds_per_frame": round(scores["mean"]["seconds_per_frame"], 4)}
        validation.append(entry)
        if log is not None:
            log(f"step {step}: validation J&F {score:.4f} {per_sequence}")
        if score > best["score"]:
            best.update(score=score, step=step, state=copy.deepcopy(model.state_dict()))
            if path is not None:
                _save(step, final=False)

    def _save(step: int, final: bool) -> None:
        record.update(
            steps=step,
            seconds=round(time.perf_counter() - start, 1),
            best_step=best["step"],
            best_val_jf=None if best["score"] == -math.inf else round(best["score"], 4),
            loss_parameters=loss_fn.extra_state_dict(),
            validation=[{k: v for k, v in e.items()} for e in validation],
            loss_history=[round(h["loss"], 5) for h in history][:: max(1, len(history) // 200)],
            finished=final,
        )
        save_checkpoint(model, path, training=json.loads(json.dumps(record)))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, desc=f"training {config.arch}", unit="step")
    for step in range(config.steps):
        _set_train_mode(model, frozen)
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step)
        batch = sampler.sample(config.batch_pairs)
        images = batch.images.to(device, non_blocking=True)
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=use_amp):
            embeddings = model(images)
        loss, used = batch_loss(
            embeddings, batch.labels, loss_fn, config.n_triplets, config.hard_fraction,
            config.boundary_width, generator, model.stride,
        )
        optimiser.zero_grad(set_to_none=True)
        if used:
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
        history.append({"step": step + 1, "loss": float(loss.detach()), "lr": lr_at(step),
                        "seconds": round(time.perf_counter() - start, 2)})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}",
                            val=f"{best['score']:.3f}" if best["score"] > -math.inf else "-")
        if val_clips and config.val_every and (step + 1) % config.val_every == 0 and step + 1 < config.steps:
            validate(step + 1)
    if bar is not None:
        bar.close()
    if val_clips:
        validate(config.steps)
    else:
        best.update(step=config.steps, state=copy.deepcopy(model.state_dict()))
    # finish with the best weights (and record the whole run)
    model.load_state_dict(best["state"])
    model.eval()
    record["steps"] = config.steps
    if path is not None:
        _save(config.steps, final=True)
        record = json.loads(json.dumps(record))
    else:
        record.update(steps=config.steps, seconds=round(time.perf_counter() - start, 1),
                      best_step=best["step"], loss_parameters=loss_fn.extra_state_dict())
    model.training_record = record
    return TrainResult(model, history, validation, best["step"],
                       best["score"] if best["score"] > -math.inf else float("nan"), record, loss_fn, path)
