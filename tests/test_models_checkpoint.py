"""Checkpoints of embedding models: round trip, and every way a file can be unusable."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from simwidgets.errors import BadInputError
from simwidgets.models import (
    CHECKPOINT_FORMAT,
    SmallFCN,
    build_model,
    load_checkpoint,
    load_model,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(3)
    net = SmallFCN(dim=16, stride=8, coord_weight=0.5, width=16)
    # make the BatchNorm running statistics non-trivial so that buffers are checked too
    net.train()
    with torch.no_grad():
        net(torch.rand(2, 3, 32, 32))
    return net.eval()


@pytest.fixture
def saved(model, tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(model, path, training={"epochs": 3, "loss": [0.5, 0.25], "note": "test"})
    return path


def test_round_trip_restores_weights_config_and_outputs(model, saved, synthetic):
    loaded = load_model(saved)
    assert type(loaded) is SmallFCN
    assert loaded.config() == model.config()
    assert (loaded.dim, loaded.stride) == (16, 8)
    own, back = model.state_dict(), loaded.state_dict()
    assert own.keys() == back.keys()
    for key in own:
        assert torch.equal(own[key], back[key]), key
    assert loaded.training_record == {"epochs": 3, "loss": [0.5, 0.25], "note": "test"}
    assert not loaded.training
    frames = synthetic.frames[:2]
    a = model.embed(frames, device="cpu")
    b = loaded.embed(frames, device="cpu")
    assert a.shape == (2, 16, 8, 12)  # 64x96 frames at stride 8
    assert torch.equal(a, b)
    torch.testing.assert_close(a.norm(dim=1), torch.ones(2, 8, 12))


def test_checkpoint_is_a_weights_only_file(saved):
    payload = torch.load(saved, map_location="cpu", weights_only=True)
    assert payload["format"] == CHECKPOINT_FORMAT
    assert payload["arch"] == "fcn-small"
    assert load_checkpoint(saved)["config"] == payload["config"]
    # the write was atomic: no temporary file left beside it
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.pt"]


def test_expect_arch(saved):
    assert type(load_model(saved, expect_arch="fcn-small")) is SmallFCN
    with pytest.raises(BadInputError, match="holds architecture 'fcn-small', expected 'resnet-18'"):
        load_model(saved, expect_arch="resnet-18")


def test_training_record_with_numpy_values_round_trips(model, tmp_path):
    """A training loop naturally records numpy numbers; the file must still load safely."""
    path = tmp_path / "np.pt"
    record = {"loss": np.float32(0.125), "step": np.int64(7), "curve": np.array([1.0, 0.5]), "ok": np.bool_(True)}
    save_checkpoint(model, path, training=record)
    loaded = load_model(path)
    assert loaded.training_record == {"loss": 0.125, "step": 7, "curve": [1.0, 0.5], "ok": True}


def test_training_record_with_subclasses_of_plain_types_loads(model, tmp_path):
    """``torch.__version__`` is a str subclass (TorchVersion) and an IntEnum an int one:
    stored as they are, weights_only refuses the file; they must be stored as plain values."""
    import enum

    class Stage(enum.IntEnum):
        WARMUP = 2

    path = tmp_path / "sub.pt"
    save_checkpoint(model, path, training={"torch": torch.__version__, "stage": Stage.WARMUP, "flag": True})
    loaded = load_model(path)
    assert loaded.training_record == {"torch": str(torch.__version__), "stage": 2, "flag": True}
    assert type(loaded.training_record["torch"]) is str and type(loaded.training_record["stage"]) is int
    assert loaded.training_record["flag"] is True


def test_training_record_with_arbitrary_objects_is_refused_at_save(model, tmp_path):
    path = tmp_path / "bad.pt"
    with pytest.raises(BadInputError, match="training record.*'optimiser'.*plain values"):
        save_checkpoint(model, path, training={"optimiser": object()})
    assert not path.exists()


# --------------------------------------------------------------------------- unusable files

def _rewrite(path, **changes):
    payload = torch.load(path, map_location="cpu", weights_only=True)
    payload.update(changes)
    torch.save(payload, path)


def test_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="checkpoint not found"):
        load_model(tmp_path / "nope.pt")


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match="cannot read checkpoint .*corrupt, truncated"):
        load_model(saved)


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint", os.urandom(4096)])
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(BadInputError, match="cannot read checkpoint .*corrupt, truncated"):
        load_model(path)


@pytest.mark.parametrize("payload", [[1, 2, 3], {"weights": torch.zeros(2)}, "text"])
def test_not_a_checkpoint(tmp_path, payload):
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    with pytest.raises(BadInputError, match="not a simwidgets embedding checkpoint"):
        load_model(path)


def test_bare_state_dict_is_explained(model, tmp_path):
    path = tmp_path / "bare.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(BadInputError, match="bare state dict"):
        load_model(path)


class _Payload:
    """Unpickling this runs code: a weights-only load must refuse it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_arbitrary_object_is_refused(tmp_path):
    marker = tmp_path / "executed"
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "arch": "fcn-small", "config": {}, "state_dict": {},
                "extra": _Payload(marker)}, wrapped)
    for path in (raw, wrapped):
        with pytest.raises(BadInputError, match="not a weights-only torch file"):
            load_model(path)
    assert not marker.exists(), "loading ran code from the file"


def test_missing_entries(saved):
    payload = torch.load(saved, weights_only=True)
    del payload["state_dict"]
    torch.save(payload, saved)
    with pytest.raises(BadInputError, match="lacks the 'state_dict' entry"):
        load_model(saved)


def test_unknown_architecture(saved):
    _rewrite(saved, arch="resnet-18")
    with pytest.raises(BadInputError, match="unknown architecture 'resnet-18'"):
        load_model(saved)


def test_mismatched_shapes(saved):
    # the weights are from width 16; the configuration claims width 24
    payload = torch.load(saved, weights_only=True)
    _rewrite(saved, config={**payload["config"], "width": 24})
    with pytest.raises(BadInputError, match=r"does not fit architecture 'fcn-small': body\.0\.0\.weight has shape"):
        load_model(saved)


def test_weights_of_another_architecture(saved, tmp_path):
    # stride-4 weights have one layer fewer than a stride-8 model expects
    torch.manual_seed(0)
    other = tmp_path / "other.pt"
    save_checkpoint(SmallFCN(dim=16, stride=4, width=16), other)
    foreign = torch.load(other, weights_only=True)["state_dict"]
    _rewrite(saved, state_dict=foreign)
    with pytest.raises(BadInputError, match="does not fit architecture 'fcn-small'"):
        load_model(saved)


def test_missing_and_unexpected_weights_are_named(saved):
    payload = torch.load(saved, weights_only=True)
    state = dict(payload["state_dict"])
    del state["head.weight"]
    state["decoder.weight"] = torch.zeros(1)
    _rewrite(saved, state_dict=state)
    with pytest.raises(BadInputError, match=r"missing \['head\.weight'\], unexpected \['decoder\.weight'\]"):
        load_model(saved)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"config": [16, 8]}, "'config' entry must be a dict"),
        ({"config": {"dim": 16, "colour": "red"}}, "bad configuration for architecture 'fcn-small'"),
        ({"config": {"dim": 16, "stride": 5}}, "stride 4 or 8; got 5"),
        ({"arch": ["fcn-small"]}, "'arch' entry must be a string"),
        ({"state_dict": [1, 2]}, "'state_dict' entry must be a dict of tensors"),
        ({"state_dict": {"head.weight": 1.5}}, "'state_dict' entry must be a dict of tensors"),
    ],
)
def test_malformed_entries(saved, changes, message):
    _rewrite(saved, **changes)
    with pytest.raises(BadInputError, match=message):
        load_model(saved)


def test_build_model_rejects_unknown_names():
    with pytest.raises(BadInputError, match="unknown architecture 'nope'"):
        build_model("nope")
    with pytest.raises(BadInputError, match="bad configuration for architecture 'fcn-small'"):
        build_model("fcn-small", depth=3)


def test_bfloat16_embedding_is_close_to_float32_and_baseline_stays_exact():
    """bfloat16 autocast (the CPU default where the hardware has it) gives the learned
    model's embeddings within rounding of float32; hand-made features ignore it."""
    from simwidgets.models import load_model
    from simwidgets.video import load_sample

    frames = load_sample("bear").frames[:2, :240, :320]
    model = load_model("default")
    exact = model.embed(frames, precision="fp32")
    reduced = model.embed(frames, precision="bf16")
    assert reduced.dtype == torch.float32 and reduced.shape == exact.shape
    cosine = (exact * reduced).sum(1)
    assert cosine.mean() > 0.999 and cosine.min() > 0.98
    assert not torch.equal(exact, reduced)  # it did run in bfloat16
    baseline = load_model("baseline")
    assert torch.equal(baseline.embed(frames, precision="bf16"), baseline.embed(frames, precision="fp32"))


# ----------------------------------------------------------------------------- registry and default

@pytest.mark.parametrize("source", ["baseline", "untrained", "effnet-lite0", "mobilenetv2"])
def test_checkpoint_of_any_architecture_loads_in_a_fresh_process(source, tmp_path):
    """The registry is complete in a new interpreter that imports nothing but load_model:
    it once knew only the architectures whose modules something else had imported."""
    import subprocess
    import sys

    model = load_model(source) if source in ("baseline", "untrained") else build_model(source, weights=None)
    path = save_checkpoint(model, tmp_path / "m.pt")
    code = (
        "import sys; from simwidgets.models import load_model; "
        f"m = load_model({str(path)!r}); print(m.arch)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == model.arch


def test_default_model_never_silently_becomes_another(monkeypatch, tmp_path):
    from simwidgets.models import checkpoint

    assert load_model("default").arch != "baseline-colour-position"  # the shipped file is there
    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL_FILE", tmp_path / "gone" / "default.pt")
    with pytest.raises(BadInputError, match=r"shipped default model is missing .*gone/default\.pt"):
        load_model("default")


def test_checkpoint_with_nan_weights_is_refused(model, tmp_path):
    broken = SmallFCN(dim=16, stride=8, coord_weight=0.5, width=16)
    with torch.no_grad():
        for p in broken.parameters():
            p.fill_(float("nan"))
    path = save_checkpoint(broken, tmp_path / "nan.pt")
    with pytest.raises(BadInputError, match=r"NaN or infinite weights in \d+ tensor\(s\).*training diverged"):
        load_model(path)


def test_folder_given_as_checkpoint_is_named_a_folder(tmp_path):
    with pytest.raises(BadInputError, match=r"is a folder; a checkpoint is a \.pt file"):
        load_model(tmp_path)


def test_unreadable_checkpoint_says_permission_denied(saved, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "load", denied)
    with pytest.raises(BadInputError, match="permission denied"):
        load_model(saved)
