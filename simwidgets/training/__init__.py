"""Similarity learning: train the pixel embedding on pairs of frames and pixels.

The data flow of a training run, one module each:

* :mod:`~simwidgets.training.config` -- :class:`TrainConfig`, the record of a run;
* :mod:`~simwidgets.training.data` -- clips with masks, the split, augmented frame pairs;
* :mod:`~simwidgets.training.sampling` -- class-balanced pixel triplets and pairs;
* :mod:`~simwidgets.training.losses` -- the paper's pairwise logistic loss and others;
* :mod:`~simwidgets.training.loop` -- :func:`train`: steps, validation, checkpoints;
* :mod:`~simwidgets.training.adapt` -- test-time adaptation on the user's own labels.

Three lines::

    from simwidgets.training import TrainConfig, VideoClip, train
    clips = [VideoClip.from_sequence(v) for v in my_videos]
    result = train(clips, val_clips, TrainConfig(steps=500), out="my_model.pt")

or from a shell: ``python -m simwidgets train --davis-root ROOT --out model.pt``.  Names
load on first use (PEP 562), so the command line reads :class:`TrainConfig`'s defaults
without importing torch.
"""
from importlib import import_module

# name -> module of this package that defines it
_NAMES = {
    "TrainConfig": "config",
    "PRETRAINED_ARCHS": "config",
    "TrainResult": "loop",
    "train": "loop",
    "batch_loss": "loop",
    "VideoClip": "data",
    "PairBatch": "data",
    "PairSampler": "data",
    "default_split": "data",
    "load_davis_clips": "data",
    "SHIPPED_SAMPLES": "data",
    "VALIDATION_SEQUENCES": "data",
    "kfold_splits": "data",
    "adapt_to_references": "adapt",
    "MASK_ADAPT": "adapt",
    "SimilarityLoss": "losses",
    "PairwiseLogisticLoss": "losses",
    "ContrastiveLoss": "losses",
    "TripletLoss": "losses",
    "InfoNCELoss": "losses",
    "LOSSES": "losses",
    "make_loss": "losses",
    "cosine": "losses",
    "PixelTriplets": "sampling",
    "PixelPairs": "sampling",
    "sample_triplets": "sampling",
    "sample_pairs": "sampling",
    "labels_to_grid": "sampling",
    "boundary_band": "sampling",
    "gather_cells": "sampling",
}

__all__ = sorted(_NAMES)


def __getattr__(name):
    if name not in _NAMES:
        raise AttributeError(f"module 'simwidgets.training' has no attribute {name!r}")
    value = getattr(import_module(f".{_NAMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
