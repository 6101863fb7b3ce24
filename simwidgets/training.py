"""Training the pixel embedding: Siamese pairs of frames, sampled pixels, a similarity loss.

One training step, as in the paper:

1. pick a video and two of its frames (a few frames apart), the *reference* and the
   *target*; crop the same window from both (random scale, flip, independent colour
   jitter), so the network must recognise an object through motion, deformation and
   lighting changes;
2. embed both crops with the **same** network (Siamese: shared weights);
3. sample class-balanced (anchor, positive, negative) cells within each frame and across
   the two frames (:mod:`simwidgets.sampling`);
4. apply the similarity loss (:mod:`simwidgets.losses`, the paper's pairwise logistic
   loss by default) and take an optimiser step.

Every ``val_every`` steps the model is scored the way it will be used: semi-supervised
label transfer (the ground-truth mask of frame 0 propagated to every frame by
:func:`simwidgets.transfer.propagate`) on held-out videos, J&F by
:func:`simwidgets.metrics.evaluate_masks`; the best model so far is saved.

Three lines::

    from simwidgets.training import TrainConfig, VideoClip, train
    clips = [VideoClip.from_sequence(v) for v in my_videos]
    result = train(clips, val_clips, TrainConfig(steps=500), out="my_model.pt")

or from a shell: ``python -m simwidgets train --davis-root ROOT --out model.pt``.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .device import describe_device, pick_device
from .errors import BadInputError
from .losses import LOSSES, SimilarityLoss, make_loss
from .models import EmbeddingModel, available_archs, build_model, save_checkpoint
from .sampling import UNKNOWN, gather_cells, labels_to_grid, sample_triplets
from .video import list_sequences, read_image, read_mask

__all__ = [
    "TrainConfig",
    "VideoClip",
    "PairBatch",
    "PairSampler",
    "TrainResult",
    "train",
    "evaluate_semi_supervised",
    "default_split",
    "load_davis_clips",
    "add_train_arguments",
    "run_train",
    "train_main",
    "adapt_to_references",
    "SHIPPED_SAMPLES",
]

#: sequences shipped in data/davis; the default split holds them out of training so that
#: every demo and notebook in the repository runs on videos the model never saw
SHIPPED_SAMPLES = ("bear", "dog-agility", "tennis")

_PRETRAINED_ARCHS = ("effnet-lite0", "mobilenetv2")


# ----------------------------------------------------------------------------- configuration

@dataclass
class TrainConfig:
    """Everything that determines a training run (recorded in the checkpoint).

    Attributes
    ----------
    arch : registered architecture (``effnet-lite0``, ``mobilenetv2``, ``fcn-small`` ...)
    arch_options : keyword arguments of the architecture (``dim``, ``stride`` ...)
    weights : backbone initialisation of pretrained architectures: ``"imagenet"``, a
        state-dict path, or None for random
    freeze_backbone : keep the pretrained backbone fixed (BatchNorm statistics too) and
        train only the head: ~4x cheaper per step on a CPU, and twenty videos are too
        few to improve ImageNet features much
    steps, batch_pairs : optimiser steps and frame pairs per step
    crop : side of the square training crop, in pixels
    scale_range : random rescaling of the full frame before cropping
    max_gap : largest frame distance between the two frames of a pair
    loss : ``pairwise`` (the paper's), ``contrastive``, ``triplet`` or ``infonce``
    loss_options : keyword arguments of the loss
    n_triplets : triplets sampled per pair for each of: within frame A, within frame B, across
    hard_fraction, boundary_width : share of negatives drawn near object boundaries
    lr, weight_decay : AdamW; the learning rate warms up for 5% of the steps and then
        follows a cosine decay
    seed : seeds the model initialisation, the data and every sample
    val_every : validate every this many steps (0: only at the end)
    val_max_frames : validate on the first frames of each held-out video only (None = all)
    val_scale : resize validation videos by this factor (1 = full resolution)
    device : None for automatic (CUDA, MPS, CPU)
    amp : mixed precision (float16 autocast + gradient scaling) when on CUDA
    """

    arch: str = "effnet-lite0"
    arch_options: dict = field(default_factory=dict)
    weights: str | None = "imagenet"
    freeze_backbone: bool = True
    steps: int = 1000
    batch_pairs: int = 4
    crop: int = 256
    scale_range: tuple[float, float] = (0.5, 1.0)
    max_gap: int = 15
    loss: str = "pairwise"
    loss_options: dict = field(default_factory=dict)
    n_triplets: int = 128
    hard_fraction: float = 0.25
    boundary_width: int = 2
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    val_every: int = 250
    val_max_frames: int | None = None
    val_scale: float = 1.0
    device: str | None = None
    amp: bool = True

    def __post_init__(self):
        if self.arch not in available_archs():
            raise BadInputError(f"unknown architecture {self.arch!r} (known: {', '.join(available_archs())})")
        if self.loss not in LOSSES:
            raise BadInputError(f"unknown loss {self.loss!r} (choose from: {', '.join(LOSSES)})")
        if self.steps < 0 or self.batch_pairs < 1 or self.n_triplets < 1:
            raise BadInputError("steps must be >= 0, batch_pairs and n_triplets >= 1")
        if self.crop < 16 or self.crop % 16:
            raise BadInputError(f"crop must be a multiple of 16 and at least 16 pixels; got {self.crop}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise BadInputError(f"scale_range must be (low, high) with 0 < low <= high; got {self.scale_range}")
        self.scale_range = (float(lo), float(hi))
        if self.max_gap < 0 or self.val_every < 0:
            raise BadInputError("max_gap and val_every must be non-negative")
        if not 0 < self.val_scale <= 4:
            raise BadInputError(f"val_scale must lie in (0, 4]; got {self.val_scale}")
        if self.val_max_frames is not None and self.val_max_frames < 2:
            raise BadInputError("val_max_frames must be at least 2 (frame 0 is the reference)")
        if not 0.0 <= self.hard_fraction <= 1.0:
            raise BadInputError(f"hard_fraction must lie in [0, 1]; got {self.hard_fraction}")
        if not self.lr > 0:
            raise BadInputError(f"lr must be positive; got {self.lr}")

    def to_record(self) -> dict:
        """Plain-value dict (JSON- and ``weights_only``-safe)."""
        record = asdict(self)
        record["scale_range"] = list(self.scale_range)
        used = self.weights is not None and self.arch in _PRETRAINED_ARCHS
        record["weights"] = str(self.weights) if used else None
        return json.loads(json.dumps(record))


# ----------------------------------------------------------------------------- data

class VideoClip:
    """A video with a mask on every frame, read frame by frame.

    Either in memory (:meth:`from_sequence`, e.g. a synthetic video) or as file paths in
    a DAVIS folder (:meth:`from_davis`), decoded on demand so that twenty full-resolution
    videos never sit in memory at once.  Masks come back as ``(H, W)`` int64 ids
    (binary 0/255 annotations become 0/1).
    """

    def __init__(self, name: str, n_frames: int, frame: Callable[[int], np.ndarray], mask: Callable[[int], np.ndarray]):
        if n_frames < 2:
            raise BadInputError(f"clip {name!r} has {n_frames} frame(s); training pairs need at least 2")
        self.name = name
        self.n_frames = int(n_frames)
        self._frame = frame
        self._mask = mask

    def frame(self, frame_idx: int) -> np.ndarray:
        return self._frame(frame_idx)

    def mask(self, frame_idx: int) -> np.ndarray:
        return self._mask(frame_idx)

    def __repr__(self) -> str:
        return f"VideoClip({self.name!r}, {self.n_frames} frames)"

    @classmethod
    def from_sequence(cls, sequence) -> "VideoClip":
        """From a :class:`simwidgets.video.VideoSequence` that has masks."""
        if sequence.masks is None:
            raise BadInputError(f"sequence {sequence.name!r} has no masks; training needs a mask on every frame")
        frames, masks = sequence.frames, sequence.masks
        return cls(sequence.name, sequence.n_frames, lambda t: np.asarray(frames[t]), lambda t: np.asarray(masks[t], dtype=np.int64))

    @classmethod
    def from_davis(cls, root: str | Path, name: str, resolution: str = "480p") -> "VideoClip":
        """From a DAVIS-layout folder: every frame of ``name`` must have an annotation."""
        root = Path(root)
        frame_dir = root / "JPEGImages" / resolution / name
        mask_dir = root / "Annotations" / resolution / name
        if not frame_dir.is_dir():
            known = ", ".join(list_sequences(root, resolution)) or "none"
            raise BadInputError(f"unknown sequence {name!r} in {root} (known: {known})")
        frames = sorted(p for p in frame_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        masks = sorted(mask_dir.glob("*.png")) if mask_dir.is_dir() else []
        if len(masks) != len(frames):
            raise BadInputError(
                f"sequence {name!r}: training needs a mask for every frame; found {len(frames)} frames and "
                f"{len(masks)} masks in {mask_dir}"
            )

        def mask(t):
            values = read_mask(masks[t]).astype(np.int64)
            if values.max() == 255 and set(np.unique(values).tolist()) <= {0, 255}:
                values = (values > 0).astype(np.int64)
            return values

        return cls(name, len(frames), lambda t: read_image(frames[t]), mask)

    def materialise(self, max_frames: int | None = None, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """All (or the first ``max_frames``) frames and masks as arrays, optionally resized.

        Returns ``frames (T, H, W, 3)`` uint8 and ``masks (T, H, W)`` uint8 ids.
        """
        n = self.n_frames if max_frames is None else min(self.n_frames, max_frames)
        frames, masks = [], []
        for t in range(n):
            frame, mask = self.frame(t), self.mask(t)
            if scale != 1.0:
                size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
                frame = np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))
                mask = np.asarray(Image.fromarray(mask.astype(np.uint8)).resize(size, Image.NEAREST))
            frames.append(frame)
            masks.append(mask.astype(np.uint8))
        return np.stack(frames), np.stack(masks)


def load_davis_clips(root: str | Path, names: Sequence[str]) -> list[VideoClip]:
    """:meth:`VideoClip.from_davis` for several sequences."""
    return [VideoClip.from_davis(root, name) for name in names]


def default_split(names: Sequence[str], n_val: int = 4, seed: int = 0) -> tuple[list[str], list[str]]:
    """Fixed train/validation split of sequence names.

    Validation takes the shipped samples (:data:`SHIPPED_SAMPLES`) that are present, then
    fills up to ``n_val`` with names drawn from the sorted rest by ``seed``.  Returns
    ``(train, val)``, both sorted.
    """
    names = sorted(set(names))
    if len(names) < 2:
        raise BadInputError(f"need at least 2 sequences to split into training and validation; got {names}")
    n_val = max(0, min(n_val, len(names) - 1))
    val = [n for n in SHIPPED_SAMPLES if n in names][:n_val]
    rest = [n for n in names if n not in val]
    extra = n_val - len(val)
    if extra > 0:
        picks = np.random.default_rng(seed).permutation(len(rest))[:extra]
        val += [rest[i] for i in sorted(picks)]
    train = [n for n in names if n not in val]
    return train, sorted(val)


@dataclass
class PairBatch:
    """A batch of frame pairs: images ``(2B, 3, S, S)`` in [0, 1] and labels ``(2B, S, S)``.

    Rows ``2i`` and ``2i+1`` are the reference and target of pair ``i``; label ``-1``
    marks padding outside the frame.
    """

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]


class PairSampler:
    """Draws augmented pairs of frames from clips (seeded, reproducible).

    Parameters
    ----------
    clips : training videos
    crop : square crop side; frames smaller than the crop are padded (label -1)
    scale_range : random rescaling of the frame before cropping
    max_gap : largest distance between the two frames of a pair
    seed : seed of every random choice
    jitter : colour-jitter strength (0 disables it)
    """

    def __init__(
        self,
        clips: Sequence[VideoClip],
        crop: int = 256,
        scale_range: tuple[float, float] = (0.5, 1.0),
        max_gap: int = 15,
        seed: int = 0,
        jitter: float = 0.2,
    ):
        if not clips:
            raise BadInputError("no training clips given")
        self.clips = list(clips)
        self.crop = int(crop)
        self.scale_range = scale_range
        self.max_gap = int(max_gap)
        self.jitter = float(jitter)
        self.rng = np.random.default_rng(seed)

    def _resized(self, clip: VideoClip, frame_idx: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
        frame, mask = clip.frame(frame_idx), clip.mask(frame_idx)
        if scale != 1.0:
            size = (max(1, round(frame.shape[1] * scale)), max(1, round(frame.shape[0] * scale)))
            frame = np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))
            mask = np.asarray(Image.fromarray(mask.astype(np.int32)).resize(size, Image.NEAREST)).astype(np.int64)
        return frame, mask

    def _window(self, mask: np.ndarray) -> tuple[int, int]:
        """Top-left corner of a crop, centred near a random object pixel 80% of the time."""
        h, w = mask.shape
        c = self.crop
        objects = np.flatnonzero(mask > 0)
        if objects.size and self.rng.random() < 0.8:
            k = objects[self.rng.integers(objects.size)]
            cy, cx = divmod(int(k), w)
            cy += int(self.rng.integers(-c // 3, c // 3 + 1))
            cx += int(self.rng.integers(-c // 3, c // 3 + 1))
        else:
            cy, cx = int(self.rng.integers(h)), int(self.rng.integers(w))
        top = int(np.clip(cy - c // 2, 0, max(h - c, 0)))
        left = int(np.clip(cx - c // 2, 0, max(w - c, 0)))
        return top, left

    def _cut(self, frame, mask, top, left):
        c = self.crop
        image = np.zeros((c, c, 3), dtype=np.uint8)
        labels = np.full((c, c), UNKNOWN, dtype=np.int64)
        part_f = frame[top : top + c, left : left + c]
        part_m = mask[top : top + c, left : left + c]
        image[: part_f.shape[0], : part_f.shape[1]] = part_f
        labels[: part_m.shape[0], : part_m.shape[1]] = part_m
        return image, labels

    def _colour_jitter(self, x: torch.Tensor) -> torch.Tensor:
        """Brightness, contrast, saturation and per-channel gain, on ``(3, S, S)`` in [0, 1]."""
        if self.jitter <= 0:
            return x
        j = self.jitter
        u = lambda: float(self.rng.uniform(1 - j, 1 + j))  # noqa: E731
        x = x * u()
        mean = x.mean()
        x = (x - mean) * u() + mean
        grey = x.mean(0, keepdim=True)
        x = (x - grey) * u() + grey
        gains = torch.tensor(self.rng.uniform(1 - j / 2, 1 + j / 2, size=3), dtype=x.dtype).view(3, 1, 1)
        return (x * gains).clamp(0, 1)

    def sample(self, batch_pairs: int) -> PairBatch:
        images, labels, names = [], [], []
        for _ in range(batch_pairs):
            clip = self.clips[int(self.rng.integers(len(self.clips)))]
            t_a = int(self.rng.integers(clip.n_frames))
            gap = int(self.rng.integers(-self.max_gap, self.max_gap + 1)) if self.max_gap else 0
            t_b = int(np.clip(t_a + gap, 0, clip.n_frames - 1))
            scale = float(self.rng.uniform(*self.scale_range))
            flip = bool(self.rng.random() < 0.5)
            frame_a, mask_a = self._resized(clip, t_a, scale)
            frame_b, mask_b = self._resized(clip, t_b, scale)
            top, left = self._window(mask_a)
            # the target's window moves a little: objects are not where they were
            shift = max(1, self.crop // 16)
            top_b = int(np.clip(top + self.rng.integers(-shift, shift + 1), 0, max(frame_b.shape[0] - self.crop, 0)))
            left_b = int(np.clip(left + self.rng.integers(-shift, shift + 1), 0, max(frame_b.shape[1] - self.crop, 0)))
            for frame, mask, (y, x) in ((frame_a, mask_a, (top, left)), (frame_b, mask_b, (top_b, left_b))):
                image, label = self._cut(frame, mask, y, x)
                if flip:
                    image, label = image[:, ::-1], label[:, ::-1]
                tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
                images.append(self._colour_jitter(tensor))
                labels.append(torch.from_numpy(np.ascontiguousarray(label)))
            names.append(clip.name)
        return PairBatch(torch.stack(images), torch.stack(labels), names)


# ----------------------------------------------------------------------------- the loss of a batch

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


# ----------------------------------------------------------------------------- validation

def evaluate_semi_supervised(
    model: EmbeddingModel,
    clips: Sequence[VideoClip],
    max_frames: int | None = None,
    scale: float = 1.0,
    device=None,
    progress: bool = False,
    **transfer_options,
) -> dict:
    """Semi-supervised J&F: frame 0's true mask propagated to every frame of each clip.

    As in the DAVIS semi-supervised benchmark, frame 0 (given) is not scored.  Returns
    ``{"J&F": mean over clips, "J": ..., "F": ..., "per_sequence": {name: J&F},
    "seconds_per_frame": propagation time / frames, "n_frames": scored frames}``.
    """
    from .metrics import evaluate_masks
    from .transfer import propagate

    per_sequence, js, fs, seconds, n_frames = {}, [], [], 0.0, 0
    for clip in clips:
        frames, masks = clip.materialise(max_frames, scale)
        start = time.perf_counter()
        pred = propagate(frames, {0: masks[0].astype(np.int64)}, model=model, device=device, progress=progress, **transfer_options)
        seconds += time.perf_counter() - start
        n_frames += len(frames)
        scores = evaluate_masks(pred[1:], masks[1:])
        per_sequence[clip.name] = round(scores.jf_mean, 4)
        js.append(scores.j_mean)
        fs.append(scores.f_mean)
    return {
        "J&F": float(np.mean(list(per_sequence.values()))) if per_sequence else float("nan"),
        "J": float(np.mean(js)) if js else float("nan"),
        "F": float(np.mean(fs)) if fs else float("nan"),
        "per_sequence": per_sequence,
        "seconds_per_frame": seconds / max(n_frames, 1),
        "n_frames": n_frames,
    }


# ----------------------------------------------------------------------------- the loop

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
    if config.arch in _PRETRAINED_ARCHS and config.weights is not None:
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
        "library_version": _library_version(),
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
        scores = evaluate_semi_supervised(model, val_clips, config.val_max_frames, config.val_scale, device=device)
        entry = {"step": step, "J&F": scores["J&F"], "per_sequence": scores["per_sequence"],
                 "seconds_per_frame": round(scores["seconds_per_frame"], 4)}
        validation.append(entry)
        if log is not None:
            log(f"step {step}: validation J&F {scores['J&F']:.4f} {scores['per_sequence']}")
        if scores["J&F"] > best["score"]:
            best.update(score=scores["J&F"], step=step, state=copy.deepcopy(model.state_dict()))
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


def _library_version() -> str:
    from . import __version__

    return __version__


# ----------------------------------------------------------------------------- test-time adaptation

def adapt_to_references(
    model: EmbeddingModel,
    frames,
    references,
    steps: int = 10,
    lr: float = 1e-4,
    n_triplets: int = 256,
    loss: str = "pairwise",
    seed: int = 0,
    brush_width: float = 3.0,
    background_margin: float | None = 0.15,
    keep_weight: float = 1.0,
    device=None,
) -> tuple[EmbeddingModel, dict]:
    """Fine-tune a copy of ``model`` on the user's own labels before transferring them.

    Beyond the paper: the embedding was trained on other videos; a few gradient steps on
    pairs drawn *only from the pixels the user labelled* (within each annotated frame,
    and across annotated frames when there are several) specialise it to this video's
    objects.  The pretrained backbone stays frozen (only the head moves), so the
    backbone features are computed once and each step costs one head pass.

    Parameters
    ----------
    model : the embedding to start from (left unchanged: a copy is adapted)
    frames : uint8 ``(T, H, W, 3)`` video (only the annotated frames are read)
    references : :class:`simwidgets.scribbles.Scribbles` or ``{frame_idx: (H, W) labels}``
        with ``-1`` for unknown, as for :func:`simwidgets.transfer.propagate`
    steps, lr, n_triplets, loss, seed : the optimisation (AdamW, the named loss)
    background_margin : when no background (id 0) is labelled anywhere (the first DAVIS
        scribbles mark objects only), pixels of annotated frames farther than this
        fraction of the frame diagonal from every labelled pixel count as background,
        as in :class:`simwidgets.transfer.TransferConfig`; None disables it
    keep_weight : weight of a penalty ``mean(1 - cos(new, original))`` over every cell of
        the annotated frames: a few scribbled pixels are easy to overfit, and the penalty
        keeps the embedding of everything else where training put it (0 disables it)

    Measured with the shipped model (defaults, DAVIS scribbles, whole videos): bear/001
    J&F 0.755 -> 0.852, tennis/003 0.912 -> 0.895; the adaptation itself takes 1-3 s, but
    every frame must then be embedded again (~1 s per 480p frame on a 2-core CPU).

    Returns
    -------
    ``(adapted_model, info)`` with ``info = {"steps", "seconds", "loss_first", "loss_last",
    "frames": [annotated frame indices]}``.  With no labelled contrast (a single label)
    the copy is returned unchanged with ``steps = 0``.
    """
    from .scribbles import Scribbles

    start = time.perf_counter()
    n_frames, height, width = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
    if isinstance(references, Scribbles):
        references = {f: references.rasterize(f, height, width, brush_width) for f in references.annotated_frames}
    if not isinstance(references, dict) or not references:
        raise BadInputError("references must be Scribbles or a non-empty {frame_idx: (H, W) label map}")
    label_maps = {}
    for frame_idx, label_map in references.items():
        if not isinstance(frame_idx, (int, np.integer)) or not 0 <= frame_idx < n_frames:
            raise BadInputError(f"reference frame_idx {frame_idx!r} is outside the video (0..{n_frames - 1})")
        label_map = np.asarray(label_map)
        if label_map.shape != (height, width):
            raise BadInputError(f"labels of frame {frame_idx} have shape {label_map.shape}; frames are {(height, width)}")
        label_maps[int(frame_idx)] = label_map.astype(np.int64)
    no_background = not any((m == 0).any() for m in label_maps.values())
    if no_background and background_margin is not None:
        from scipy.ndimage import distance_transform_edt

        limit = background_margin * math.hypot(height, width)
        for frame_idx, label_map in label_maps.items():
            known = label_map >= 0
            if known.any():
                far = distance_transform_edt(~known) > limit
                label_maps[frame_idx] = np.where(far, 0, label_map)
    device = pick_device(device)
    adapted = copy.deepcopy(model).to(device)
    frame_ids = sorted(label_maps)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)

    multiple = math.lcm(adapted.pad_multiple, adapted.stride)
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    x = torch.from_numpy(np.stack([np.asarray(frames[f]) for f in frame_ids])).to(device).permute(0, 3, 1, 2).float() / 255
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    grids = []
    for f in frame_ids:
        padded = np.pad(label_maps[f], ((0, pad_h), (0, pad_w)), constant_values=UNKNOWN)
        grids.append(labels_to_grid(padded, adapted.stride))

    head_only = hasattr(adapted, "backbone") and hasattr(adapted, "embed_levels")
    if head_only:
        for p in adapted.backbone.parameters():
            p.requires_grad_(False)
        adapted.backbone.eval()
        with torch.no_grad():
            levels = adapted.backbone(x)
    loss_fn = make_loss(loss).to(device)
    params = [p for p in adapted.parameters() if p.requires_grad] + list(loss_fn.parameters())
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    adapted.eval()  # BatchNorm statistics of one video are not worth learning
    with torch.no_grad():
        original = adapted.embed_levels(levels, x) if head_only else adapted(x)
    losses = []
    for _ in range(steps):
        adapted.eval()
        emb = adapted.embed_levels(levels, x) if head_only else adapted(x)
        anchors, positives, negatives, a_lab, n_lab = [], [], [], [], []
        for i, grid_i in enumerate(grids):
            for j, grid_j in enumerate(grids):
                t = sample_triplets(grid_i, grid_j if j != i else None, n_triplets, 0.0, 2, generator)
                if len(t) == 0:
                    continue
                anchors.append(gather_cells(emb[i], t.anchor.to(device)))
                positives.append(gather_cells(emb[j], t.positive.to(device)))
                negatives.append(gather_cells(emb[j], t.negative.to(device)))
                a_lab.append(t.label)
                n_lab.append(t.negative_label)
        if not anchors:
            break
        value = loss_fn(torch.cat(anchors), torch.cat(positives), torch.cat(negatives),
                        labels=(torch.cat(a_lab).to(device), torch.cat(n_lab).to(device)))
        if keep_weight > 0:
            value = value + keep_weight * (1.0 - (emb * original).sum(1)).mean()
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        optimiser.step()
        losses.append(float(value.detach()))
    for p in adapted.parameters():
        p.requires_grad_(True)
    adapted.eval()
    info = {
        "steps": len(losses),
        "seconds": time.perf_counter() - start,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "frames": frame_ids,
    }
    return adapted, info


# ----------------------------------------------------------------------------- command line

def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``train`` subcommand's options to ``parser``."""
    d = TrainConfig()
    parser.add_argument("--davis-root", required=True, help="DAVIS-layout folder with a mask for every frame")
    parser.add_argument("--out", required=True, help="checkpoint to write (best validation score)")
    parser.add_argument("--arch", default=d.arch, choices=available_archs(), help="architecture (default %(default)s)")
    parser.add_argument("--dim", type=int, default=None, help="embedding dimension (architecture default when omitted)")
    parser.add_argument("--stride", type=int, default=None, help="output stride, 4 or 8")
    parser.add_argument("--colour-weight", type=float, default=None,
                        help="effnet-lite0/mobilenetv2: append each cell's Lab colour with this initial learnable weight")
    parser.add_argument("--weights", default=d.weights,
                        help="backbone initialisation: imagenet, none, or a state-dict file (default %(default)s)")
    parser.add_argument("--train-backbone", action="store_true", help="fine-tune the pretrained backbone too")
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--batch-pairs", type=int, default=d.batch_pairs)
    parser.add_argument("--crop", type=int, default=d.crop)
    parser.add_argument("--loss", default=d.loss, choices=sorted(LOSSES))
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--hard-fraction", type=float, default=d.hard_fraction,
                        help="share of negatives drawn next to the anchor's object (default %(default)s)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--sequences", default=None, help="comma-separated sequences to use (default: all in the root)")
    parser.add_argument("--val-sequences", default=None,
                        help="comma-separated held-out sequences (default: the fixed split of simwidgets.training.default_split)")
    parser.add_argument("--n-val", type=int, default=4, help="held-out sequences in the default split")
    parser.add_argument("--val-every", type=int, default=d.val_every)
    parser.add_argument("--val-max-frames", type=int, default=None)
    parser.add_argument("--val-scale", type=float, default=d.val_scale)
    parser.add_argument("--device", default=None, help="cpu, cuda, mps or auto")
    parser.add_argument("--history", default=None, help="also write the loss and validation history to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_train(args: argparse.Namespace) -> TrainResult:
    """Run the ``train`` subcommand from parsed arguments; prints a summary."""
    root = Path(args.davis_root)
    names = list_sequences(root)
    if args.sequences:
        wanted = [s.strip() for s in args.sequences.split(",") if s.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise BadInputError(f"unknown sequences {unknown} in {root}")
        names = wanted
    if args.val_sequences is not None:
        val = [s.strip() for s in args.val_sequences.split(",") if s.strip()]
        unknown = sorted(set(val) - set(names))
        if unknown:
            raise BadInputError(f"validation sequences {unknown} are not among the sequences {names}")
        train_names = [n for n in names if n not in val]
    else:
        train_names, val = default_split(names, n_val=args.n_val)
    if not train_names:
        raise BadInputError("no training sequences left after holding out the validation ones")
    arch_options = {
        k: v for k, v in (("dim", args.dim), ("stride", args.stride), ("colour_weight", args.colour_weight))
        if v is not None
    }
    weights = None if str(args.weights).lower() == "none" or args.arch not in _PRETRAINED_ARCHS else args.weights
    config = TrainConfig(
        arch=args.arch, arch_options=arch_options, weights=weights, freeze_backbone=not args.train_backbone,
        steps=args.steps, batch_pairs=args.batch_pairs, crop=args.crop, loss=args.loss, lr=args.lr,
        hard_fraction=args.hard_fraction,
        seed=args.seed, val_every=args.val_every, val_max_frames=args.val_max_frames,
        val_scale=args.val_scale, device=args.device,
    )
    argv = getattr(args, "_argv", None)
    if argv is None:  # called by simwidgets.cli: the options follow "train" on the command line
        argv = sys.argv[sys.argv.index("train") + 1 :] if "train" in sys.argv else []
    command = "python -m simwidgets train " + " ".join(shlex.quote(a) for a in argv)
    print(f"training {config.arch} on {len(train_names)} sequences, validating on {val}", flush=True)
    result = train(
        load_davis_clips(root, train_names), load_davis_clips(root, val), config, out=args.out,
        progress=not args.no_progress, command=command.strip(), log=lambda line: print(line, flush=True),
    )
    if args.history:
        Path(args.history).parent.mkdir(parents=True, exist_ok=True)
        Path(args.history).write_text(json.dumps({"history": result.history, "validation": result.validation}, indent=1))
    print(f"done: best validation J&F {result.best_score:.4f} at step {result.best_step}; saved {args.out}", flush=True)
    return result


def train_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m simwidgets train``; returns the exit status."""
    parser = add_train_arguments(argparse.ArgumentParser(prog="simwidgets train", description=__doc__.splitlines()[0]))
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args._argv = argv
    try:
        run_train(args)
    except BadInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
