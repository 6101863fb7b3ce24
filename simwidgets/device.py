"""Choosing where tensors live (CUDA, then Apple MPS, then CPU) and in what precision
networks run there.

The device can be forced with an argument or the environment variable
``SIMWIDGETS_DEVICE`` (e.g. ``cpu``, ``cuda``, ``cuda:1``, ``mps``), so that a notebook
can be pinned to the CPU without editing code; the precision likewise with
``SIMWIDGETS_PRECISION`` (``auto``, ``fp32``, ``bf16``, ``fp16``).
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from .errors import BadInputError

__all__ = [
    "pick_device", "describe_device", "autocast_dtype", "precision_name", "embedding_batch_size",
    "ENV_VAR", "PRECISION_ENV_VAR",
]

ENV_VAR = "SIMWIDGETS_DEVICE"
PRECISION_ENV_VAR = "SIMWIDGETS_PRECISION"
_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """The device to compute on.

    Order: the ``prefer`` argument, then ``$SIMWIDGETS_DEVICE``, then the best available
    (CUDA, MPS, CPU).  Asking for a device that is not available raises BadInputError.
    """
    requested = prefer if prefer is not None else os.environ.get(ENV_VAR) or None
    if requested is None or str(requested) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise BadInputError(f"unknown device {requested!r} (use cpu, cuda, cuda:N, mps or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {requested!r} requested but CUDA is not available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise BadInputError(f"device {requested!r} requested but only {torch.cuda.device_count()} CUDA devices exist")
    if device.type == "mps" and not _mps_available():
        raise BadInputError(f"device {requested!r} requested but Apple MPS is not available here")
    if device.type not in ("cpu", "cuda", "mps"):
        raise BadInputError(f"unsupported device type {device.type!r} (use cpu, cuda or mps)")
    return device


def describe_device(device: torch.device | None = None) -> str:
    """A one-line human description, e.g. ``cuda:0 (NVIDIA H100)`` or ``cpu (2 threads)``."""
    device = pick_device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({torch.get_num_threads()} threads)"


#: x86 CPU flags (``/proc/cpuinfo``) of bfloat16 arithmetic in hardware
_X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpu_flags() -> set[str] | None:
    """The CPU's feature flags from ``/proc/cpuinfo`` (Linux), or None where it cannot say."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return None


def _cpu_has_native_bf16() -> bool:
    """True where bfloat16 runs in hardware (AVX512-BF16 or AMX), not emulated.

    oneDNN's own answer (``_is_mkldnn_bf16_supported``) is also True on AVX-512 CPUs
    without those units, where it emulates bfloat16: there the network ran about 25 % slower
    than in float32 (5.4-6.8 against 7.1-9.2 frames/s at 480p on a 2-core Xeon,
    ``benchmarks/results/embedding_precision.md``).  So on x86 Linux the CPU's flags decide."""
    try:
        supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
    flags = _cpu_flags()
    if supported and flags is not None and platform.machine().lower() in ("x86_64", "amd64"):
        return any(flag in flags for flag in _X86_BF16_FLAGS)
    return supported


def autocast_dtype(device: torch.device, precision: str | None = None) -> torch.dtype | None:
    """The reduced precision a network runs in on ``device`` (None: float32).

    ``precision`` (else ``$SIMWIDGETS_PRECISION``, else ``auto``):

    * ``auto``: float16 on CUDA; bfloat16 on a CPU that has it in hardware (about twice
      as fast there, embeddings within 0.9998 cosine of float32); float32 otherwise (MPS,
      and CPUs where bfloat16 would be emulated, hence slower);
    * ``fp32``, ``bf16``, ``fp16``: that precision (``fp16`` on CUDA only).
    """
    requested = precision or os.environ.get(PRECISION_ENV_VAR) or "auto"
    if requested != "auto" and requested not in _PRECISIONS:
        raise BadInputError(f"unknown precision {requested!r} (use auto, fp32, bf16 or fp16)")
    if requested == "auto":
        if device.type == "cuda":
            return torch.float16
        if device.type == "cpu" and _cpu_has_native_bf16():
            return torch.bfloat16
        return None
    if requested == "fp16" and device.type != "cuda":
        raise BadInputError(f"precision fp16 needs CUDA; the device is {device.type} (use bf16 or fp32)")
    return _PRECISIONS[requested]


def precision_name(dtype: torch.dtype | None) -> str:
    """The name :func:`autocast_dtype` accepts for ``dtype`` (``None`` is ``"fp32"``)."""
    return next(name for name, known in _PRECISIONS.items() if known == dtype)


def embedding_batch_size(device: torch.device) -> int:
    """Frames per forward pass when embedding a video on ``device``.

    One on a CPU: there a batch of 480p frames outgrows the caches, and one frame at a
    time is faster (effnet-lite0 at stride 8 on a 2-core AMD EPYC with AVX512-BF16: 12.5 frames/s
    against 9.8 at 4 in bfloat16, 8.3 against 4.2 in float32; ``benchmarks/bench_transfer.py
    --parts fps``).  Four on a GPU, which needs the parallel work.
    """
    return 1 if torch.device(device).type == "cpu" else 4
