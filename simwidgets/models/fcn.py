"""A small fully convolutional embedding network, trainable from scratch on a CPU.

The network of the early notebooks: no pretrained trunk, so a run of a few minutes shows
similarity learning from nothing (and ``load_model("untrained")`` gives its random start).
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import BadInputError
from .base import EmbeddingModel, register_arch

__all__ = ["SmallFCN"]


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


@register_arch("fcn-small")
class SmallFCN(EmbeddingModel):
    """A small fully convolutional embedding (stride 4), trainable on a laptop CPU in minutes.

    Two stride-2 stages, then dilated 3x3 convolutions for context, then a 1x1 projection.
    """

    def __init__(self, dim: int = 32, stride: int = 4, coord_weight: float = 0.5, width: int = 48):
        super().__init__(dim, stride, coord_weight)
        if stride not in (4, 8):
            raise BadInputError(f"fcn-small supports stride 4 or 8; got {stride}")
        self.width = int(width)
        c = self.width
        layers = [_conv_bn_relu(3, c // 2, stride=2), _conv_bn_relu(c // 2, c, stride=2)]
        if stride == 8:
            layers.append(_conv_bn_relu(c, c, stride=2))
        layers += [_conv_bn_relu(c, c, dilation=2), _conv_bn_relu(c, c, dilation=4)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, self.feature_dim, 1)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def config(self) -> dict:
        return {**super().config(), "width": self.width}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body((x - self.mean) / self.std))
