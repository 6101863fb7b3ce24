"""The embedding network compiled ahead of time (simwidgets.models.compiled) against the
network as it runs in PyTorch: same embeddings on real frames, reused from disk, never
reused for other weights, and a failed build costs nothing but a warning."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from simwidgets.cli import main as cli_main
from simwidgets.errors import BadInputError
from simwidgets.models import compiled, load_model, precompile, save_checkpoint
from simwidgets.models.compiled import COMPILE_ENV_VAR, compile_policy, package_path
from simwidgets.transfer import EmbeddingCache
from simwidgets.video import load_sample


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One package folder for the module: building is the slow part (a C++ compiler runs)."""
    folder = tmp_path_factory.mktemp("compiled")
    patch = pytest.MonkeyPatch()
    patch.setenv("SIMWIDGETS_CACHE_DIR", str(folder))
    patch.delenv(COMPILE_ENV_VAR, raising=False)
    yield folder
    patch.undo()


@pytest.fixture(scope="module")
def clip():
    """Three real frames of bear, cropped to 100x150 (padded to 112x160 by the network)."""
    return np.ascontiguousarray(load_sample("bear").frames[:3, 180:280, 300:450])


@pytest.fixture(scope="module")
def built(cache_dir, clip):
    """The shipped model and the package built for the clip's frame size."""
    model = load_model("default")
    path = precompile(model, *clip.shape[1:3], precision="fp32")
    return model, path


def test_compiled_network_embeds_as_the_plain_one_and_is_loaded_from_disk(built, clip, monkeypatch):
    model, path = built
    assert path.is_file() and path.parent == compiled.compiled_cache_dir()
    assert path == package_path(model, *clip.shape[1:3], precision="fp32")
    loads = []
    real_load = compiled._load
    monkeypatch.setattr(compiled, "_load", lambda p: loads.append(p) or real_load(p))
    plain = model.embed(clip, precision="fp32", compile="off")
    fast = model.embed(clip, precision="fp32")  # the default policy: a package on disk is used
    assert loads == [path]
    assert fast.shape == plain.shape and fast.dtype == torch.float32
    assert torch.allclose(fast, plain, atol=1e-4), float((fast - plain).abs().max())
    assert not torch.equal(fast, model.embed(clip[::-1].copy(), precision="fp32")), "the package ignored its input"

    # another copy of the same weights (a new session) finds the package without building it
    monkeypatch.setattr(compiled, "_build", lambda *a, **k: pytest.fail("built a package that was on disk"))
    twin = load_model("default")
    again = twin.embed(clip, precision="fp32", compile="build")
    assert loads == [path, path] and torch.allclose(again, plain, atol=1e-4)


def test_precompile_leaves_the_model_as_it_was(built, clip):
    """A model in training mode is compiled as embed runs it (eval) and left training."""
    model, path = built
    model.train()
    try:
        assert precompile(model, *clip.shape[1:3], precision="fp32") == path
        assert model.training
    finally:
        model.eval()


def test_a_package_is_never_used_for_other_weights(built, clip, monkeypatch):
    """Changed weights name another package: under the default policy the network then runs
    uncompiled, with the new weights, rather than the package of the old ones."""
    model, path = built
    changed = load_model("default")
    with torch.no_grad():
        changed.head.project.bias.add_(0.5)
    assert package_path(changed, *clip.shape[1:3], precision="fp32") != path
    monkeypatch.setattr(compiled, "_load", lambda p: pytest.fail(f"loaded {p} for other weights"))
    got = changed.embed(clip, precision="fp32")
    want = changed.embed(clip, precision="fp32", compile="off")
    assert torch.equal(got, want)
    assert not torch.allclose(got, model.embed(clip, precision="fp32", compile="off"), atol=1e-3)


def test_a_partial_last_batch_is_filled_up_and_dropped(built, clip):
    """The package is compiled for a batch size: a last batch with fewer frames is filled
    with copies and their embeddings are dropped."""
    model, _ = built
    path = precompile(model, *clip.shape[1:3], precision="fp32", batch_size=2)
    assert path.is_file()
    plain = model.embed(clip, precision="fp32", compile="off")
    fast = model.embed(clip, precision="fp32", batch_size=2)
    assert fast.shape[0] == 3 and torch.allclose(fast, plain, atol=1e-4)


def test_the_package_reads_its_input_by_strides_not_by_memory_order(built, clip):
    """A channels-last input (what embed makes from HWC pixels) gives the same embedding as
    a contiguous one; an input of another shape is refused, never misread."""
    model, _ = built
    network, shape = compiled._network_and_shape(model, *clip.shape[1:3], 1)
    runner = compiled.compiled_runner(network, shape, None, False, "cached")
    assert runner is not None
    x = torch.rand(shape).contiguous(memory_format=torch.channels_last)
    assert not x.is_contiguous()
    with torch.inference_mode():
        want = network(x.contiguous())
        assert torch.allclose(runner(x), want, atol=1e-4)
        with pytest.raises(BadInputError, match="takes float32 CPU input of shape"):
            runner(torch.rand(1, 3, shape[2] + 16, shape[3]))


def test_embedding_cache_runs_the_package(built, clip, monkeypatch):
    model, path = built
    loads = []
    real_load = compiled._load
    monkeypatch.setattr(compiled, "_load", lambda p: loads.append(p) or real_load(p))
    monkeypatch.setenv("SIMWIDGETS_PRECISION", "fp32")
    model.__dict__.pop("_folded_for_inference", None)  # a fresh folded copy: nothing loaded yet
    cache = EmbeddingCache(model, clip, device="cpu")
    cache.ensure()
    assert loads == [path]
    plain = model.embed(clip, precision="fp32", compile="off")
    assert torch.allclose(cache[1].float(), plain[1], atol=2e-3)  # stored in float16
    off = EmbeddingCache(model, clip, device="cpu", compile="off")
    off.ensure()
    assert loads == [path]


def test_a_failed_build_warns_once_and_embeds_uncompiled(cache_dir, clip, monkeypatch):
    model = load_model("default")
    with torch.no_grad():
        model.head.project.bias.add_(0.25)  # weights with no package yet
    calls = []

    def no_compiler(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(compiled, "_build", no_compiler)
    with pytest.warns(RuntimeWarning, match="compiling the embedding network failed .*no C\\+\\+ compiler"):
        got = model.embed(clip[:1], precision="fp32", compile="build")
    assert torch.equal(got, model.embed(clip[:1], precision="fp32", compile="off"))
    model.embed(clip[:1], precision="fp32", compile="build")  # remembered: no second try
    assert len(calls) == 1
    with pytest.raises(BadInputError, match="compiling the embedding network failed: RuntimeError: no C"):
        precompile(model, *clip.shape[1:3], precision="fp32")


def test_compile_policy_names(monkeypatch):
    monkeypatch.delenv(COMPILE_ENV_VAR, raising=False)
    assert compile_policy() == "cached"
    assert compile_policy(True) == "build" and compile_policy(False) == "off"
    assert compile_policy(" Build ") == "build"
    monkeypatch.setenv(COMPILE_ENV_VAR, "off")
    assert compile_policy() == "off" and compile_policy("cached") == "cached"
    for bad in ("fast", 1, ""):
        with pytest.raises(BadInputError, match="compile policy"):
            compile_policy(bad)
    with pytest.raises(BadInputError, match="compile policy"):
        load_model("default").embed(np.zeros((1, 16, 16, 3), np.uint8), compile="always")


def test_cli_compile_reports_the_package_and_refuses_a_bad_size(built, clip, tmp_path, capsys, monkeypatch):
    model, path = built
    checkpoint = save_checkpoint(model, tmp_path / "model.pt")
    monkeypatch.setenv("SIMWIDGETS_PRECISION", "fp32")
    monkeypatch.setattr(compiled, "_build", lambda *a, **k: pytest.fail("rebuilt a package that exists"))
    height, width = clip.shape[1:3]
    assert cli_main(["compile", "--model", str(checkpoint), "--size", f"{height}x{width}", "--precision", "fp32"]) == 0
    assert f"already compiled: {path}" in capsys.readouterr().out
    assert cli_main(["compile", "--size", "480"]) == 2
    err = capsys.readouterr().err
    assert "--size must be HEIGHTxWIDTH" in err and "Traceback" not in err
