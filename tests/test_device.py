"""Device choice: argument, then $SIMWIDGETS_DEVICE, then CUDA / MPS / CPU.

Availability is monkeypatched so the tests mean the same on a laptop and on a GPU box.
"""
from __future__ import annotations

import pytest
import torch

from simwidgets import device as device_module
from simwidgets.device import ENV_VAR, describe_device, pick_device
from simwidgets.errors import BadInputError


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)


def test_auto_falls_back_to_cpu(cpu_only):
    assert pick_device() == torch.device("cpu")
    assert pick_device("auto") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch, cpu_only):
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    assert pick_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")


def test_argument_is_honoured(cpu_only):
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")


def test_environment_variable_is_honoured(monkeypatch, cpu_only):
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    monkeypatch.setenv(ENV_VAR, "cpu")
    assert pick_device() == torch.device("cpu")  # env beats the automatic mps
    monkeypatch.setenv(ENV_VAR, "mps")
    assert pick_device() == torch.device("mps")
    assert pick_device("cpu") == torch.device("cpu")  # the argument beats the env
    monkeypatch.setenv(ENV_VAR, "")
    assert pick_device() == torch.device("mps")  # empty means automatic


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "banana", ""])
def test_unknown_device_raises(cpu_only, name):
    with pytest.raises(BadInputError, match=f"unknown device '{name}'"):
        pick_device(name)


def test_unknown_device_from_environment_raises(monkeypatch, cpu_only):
    monkeypatch.setenv(ENV_VAR, "tpu9")
    with pytest.raises(BadInputError, match="unknown device 'tpu9'"):
        pick_device()


def test_unsupported_device_type_raises(cpu_only):
    with pytest.raises(BadInputError, match="unsupported device type 'meta'"):
        pick_device("meta")


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_unavailable_cuda_raises(cpu_only, name):
    with pytest.raises(BadInputError, match="CUDA is not available"):
        pick_device(name)


def test_unavailable_mps_raises(cpu_only):
    with pytest.raises(BadInputError, match="MPS is not available"):
        pick_device("mps")


def test_missing_cuda_index_raises(monkeypatch, cpu_only):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(BadInputError, match="only 1 CUDA devices exist"):
        pick_device("cuda:3")


def test_describe_cpu(cpu_only):
    assert describe_device("cpu") == f"cpu ({torch.get_num_threads()} threads)"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_real_cuda_device_is_usable(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    device = pick_device()
    assert device.type == "cuda"
    assert torch.ones(2, device=device).sum().item() == 2.0
    assert describe_device(device).startswith("cuda:")


# --------------------------------------------------------------------------- precision
from simwidgets.device import PRECISION_ENV_VAR, autocast_dtype  # noqa: E402

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_the_hardware(monkeypatch, native):
    monkeypatch.delenv(PRECISION_ENV_VAR, raising=False)
    monkeypatch.setattr(device_module, "_cpu_has_native_bf16", lambda: native)
    assert autocast_dtype(CPU) == (torch.bfloat16 if native else None)
    assert autocast_dtype(CUDA) == torch.float16
    assert autocast_dtype(MPS) is None


def test_precision_argument_and_environment(monkeypatch):
    monkeypatch.setattr(device_module, "_cpu_has_native_bf16", lambda: True)
    monkeypatch.setenv(PRECISION_ENV_VAR, "fp32")
    assert autocast_dtype(CPU) is None
    assert autocast_dtype(CPU, "bf16") == torch.bfloat16  # the argument wins
    assert autocast_dtype(CUDA, "fp16") == torch.float16
    with pytest.raises(BadInputError, match="fp16 needs CUDA"):
        autocast_dtype(CPU, "fp16")
    with pytest.raises(BadInputError, match="unknown precision 'half'"):
        autocast_dtype(CPU, "half")
    monkeypatch.setenv(PRECISION_ENV_VAR, "double")
    with pytest.raises(BadInputError, match="unknown precision 'double'"):
        autocast_dtype(CPU)


def test_precision_name_is_the_inverse_of_autocast_dtype():
    from simwidgets.device import precision_name

    for name in ("fp32", "bf16", "fp16"):
        assert precision_name(autocast_dtype(CUDA, name)) == name


def test_embedding_batch_size_is_one_frame_on_a_cpu_and_the_result_does_not_depend_on_it():
    """One frame per forward pass on a CPU (faster there: bench_transfer's fps part), four
    on a GPU; the embeddings are those of any other batch size."""
    import numpy as np

    from simwidgets.device import embedding_batch_size
    from simwidgets.models import load_model
    from simwidgets.transfer.cache import EmbeddingCache
    from simwidgets.video import load_sample

    assert embedding_batch_size(torch.device("cpu")) == 1
    assert embedding_batch_size(torch.device("cuda")) == embedding_batch_size(torch.device("mps")) == 4
    frames = np.ascontiguousarray(load_sample("dog-agility").frames[:3, :160, :224])
    model = load_model("default")
    one = model.embed(frames, device="cpu", precision="fp32")
    three = model.embed(frames, device="cpu", precision="fp32", batch_size=3)
    assert torch.allclose(one, three, atol=1e-5)
    assert EmbeddingCache(model, frames, device="cpu").batch_size == 1
    with pytest.raises(BadInputError, match="batch_size"):
        model.embed(frames, device="cpu", batch_size=0)


@pytest.mark.parametrize("flags, native", [
    ({"avx2", "avx512f", "avx512_bf16"}, True),
    ({"avx2", "amx_bf16"}, True),
    ({"avx2", "avx512f"}, False),  # oneDNN emulates bfloat16 there: slower than float32
])
def test_bfloat16_counts_as_native_only_with_its_x86_units(monkeypatch, flags, native):
    """On x86 Linux the CPU's flags decide, not oneDNN's "supported" (True when emulated)."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(device_module.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(device_module, "_cpu_flags", lambda: flags)
    assert device_module._cpu_has_native_bf16() is native
    assert autocast_dtype(CPU, "auto") == (torch.bfloat16 if native else None)
