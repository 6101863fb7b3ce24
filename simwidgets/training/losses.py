"""Similarity losses on sampled pixel embeddings.

Every loss here sees the same thing: ``N`` triplets of unit-length embeddings
(anchor, positive, negative) from :func:`simwidgets.training.sampling.sample_triplets`, where the
positive shares the anchor's label and the negative does not.  They differ in what they
ask of the cosine similarities ``s+ = cos(anchor, positive)`` and ``s- = cos(anchor, negative)``:

``pairwise`` (the paper's objective)
    binary classification of each pair as "same object" or not, by logistic regression
    on a learned scaled cosine: ``p(same) = sigmoid(a * cos + b)``, with learnable
    ``a > 0`` and ``b``.  Positive and negative pairs are balanced by the sampler.
    Label transfer later thresholds or ranks exactly this similarity.
``contrastive``
    pull positives together (``1 - s+``), push negatives apart only while they are more
    similar than a margin (``max(0, s- - m)``).
``triplet``
    ranking: the positive must beat the negative by a margin, ``max(0, s- - s+ + m)``.
``infonce``
    each anchor must pick out its positives among all sampled candidates (every positive
    and negative in the batch): a softmax over ``cos / temperature``, with all candidates
    of the anchor's label counted as positives (supervised contrastive form).

Pick by name with :func:`make_loss`::

    loss_fn = make_loss("pairwise")
    loss = loss_fn(anchor, positive, negative, labels=(label, negative_label))

The losses are ``nn.Module`` so the learnable ``a, b`` of ``pairwise`` join the
optimiser with ``loss_fn.parameters()``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInputError

__all__ = [
    "SimilarityLoss",
    "PairwiseLogisticLoss",
    "ContrastiveLoss",
    "TripletLoss",
    "InfoNCELoss",
    "LOSSES",
    "make_loss",
    "cosine",
]


def cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of ``(N, D)`` tensors -> ``(N,)`` (inputs need not be unit length)."""
    return (F.normalize(x.float(), dim=-1) * F.normalize(y.float(), dim=-1)).sum(-1)


def _check(anchor, positive, negative) -> None:
    for name, t in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        if not isinstance(t, torch.Tensor) or t.ndim != 2:
            raise BadInputError(f"{name} must be an (N, D) tensor; got {getattr(t, 'shape', type(t).__name__)}")
    if not (anchor.shape == positive.shape == negative.shape):
        raise BadInputError(
            f"anchor, positive and negative must have the same (N, D) shape; got "
            f"{tuple(anchor.shape)}, {tuple(positive.shape)}, {tuple(negative.shape)}"
        )


class SimilarityLoss(nn.Module):
    """Base class: ``loss(anchor, positive, negative, labels=None)`` -> scalar.

    ``labels`` is ``(anchor_labels, negative_labels)``, ``(N,)`` each; only losses that
    compare across triplets (InfoNCE) need it.  An empty batch gives a zero loss that
    still has a gradient path (so a training step never crashes on a crop without
    contrast).
    """

    name = "abstract"

    def forward(self, anchor, positive, negative, labels=None) -> torch.Tensor:
        _check(anchor, positive, negative)
        if anchor.shape[0] == 0:
            return (anchor.sum() + positive.sum() + negative.sum()) * 0.0
        return self._loss(anchor, positive, negative, labels)

    def _loss(self, anchor, positive, negative, labels) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_state_dict(self) -> dict:
        """Plain-value description of learned loss parameters (for the training record)."""
        return {}


class PairwiseLogisticLoss(SimilarityLoss):
    """The paper's loss: logistic regression of "same object" on ``a * cos + b``.

    Parameters
    ----------
    scale : initial ``a`` (kept positive: stored as ``log a``)
    bias : initial ``b``; ``-scale / 2`` puts the initial decision threshold at cos = 0.5
    learnable : let ``a`` and ``b`` be trained with the network
    """

    name = "pairwise"

    def __init__(self, scale: float = 10.0, bias: float | None = None, learnable: bool = True):
        super().__init__()
        if not scale > 0:
            raise BadInputError(f"scale must be positive; got {scale}")
        bias = -scale / 2 if bias is None else bias
        log_scale = torch.tensor(math.log(scale))
        bias_t = torch.tensor(float(bias))
        if learnable:
            self.log_scale = nn.Parameter(log_scale)
            self.bias = nn.Parameter(bias_t)
        else:
            self.register_buffer("log_scale", log_scale)
            self.register_buffer("bias", bias_t)

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def logits(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Logit of "same object" for each row pair of ``(N, D)`` embeddings."""
        return self.scale * cosine(x, y) + self.bias

    def probability(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``p(same)`` for each row pair."""
        return torch.sigmoid(self.logits(x, y))

    def _loss(self, anchor, positive, negative, labels):
        pos = self.logits(anchor, positive)
        neg = self.logits(anchor, negative)
        logits = torch.cat([pos, neg])
        target = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
        return F.binary_cross_entropy_with_logits(logits, target)

    def extra_state_dict(self) -> dict:
        return {"scale": float(self.scale.detach()), "bias": float(self.bias.detach())}


class ContrastiveLoss(SimilarityLoss):
    """Contrastive loss on cosines: ``(1 - s+) + max(0, s- - margin)``, averaged."""

    name = "contrastive"

    def __init__(self, margin: float = 0.3):
        super().__init__()
        if not -1.0 <= margin < 1.0:
            raise BadInputError(f"margin must lie in [-1, 1); got {margin}")
        self.margin = float(margin)

    def _loss(self, anchor, positive, negative, labels):
        pos = 1.0 - cosine(anchor, positive)
        neg = F.relu(cosine(anchor, negative) - self.margin)
        return 0.5 * (pos.mean() + neg.mean())


class TripletLoss(SimilarityLoss):
    """Triplet ranking loss on cosines: ``max(0, s- - s+ + margin)``, averaged."""

    name = "triplet"

    def __init__(self, margin: float = 0.3):
        super().__init__()
        if not 0.0 <= margin <= 2.0:
            raise BadInputError(f"margin must lie in [0, 2]; got {margin}")
        self.margin = float(margin)

    def _loss(self, anchor, positive, negative, labels):
        return F.relu(cosine(anchor, negative) - cosine(anchor, positive) + self.margin).mean()


class InfoNCELoss(SimilarityLoss):
    """Supervised InfoNCE: each anchor against all ``2N`` sampled candidates.

    For anchor ``i`` with label ``y_i``, candidates are every positive and negative
    embedding of the batch; the loss is ``-log(sum_{c: y_c = y_i} e^{s_ic/t} / sum_c e^{s_ic/t})``.
    Requires ``labels=(anchor_labels, negative_labels)``.
    """

    name = "infonce"

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        if not temperature > 0:
            raise BadInputError(f"temperature must be positive; got {temperature}")
        self.temperature = float(temperature)

    def _loss(self, anchor, positive, negative, labels):
        if labels is None:
            raise BadInputError("the infonce loss needs labels=(anchor_labels, negative_labels)")
        anchor_labels, negative_labels = (torch.as_tensor(t, device=anchor.device) for t in labels)
        if anchor_labels.shape != (anchor.shape[0],) or negative_labels.shape != (anchor.shape[0],):
            raise BadInputError(f"labels must be two ({anchor.shape[0]},) tensors")
        candidates = F.normalize(torch.cat([positive, negative]).float(), dim=-1)
        candidate_labels = torch.cat([anchor_labels, negative_labels])
        sims = F.normalize(anchor.float(), dim=-1) @ candidates.t() / self.temperature
        is_pos = anchor_labels[:, None] == candidate_labels[None, :]
        log_all = torch.logsumexp(sims, dim=1)
        log_pos = torch.logsumexp(sims.masked_fill(~is_pos, float("-inf")), dim=1)
        return (log_all - log_pos).mean()


LOSSES: dict[str, type[SimilarityLoss]] = {
    "pairwise": PairwiseLogisticLoss,
    "contrastive": ContrastiveLoss,
    "triplet": TripletLoss,
    "infonce": InfoNCELoss,
}


def make_loss(name: str, **options) -> SimilarityLoss:
    """A loss by name (``pairwise``, ``contrastive``, ``triplet``, ``infonce``) with its options."""
    if name not in LOSSES:
        raise BadInputError(f"unknown loss {name!r} (choose from: {', '.join(LOSSES)})")
    try:
        return LOSSES[name](**options)
    except TypeError as error:
        raise BadInputError(f"bad options for loss {name!r}: {error}") from None
