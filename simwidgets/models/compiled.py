"""The embedding network compiled ahead of time for this CPU, kept on disk and reused.

Why: on a CPU the network is most of a first round (about 11 of 13.5 s for 80 frames on a
2-core Xeon), and eager PyTorch runs each small convolution of a mobile network as its own
kernel, with the feature map going through memory between them.  AOTInductor
(``torch.export`` and ``torch._inductor.aoti_compile_and_package``, weights frozen into the
program) fuses them into one C++ program compiled for this CPU: through ``embed``, the default
model embedded 480p frames 1.6-1.9x as fast there, and a first round of 80 frames took 6.0-7.7 s
against 8.3-14.2 s (``benchmarks/bench_compiled.py``, ``benchmarks/results/compiled_network.md``),
with the same function to float32 rounding.

Building a package costs tens of seconds (a C++ compiler runs), more than it saves on one
short video, so it is done once and kept: a package is specific to the model's weights, the
padded frame size, the precision, mirror averaging, the torch version and the CPU, and its
file name is a digest of all of them (a changed weight can never pick up an old package).
Where the packages live: ``$SIMWIDGETS_CACHE_DIR``, else ``$XDG_CACHE_HOME/simwidgets``,
else ``~/.cache/simwidgets``, in ``compiled/``.  They are built on this machine and never
downloaded; do not point the cache at a folder others can write to, as a package is code.

When it is used (``compile`` of :meth:`~simwidgets.models.EmbeddingModel.embed` and of
:class:`~simwidgets.transfer.EmbeddingCache`; else ``$SIMWIDGETS_COMPILE``; else ``cached``):

* ``cached``: run a package when one is on disk, never build one (the default: it costs
  nothing when there is none);
* ``build`` (or True): build the package when it is missing, then run it;
* ``off`` (or False): never.

Build a package once with :func:`precompile` (or ``python -m simwidgets compile``); every
later session that embeds frames of that size with that model then runs it.  Only CPUs are
compiled: on CUDA the eager network in float16 is already fast, and the compiled path has
not been measured there.  Where a build fails (no C++ compiler, an operator export does not
know) the network runs uncompiled, with one warning: the result is the same.
"""
from __future__ import annotations

import hashlib
import os
import platform
import sys
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch import nn

from ..errors import BadInputError

__all__ = ["COMPILE_ENV_VAR", "CACHE_ENV_VAR", "compile_policy", "compiled_cache_dir", "compiled_runner",
           "package_path", "precompile"]

COMPILE_ENV_VAR = "SIMWIDGETS_COMPILE"
CACHE_ENV_VAR = "SIMWIDGETS_CACHE_DIR"
_POLICIES = ("cached", "build", "off")
#: bumped when the wrapper or build options change, so packages of older builds are not reused
_FORMAT = 1
#: where a network keeps its loaded packages and the keys whose build failed (plain
#: attributes: in no state_dict or checkpoint; the folded copy is rebuilt when weights change)
_RUNNERS = "_compiled_runners"
_DIGEST = "_weights_digest"
_BUILD_LOCK = threading.Lock()


def compile_policy(value=None) -> str:
    """``cached``, ``build`` or ``off`` from ``value`` (None: ``$SIMWIDGETS_COMPILE``, else
    ``cached``); True means ``build`` and False ``off``."""
    if value is None:
        value = os.environ.get(COMPILE_ENV_VAR) or "cached"
    if value is True:
        return "build"
    if value is False:
        return "off"
    if isinstance(value, str) and value.strip().lower() in _POLICIES:
        return value.strip().lower()
    raise BadInputError(f"unknown compile policy {value!r} (use cached, build, off, True or False)")


def compiled_cache_dir() -> Path:
    """The folder that holds the compiled packages (see the module docstring)."""
    root = os.environ.get(CACHE_ENV_VAR)
    if root:
        return Path(root).expanduser() / "compiled"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "simwidgets" / "compiled"


class _Network(nn.Module):
    """The function :meth:`~simwidgets.models.EmbeddingModel.embed` runs on one batch:
    the network (or its mirror average) under the embedding's autocast precision."""

    def __init__(self, network: nn.Module, dtype: torch.dtype | None, mirror: bool):
        super().__init__()
        self.network = network
        self.dtype = dtype
        self.mirror = mirror

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            return self.network.mirror_averaged(x) if self.mirror else self.network(x)


def _weights_digest(network: nn.Module) -> str:
    """SHA-256 of the network's class, configuration, weights and buffers (memoised on the
    network for as long as none of them changes)."""
    from .inference import _fingerprint

    stamp = _fingerprint(network)
    memo = network.__dict__.get(_DIGEST)
    if memo is not None and memo[0] == stamp:
        return memo[1]
    h = hashlib.sha256()
    h.update(f"{type(network).__module__}.{type(network).__qualname__}".encode())
    config = getattr(network, "config", None)
    h.update(repr(sorted(config().items())).encode() if callable(config) else b"")
    for name, tensor in sorted(network.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    digest = h.hexdigest()
    network.__dict__[_DIGEST] = (stamp, digest)
    return digest


def _machine_signature() -> str:
    """What a compiled package depends on besides the network: torch, Python and the CPU
    (the generated code uses the instruction sets this CPU has)."""
    from ..device import _cpu_flags

    flags = _cpu_flags()
    return "|".join([torch.__version__, f"py{sys.version_info[0]}.{sys.version_info[1]}", platform.machine(),
                     platform.processor(), ",".join(sorted(flags)) if flags else "", f"format{_FORMAT}"])


def package_key(network: nn.Module, shape: tuple[int, ...], dtype: torch.dtype | None, mirror: bool) -> str:
    """The digest that names the package of ``network`` on input ``shape`` (B, 3, H, W)."""
    h = hashlib.sha256()
    h.update(_weights_digest(network).encode())
    h.update(repr((tuple(int(s) for s in shape), str(dtype), bool(mirror))).encode())
    h.update(_machine_signature().encode())
    return h.hexdigest()[:32]


def _package_file(network: nn.Module, shape, dtype, mirror) -> Path:
    b, _, height, width = shape
    return compiled_cache_dir() / f"{type(network).__name__}-{b}x{height}x{width}-{package_key(network, shape, dtype, mirror)}.pt2"


def _build(network: nn.Module, shape, dtype, mirror, path: Path) -> None:
    """Export ``_Network`` on an input of ``shape`` and compile it into ``path`` (written to a
    temporary file first and renamed, so a half-written package is never loaded)."""
    from torch._inductor import aoti_compile_and_package

    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _Network(network, dtype, mirror).eval()
    fd, tmp = tempfile.mkstemp(suffix=".pt2", dir=path.parent)
    os.close(fd)
    try:
        with torch.inference_mode(False), torch.no_grad():
            example = torch.zeros(shape, dtype=torch.float32)
            exported = torch.export.export(wrapper, (example,))
            aoti_compile_and_package(exported, package_path=tmp, inductor_configs={"freezing": True})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class _Runner:
    """A loaded package, called like the network on inputs of the shape it was compiled for.

    The compiled program reads its input as a contiguous array whatever the tensor's strides
    say (a channels-last frame, as ``embed`` makes from HWC pixels, came out as garbage), so
    every input is made contiguous first, and a shape it was not compiled for is refused.
    """

    def __init__(self, program, shape: tuple[int, ...], path: Path):
        self.program, self.shape, self.path = program, tuple(shape), path

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape) != self.shape or x.dtype != torch.float32 or x.device.type != "cpu":
            raise BadInputError(f"the compiled network {self.path.name} takes float32 CPU input of shape "
                                f"{self.shape}; got {x.dtype} {tuple(x.shape)} on {x.device}")
        return self.program(x.contiguous())


def _build_if_missing(network: nn.Module, shape, dtype, mirror, path: Path) -> None:
    """Build the package at ``path`` unless it is there; one build at a time per process, and
    a package another thread or process finished meanwhile is not built again."""
    with _BUILD_LOCK:
        if not path.is_file():
            _build(network, tuple(shape), dtype, mirror, path)


def _load(path: Path):
    from torch._inductor import aoti_load_package

    return aoti_load_package(str(path))


def compiled_runner(network: nn.Module, shape, dtype: torch.dtype | None = None, mirror: bool = False,
                    policy: str = "cached"):
    """A callable that computes ``_Network(network, dtype, mirror)`` on inputs of ``shape``
    from a compiled package, or None where the network runs uncompiled (policy ``off``, no
    package under ``cached``, or a build or load that failed: warned once per package)."""
    policy = compile_policy(policy)
    if policy == "off":
        return None
    runners = network.__dict__.setdefault(_RUNNERS, {})
    try:
        path = _package_file(network, tuple(shape), dtype, mirror)
    except Exception as error:  # a network whose state cannot be hashed runs uncompiled
        warnings.warn(f"the embedding network cannot be compiled ({type(error).__name__}: {error}); it runs uncompiled",
                      RuntimeWarning, stacklevel=3)
        return None
    if path in runners:
        return runners[path]
    if not path.is_file():
        if policy == "cached":
            return None
        try:
            _build_if_missing(network, shape, dtype, mirror, path)
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            warnings.warn(f"compiling the embedding network failed ({type(error).__name__}: {first[:200]}); "
                          "it runs uncompiled, with the same result", RuntimeWarning, stacklevel=3)
            runners[path] = None
            return None
    try:
        runner = _Runner(_load(path), shape, path)
    except Exception as error:
        warnings.warn(f"the compiled embedding network {path} could not be loaded ({type(error).__name__}); "
                      "it runs uncompiled (delete the file to rebuild it)", RuntimeWarning, stacklevel=3)
        runner = None
    runners[path] = runner
    return runner


def _network_and_shape(model, height: int, width: int, batch_size: int):
    """The network ``model.embed`` runs (batch norms folded) and the input shape it gets."""
    from .inference import inference_network

    return inference_network(model), (batch_size, 3) + model.padded_size(height, width)


def _target(model, height: int, width: int, mirror: bool, precision: str | None, batch_size: int):
    """``(network, input shape, precision, package path)`` of ``model`` embedding ``height x
    width`` frames on the CPU, as :meth:`~simwidgets.models.EmbeddingModel.embed` would."""
    from ..device import autocast_dtype

    dtype = autocast_dtype(torch.device("cpu"), precision) if model.reduced_precision else None
    network, shape = _network_and_shape(model, height, width, batch_size)
    return network, shape, dtype, _package_file(network, shape, dtype, bool(mirror))


def package_path(model, height: int, width: int, mirror: bool = False, precision: str | None = None,
                 batch_size: int = 1) -> Path:
    """Where the package of ``model`` for ``height x width`` frames lives (it may not exist)."""
    return _target(model, height, width, mirror, precision, batch_size)[3]


def precompile(model="default", height: int = 480, width: int = 854, mirror: bool = False,
               precision: str | None = None, batch_size: int = 1) -> Path:
    """Build (once) the compiled package with which ``model`` embeds ``height x width``
    frames on this CPU, and return its path; later embeddings of that size run it.

    ``model`` is an :class:`~simwidgets.models.EmbeddingModel`, a checkpoint path or
    ``"default"``; ``precision`` as in :meth:`~simwidgets.models.EmbeddingModel.embed`
    (automatic when None), ``batch_size`` the frames per call (one on a CPU).  Raises
    BadInputError when the build fails, naming why.
    """
    from .. import checks
    from .checkpoint import load_model

    if isinstance(model, (str, Path)):
        model = load_model(model)
    height, width = checks.positive_int(height, "height"), checks.positive_int(width, "width")
    batch_size = checks.positive_int(batch_size, "batch_size")
    devices = {t.device.type for t in list(model.parameters()) + list(model.buffers())}
    if devices - {"cpu"}:
        raise BadInputError(f"precompile builds for the CPU; the model is on {', '.join(sorted(devices))} "
                            "(move it with model.to('cpu') first)")
    was_training = model.training
    model.eval()  # as embed runs it (a model that is not folded is exported as it is)
    try:
        network, shape, dtype, path = _target(model, height, width, mirror, precision, batch_size)
        if path.is_file():
            return path
        _build_if_missing(network, shape, dtype, bool(mirror), path)
    except BadInputError:
        raise
    except Exception as error:
        raise BadInputError(f"compiling the embedding network failed: {type(error).__name__}: "
                            f"{str(error).strip()[:500]}") from error
    finally:
        model.train(was_training)
    network.__dict__.setdefault(_RUNNERS, {}).pop(path, None)  # a failure remembered earlier
    return path
