"""Similarity losses on hand-made embeddings where the right answer is known."""
import math

import pytest
import torch
import torch.nn.functional as F

from simwidgets.errors import BadInputError
from simwidgets.training.losses import LOSSES, PairwiseLogisticLoss, cosine, make_loss

NAMES = sorted(LOSSES)


def unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


def triplet_batch():
    """Three anchors on the unit circle (in 3-D), each with a positive and a negative
    that are neither perfect nor hopeless: every loss has something to improve."""
    anchor = unit([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])
    positive = unit([1.0, 0.8, 0.0], [0.0, 1.0, 0.9], [0.7, 0.0, 1.0])
    negative = unit([1.0, 0.0, 1.2], [1.0, 1.1, 0.0], [0.0, 1.0, 1.0])
    labels = (torch.tensor([1, 2, 3]), torch.tensor([3, 1, 2]))
    return anchor, positive, negative, labels


@pytest.mark.parametrize("name", NAMES)
def test_gradient_pulls_positives_and_pushes_negatives(name):
    anchor, positive, negative, labels = triplet_batch()
    positive.requires_grad_(True)
    negative.requires_grad_(True)
    loss = make_loss(name)(anchor, positive, negative, labels=labels)
    loss.backward()
    # a small gradient-descent step on the embeddings must raise cos(anchor, positive)
    # and lower cos(anchor, negative) for every triplet
    step = 0.05
    before_pos, before_neg = cosine(anchor, positive), cosine(anchor, negative)
    after_pos = cosine(anchor, positive - step * positive.grad)
    after_neg = cosine(anchor, negative - step * negative.grad)
    assert (after_pos > before_pos).all(), name
    assert (after_neg < before_neg).all(), name


@pytest.mark.parametrize("name", NAMES)
def test_loss_orders_good_and_bad_embeddings(name):
    anchor, positive, negative, labels = triplet_batch()
    loss_fn = make_loss(name)
    good = loss_fn(anchor, anchor.clone(), -anchor, labels=labels)      # perfect separation
    usual = loss_fn(anchor, positive, negative, labels=labels)
    bad = loss_fn(anchor, -anchor, anchor.clone(), labels=labels)       # everything swapped
    assert good < usual < bad, (name, good, usual, bad)


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_is_zero_with_gradient(name):
    empty = torch.zeros(0, 8, requires_grad=True)
    loss = make_loss(name)(empty, empty, empty, labels=(torch.zeros(0, dtype=torch.long),) * 2)
    assert float(loss.detach()) == 0.0
    loss.backward()


def test_pairwise_is_logistic_regression_on_scaled_cosine():
    loss_fn = PairwiseLogisticLoss(scale=4.0, bias=-1.0)
    anchor = unit([1.0, 0.0])
    positive = unit([1.0, 1.0])    # cos = 0.7071
    negative = unit([0.0, 1.0])    # cos = 0
    expected = 0.5 * (-math.log(torch.sigmoid(torch.tensor(4 * 0.70710678 - 1.0)).item())
                      - math.log(1 - torch.sigmoid(torch.tensor(-1.0)).item()))
    assert float(loss_fn(anchor, positive, negative).detach()) == pytest.approx(expected, rel=1e-5)
    assert float(loss_fn.scale.detach()) == pytest.approx(4.0)
    assert loss_fn.extra_state_dict() == pytest.approx({"scale": 4.0, "bias": -1.0})


def test_pairwise_learns_its_threshold():
    """With fixed embeddings where positives have cos 0.9 and negatives cos 0.6, the learned
    threshold -b/a must move between 0.6 and 0.9 (it starts at 0.5)."""
    torch.manual_seed(0)
    anchor = unit(*[[1.0, 0.0]] * 4)
    positive = unit(*[[0.9, math.sqrt(1 - 0.81)]] * 4)
    negative = unit(*[[0.6, 0.8]] * 4)
    loss_fn = PairwiseLogisticLoss()
    opt = torch.optim.Adam(loss_fn.parameters(), lr=0.05)
    first = None
    for _ in range(300):
        opt.zero_grad()
        loss = loss_fn(anchor, positive, negative)
        first = float(loss.detach()) if first is None else first
        loss.backward()
        opt.step()
    threshold = float(-loss_fn.bias / loss_fn.scale)
    assert 0.6 < threshold < 0.9
    assert float(loss.detach()) < 0.5 * first


def test_fixed_pairwise_has_no_parameters():
    assert list(PairwiseLogisticLoss(learnable=False).parameters()) == []


def test_infonce_counts_same_label_candidates_as_positives():
    # two anchors of the same label: anchor 0's candidate set holds anchor 1's positive,
    # which is identical to anchor 0 -> with labels it helps, i.e. lowers the loss.
    anchor = unit([1.0, 0.0], [1.0, 0.0])
    positive = unit([0.0, 1.0], [1.0, 0.0])
    negative = unit([-1.0, 0.0], [-1.0, 0.0])
    loss_fn = make_loss("infonce", temperature=0.5)
    same = loss_fn(anchor, positive, negative, labels=(torch.tensor([1, 1]), torch.tensor([0, 0])))
    different = loss_fn(anchor, positive, negative, labels=(torch.tensor([1, 2]), torch.tensor([0, 0])))
    assert same < different


def test_bad_loss_requests():
    with pytest.raises(BadInputError, match="unknown loss 'hinge'"):
        make_loss("hinge")
    with pytest.raises(BadInputError, match="bad options"):
        make_loss("triplet", temperature=0.1)
    with pytest.raises(BadInputError, match="needs labels"):
        anchor, positive, negative, _ = triplet_batch()
        make_loss("infonce")(anchor, positive, negative)
    with pytest.raises(BadInputError, match="same"):
        make_loss("pairwise")(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(BadInputError, match="positive"):
        PairwiseLogisticLoss(scale=0)
