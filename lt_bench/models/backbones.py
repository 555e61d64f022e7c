"""Backbones: forward(x) -> features [B, out_dim]."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lt_bench.errors import ConfigError


def _kaiming(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.kaiming_normal_(module.weight)


class OptionAShortcut(nn.Module):
    """He et al.'s option A: stride-2 subsampling and zero-padded extra channels, no parameters."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride, self.pad = stride, planes - in_planes

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = (
            OptionAShortcut(in_planes, planes, stride)
            if stride != 1 or in_planes != planes
            else nn.Identity()
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2): 3 stages of 16/32/64 x width channels, n basic blocks each."""

    def __init__(self, blocks_per_stage: int, in_channels: int = 3, width: int = 1) -> None:
        super().__init__()
        planes = [16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(in_channels, planes[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        layers, in_planes = [], planes[0]
        for stage, p in enumerate(planes):
            for b in range(blocks_per_stage):
                layers.append(BasicBlock(in_planes, p, 2 if stage > 0 and b == 0 else 1))
                in_planes = p
        self.layers = nn.Sequential(*layers)
        self.out_dim = planes[-1]
        self.apply(_kaiming)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return F.adaptive_avg_pool2d(out, 1).flatten(1)


class ConvNet(nn.Module):
    """ARConvL's small CNN: 2 x [conv-ReLU-conv-ReLU-maxpool] -> flatten -> dense -> BatchNorm."""

    def __init__(
        self,
        in_channels: int = 1,
        out_dim: int = 64,
        channels: tuple[int, int] = (32, 64),
        image_size: int = 28,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c1, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c2, c2, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.dense = nn.Linear(c2 * side * side, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.out_dim = out_dim
        self.apply(_kaiming)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.dense(self.features(x).flatten(1)))


def _torchvision(name: str, in_channels: int = 3, pretrained: str | None = None) -> nn.Module:
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
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    net.out_dim = net.fc.in_features
    net.fc = nn.Identity()
    if pretrained:
        path = Path(pretrained)
        if not path.is_file():
            raise ConfigError(
                f"backbone.pretrained={pretrained}: no such file (a local state_dict; nothing is downloaded)"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        net.load_state_dict(state, strict=True)
    return net


BACKBONE_NAMES = ("convnet", "resnet32", "resnet44", "resnet10", "resnet50", "resnext50_32x4d")


def build_backbone(name: str, in_channels: int = 3, **params: Any) -> nn.Module:
    allowed = {
        "convnet": {"out_dim", "channels", "image_size"},
        "resnet32": {"width"},
        "resnet44": {"width"},
        "resnet10": {"pretrained"},
        "resnet50": {"pretrained"},
        "resnext50_32x4d": {"pretrained"},
    }
    if name not in allowed:
        raise ConfigError(f"backbone={name!r} is not known; choose one of: {', '.join(BACKBONE_NAMES)}")
    unknown = set(params) - allowed[name]
    if unknown:
        raise ConfigError(
            f"backbone {name!r} has no parameter(s) {', '.join(sorted(unknown))}; valid: {', '.join(sorted(allowed[name])) or '(none)'}"
        )
    if name == "convnet":
        if "channels" in params:
            params["channels"] = tuple(params["channels"])
        return ConvNet(in_channels=in_channels, **params)
    if name in ("resnet32", "resnet44"):
        return CifarResNet(
            5 if name == "resnet32" else 7, in_channels=in_channels, width=int(params.get("width", 1))
        )
    return _torchvision(name, in_channels, params.get("pretrained"))
