"""Backbones: ``forward(x) -> features [B, out_dim]``; every backbone has an ``out_dim`` attribute.

``backbone=NAME`` is ``BACKBONES.get(NAME)``, a builder called as ``builder(in_channels=..., **params)``;
the keys of the ``backbone`` config node other than ``name`` are its ``params``, checked against the
builder's signature (:func:`backbone_parameters`). Built in:

- ``resnet32`` / ``resnet44``: He et al.'s CIFAR ResNets (option-A shortcuts, ``width`` multiplier).
- ``convnet``: ARConvL's small CNN for MNIST-sized images.
- ``resnet10`` / ``resnet50`` / ``resnext50_32x4d``: torchvision's ImageNet ResNets, random init or a
  local state_dict (nothing is ever downloaded).

A backbone of one's own: ``@BACKBONES.register("my_net")`` over a function or class whose first parameter
is ``in_channels`` and whose result has ``out_dim``; list its module in ``plugins=[...]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lt_bench.errors import ConfigError
from lt_bench.registry import Registry
from lt_bench.signature import builder_params, check_params

BACKBONES: Registry[Callable[..., nn.Module]] = Registry("backbone")


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


@BACKBONES.register("resnet32")
def resnet32(in_channels: int = 3, width: int = 1) -> CifarResNet:
    """ResNet-32 (n = 5), ``16/32/64 x width`` channels."""
    return CifarResNet(5, in_channels=in_channels, width=_positive_int("resnet32", "width", width))


@BACKBONES.register("resnet44")
def resnet44(in_channels: int = 3, width: int = 1) -> CifarResNet:
    """ResNet-44 (n = 7), ``16/32/64 x width`` channels."""
    return CifarResNet(7, in_channels=in_channels, width=_positive_int("resnet44", "width", width))


def _kaiming_normal(module: nn.Module) -> None:
    # the CIFAR ResNet reference code: Kaiming-normal (fan-in) weights, BatchNorm left at (1, 0)
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.kaiming_normal_(module.weight)


# --------------------------------------------------------------------------------------------------
# ARConvL's small CNN
# --------------------------------------------------------------------------------------------------
def conv_blocks(in_channels: int, channels: Sequence[int]) -> list[nn.Module]:
    """ARConvL's blocks, conv3x3-ReLU-conv3x3-ReLU-maxpool2 per width, as one flat list of layers."""
    layers: list[nn.Module] = []
    for prev, ch in zip([in_channels, *channels[:-1]], channels, strict=True):
        layers += [
            nn.Conv2d(prev, ch, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
        ]
    return layers


def pooled_side(image_size: int, blocks: int) -> int:
    """The side after ``blocks`` 'same' 2x2 poolings (odd sides round up)."""
    for _ in range(blocks):
        image_size = -(-image_size // 2)
    return image_size


def he_uniform(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d | nn.Linear):
        nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")  # Keras 'he_uniform'
        nn.init.zeros_(m.bias)


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
        self.features = nn.Sequential(*conv_blocks(in_channels, channels))
        self.image_size = image_size
        self.flat_dim = channels[-1] * pooled_side(image_size, len(channels)) ** 2
        self.dense = nn.Linear(self.flat_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.out_dim = out_dim
        self.apply(he_uniform)

    def forward(self, x: Tensor) -> Tensor:
        flat = self.features(x).flatten(1)
        if flat.shape[1] != self.flat_dim:
            raise ValueError(
                f"convnet was built for {self.image_size}x{self.image_size} inputs but got "
                f"{tuple(x.shape[-2:])}; set backbone.image_size to the input size"
            )
        return self.bn(self.dense(flat))


@BACKBONES.register("convnet")
def convnet(
    in_channels: int = 1, out_dim: int = 64, channels: Sequence[int] = (32, 64), image_size: int = 28
) -> ConvNet:
    """:class:`ConvNet` with checked sizes (``channels`` a list such as ``[32, 64]``)."""
    if isinstance(channels, int | str) or len(channels) == 0:
        raise ConfigError(f"backbone 'convnet': channels={channels!r} must be a list such as [32, 64]")
    return ConvNet(
        in_channels=in_channels,
        out_dim=_positive_int("convnet", "out_dim", out_dim),
        channels=tuple(_positive_int("convnet", "channels", c) for c in channels),
        image_size=_positive_int("convnet", "image_size", image_size),
    )


# --------------------------------------------------------------------------------------------------
# torchvision ImageNet ResNets
# --------------------------------------------------------------------------------------------------
def _torchvision(net: nn.Module, in_channels: int, pretrained: str | None) -> nn.Module:
    """A torchvision ResNet/ResNeXt with ``fc`` replaced by Identity (features = pooled activations)."""
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
        _load_local_state(net, Path(str(pretrained)))
    return net


# torchvision is imported inside the builders: only the ImageNet-scale backbones need it
@BACKBONES.register("resnet10")
def resnet10(in_channels: int = 3, pretrained: str | None = None) -> nn.Module:
    """torchvision's ResNet with BasicBlocks x [1, 1, 1, 1]; ``pretrained``: a local state_dict path."""
    from torchvision.models.resnet import BasicBlock as TVBasicBlock
    from torchvision.models.resnet import ResNet

    return _torchvision(ResNet(TVBasicBlock, [1, 1, 1, 1]), in_channels, pretrained)


@BACKBONES.register("resnet50")
def resnet50(in_channels: int = 3, pretrained: str | None = None) -> nn.Module:
    """torchvision's ResNet-50; ``pretrained``: a local state_dict path."""
    from torchvision.models import resnet50 as tv_resnet50

    return _torchvision(tv_resnet50(weights=None), in_channels, pretrained)


@BACKBONES.register("resnext50_32x4d")
def resnext50_32x4d(in_channels: int = 3, pretrained: str | None = None) -> nn.Module:
    """torchvision's ResNeXt-50 32x4d; ``pretrained``: a local state_dict path."""
    from torchvision.models import resnext50_32x4d as tv_resnext50

    return _torchvision(tv_resnext50(weights=None), in_channels, pretrained)


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


def backbone_parameters(name: str) -> dict[str, Any]:
    """The parameters backbone ``name`` accepts besides ``in_channels``, with their defaults."""
    return builder_params(BACKBONES.get(name), leading=("in_channels",))


def build_backbone(name: str, in_channels: int = 3, **params: Any) -> nn.Module:
    """Build the backbone ``name`` (a name in :data:`BACKBONES`) for ``in_channels``-channel images.

    Parameters: resnet32/44 ``width`` (int, default 1); convnet ``channels`` (default (32, 64)),
    ``out_dim`` (64), ``image_size`` (28); torchvision ones ``pretrained`` (local state_dict path or None).
    """
    check_params("backbone", name, backbone_parameters(name), params)
    in_channels = _positive_int(name, "in_channels", in_channels)
    return BACKBONES.get(name)(in_channels=in_channels, **params)
