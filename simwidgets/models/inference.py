"""The network as it runs for embedding: batch norms folded into their convolutions.

In eval mode a batch norm is an affine map per channel, so it can be folded into the
weights and bias of the convolution before it.  The trunks of this package are mobile
networks, where every convolution is followed by a batch norm and each is cheap: on a CPU
the separate batch-norm passes over the feature maps took a fifth of the embedding time,
and folding them made effnet-lite0 embed about 1.5x faster (``benchmarks/bench_transfer.py
--parts fps``).  The folded network computes the same function (to fp32 rounding; the
tests compare it with the original).

Training keeps the original modules: folding is done on a copy, which
:func:`inference_network` rebuilds whenever a weight or buffer of the model has changed
since (an optimizer step, ``load_state_dict``, a move to another device), so an embedding
always comes from the current weights.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

__all__ = ["fold_batchnorm", "inference_network"]

#: where :func:`inference_network` keeps the folded copy (a plain attribute, so it is in
#: no ``state_dict``, ``parameters()`` or checkpoint)
_CACHE = "_folded_for_inference"


def _pairs(module: nn.Module) -> list[tuple[str, str]]:
    """The (convolution, batch norm) child names of ``module`` whose batch norm takes the
    convolution's output directly: consecutive children of an ``nn.Sequential``, or the
    pairs a module declares in ``conv_bn_pairs`` (its forward is not inspected)."""
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        return [(a, b) for a, b in zip(names, names[1:])
                if isinstance(module._modules[a], nn.Conv2d) and isinstance(module._modules[b], nn.BatchNorm2d)]
    declared = getattr(module, "conv_bn_pairs", ())
    return [(a, b) for a, b in declared
            if isinstance(getattr(module, a, None), nn.Conv2d) and isinstance(getattr(module, b, None), nn.BatchNorm2d)]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with each batch norm that follows a convolution
    folded into it (the batch norm becomes ``nn.Identity``); ``model`` is untouched."""
    cached = model.__dict__.pop(_CACHE, None)  # not copied along
    try:
        folded = copy.deepcopy(model).eval()
    finally:
        if cached is not None:
            model.__dict__[_CACHE] = cached
    for module in list(folded.modules()):
        for conv_name, bn_name in _pairs(module):
            conv, bn = module._modules[conv_name], module._modules[bn_name]
            if conv.out_channels != bn.num_features or not bn.track_running_stats:
                continue
            module._modules[conv_name] = fuse_conv_bn_eval(conv, bn)
            module._modules[bn_name] = nn.Identity()
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


def _fingerprint(model: nn.Module) -> tuple:
    """Identity and in-place version of every weight and buffer: any change to them (an
    optimizer step, ``copy_``, a new tensor) changes it."""
    tensors = list(model.parameters()) + list(model.buffers())
    return tuple((id(t), t._version, t.device) for t in tensors)


def inference_network(model: nn.Module) -> nn.Module:
    """The network :meth:`~simwidgets.models.EmbeddingModel.embed` runs: the folded copy of
    ``model`` when it opts in (``fold_for_inference``), rebuilt when its weights changed;
    ``model`` itself otherwise."""
    if not getattr(model, "fold_for_inference", False):
        return model
    stamp = _fingerprint(model)
    cached = model.__dict__.get(_CACHE)
    if cached is None or cached[0] != stamp:
        with torch.inference_mode(False), torch.no_grad():  # embed() runs in inference mode
            cached = (stamp, fold_batchnorm(model))
        model.__dict__[_CACHE] = cached
    return cached[1]
