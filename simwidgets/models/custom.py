"""Bring your own network: any feature extractor becomes an embedding model in one line.

People exploring embeddings want to look at *their* features (a DINOv2, a ResNet, a layer
of their own model).  :func:`as_embedding` wraps any torch module or callable that maps a
batch of frames ``(B, 3, H, W)`` to a feature map ``(B, C, h, w)``::

    model = sw.models.as_embedding(my_resnet_trunk)             # stride found by a probe
    masks = sw.propagate(video.frames, scribbles, model=model)  # and so on: the explorer,
                                                                # the app, the protocol

The wrapper does what the built-in networks do around their trunk: input normalisation,
optional colour and position channels, L2 normalisation, padding to the stride, reduced
precision on the accelerator.  It is not a registered architecture (simwidgets cannot
rebuild your network from a file), so it is saved with your network's own ``state_dict``,
not with :func:`~simwidgets.models.save_checkpoint`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import checks
from ..errors import BadInputError
from .base import EmbeddingModel
from .baseline import cell_colour

__all__ = ["NetworkEmbedding", "as_embedding", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: probe sizes: multiples of 8, 14 (ViT patches), 16 and 32, so any common trunk fits
_PROBES = (224, 448)


class _Callable(nn.Module):
    """A plain callable as a module (so ``.to(device)`` and ``eval()`` are harmless)."""

    def __init__(self, function: Callable):
        super().__init__()
        self.function = function

    def forward(self, x):
        return self.function(x)


class NetworkEmbedding(EmbeddingModel):
    """A user's feature extractor as an :class:`EmbeddingModel` (see :func:`as_embedding`)."""

    arch = "custom-network"

    def __init__(
        self,
        network: nn.Module | Callable,
        stride: int,
        channels: int,
        normalise: tuple[Sequence[float], Sequence[float]] | None,
        colour_weight: float,
        coord_weight: float,
        reduced_precision: bool,
    ):
        super().__init__(channels + (3 if colour_weight > 0 else 0) + (2 if coord_weight > 0 else 0), stride,
                         coord_weight)
        self.network = network if isinstance(network, nn.Module) else _Callable(network)
        self.channels = channels
        self.colour_weight = colour_weight
        self.pad_multiple = stride
        self.reduced_precision = reduced_precision
        if normalise is None:
            self.normalise = None
        else:
            mean, std = normalise
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
            self.normalise = True

    def config(self) -> dict:
        """What describes this wrapper (it cannot rebuild the user's network)."""
        return {**super().config(), "network": type(self.network).__name__, "channels": self.channels,
                "colour_weight": self.colour_weight}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        inputs = (x - self.mean) / self.std if self.normalise else x
        feats = _feature_map(self.network(inputs), "the network")
        if feats.shape[1] != self.channels:
            raise BadInputError(f"the network returned {feats.shape[1]} channels; it returned {self.channels} "
                                "when it was wrapped")
        if self.colour_weight > 0:
            # features on the unit sphere first, so the colour weight sets a definite balance
            feats = F.normalize(feats.float(), dim=1)
            colour = cell_colour(x, self.stride)[..., : feats.shape[-2], : feats.shape[-1]]
            feats = torch.cat([feats, colour * self.colour_weight], dim=1)
        return feats


def _feature_map(output, what: str) -> torch.Tensor:
    if not isinstance(output, torch.Tensor) or output.ndim != 4:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise BadInputError(
            f"{what} returned {shape}; expected a (B, C, h, w) feature map (for a ViT, reshape its patch "
            "tokens to a grid first)"
        )
    return output


def _probe(network: nn.Module, normalise, device) -> tuple[int, int]:
    """``(stride, channels)`` of ``network``, from its output on two blank inputs."""
    found = []
    with torch.inference_mode():
        for size in _PROBES:
            x = torch.zeros((1, 3, size, size), device=device)
            if normalise is not None:
                mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in normalise)
                x = (x - mean) / std
            try:
                out = network(x)
            except Exception as error:  # the user's network: any failure is theirs to see
                raise BadInputError(
                    f"the network failed on a blank {size}x{size} batch ({type(error).__name__}: {error})"
                ) from None
            out = _feature_map(out, "the network")
            if out.shape[-2] != out.shape[-1] or size % out.shape[-1]:
                raise BadInputError(
                    f"the network maps a {size}x{size} input to a {out.shape[-2]}x{out.shape[-1]} grid: the output "
                    "must be the input divided by a whole stride (pad its convolutions, or crop)"
                )
            found.append((size // out.shape[-1], out.shape[1]))
    if found[0] != found[1]:
        raise BadInputError(f"the network's stride is not constant: {_PROBES[0]} px -> {found[0][0]}, "
                            f"{_PROBES[1]} px -> {found[1][0]}")
    return found[0]


def as_embedding(
    network: nn.Module | Callable,
    stride: int | None = None,
    normalise: str | tuple | None = "imagenet",
    colour_weight: float = 0.0,
    coord_weight: float = 0.0,
    reduced_precision: bool = True,
) -> NetworkEmbedding:
    """Wrap a feature extractor as an embedding model.

    Parameters
    ----------
    network : a torch module or callable taking a float batch ``(B, 3, H, W)`` (``H, W``
        multiples of its stride) and returning a feature map ``(B, C, H / s, W / s)``
    stride : its output stride ``s``; inferred from two probe inputs when None (and
        checked against them when given)
    normalise : ``"imagenet"`` (mean and std of ImageNet, what most trunks expect), a
        ``(mean, std)`` pair of 3-tuples, or None to pass frames in [0, 1]
    colour_weight : append each cell's L*a*b* colour with this weight (0: none)
    coord_weight : append each cell's (x, y) position with this weight (0: none)
    reduced_precision : allow float16/bfloat16 on devices that have it (as for the
        built-in networks); False keeps float32

    Returns a :class:`NetworkEmbedding`; its parameters are the network's (``.to()``,
    ``.eval()`` and gradients work as on the network).
    """
    if isinstance(network, EmbeddingModel):
        raise BadInputError("that is already an embedding model: pass it as model= directly")
    if not callable(network):
        raise BadInputError(f"network must be a torch module or a callable; got {type(network).__name__}")
    if normalise == "imagenet":
        normalise = (IMAGENET_MEAN, IMAGENET_STD)
    elif normalise is not None:
        try:
            mean, std = (tuple(float(v) for v in part) for part in normalise)
        except (TypeError, ValueError):
            raise BadInputError(f"normalise must be 'imagenet', None or (mean, std) 3-tuples; got {normalise!r}") from None
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise BadInputError(f"normalise needs 3 means and 3 positive standard deviations; got {normalise!r}")
        normalise = (mean, std)
    colour_weight = 0.0 if colour_weight == 0 else checks.positive_float(colour_weight, "colour_weight")
    coord_weight = 0.0 if coord_weight == 0 else checks.positive_float(coord_weight, "coord_weight")
    module = network if isinstance(network, nn.Module) else _Callable(network)
    was_training = module.training
    module.eval()
    try:
        device = next(module.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    found_stride, channels = _probe(module, normalise, device)
    module.train(was_training)
    if stride is not None and checks.positive_int(stride, "stride") != found_stride:
        raise BadInputError(f"stride {stride} was given, but the network's output has stride {found_stride}")
    return NetworkEmbedding(module, found_stride, channels, normalise, colour_weight, coord_weight,
                            checks.boolean(reduced_precision, "reduced_precision"))
