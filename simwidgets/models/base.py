"""The embedding contract and the registry of architectures.

Every embedding in simwidgets (the hand-crafted baseline and the learned networks) is an
:class:`EmbeddingModel`.  The contract the label transfer relies on:

* ``model.embed(frames)`` takes uint8 frames ``(T, H, W, 3)`` and returns a float tensor
  ``(T, D, h, w)`` with ``h = ceil(H / stride)``, ``w = ceil(W / stride)``, each
  ``D``-vector of unit length (so a dot product is a cosine similarity);
* ``model.stride`` and ``model.dim`` say which grid and dimension;
* ``model(x)`` is the differentiable forward pass on a float batch ``(B, 3, H, W)`` in
  ``[0, 1]`` with ``H, W`` multiples of ``model.pad_multiple`` (training uses this).

Subclasses implement :meth:`EmbeddingModel.features` and register themselves with
:func:`register_arch` so that checkpoints can name their architecture.  Every
architecture module is imported by ``simwidgets.models`` itself, so the registry is
complete whenever anything of ``simwidgets.models`` is importable: a checkpoint of any
architecture loads in a fresh process.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..device import autocast_dtype, embedding_batch_size, pick_device
from .. import checks
from ..checks import video_frames
from ..errors import BadInputError
from .compiled import compile_policy, compiled_runner
from .inference import inference_network

__all__ = ["EmbeddingModel", "register_arch", "build_model", "available_archs", "is_registered", "coordinate_channels"]

_ARCHS: dict[str, type["EmbeddingModel"]] = {}


def register_arch(name: str) -> Callable[[type], type]:
    """Class decorator: make an EmbeddingModel subclass buildable by name."""

    def decorate(cls):
        cls.arch = name
        _ARCHS[name] = cls
        return cls

    return decorate


def available_archs() -> list[str]:
    return sorted(_ARCHS)


def is_registered(model) -> bool:
    """Whether ``model``'s architecture can be rebuilt by name (what a checkpoint needs)."""
    return _ARCHS.get(getattr(model, "arch", None)) is type(model)


def build_model(arch: str, **config) -> "EmbeddingModel":
    """Instantiate a registered architecture with its configuration keywords."""
    if arch not in _ARCHS:
        raise BadInputError(f"unknown architecture {arch!r} (known: {', '.join(available_archs())})")
    try:
        return _ARCHS[arch](**config)
    except TypeError as error:
        raise BadInputError(f"bad configuration for architecture {arch!r}: {error}") from None


def coordinate_channels(batch: int, h: int, w: int, device, dtype) -> torch.Tensor:
    """``(batch, 2, h, w)`` normalised (x, y) cell-centre coordinates in [-1, 1]."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w * 2 - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y]).unsqueeze(0).expand(batch, -1, -1, -1)


class EmbeddingModel(nn.Module):
    """Base class of all embeddings (see the module docstring for the contract).

    Parameters
    ----------
    dim : total embedding dimension ``D`` (coordinates included)
    stride : output stride (4 or 8 in practice)
    coord_weight : weight of the two appended ``(x, y)`` channels; 0 disables them
    """

    arch = "abstract"
    #: input height and width are padded to a multiple of this before ``features``
    pad_multiple = 8
    #: whether :meth:`embed` may run the network in float16/bfloat16 (learned networks
    #: lose nothing measurable; hand-made features opt out)
    reduced_precision = True

    def __init__(self, dim: int, stride: int, coord_weight: float = 0.0):
        super().__init__()
        if dim < 3:
            raise BadInputError(f"embedding dimension must be at least 3; got {dim}")
        if stride < 1:
            raise BadInputError(f"stride must be positive; got {stride}")
        self.dim = int(dim)
        self.stride = int(stride)
        self.coord_weight = float(coord_weight)

    @property
    def feature_dim(self) -> int:
        """Channels that :meth:`features` must produce (``dim`` minus the coordinates)."""
        return self.dim - (2 if self.coord_weight > 0 else 0)

    def config(self) -> dict:
        """Keyword arguments that rebuild this model with :func:`build_model`."""
        return {"dim": self.dim, "stride": self.stride, "coord_weight": self.coord_weight}

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``(B, 3, H, W)`` in [0, 1] -> ``(B, feature_dim, H / stride, W / stride)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish_features(self.features(x))

    def finish_features(self, feats: torch.Tensor) -> torch.Tensor:
        """``features(x)`` -> the embedding: the ``(x, y)`` channels appended (when
        ``coord_weight > 0``), then every cell's vector L2-normalised."""
        if self.coord_weight > 0:
            b, _, h, w = feats.shape
            coords = coordinate_channels(b, h, w, feats.device, feats.dtype) * self.coord_weight
            feats = torch.cat([feats, coords], dim=1)
        return F.normalize(feats.float(), dim=1)

    def merge_mirrored(self, feats: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
        """Combine ``features(x)`` with ``features(x mirrored)`` mirrored back (same cells):
        their mean.  Architectures whose features have parts of fixed length override it."""
        return 0.5 * (feats.float() + mirrored.float())

    def mirror_averaged(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding of ``x`` from the features of ``x`` and of its left-right mirror
        image (mirrored back before they are merged), so a cell's vector does not depend on
        which way the scene faces.  ``x``'s width must be a multiple of the stride, so the
        mirrored grid falls on the same cells (:meth:`embed` pads it so)."""
        if x.shape[-1] % self.stride:
            raise BadInputError(f"mirror averaging needs a width that is a multiple of the stride {self.stride}; "
                                f"got {x.shape[-1]}")
        feats = self.features(x)
        mirrored = self.features(x.flip(-1)).flip(-1)
        return self.finish_features(self.merge_mirrored(feats, mirrored))

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(H, W)`` a ``height x width`` frame is padded to before the network sees it
        (:meth:`embed` pads with replicated edge pixels; a compiled package is built for it)."""
        multiple = math.lcm(self.pad_multiple, self.stride)
        return height + (-height) % multiple, width + (-width) % multiple

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Embedding grid ``(h, w)`` of a ``height x width`` frame."""
        return math.ceil(height / self.stride), math.ceil(width / self.stride)

    @torch.inference_mode()
    def embed(
        self,
        frames,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        precision: str | None = None,
        mirror: bool = False,
        compile: str | bool | None = None,
    ) -> torch.Tensor:
        """Embed uint8 frames ``(T, H, W, 3)`` (or one ``(H, W, 3)`` frame).

        Returns a float32 tensor ``(T, D, h, w)`` on ``device`` (chosen automatically when
        None), unit length along ``D``.  Frames may be any array-like indexable by slices
        (e.g. :class:`simwidgets.video.LazyFrames`), so long videos are decoded in batches.
        ``precision`` (see :func:`simwidgets.device.autocast_dtype`; automatic when None):
        the network runs in float16 on CUDA and bfloat16 on CPUs with hardware support,
        unless the model opts out (:attr:`reduced_precision`) or ``"fp32"`` is asked.
        ``batch_size`` frames go through the network at once (None:
        :func:`simwidgets.device.embedding_batch_size`, one on a CPU).  ``mirror``: each
        frame's features are averaged with those of its mirror image
        (:meth:`mirror_averaged`; 1.7-1.8x the network time).  ``compile`` (``cached``,
        ``build`` or ``off``; None: ``$SIMWIDGETS_COMPILE``, else ``cached``): on a CPU, run
        the network from a package compiled ahead of time for this CPU when there is one
        (:mod:`simwidgets.models.compiled`; same result, 1.6-1.9x as fast on a 2-core Xeon).
        """
        single = getattr(frames, "ndim", None) == 3
        if single:
            frames = np.asarray(frames)[None]
        frames = video_frames(frames)
        shape = tuple(frames.shape)
        device = pick_device(device)
        batch_size = embedding_batch_size(device) if batch_size is None else checks.positive_int(batch_size, "batch_size")
        dtype = autocast_dtype(device, precision)  # checks the name even where it is not used
        dtype = dtype if self.reduced_precision else None
        was_training = self.training
        self.eval()
        self.to(device)
        n, height, width = shape[:3]
        h, w = self.grid_size(height, width)
        padded_h, padded_w = self.padded_size(height, width)
        pad_h, pad_w = padded_h - height, padded_w - width
        network = inference_network(self)  # batch norms folded, where the model allows it
        policy = compile_policy(compile)
        runner = None
        if device.type == "cpu" and policy != "off":
            runner = compiled_runner(network, (batch_size, 3, padded_h, padded_w), dtype, bool(mirror), policy)
        out = torch.empty((n, self.dim, h, w), dtype=torch.float32, device=device)
        batches = range(0, n, batch_size)
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="embedding", unit="batch")
        for start in batches:
            chunk = np.asarray(frames[start : start + batch_size])
            if chunk.dtype != np.uint8:
                raise BadInputError(f"frames must be uint8; got {chunk.dtype}")
            x = torch.from_numpy(chunk).to(device).permute(0, 3, 1, 2).float().div_(255.0)
            if pad_h or pad_w:
                x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
            if runner is not None:
                # the package was compiled for full batches: the last one is filled up with
                # copies of its last frame, whose embeddings are dropped
                emb = runner(torch.cat([x, x[-1:].expand(batch_size - len(x), -1, -1, -1)]))[: len(x)]
            else:
                with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    emb = network.mirror_averaged(x) if mirror else network(x)
            if emb.shape[-2] < h or emb.shape[-1] < w:
                raise RuntimeError(
                    f"{type(self).__name__} produced a {tuple(emb.shape[-2:])} grid; expected at least {(h, w)}"
                )
            out[start : start + len(chunk)] = emb[:, :, :h, :w].float()
        self.train(was_training)
        return out[0] if single else out
