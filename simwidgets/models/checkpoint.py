"""Checkpoints: save and load embedding networks safely, and find the shipped model.

A checkpoint is a plain dict (format tag, architecture name, configuration, weights,
training record) read with ``torch.load(..., weights_only=True)``: nothing in it can run
code, and every field is checked before a model is built from it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import BadInputError
from ..resources import shipped_file
from .base import EmbeddingModel, build_model, is_registered

__all__ = ["save_checkpoint", "load_checkpoint", "load_model", "default_model_path", "CHECKPOINT_FORMAT"]

CHECKPOINT_FORMAT = "simwidgets-embedding"
CHECKPOINT_VERSION = 1
#: where the shipped trained model lives (in a checkout and in an installed wheel alike)
DEFAULT_MODEL_FILE = shipped_file("models", "default.pt")


def save_checkpoint(model: EmbeddingModel, path: str | Path, training: dict | None = None) -> Path:
    """Save architecture, configuration, weights and training record to ``path``.

    ``training`` holds plain values (str, int, float, bool, None, lists, dicts; numpy
    numbers and arrays are converted to those) so that the file loads with
    ``torch.load(weights_only=True)``; anything else is refused here, before writing,
    rather than producing a file that cannot be read back.
    """
    if not is_registered(model):
        raise BadInputError(
            f"a {type(model).__name__} (arch {model.arch!r}) is not a registered architecture, so no checkpoint "
            "could rebuild it; save its network's own state_dict with torch.save instead"
        )
    path = Path(path)
    training = _plain_record(dict(training or {}), "training record")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "arch": model.arch,
        "config": model.config(),
        "stride": model.stride,
        "dim": model.dim,
        "library_version": __version__,
        "training": training,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def _plain_record(value, where: str):
    """``value`` with numpy numbers/arrays turned into Python ones; other objects refused."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or type(value) in (str, int, float, bool):
        return value
    # subclasses (torch.__version__ is a str subclass, IntEnum an int one) unpickle only as
    # their own class, which weights_only refuses: store the plain value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_plain_record(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain_record(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise BadInputError(
        f"{where} holds a {type(value).__name__}; a checkpoint's training record takes plain values "
        "only (str, int, float, bool, None, lists, dicts) so that it loads with weights_only=True"
    )


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint file safely (``weights_only=True``) and check its format."""
    path = Path(path)
    if path.is_dir():
        raise BadInputError(f"{path} is a folder; a checkpoint is a .pt file written by save_checkpoint")
    if not path.is_file():
        raise BadInputError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise BadInputError(f"cannot read checkpoint {path}: permission denied") from None
    except Exception as error:  # torch raises many types for corrupt files
        raise BadInputError(
            f"cannot read checkpoint {path}: corrupt, truncated or not a weights-only torch file "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise BadInputError(
            f"{path} is not a simwidgets embedding checkpoint (no 'format': {CHECKPOINT_FORMAT!r} entry); "
            "a bare state dict can be loaded into a model with model.load_state_dict"
        )
    for key in ("arch", "config", "state_dict"):
        if key not in payload:
            raise BadInputError(f"checkpoint {path} lacks the {key!r} entry")
    if not isinstance(payload["arch"], str):
        raise BadInputError(f"checkpoint {path}: the 'arch' entry must be a string; got {payload['arch']!r:.80}")
    if not isinstance(payload["config"], dict) or not all(isinstance(k, str) for k in payload["config"]):
        raise BadInputError(f"checkpoint {path}: the 'config' entry must be a dict of keyword arguments")
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise BadInputError(f"checkpoint {path}: the 'state_dict' entry must be a dict of tensors by name")
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise BadInputError(
            f"checkpoint {path} holds NaN or infinite weights in {len(broken)} tensor(s) "
            f"({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}): training diverged"
        )
    return payload


def load_model(
    source: "str | Path | EmbeddingModel" = "default",
    expect_arch: str | None = None,
) -> EmbeddingModel:
    """Get an embedding model by name or from a checkpoint file.

    ``source`` is ``"baseline"`` (hand-crafted colour + position), ``"untrained"``
    (a randomly initialised fcn-small), ``"default"`` (the shipped trained model; an
    error, never a silent substitute, when it is missing), a checkpoint path, or a model
    (returned as is).
    """
    if isinstance(source, EmbeddingModel):
        return source
    name = str(source)
    if name == "baseline":
        from .baseline import ColourPositionEmbedding

        return ColourPositionEmbedding()
    if name == "untrained":
        from .fcn import SmallFCN

        torch.manual_seed(0)
        return SmallFCN()
    if name == "default":
        shipped = default_model_path()
        if shipped is None:
            raise BadInputError(
                f"the shipped default model is missing ({DEFAULT_MODEL_FILE} not found): reinstall simwidgets, "
                "or pass model='baseline' or a checkpoint path"
            )
        name = str(shipped)
    payload = load_checkpoint(name)
    arch = payload["arch"]
    if expect_arch is not None and arch != expect_arch:
        raise BadInputError(f"checkpoint {name} holds architecture {arch!r}, expected {expect_arch!r}")
    model = build_model(arch, **payload["config"])
    missing, unexpected = [], []
    own = model.state_dict()
    for key in own:
        if key not in payload["state_dict"]:
            missing.append(key)
    for key in payload["state_dict"]:
        if key not in own:
            unexpected.append(key)
    if missing or unexpected:
        raise BadInputError(
            f"checkpoint {name} does not fit architecture {arch!r}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    for key, value in payload["state_dict"].items():
        if own[key].shape != value.shape:
            raise BadInputError(
                f"checkpoint {name} does not fit architecture {arch!r}: {key} has shape "
                f"{tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    model.load_state_dict(payload["state_dict"])
    model.training_record = payload.get("training", {})
    model.eval()
    return model


def default_model_path() -> Path | None:
    """The shipped trained model (``data/models/default.pt``), if present."""
    return DEFAULT_MODEL_FILE if DEFAULT_MODEL_FILE.is_file() else None
