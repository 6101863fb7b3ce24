"""Test-time adaptation: fine-tune the embedding on the user's own labels of this video.

Beyond the paper: the embedding was trained on other videos; a few gradient steps on
pairs drawn only from the pixels the user labelled specialise it to this video's objects
before the labels are transferred.
"""
from __future__ import annotations

import copy
import inspect
import math
import time
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..device import pick_device
from .. import checks
from ..errors import BadInputError
from ..models import EmbeddingModel
from .losses import make_loss
from ..transfer.config import TransferConfig
from .sampling import UNKNOWN, gather_cells, sample_triplets

__all__ = ["adapt_to_references", "MASK_ADAPT", "checked_adapt_options"]

#: test-time adaptation for a full first-frame mask (semi-supervised), chosen on the 5-fold
#: scheme (``benchmarks/results/kfold_adapt_compare.md``, 2026-12-07): J&F +0.014 +- 0.004
#: over no adaptation on 25 sequences, higher on 17 (J +0.011, F +0.018).  The stronger pull
#: towards the original embedding (``keep_weight`` 4, against 1 for scribbles) is what makes
#: it pay: with 1 the same 30 steps gave +0.002 +- 0.009, large gains and large losses
#: (drift-turn -0.109, motocross-bumps -0.124) where the object changes after frame 0.
MASK_ADAPT = {"steps": 30, "lr": 1e-3, "keep_weight": 4.0}


#: arguments of adapt_to_references that its caller fills in, not adaptation options
_NOT_OPTIONS = {"model", "frames", "references", "config", "device"}


def checked_adapt_options(adapt) -> dict | None:
    """An evaluator's ``adapt`` argument as keyword arguments of :func:`adapt_to_references`
    (``None``: no adaptation); anything but None or a mapping is refused by name."""
    if adapt is None:
        return None
    if not isinstance(adapt, Mapping):
        raise BadInputError(f"adapt must be None or a dict of adapt_to_references options; got {adapt!r}")
    known = set(inspect.signature(adapt_to_references).parameters) - _NOT_OPTIONS
    unknown = sorted(str(k) for k in adapt if k not in known)
    if unknown:
        raise BadInputError(f"adapt: unknown option(s) {', '.join(unknown)}; adapt_to_references takes "
                            f"{', '.join(sorted(known))}")
    return dict(adapt)


def adapt_to_references(
    model: EmbeddingModel,
    frames,
    references,
    steps: int = 10,
    lr: float = 1e-4,
    n_triplets: int = 256,
    loss: str = "pairwise",
    seed: int = 0,
    keep_weight: float = 1.0,
    mirror: bool = False,
    hard_fraction: float = 0.0,
    config: TransferConfig | None = None,
    device=None,
) -> tuple[EmbeddingModel, dict]:
    """Fine-tune a copy of ``model`` on the user's own labels before transferring them.

    Beyond the paper: the embedding was trained on other videos; a few gradient steps on
    pairs drawn *only from the reference cells* (within each annotated frame, and across
    annotated frames when there are several) specialise it to this video's objects.  The
    pretrained backbone stays frozen (only the head moves), so the backbone features are
    computed once and each step costs one head pass.

    The reference cells are exactly those the label transfer will vote with, chosen by the
    transfer's own rules (:func:`simwidgets.transfer.references.reference_cells` under
    ``config``: rasterised strokes, automatic background cells far from every object on
    frames that mark every object, the class-stratified cap), so adaptation and transfer
    never disagree about which cells are background.

    Parameters
    ----------
    model : the embedding to start from (left unchanged: a copy is adapted)
    frames : uint8 ``(T, H, W, 3)`` video (only the annotated frames are read)
    references : :class:`simwidgets.scribbles.Scribbles` or ``{frame_idx: (H, W) labels}``
        with ``-1`` for unknown, as for :func:`simwidgets.transfer.propagate`
    steps, lr, n_triplets, loss, seed : the optimisation (AdamW, the named loss)
    keep_weight : weight of a penalty ``mean(1 - cos(new, original))`` over every cell of
        the annotated frames: a few scribbled pixels are easy to overfit, and the penalty
        keeps the embedding of everything else where training put it (0 disables it)
    mirror : adapt the mirror-averaged embedding
        (:meth:`~simwidgets.models.EmbeddingModel.mirror_averaged`), the one a transfer
        with ``TransferConfig(mirror=True)`` votes with, instead of the plain one (one more
        head pass a step).  Off by default: under ``MASK_ADAPT`` on the 5-fold scheme it
        scored the same, J&F -0.000 +- 0.001 (13 of 25 higher), for about 1 s more a
        sequence (``benchmarks/results/kfold_adapt_mirror.md``)
    hard_fraction : share of each anchor's negatives drawn near its own object (within two
        cells of it, :func:`~simwidgets.training.sampling.sample_triplets`), where the
        transfer's errors lie; 0 (the default) draws them uniformly.  Under ``MASK_ADAPT``
        with ``mirror``, 0.5 scored +0.001 +- 0.002 on 10 sequences: not worth a default
    config : the :class:`~simwidgets.transfer.TransferConfig` of the transfer that follows
        (its ``brush_width``, ``background_margin`` and ``max_references``); defaults when None

    The adaptation itself takes seconds, but every frame must then be embedded again.

    Returns
    -------
    ``(adapted_model, info)`` with ``info = {"steps", "seconds", "loss_first", "loss_last",
    "frames": [annotated frame indices]}``.  With no labelled contrast (a single label)
    the copy is returned unchanged with ``steps = 0``.
    """
    from ..transfer.references import class_ids_of, normalise_references, reference_cells

    start = time.perf_counter()
    config = config or TransferConfig()
    mirror = checks.boolean(mirror, "mirror")
    n_frames, height, width = int(frames.shape[0]), int(frames.shape[1]), int(frames.shape[2])
    label_maps = normalise_references(references, n_frames, height, width, config.brush_width)
    grid = model.grid_size(height, width)
    cells = reference_cells(label_maps, class_ids_of(label_maps), config, model.stride, grid)
    lut = torch.tensor(cells.class_ids)
    cell_grids = {}
    for block in cells.blocks:
        labels = torch.full((grid[0] * grid[1],), UNKNOWN, dtype=torch.long)
        labels[block.cells] = lut[block.labels.argmax(1)]
        cell_grids[block.frame] = labels.view(grid)
    device = pick_device(device)
    adapted = copy.deepcopy(model).to(device)
    frame_ids = sorted(cell_grids)
    if not any(p.requires_grad for p in adapted.parameters()):
        # nothing to fine-tune: stepping the loss's own parameters would change no embedding
        adapted.eval()
        return adapted, {"steps": 0, "seconds": time.perf_counter() - start,
                         "loss_first": None, "loss_last": None, "frames": frame_ids}
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)

    multiple = math.lcm(adapted.pad_multiple, adapted.stride)
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    x = torch.from_numpy(np.stack([np.asarray(frames[f]) for f in frame_ids])).to(device).permute(0, 3, 1, 2).float() / 255
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    # the embedding grid of the padded frames: the padding's cells are unknown
    padded_grid = ((height + pad_h) // adapted.stride, (width + pad_w) // adapted.stride)
    grids = [F.pad(cell_grids[f], (0, padded_grid[1] - grid[1], 0, padded_grid[0] - grid[0]), value=UNKNOWN)
             for f in frame_ids]

    head_only = hasattr(adapted, "backbone") and hasattr(adapted, "embed_levels")
    if head_only:
        for p in adapted.backbone.parameters():
            p.requires_grad_(False)
        adapted.backbone.eval()
        with torch.no_grad():
            levels = adapted.backbone(x)
            mirrored_levels = adapted.backbone(x.flip(-1)) if mirror else None

    def embed() -> torch.Tensor:
        if head_only:
            return adapted.embed_levels(levels, x, mirrored_levels)
        return adapted.mirror_averaged(x) if mirror else adapted(x)

    loss_fn = make_loss(loss).to(device)
    params = [p for p in adapted.parameters() if p.requires_grad] + list(loss_fn.parameters())
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    adapted.eval()  # BatchNorm statistics of one video are not worth learning
    with torch.no_grad():
        original = embed()
    losses = []
    for _ in range(steps):
        adapted.eval()
        emb = embed()
        anchors, positives, negatives, a_lab, n_lab = [], [], [], [], []
        for i, grid_i in enumerate(grids):
            for j, grid_j in enumerate(grids):
                t = sample_triplets(grid_i, grid_j if j != i else None, n_triplets, hard_fraction, 2, generator)
                if len(t) == 0:
                    continue
                anchors.append(gather_cells(emb[i], t.anchor.to(device)))
                positives.append(gather_cells(emb[j], t.positive.to(device)))
                negatives.append(gather_cells(emb[j], t.negative.to(device)))
                a_lab.append(t.label)
                n_lab.append(t.negative_label)
        if not anchors:
            break
        value = loss_fn(torch.cat(anchors), torch.cat(positives), torch.cat(negatives),
                        labels=(torch.cat(a_lab).to(device), torch.cat(n_lab).to(device)))
        if keep_weight > 0:
            value = value + keep_weight * (1.0 - (emb * original).sum(1)).mean()
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        optimiser.step()
        losses.append(float(value.detach()))
    for p in adapted.parameters():
        p.requires_grad_(True)
    adapted.eval()
    info = {
        "steps": len(losses),
        "seconds": time.perf_counter() - start,
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "frames": frame_ids,
    }
    return adapted, info
