"""Embedding networks: frames -> L2-normalised per-pixel embeddings, and their checkpoints.

Every embedding in simwidgets is an :class:`EmbeddingModel` (the contract is in
:mod:`~simwidgets.models.base`):

* :mod:`~simwidgets.models.baseline` -- hand-crafted colour + position, no training;
* :mod:`~simwidgets.models.fcn` -- a small network trained from scratch;
* :mod:`~simwidgets.models.pretrained` -- a fusion head on an ImageNet trunk
  (:mod:`~simwidgets.models.backbones`), the shipped default;
* :mod:`~simwidgets.models.custom` -- :func:`as_embedding`: your own network, in one line;
* :mod:`~simwidgets.models.checkpoint` -- save, load, and the shipped model;
* :mod:`~simwidgets.models.compiled` -- :func:`precompile`: the network compiled for this
  CPU once, kept on disk, run by every later embedding of that frame size.

Importing this package imports every architecture, so the registry that
:func:`build_model` and :func:`load_model` use is always complete.
"""
from . import baseline, fcn, pretrained  # noqa: F401  (each registers its architectures)
from .backbones import load_backbone_weights, pretrained_weights_path
from .base import EmbeddingModel, available_archs, build_model, coordinate_channels, register_arch
from .baseline import ColourPositionEmbedding, rgb_to_lab
from .custom import NetworkEmbedding, as_embedding
from .checkpoint import CHECKPOINT_FORMAT, default_model_path, load_checkpoint, load_model, save_checkpoint
from .compiled import compiled_cache_dir, precompile
from .fcn import SmallFCN
from .pretrained import EfficientNetLiteEmbedding, MobileNetV2Embedding

__all__ = [
    "EmbeddingModel",
    "ColourPositionEmbedding",
    "SmallFCN",
    "EfficientNetLiteEmbedding",
    "MobileNetV2Embedding",
    "NetworkEmbedding",
    "as_embedding",
    "register_arch",
    "build_model",
    "available_archs",
    "coordinate_channels",
    "rgb_to_lab",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "default_model_path",
    "load_backbone_weights",
    "pretrained_weights_path",
    "CHECKPOINT_FORMAT",
    "precompile",
    "compiled_cache_dir",
]
