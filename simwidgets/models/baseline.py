"""The hand-crafted baseline embedding: perceptual colour and position.

It needs no training, so every part of simwidgets works before a network is trained,
and it is the yardstick a learned embedding must beat.  Each grid cell is described by
its mean CIE L*a*b* colour (perceptually uniform: equal distances look equally
different) and its normalised position, both scaled; a constant channel is appended
before L2 normalisation so that on the unit sphere the cosine similarity of two cells
falls monotonically with the Euclidean distance of their (colour, position) vectors
(for small vectors, ``cos ~ 1 - |d|^2 / 2``).  That is exactly the "similar colour,
nearby" rule a user would expect from a non-learned method.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import EmbeddingModel, register_arch

__all__ = ["ColourPositionEmbedding", "rgb_to_lab", "cell_colour"]


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1], ``(B, 3, H, W)`` -> CIE L*a*b* (D65), L in [0, 100], a/b about [-110, 110]."""
    linear = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    matrix = rgb.new_tensor(
        [
            [0.412453, 0.357580, 0.180423],
            [0.212671, 0.715160, 0.072169],
            [0.019334, 0.119193, 0.950227],
        ]
    )
    xyz = torch.einsum("ij,bjhw->bihw", matrix, linear)
    white = rgb.new_tensor([0.950456, 1.0, 1.088754]).view(1, 3, 1, 1)
    xyz = xyz / white
    delta = 6.0 / 29.0
    f = torch.where(xyz > delta**3, xyz.clamp_min(1e-12) ** (1.0 / 3.0), xyz / (3 * delta**2) + 4.0 / 29.0)
    L = 116.0 * f[:, 1] - 16.0
    a = 500.0 * (f[:, 0] - f[:, 1])
    b = 200.0 * (f[:, 1] - f[:, 2])
    return torch.stack([L, a, b], dim=1)


def cell_colour(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Mean CIE L*a*b* colour of each ``stride x stride`` cell of ``(B, 3, H, W)`` frames in
    [0, 1], centred and scaled to about [-0.5, 0.5] (L/100 - 0.5, a/100, b/100).

    Colour is a measurement, not a learned feature: computed in float32 even under
    autocast (bfloat16 would round L* by up to 0.4), for the baseline and for every
    network that appends colour channels.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        if stride > 1:
            x = F.avg_pool2d(x, stride, stride, ceil_mode=True)
        lab = rgb_to_lab(x.clamp(0, 1))
        return torch.stack([(lab[:, 0] - 50.0) / 100.0, lab[:, 1] / 100.0, lab[:, 2] / 100.0], dim=1)


@register_arch("baseline-colour-position")
class ColourPositionEmbedding(EmbeddingModel):
    """Mean L*a*b* colour of each ``stride x stride`` cell plus its position.

    Parameters
    ----------
    stride : cell size in pixels
    colour_weight : scale of the colour part (L/100, a/100, b/100 units)
    coord_weight : scale of the (x, y) part, coordinates in [-1, 1]
    """

    pad_multiple = 1
    #: colour and position are exact measurements, and cheap: always float32
    reduced_precision = False

    def __init__(self, stride: int = 8, colour_weight: float = 2.0, coord_weight: float = 0.5):
        super().__init__(dim=6 if coord_weight > 0 else 4, stride=stride, coord_weight=coord_weight)
        self.colour_weight = float(colour_weight)

    def config(self) -> dict:
        return {"stride": self.stride, "colour_weight": self.colour_weight, "coord_weight": self.coord_weight}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        centred = cell_colour(x, self.stride)
        constant = torch.ones_like(centred[:, :1])
        return torch.cat([centred * self.colour_weight, constant], dim=1)
