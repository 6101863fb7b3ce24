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

or from a shell: ``python -m simwidgets train --davis-root ROOT --out model.pt``.  A long
run writes its whole state every ``checkpoint_every`` steps and resumes exactly where it
stopped (``train --resume model.state.pt``: weights, optimiser, schedule, random
generators and step); the same command runs on N processes under ``torchrun``
(:mod:`simwidgets.training.distributed`).
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
from torch import nn

from .. import __version__
from ..device import describe_device, pick_device
from ..errors import BadInputError
from ..evaluation.semi import evaluate_semi_supervised
from ..models import EmbeddingModel, build_model, save_checkpoint
from . import distributed
from .config import PRETRAINED_ARCHS, TrainConfig
from .data import PairSampler, VideoClip
from .losses import SimilarityLoss, make_loss
from .sampling import gather_cells, labels_to_grid, sample_triplets

__all__ = ["TrainResult", "Trainer", "train", "batch_loss", "state_path_for", "TRAINING_STATE_FORMAT"]

#: format tag of the files that resume a run (``train --resume``); model checkpoints
#: are the other format, :data:`simwidgets.models.CHECKPOINT_FORMAT`
TRAINING_STATE_FORMAT = "simwidgets-training-state"


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
    steps: int = 0


def _machine() -> str:
    return f"{platform.node() or 'unknown'}: {platform.system()} {platform.machine()}, {describe_device()}"


def _build(config: TrainConfig) -> EmbeddingModel:
    options = dict(config.arch_options)
    if config.arch in PRETRAINED_ARCHS and config.weights is not None:
        options["weights"] = config.weights
    return build_model(config.arch, **options)


def state_path_for(out: str | Path) -> Path:
    """Where a run writing the checkpoint ``out`` keeps its resumable state:
    ``model.pt`` -> ``model.state.pt``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.state{out.suffix or '.pt'}")


class _Trainee(nn.Module):
    """The network and the loss's learned parameters as one module, so that
    DistributedDataParallel averages the gradients of both."""

    def __init__(self, model: EmbeddingModel, loss_fn: SimilarityLoss):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


def _freeze(model: EmbeddingModel, config: TrainConfig) -> list:
    """Freeze the backbone, then free the weights of its top ``config.train_blocks`` blocks.

    Returns the freed parameters (they train at ``backbone_lr_scale`` of the rate).  The
    backbone stays in eval mode throughout (see ``Trainer._train_mode``), so BatchNorm
    statistics keep their ImageNet values even in the freed blocks.
    """
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    if not config.train_blocks:
        return []
    blocks = getattr(model.backbone, "_blocks", None) or getattr(model.backbone, "features", None)
    if blocks is None:
        raise BadInputError(f"{config.arch} has no trunk blocks to fine-tune (train_blocks={config.train_blocks})")
    if config.train_blocks > len(blocks):
        raise BadInputError(f"train_blocks={config.train_blocks} but {config.arch}'s trunk has {len(blocks)} blocks")
    freed = []
    for block in list(blocks)[-config.train_blocks:]:
        for p in block.parameters():
            p.requires_grad_(True)
            freed.append(p)
    return freed


class Trainer:
    """One training run: its network, optimiser, data streams and history.

    :func:`train` is the short way to use it.  A Trainer steps with :meth:`run`, scores
    with :meth:`validate`, and writes its whole state (:meth:`save_state`) so that a new
    Trainer continues exactly (:meth:`load_state`): the same weights, optimiser moments,
    learning-rate schedule, random streams and step as if the run had never stopped.
    Under ``torchrun`` each rank draws its own pairs (its streams are seeded
    ``seed + 1000 * rank``) and rank 0 alone validates and writes files.
    """

    def __init__(
        self,
        train_clips: Sequence[VideoClip],
        val_clips: Sequence[VideoClip] = (),
        config: TrainConfig | None = None,
        out: str | Path | None = None,
        model: EmbeddingModel | None = None,
        command: str | None = None,
        log: Callable[[str], None] | None = None,
        checkpoint_every: int = 0,
        state_path: str | Path | None = None,
    ):
        config = config or TrainConfig()
        self.config = config
        self.ctx = distributed.context(pick_device(config.device))
        device = self.ctx.device
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model = (_build(config) if model is None else model).to(device)
        self.frozen = config.freeze_backbone and hasattr(self.model, "backbone")
        if config.train_blocks and not self.frozen:
            raise BadInputError(
                "train_blocks fine-tunes the top blocks of a frozen pretrained backbone; "
                + ("--train-backbone trains all of it already" if hasattr(self.model, "backbone")
                   else f"{config.arch} has no pretrained backbone")
            )
        tuned = _freeze(self.model, config) if self.frozen else []
        self.loss_fn = make_loss(config.loss, **config.loss_options).to(device)
        # with a frozen backbone, its trainable weights are the tuned blocks; the rest is head
        head = [p for name, p in self.model.named_parameters()
                if p.requires_grad and not (self.frozen and name.startswith("backbone."))]
        head += list(self.loss_fn.parameters())
        if not head and not tuned:
            raise BadInputError("nothing to train: every parameter is frozen")
        groups = [{"params": head, "lr_scale": 1.0}]
        if tuned:
            groups.append({"params": tuned, "lr_scale": config.backbone_lr_scale})
        self.optimiser = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        self.use_amp = config.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        trainee = _Trainee(self.model, self.loss_fn)
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            trainee = DistributedDataParallel(trainee, device_ids=[device] if device.type == "cuda" else None)
        self.forward = trainee
        seed = config.seed + 1000 * self.ctx.rank
        self.sampler = PairSampler(train_clips, config.crop, config.scale_range, config.max_gap, seed=seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.train_clips, self.val_clips = list(train_clips), list(val_clips)
        self.log = log if self.ctx.main else None
        self.path = Path(out) if out is not None else None
        self.checkpoint_every = int(checkpoint_every)
        if state_path is None and self.path is not None:
            state_path = state_path_for(self.path)
        self.state_path = Path(state_path) if state_path is not None else None
        self.step = 0
        self.history: list[dict] = []
        self.validation: list[dict] = []
        self.best = {"score": -math.inf, "step": -1, "state": None}
        self._seconds_before = 0.0  # time spent by the runs this one resumes
        self._start = time.perf_counter()
        self.record = {
            "command": command if command is not None else " ".join(shlex.quote(a) for a in sys.argv),
            "config": config.to_record(),
            "train_sequences": [c.name for c in self.train_clips],
            "val_sequences": [c.name for c in self.val_clips],
            "machine": _machine(),
            "processes": self.ctx.world,
            "library_version": __version__,
            "torch_version": torch.__version__,
            "steps": 0,
            "seconds": 0.0,
        }

    # ------------------------------------------------------------------ the schedule
    def lr_at(self, step: int) -> float:
        """Linear warm-up over 5% of the steps, then cosine decay to 0."""
        config = self.config
        warmup = max(1, config.steps // 20)
        if step < warmup:
            return config.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, config.steps - warmup)
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    @property
    def seconds(self) -> float:
        return self._seconds_before + time.perf_counter() - self._start

    # ------------------------------------------------------------------ steps
    def _train_mode(self) -> None:
        self.model.train()
        if self.frozen:
            self.model.backbone.eval()

    def train_step(self) -> float:
        """One optimiser step on a fresh batch of pairs; returns the (all-rank mean) loss."""
        config, step = self.config, self.step
        self._train_mode()
        for group in self.optimiser.param_groups:
            group["lr"] = self.lr_at(step) * group.get("lr_scale", 1.0)
        batch = self.sampler.sample(config.batch_pairs)
        images = batch.images.to(self.ctx.device, non_blocking=True)
        with torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.use_amp):
            embeddings = self.forward(images)
        loss, used = batch_loss(embeddings, batch.labels, self.loss_fn, config.n_triplets, config.hard_fraction,
                                config.boundary_width, self.generator, self.model.stride)
        if self.ctx.distributed:
            # every rank's backward must reach every parameter (even with no triplet drawn
            # here), or the gradient all-reduce waits forever; zero terms change nothing
            loss = loss + 0.0 * sum(p.sum() for p in self.loss_fn.parameters())
            used = distributed.all_sum(used, self.ctx)
        self.optimiser.zero_grad(set_to_none=True)
        if used:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimiser)
            self.scaler.update()
        distributed.sync_buffers(self.model, self.ctx)
        value = distributed.all_sum(float(loss.detach()), self.ctx) / self.ctx.world
        self.step += 1
        self.history.append({"step": self.step, "loss": value, "lr": self.lr_at(step), "seconds": round(self.seconds, 2)})
        return value

    def run(self, progress: bool = True, until: int | None = None) -> None:
        """Step to ``config.steps`` (or to ``until``), validating every ``val_every`` and
        writing the resumable state every ``checkpoint_every`` steps."""
        config = self.config
        stop = config.steps if until is None else min(int(until), config.steps)
        bar = None
        if progress and self.ctx.main:
            from tqdm.auto import tqdm

            bar = tqdm(total=config.steps, initial=self.step, desc=f"training {config.arch}", unit="step")
        while self.step < stop:
            loss = self.train_step()
            if bar is not None:
                bar.update(1)
                best = self.best["score"]
                bar.set_postfix(loss=f"{loss:.4f}", val=f"{best:.3f}" if best > -math.inf else "-")
            if self.val_clips and config.val_every and self.step % config.val_every == 0 and self.step < config.steps:
                self.validate()
            if self.checkpoint_every and self.step % self.checkpoint_every == 0 and self.step < config.steps:
                self.save_state()
        if bar is not None:
            bar.close()

    # ------------------------------------------------------------------ validation and files
    def validate(self) -> float:
        """Semi-supervised J&F on the held-out clips (rank 0 scores, every rank learns the
        score); a new best is kept (and written to ``out``)."""
        entry = None
        if self.ctx.main:
            scores = evaluate_semi_supervised(self.val_clips, self.model, max_frames=self.config.val_max_frames,
                                              scale=self.config.val_scale, device=self.ctx.device)
            per_sequence = {name: round(row["J&F"], 4) for name, row in scores["sequences"].items()}
            entry = {"step": self.step, "J&F": scores["mean"]["J&F"], "per_sequence": per_sequence,
                     "seconds_per_frame": round(scores["mean"]["seconds_per_frame"], 4)}
        entry = distributed.broadcast(entry, self.ctx)
        self.validation.append(entry)
        if self.log is not None:
            self.log(f"step {self.step}: validation J&F {entry['J&F']:.4f} {entry['per_sequence']}")
        if entry["J&F"] > self.best["score"]:
            self.best.update(score=entry["J&F"], step=self.step, state=copy.deepcopy(self.model.state_dict()))
            if self.path is not None:
                self.save_checkpoint(final=False)
        return entry["J&F"]

    def save_checkpoint(self, final: bool) -> None:
        """Write the model (as it is now) with its training record to ``out`` (rank 0)."""
        self.record.update(
            steps=self.step,
            seconds=round(self.seconds, 1),
            best_step=self.best["step"],
            best_val_jf=None if self.best["score"] == -math.inf else round(self.best["score"], 4),
            loss_parameters=self.loss_fn.extra_state_dict(),
            validation=[dict(e) for e in self.validation],
            loss_history=[round(h["loss"], 5) for h in self.history][:: max(1, len(self.history) // 200)],
            finished=final,
        )
        if self.ctx.main:
            save_checkpoint(self.model, self.path, training=json.loads(json.dumps(self.record)))

    def _streams(self) -> dict:
        return {"sampler": self.sampler.rng.bit_generator.state, "generator": self.generator.get_state(),
                "torch": torch.get_rng_state()}

    def state_dict(self) -> dict:
        """Everything that continues this run exactly (plain values and tensors only, so
        that it loads with ``torch.load(..., weights_only=True)``)."""
        streams = self._streams()
        if self.ctx.distributed:
            import torch.distributed as dist

            gathered = [None] * self.ctx.world
            dist.all_gather_object(gathered, streams)
            streams = gathered
        else:
            streams = [streams]
        best = self.best
        return {
            "format": TRAINING_STATE_FORMAT,
            "format_version": 1,
            "config": self.config.to_record(),
            "train_sequences": self.record["train_sequences"],
            "val_sequences": self.record["val_sequences"],
            "processes": self.ctx.world,
            "step": self.step,
            "seconds": self.seconds,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "loss": {k: v.detach().cpu() for k, v in self.loss_fn.state_dict().items()},
            "optimiser": self.optimiser.state_dict(),
            "scaler": self.scaler.state_dict(),
            "streams": streams,
            "history": self.history,
            "validation": self.validation,
            "best_score": None if best["score"] == -math.inf else best["score"],
            "best_step": best["step"],
            "best_state": {} if best["state"] is None else {k: v.detach().cpu() for k, v in best["state"].items()},
            "command": self.record["command"],
        }

    def save_state(self, path: str | Path | None = None) -> Path | None:
        """Write :meth:`state_dict` atomically (rank 0) to ``path`` or :attr:`state_path`."""
        path = Path(path) if path is not None else self.state_path
        if path is None:
            raise BadInputError("no file to write the training state to: give out= or state_path=")
        state = self.state_dict()  # every rank takes part (the streams are gathered)
        if self.ctx.main:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            torch.save(state, tmp)
            tmp.replace(path)
        distributed.barrier(self.ctx)
        return path

    def load_state(self, path: str | Path) -> None:
        """Continue the run saved in ``path``: it must be of this configuration, these
        sequences and this number of processes (each rank resumes its own streams)."""
        state = load_training_state(path)
        saved = dict(state["config"])
        for name, default in TrainConfig().to_record().items():
            saved.setdefault(name, default)  # options added since the state was written
        state["config"] = saved
        mine = {"config": self.config.to_record(), "train_sequences": self.record["train_sequences"],
                "val_sequences": self.record["val_sequences"], "processes": self.ctx.world}
        for key, value in mine.items():
            if state[key] != value:
                differs = key
                if key == "config":
                    differs = ", ".join(k for k in value if state[key].get(k) != value[k]) or key
                raise BadInputError(f"{path} is a run of another {key}: {differs} differ; resume with the same "
                                    "settings, sequences and number of processes")
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.scaler.load_state_dict(state["scaler"])
        streams = state["streams"][self.ctx.rank]
        self.sampler.rng.bit_generator.state = streams["sampler"]
        self.generator.set_state(streams["generator"])
        torch.set_rng_state(streams["torch"])
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.validation = list(state["validation"])
        score = state["best_score"]
        self.best = {"score": -math.inf if score is None else float(score), "step": int(state["best_step"]),
                     "state": dict(state["best_state"]) or None}
        self._seconds_before = float(state["seconds"])
        self._start = time.perf_counter()
        self.record["resumed_from"] = {"state": str(path), "step": self.step}

    def finish(self) -> "TrainResult":
        """Validate at the end, keep the best weights, write the final checkpoint."""
        config = self.config
        if self.val_clips:
            if not self.validation or self.validation[-1]["step"] != self.step:
                self.validate()
        else:
            self.best.update(step=self.step, state=copy.deepcopy(self.model.state_dict()))
        if self.state_path is not None and self.checkpoint_every:
            # a finished run: resuming it has nothing left to do.  Written before the best
            # weights replace the last ones, so its "model" is the weights of its "step"
            # (the best ones are in "best_state"), as in every state written along the way
            self.save_state()
        self.model.load_state_dict(self.best["state"])
        self.model.eval()
        self.record["steps"] = self.step
        if self.path is not None:
            self.save_checkpoint(final=True)
            self.record = json.loads(json.dumps(self.record))
        else:
            self.record.update(steps=self.step, seconds=round(self.seconds, 1), best_step=self.best["step"],
                               loss_parameters=self.loss_fn.extra_state_dict())
        self.model.training_record = self.record
        score = self.best["score"]
        distributed.barrier(self.ctx)
        return TrainResult(self.model, self.history, self.validation, self.best["step"],
                           score if score > -math.inf else float("nan"), self.record, self.loss_fn, self.path,
                           config.steps)


def load_training_state(path: str | Path) -> dict:
    """A resumable training state written by :meth:`Trainer.save_state`, read safely."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"training state not found: {path}" + (" (a folder)" if path.is_dir() else ""))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt files
        raise BadInputError(f"cannot read training state {path}: corrupt, truncated or not a weights-only file "
                            f"({type(error).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != TRAINING_STATE_FORMAT:
        hint = " (that is a model checkpoint; resume from the .state.pt file beside it)" if isinstance(state, dict) \
            and state.get("format") == "simwidgets-embedding" else ""
        raise BadInputError(f"{path} is not a simwidgets training state{hint}")
    return state


def train(
    train_clips: Sequence[VideoClip],
    val_clips: Sequence[VideoClip] = (),
    config: TrainConfig | None = None,
    out: str | Path | None = None,
    model: EmbeddingModel | None = None,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
    checkpoint_every: int = 0,
    resume: str | Path | None = None,
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
    checkpoint_every : write the resumable state (``out``'s ``.state.pt``) every this
        many steps (0: never)
    resume : a state file to continue from (its configuration must be ``config``)
    """
    trainer = Trainer(train_clips, val_clips, config, out=out, model=model, command=command, log=log,
                      checkpoint_every=checkpoint_every)
    if resume is not None:
        trainer.load_state(resume)
    trainer.run(progress=progress)
    return trainer.finish()
