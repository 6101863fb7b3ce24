"""The embedding network with batch norms folded (simwidgets.models.inference) against the
network as trained: same embeddings, rebuilt when the weights change, never saved."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from simwidgets.errors import BadInputError
from simwidgets.models import build_model, load_model, save_checkpoint
from simwidgets.models.inference import fold_batchnorm, inference_network
from simwidgets.video import load_sample


@pytest.fixture(scope="module")
def frames():
    """Two real frames of dog-agility, cropped (fast), as uint8 and as the network's input."""
    clip = np.ascontiguousarray(load_sample("dog-agility").frames[:2, :160, :224])
    return clip, torch.from_numpy(clip).permute(0, 3, 1, 2).float() / 255.0


def _batch_norms(module) -> int:
    return sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())


@pytest.mark.parametrize("model", ["default", "mobilenetv2"])
def test_folded_network_computes_the_trained_one(frames, model):
    """Every batch norm is folded into its convolution and the embedding is unchanged (fp32
    rounding), for both trunks; the model itself keeps its batch norms and stays trainable."""
    net = load_model("default") if model == "default" else build_model("mobilenetv2", stride=8)
    net.eval()
    with torch.no_grad():  # give the random batch norms non-trivial statistics
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            if model != "default":
                bn.running_mean.uniform_(-0.2, 0.2), bn.running_var.uniform_(0.5, 2.0)
    before = _batch_norms(net)
    folded = fold_batchnorm(net)
    assert before > 30 and _batch_norms(folded) == 0 and _batch_norms(net) == before
    assert all(p.requires_grad for p in net.parameters())
    _, x = frames
    with torch.inference_mode():
        want, got = net(x), folded(x)
    assert torch.allclose(got, want, atol=1e-4), float((got - want).abs().max())


def test_embed_uses_the_current_weights_after_a_change(frames):
    """The folded copy is reused while the weights stay, and rebuilt after an in-place update
    (as an optimizer step makes): embed always gives the trained network's output."""
    clip, x = frames
    net = load_model("default")
    first = net.embed(clip, device="cpu", precision="fp32")
    copy = inference_network(net)
    assert inference_network(net) is copy  # nothing changed: the same copy
    with torch.no_grad():
        net.head.project.weight.mul_(-1.0)  # in place, as optimizer.step() does
    assert inference_network(net) is not copy
    second = net.embed(clip, device="cpu", precision="fp32")
    net.eval()
    with torch.inference_mode():
        want = net(x)[..., : second.shape[-2], : second.shape[-1]]
    assert torch.allclose(second, want, atol=1e-4)
    assert not torch.allclose(first, second, atol=1e-2)


def test_the_folded_copy_is_in_no_checkpoint(frames, tmp_path):
    """A model that has embedded saves and loads exactly as one that has not: the copy is a
    plain attribute, not a submodule."""
    clip, _ = frames
    net = load_model("default")
    keys = set(net.state_dict())
    net.embed(clip[:1], device="cpu")
    assert set(net.state_dict()) == keys
    assert not any("folded" in name for name, _ in net.named_modules())
    path = save_checkpoint(net, tmp_path / "m.pt")
    again = load_model(path)
    assert torch.allclose(again.embed(clip, device="cpu", precision="fp32"),
                          net.embed(clip, device="cpu", precision="fp32"), atol=1e-5)


def test_models_without_batch_norm_folding_run_as_they_are():
    """Only the pretrained trunks opt in: the baseline and the small FCN embed unchanged."""
    for name in ("baseline", "fcn-small"):
        net = load_model(name) if name == "baseline" else build_model(name)
        assert inference_network(net) is net


# ----------------------------------------------------------------------------- mirror averaging

def _mirrored_cells(embedding: torch.Tensor) -> torch.Tensor:
    """A ``(T, D, h, w)`` embedding read right to left, the x coordinate of each cell kept
    (the last two channels are the weighted (x, y) cell coordinates): what an embedding that
    treats a mirrored frame as the same scene gives for the mirrored frame."""
    mirrored = embedding.flip(-1).clone()
    mirrored[:, -2] = -mirrored[:, -2]
    return mirrored


def test_mirror_averaged_embedding_is_the_same_for_a_mirrored_frame():
    """With ``mirror=True`` the embedding of a mirrored frame is the mirror of the frame's
    embedding, cell for cell (the learned trunk alone is not: its "SAME" padding is
    lopsided, and it has learned no symmetry); real bear frames, width a multiple of 16."""
    clip = np.ascontiguousarray(load_sample("bear").frames[:2, :240, :416])
    flipped = np.ascontiguousarray(clip[:, :, ::-1])
    net = load_model("default")
    plain = net.embed(clip, device="cpu", precision="fp32")
    plain_flipped = net.embed(flipped, device="cpu", precision="fp32")
    averaged = net.embed(clip, device="cpu", precision="fp32", mirror=True)
    averaged_flipped = net.embed(flipped, device="cpu", precision="fp32", mirror=True)
    assert averaged.shape == plain.shape
    assert torch.allclose(averaged.norm(dim=1), torch.ones(()), atol=1e-5)
    assert torch.allclose(averaged_flipped, _mirrored_cells(averaged), atol=1e-4)
    assert float((plain_flipped - _mirrored_cells(plain)).abs().max()) > 0.05  # the property is not free
    # and it stays close to the plain embedding: a cell keeps its meaning
    assert float((averaged * plain).sum(1).mean()) > 0.95


def test_mirror_average_of_a_mirror_symmetric_embedding_changes_nothing(bear):
    """The hand-crafted baseline (each cell's mean colour and position) treats both views
    alike: averaging them gives the plain embedding, on a full 854-pixel-wide frame (padded
    to the stride before mirroring, so the cells line up)."""
    net = load_model("baseline")
    frames = np.asarray(bear.frames[:2])
    plain = net.embed(frames, device="cpu")
    assert torch.allclose(net.embed(frames, device="cpu", mirror=True), plain, atol=1e-5)


def test_mirror_averaging_refuses_a_width_off_the_grid():
    net = load_model("baseline")
    with pytest.raises(BadInputError, match="multiple of the stride"):
        net.mirror_averaged(torch.zeros((1, 3, 16, 30)))
