"""Backbones: ``forward(x) -> features [B, out_dim]``; every backbone has an ``out_dim`` attribute.

- ``resnet32`` / ``resnet44``: He et al.'s CIFAR ResNets (option-A shortcuts, ``width`` multiplier).
- ``convnet``: ARConvL's small CNN for MNIST-sized images.
- ``resnet10`` / ``resnet50`` / ``resnext50_32x4d``: torchvision's ImageNet ResNets, random init or a
  local state_dict (nothing is ever downloaded).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lt_bench.errors import ConfigError

BACKBONE_NAMES = ("resnet32", "resnet44", "convnet", "resnet10", "resnet50", "resnext50_32x4d")

# Parameters each backbone accepts besides in_channels (anything else is a configuration error)
_PARAMS: dict[str, tuple[str, ...]] = {
    "resnet32": ("width",),
    "resnet44": ("width",),
    "convnet": ("channels", "out_dim", "image_size"),
    "resnet10": ("pretrained",),
    "resnet50": ("pretrained",),
    "resnext50_32x4d": ("pretrained",),
}


# --------------------------------------------------------------------------------------------------
# CIFAR ResNets
# --------------------------------------------------------------------------------------------------
class OptionAShortcut(nn.Module):
    """He et al.'s option A: subsample by ``stride`` and zero-pad the new channels (no parameters).

    The zeros go on both sides of the channel axis, so the input lands in the middle channels. This is
    the layout of the CIFAR ResNet that the long-tail reference code bases (LDAM-DRW, PPL, KPS, VS)
    share; matching it keeps their checkpoints loadable with the same behaviour.
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        if planes < in_planes:
            raise ValueError(f"option-A shortcut cannot reduce channels ({in_planes} -> {planes})")
        self.stride = stride
        self.pad_before = (planes - in_planes) // 2
        self.pad_after = planes - in_planes - self.pad_before

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        needs_projection = stride != 1 or in_planes != planes
        self.shortcut: nn.Module = (
            OptionAShortcut(in_planes, planes, stride) if needs_projection else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2): a 3x3 stem, 3 stages of n basic blocks with 16/32/64 x ``width`` channels
    (stride 2 at the start of stages 2 and 3), global average pooling; ``out_dim = 64 * width``."""

    def __init__(self, blocks_per_stage: int, in_channels: int = 3, width: int = 1) -> None:
        super().__init__()
        planes = [16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, planes[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        blocks: list[nn.Module] = []
        in_planes = planes[0]
        for stage, p in enumerate(planes):
            for b in range(blocks_per_stage):
                blocks.append(BasicBlock(in_planes, p, stride=2 if stage > 0 and b == 0 else 1))
                in_planes = p
        self.layers = nn.Sequential(*blocks)
        self.out_dim = planes[-1]
        self.apply(_kaiming_normal)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


def _kaiming_normal(module: nn.Module) -> None:
    # the CIFAR ResNet reference code: Kaiming-normal (fan-in) weights, BatchNorm left at (1, 0)
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.kaiming_normal_(module.weight)


# --------------------------------------------------------------------------------------------------
# ARConvL's small CNN
# --------------------------------------------------------------------------------------------------
class ConvNet(nn.Module):
    """2 x [conv3x3-ReLU-conv3x3-ReLU-maxpool2] -> flatten -> dense(out_dim) -> BatchNorm1d.

    Follows ARConvL's Keras model: 'same' convolutions and pooling (pooling rounds odd sizes up, hence
    ``ceil_mode``), He-uniform weights and zero biases. The dense layer's width is fixed at
    construction from ``image_size`` (the side of the square input).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_dim: int = 64,
        channels: Sequence[int] = (32, 64),
        image_size: int = 28,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev, side = in_channels, image_size
        for ch in channels:
            layers += [
                nn.Conv2d(prev, ch, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(ch, ch, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            prev, side = ch, -(-side // 2)
        self.features = nn.Sequential(*layers)
        self.image_size = image_size
        self.flat_dim = prev * side * side
        self.dense = nn.Linear(self.flat_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.out_dim = out_dim
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")  # Keras 'he_uniform'
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        flat = self.features(x).flatten(1)
        if flat.shape[1] != self.flat_dim:
            raise ValueError(
                f"convnet was built for {self.image_size}x{self.image_size} inputs but got "
                f"{tuple(x.shape[-2:])}; set backbone.image_size to the input size"
            )
        return self.bn(self.dense(flat))


# --------------------------------------------------------------------------------------------------
# torchvision ImageNet ResNets
# --------------------------------------------------------------------------------------------------
def _torchvision(name: str, in_channels: int, pretrained: str | None) -> nn.Module:
    """A torchvision ResNet/ResNeXt with ``fc`` replaced by Identity (features = pooled activations)."""
    # imported here: torchvision is only needed for the ImageNet-scale backbones
    from torchvision.models import resnet50, resnext50_32x4d
    from torchvision.models.resnet import BasicBlock as TVBasicBlock
    from torchvision.models.resnet import ResNet

    if name == "resnet10":
        net = ResNet(TVBasicBlock, [1, 1, 1, 1])
    elif name == "resnet50":
        net = resnet50(weights=None)
    else:
        net = resnext50_32x4d(weights=None)
    if in_channels != 3:
        stem = net.conv1
        net.conv1 = nn.Conv2d(
            in_channels,
            stem.out_channels,
            kernel_size=stem.kernel_size,
            stride=stem.stride,
            padding=stem.padding,
            bias=False,
        )
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as torchvision
    net.out_dim = net.fc.in_features
    net.fc = nn.Identity()
    if pretrained:
        _load_local_state(net, Path(pretrained))
    return net


def _load_local_state(net: nn.Module, path: Path) -> None:
    """Load a local state_dict into the backbone (strict); the source model's ``fc.*`` is dropped."""
    if not path.is_file():
        raise ConfigError(
            f"backbone.pretrained={path}: no such file; give the path of a local state_dict "
            "(torch.save(model.state_dict(), PATH)) — nothing is downloaded"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors have many types; the user needs only the path
        raise ConfigError(f"backbone.pretrained={path}: not a readable torch state_dict ({err})") from err
    if not isinstance(state, dict):
        raise ConfigError(
            f"backbone.pretrained={path}: expected a state_dict (dict), got {type(state).__name__}"
        )
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(
            f"backbone.pretrained={path} does not fit this backbone "
            f"(same architecture and in_channels needed): {err}"
        ) from err


# --------------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------------
def _positive_int(name: str, key: str, value: Any) -> int:
    try:
        ok = not isinstance(value, bool) and int(value) == value and int(value) >= 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"backbone {name!r}: {key}={value!r} must be a positive integer")
    return int(value)


def build_backbone(name: str, in_channels: int = 3, **params: Any) -> nn.Module:
    """Build the backbone ``name`` (one of :data:`BACKBONE_NAMES`) for ``in_channels``-channel images.

    Parameters: resnet32/44 ``width`` (int, default 1); convnet ``channels`` (default (32, 64)),
    ``out_dim`` (64), ``image_size`` (28); torchvision ones ``pretrained`` (local state_dict path or None).
    """
    if name not in _PARAMS:
        raise ConfigError(f"backbone={name!r} is not known; choose one of: {', '.join(BACKBONE_NAMES)}")
    unknown = sorted(set(params) - set(_PARAMS[name]))
    if unknown:
        raise ConfigError(
            f"backbone {name!r} has no parameter(s) {', '.join(unknown)}; valid: {', '.join(_PARAMS[name])}"
        )
    in_channels = _positive_int(name, "in_channels", in_channels)
    if name in ("resnet32", "resnet44"):
        width = _positive_int(name, "width", params.get("width", 1))
        return CifarResNet(5 if name == "resnet32" else 7, in_channels=in_channels, width=width)
    if name == "convnet":
        channels = params.get("channels", (32, 64))
        if isinstance(channels, int | str) or len(channels) == 0:
            raise ConfigError(f"backbone 'convnet': channels={channels!r} must be a list such as [32, 64]")
        return ConvNet(
            in_channels=in_channels,
            out_dim=_positive_int(name, "out_dim", params.get("out_dim", 64)),
            channels=tuple(_positive_int(name, "channels", c) for c in channels),
            image_size=_positive_int(name, "image_size", params.get("image_size", 28)),
        )
    pretrained = params.get("pretrained")
    return _torchvision(name, in_channels, str(pretrained) if pretrained else None)
