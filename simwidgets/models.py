"""Embedding networks: frames -> L2-normalised per-pixel embeddings, and their checkpoints.

Every embedding in simwidgets (the hand-crafted baseline and the learned networks) is an
:class:`EmbeddingModel`.  The contract the label transfer relies on:

* ``model.embed(frames)`` takes uint8 frames ``(T, H, W, 3)`` and returns a float tensor
  ``(T, D, h, w)`` with ``h = ceil(H / stride)``, ``w = ceil(W / stride)``, each
  ``D``-vector of unit length (so a dot product is a cosine similarity);
* ``model.stride`` and ``model.dim`` say which grid and dimension;
* ``model(x)`` is the differentiable forward pass on a float batch ``(B, 3, H, W)`` in
  ``[0, 1]`` with ``H, W`` multiples of ``model.pad_multiple`` (training uses this).

Subclasses implement :meth:`EmbeddingModel.features` and register themselves with
:func:`register_arch` so that checkpoints can name their architecture.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .device import autocast_dtype, pick_device
from .errors import BadInputError

__all__ = [
    "EmbeddingModel",
    "SmallFCN",
    "register_arch",
    "build_model",
    "available_archs",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "CHECKPOINT_FORMAT",
]

CHECKPOINT_FORMAT = "simwidgets-embedding"
CHECKPOINT_VERSION = 1

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
        feats = self.features(x)
        if self.coord_weight > 0:
            b, _, h, w = feats.shape
            coords = coordinate_channels(b, h, w, feats.device, feats.dtype) * self.coord_weight
            feats = torch.cat([feats, coords], dim=1)
        return F.normalize(feats.float(), dim=1)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Embedding grid ``(h, w)`` of a ``height x width`` frame."""
        return math.ceil(height / self.stride), math.ceil(width / self.stride)

    @torch.inference_mode()
    def embed(
        self,
        frames,
        device: str | torch.device | None = None,
        batch_size: int = 4,
        progress: bool = False,
        precision: str | None = None,
    ) -> torch.Tensor:
        """Embed uint8 frames ``(T, H, W, 3)`` (or one ``(H, W, 3)`` frame).

        Returns a float32 tensor ``(T, D, h, w)`` on ``device`` (chosen automatically when
        None), unit length along ``D``.  Frames may be any array-like indexable by slices
        (e.g. :class:`simwidgets.video.LazyFrames`), so long videos are decoded in batches.
        ``precision`` (see :func:`simwidgets.device.autocast_dtype`; automatic when None):
        the network runs in float16 on CUDA and bfloat16 on CPUs with hardware support,
        unless the model opts out (:attr:`reduced_precision`) or ``"fp32"`` is asked.
        """
        single = getattr(frames, "ndim", None) == 3
        if single:
            frames = np.asarray(frames)[None]
        shape = tuple(frames.shape)
        if len(shape) != 4 or shape[3] != 3:
            raise BadInputError(f"frames must have shape (T, H, W, 3); got {shape}")
        device = pick_device(device)
        dtype = autocast_dtype(device, precision)  # checks the name even where it is not used
        dtype = dtype if self.reduced_precision else None
        was_training = self.training
        self.eval()
        self.to(device)
        n, height, width = shape[:3]
        h, w = self.grid_size(height, width)
        multiple = math.lcm(self.pad_multiple, self.stride)
        pad_h = (-height) % multiple
        pad_w = (-width) % multiple
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
            with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                emb = self(x)
            if emb.shape[-2] < h or emb.shape[-1] < w:
                raise RuntimeError(
                    f"{type(self).__name__} produced a {tuple(emb.shape[-2:])} grid; expected at least {(h, w)}"
                )
            out[start : start + len(chunk)] = emb[:, :, :h, :w].float()
        self.train(was_training)
        return out[0] if single else out


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


# ----------------------------------------------------------------------------- checkpoints

def _library_version() -> str:
    from . import __version__

    return __version__


def save_checkpoint(model: EmbeddingModel, path: str | Path, training: dict | None = None) -> Path:
    """Save architecture, configuration, weights and training record to ``path``.

    ``training`` holds plain values (str, int, float, bool, None, lists, dicts; numpy
    numbers and arrays are converted to those) so that the file loads with
    ``torch.load(weights_only=True)``; anything else is refused here, before writing,
    rather than producing a file that cannot be read back.
    """
    path = Path(path)
    training = _plain_record(dict(training or {}), "training record")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "arch": model.arch,
        "config": model.config(),
        "stride": model.stride,
        "dim": model.dim,
        "library_version": _library_version(),
        "training": training,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def _plain_record(value, where: str):
    """``value`` with numpy numbers/arrays turned into Python ones; other objects refused."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain_record(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain_record(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise BadInputError(
        f"{where} holds a {type(value).__name__}; a checkpoint's training record takes plain values "
        "only (str, int, float, bool, None, lists, dicts) so that it loads with weights_only=True"
    )


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint file safely (``weights_only=True``) and check its format."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for corrupt files
        raise BadInputError(
            f"cannot read checkpoint {path}: corrupt, truncated or not a weights-only torch file "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise BadInputError(
            f"{path} is not a simwidgets embedding checkpoint (no 'format': {CHECKPOINT_FORMAT!r} entry); "
            "a bare state dict can be loaded into a model with model.load_state_dict"
        )
    for key in ("arch", "config", "state_dict"):
        if key not in payload:
            raise BadInputError(f"checkpoint {path} lacks the {key!r} entry")
    if not isinstance(payload["arch"], str):
        raise BadInputError(f"checkpoint {path}: the 'arch' entry must be a string; got {payload['arch']!r:.80}")
    if not isinstance(payload["config"], dict) or not all(isinstance(k, str) for k in payload["config"]):
        raise BadInputError(f"checkpoint {path}: the 'config' entry must be a dict of keyword arguments")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise BadInputError(f"checkpoint {path}: the 'state_dict' entry must be a dict of tensors by name")
    return payload


def load_model(
    source: "str | Path | EmbeddingModel" = "default",
    expect_arch: str | None = None,
) -> EmbeddingModel:
    """Get an embedding model by name or from a checkpoint file.

    ``source`` is ``"baseline"`` (hand-crafted colour + position), ``"untrained"``
    (a randomly initialised fcn-small), ``"default"`` (the shipped trained model when
    present, else the baseline), a checkpoint path, or a model (returned as is).
    """
    if isinstance(source, EmbeddingModel):
        return source
    name = str(source)
    if name == "baseline":
        from .features import ColourPositionEmbedding

        return ColourPositionEmbedding()
    if name == "untrained":
        torch.manual_seed(0)
        return SmallFCN()
    if name == "default":
        shipped = default_model_path()
        if shipped is None:
            return load_model("baseline")
        name = str(shipped)
    payload = load_checkpoint(name)
    arch = payload["arch"]
    if expect_arch is not None and arch != expect_arch:
        raise BadInputError(f"checkpoint {name} holds architecture {arch!r}, expected {expect_arch!r}")
    model = build_model(arch, **payload["config"])
    missing, unexpected = [], []
    own = model.state_dict()
    for key in own:
        if key not in payload["state_dict"]:
            missing.append(key)
    for key in payload["state_dict"]:
        if key not in own:
            unexpected.append(key)
    if missing or unexpected:
        raise BadInputError(
            f"checkpoint {name} does not fit architecture {arch!r}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for key, value in payload["state_dict"].items():
        if own[key].shape != value.shape:
            raise BadInputError(
                f"checkpoint {name} does not fit architecture {arch!r}: {key} has shape "
                f"{tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    model.load_state_dict(payload["state_dict"])
    model.training_record = payload.get("training", {})
    model.eval()
    return model


def default_model_path() -> Path | None:
    """The shipped trained model in ``data/models/default.pt``, if present."""
    path = Path(__file__).resolve().parent.parent / "data" / "models" / "default.pt"
    return path if path.is_file() else None


# Architectures defined in other modules register themselves on import.
from . import backbones as _backbones  # noqa: E402,F401  (pretrained-backbone embeddings)
