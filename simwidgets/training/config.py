"""Everything that determines a training run, as one record (stored in the checkpoint).

Torch-free on import, so the command line can show the defaults without loading torch.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from ..errors import BadInputError

__all__ = ["TrainConfig", "PRETRAINED_ARCHS"]

#: architectures on an ImageNet trunk (their ``weights`` option chooses its initialisation)
PRETRAINED_ARCHS = ("effnet-lite0", "mobilenetv2")


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
    train_blocks : with a frozen backbone, fine-tune its top this many blocks anyway (their
        weights only: BatchNorm statistics stay the ImageNet ones, since a batch of four
        crops from one video estimates them badly). The upper blocks carry the semantic
        features a similarity head reads, and twenty videos are enough to adjust them but
        not to retrain the whole trunk.
    backbone_lr_scale : learning rate of fine-tuned backbone weights relative to ``lr``
        (the head starts from scratch, the trunk from ImageNet: a full rate erases it)
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
    train_blocks: int = 0
    backbone_lr_scale: float = 0.1
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
        from ..models import available_archs
        from .losses import LOSSES

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
        if self.train_blocks < 0:
            raise BadInputError(f"train_blocks must be >= 0; got {self.train_blocks}")
        if not 0 < self.backbone_lr_scale <= 1:
            raise BadInputError(f"backbone_lr_scale must lie in (0, 1]; got {self.backbone_lr_scale}")

    def to_record(self) -> dict:
        """Plain-value dict (JSON- and ``weights_only``-safe)."""
        record = asdict(self)
        record["scale_range"] = list(self.scale_range)
        used = self.weights is not None and self.arch in PRETRAINED_ARCHS
        record["weights"] = str(self.weights) if used else None
        return json.loads(json.dumps(record))
