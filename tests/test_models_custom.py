"""Bring your own network: as_embedding wraps any feature extractor, and everything that
takes a model (transfer, session, explorer, protocol) works on it unchanged."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from simwidgets.errors import BadInputError
from simwidgets.models import as_embedding, coordinate_channels, load_model, save_checkpoint
from simwidgets.models.custom import IMAGENET_MEAN, IMAGENET_STD
from simwidgets.video import load_sample


def small_trunk(stride: int = 4, channels: int = 12) -> nn.Module:
    torch.manual_seed(0)
    layers, c = [], 3
    for _ in range(int(np.log2(stride))):
        layers += [nn.Conv2d(c, channels, 3, stride=2, padding=1), nn.ReLU()]
        c = channels
    return nn.Sequential(*layers).eval()


class PatchTrunk(nn.Module):
    """A ViT-like patch embedding (14 px patches): the stride is not a power of two."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 14, stride=14)

    def forward(self, x):
        return self.patch(x)


@pytest.fixture(scope="module")
def clip():
    return load_sample("dog-agility").clip(0, 6)


@pytest.mark.parametrize("stride", [4, 8])
def test_stride_and_channels_are_found_by_probing(stride):
    model = as_embedding(small_trunk(stride, 12))
    assert model.stride == stride and model.dim == 12 and model.pad_multiple == stride
    assert as_embedding(PatchTrunk()).stride == 14


def test_embedding_equals_the_plain_computation(clip):
    """Normalise, run the network, append colour and position, L2-normalise: by hand."""
    trunk = small_trunk(4, 12)
    model = as_embedding(trunk, colour_weight=1.5, coord_weight=0.5, reduced_precision=False)
    frames = np.asarray(clip.frames[:2])
    got = model.embed(frames, device="cpu")
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    x = F.pad(x, (0, 2, 0, 0), mode="replicate")  # 854 -> 856, a multiple of the stride
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        feats = F.normalize(trunk((x - mean) / std), dim=1)
    from simwidgets.models.baseline import rgb_to_lab

    lab = rgb_to_lab(F.avg_pool2d(x, 4, 4))
    colour = torch.stack([(lab[:, 0] - 50) / 100, lab[:, 1] / 100, lab[:, 2] / 100], 1) * 1.5
    coords = coordinate_channels(2, feats.shape[2], feats.shape[3], "cpu", torch.float32) * 0.5
    expected = F.normalize(torch.cat([feats, colour, coords], 1), dim=1)
    assert got.shape == expected.shape == (2, 12 + 3 + 2, 120, 214)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_a_constant_network_with_colour_and_position_is_the_baseline(clip):
    """A network that says nothing (one constant channel) plus colour and position is, up to
    the order of channels, exactly the hand-crafted baseline: same similarities, same masks."""
    from simwidgets.transfer import LabelTransfer

    def constant(x):
        return torch.ones((x.shape[0], 1, x.shape[2] // 8, x.shape[3] // 8), device=x.device)

    custom = as_embedding(constant, normalise=None, colour_weight=2.0, coord_weight=0.5, reduced_precision=False)
    baseline = load_model("baseline")
    frames = np.asarray(clip.frames)
    a, b = custom.embed(frames[:2], device="cpu"), baseline.embed(frames[:2], device="cpu")
    sim_a = torch.einsum("dn,dm->nm", a[0].flatten(1), a[1].flatten(1))
    sim_b = torch.einsum("dn,dm->nm", b[0].flatten(1), b[1].flatten(1))
    torch.testing.assert_close(sim_a, sim_b, atol=1e-5, rtol=0)
    refs = {0: clip.masks[0]}
    masks_a = LabelTransfer(frames, model=custom).propagate(refs).masks
    masks_b = LabelTransfer(frames, model=baseline).propagate(refs).masks
    assert np.mean(masks_a == masks_b) > 0.999


def test_session_and_protocol_run_on_a_wrapped_network(clip, tmp_path):
    from simwidgets.evaluation import evaluate_interactive
    from simwidgets.session import InteractiveSession
    from simwidgets.video import sample_root

    model = as_embedding(small_trunk(8, 16), colour_weight=2.0, coord_weight=0.5)
    session = InteractiveSession(clip, model=model)
    session.add_mask(0, clip.masks[0])
    result = session.propagate()
    assert result.masks.shape == clip.masks.shape and set(np.unique(result.masks)) <= {0, 1}
    report = evaluate_interactive(sample_root(), ["dog-agility"], model=model, interactions=2, max_time=None)
    row = report["sequences"]["dog-agility"]
    assert len(row["interactions"]) == 2 and 0 < row["J&F"] <= 1


def test_parameters_are_the_networks():
    trunk = small_trunk(4, 12)
    model = as_embedding(trunk)
    assert {id(p) for p in model.parameters()} == {id(p) for p in trunk.parameters()}


BAD = [
    ("not callable", lambda: as_embedding(42), r"network must be a torch module or a callable; got int"),
    ("an embedding model already", lambda: as_embedding(load_model("baseline")), r"already an embedding model"),
    ("tokens instead of a feature map", lambda: as_embedding(lambda x: torch.zeros(x.shape[0], 196, 8)),
     r"returned \(1, 196, 8\); expected a \(B, C, h, w\) feature map"),
    ("a grid that is not input / stride", lambda: as_embedding(nn.Conv2d(3, 8, 3)),
     r"maps a 224x224 input to a 222x222 grid"),
    ("a wrong stride given", lambda: as_embedding(small_trunk(4), stride=8),
     r"stride 8 was given, but the network's output has stride 4"),
    ("a network that fails", lambda: as_embedding(lambda x: x @ torch.zeros(5, 5)),
     r"the network failed on a blank 224x224 batch \(RuntimeError"),
    ("bad normalisation", lambda: as_embedding(small_trunk(4), normalise=((0.5, 0.5), (1, 1))),
     r"normalise needs 3 means and 3 positive standard deviations"),
    ("NaN colour weight", lambda: as_embedding(small_trunk(4), colour_weight=float("nan")),
     r"colour_weight must be finite; got nan"),
    ("saving a wrapped network as a checkpoint", lambda: save_checkpoint(as_embedding(small_trunk(4)), "x.pt"),
     r"is not a registered architecture, so no checkpoint could rebuild it"),
]


@pytest.mark.parametrize("row, action, message", BAD, ids=[r for r, _, _ in BAD])
def test_bad_networks_are_named(row, action, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInputError, match=message):
        action()
    assert not (tmp_path / "x.pt").exists()
