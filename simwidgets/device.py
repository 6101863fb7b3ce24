"""Choosing where tensors live: CUDA, then Apple MPS, then CPU.

The choice can be forced with an argument or the environment variable
``SIMWIDGETS_DEVICE`` (e.g. ``cpu``, ``cuda``, ``cuda:1``, ``mps``), so that a notebook
can be pinned to the CPU without editing code.
"""
from __future__ import annotations

import os

import torch

from .errors import BadInputError

__all__ = ["pick_device", "describe_device", "ENV_VAR"]

ENV_VAR = "SIMWIDGETS_DEVICE"


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
