"""Backbones and heads: shapes, the CIFAR ResNet's structure and size, and the heads' formulas."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lt_bench.errors import ConfigError
from lt_bench.models import BACKBONES, HEADS, backbone_parameters, build_backbone, build_head, head_parameters
from lt_bench.models.backbones import BasicBlock
from lt_bench.models.heads import PrototypeHead, RegionPrototypeHead, squared_distances
from lt_bench.registry import Registry


def _params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _cifar_resnet_params(n: int, width: int = 1) -> int:
    """Hand count: 3x3 convs without bias, BatchNorm = 2 per channel, option-A shortcuts free."""
    a, b, c = 16 * width, 32 * width, 64 * width
    stem = 3 * a * 9 + 2 * a
    stage1 = n * (2 * a * a * 9 + 2 * 2 * a)
    stage2 = a * b * 9 + (2 * n - 1) * b * b * 9 + 2 * n * 2 * b
    stage3 = b * c * 9 + (2 * n - 1) * c * c * 9 + 2 * n * 2 * c
    return stem + stage1 + stage2 + stage3


@torch.no_grad()
def test_resnet32_and_44_sizes():
    net = build_backbone("resnet32")
    assert _params(net) == _cifar_resnet_params(5) == 463_504
    # He et al.'s 0.46M: with a 10-class linear classifier on the 64-d feature
    assert _params(net) + 64 * 10 + 10 == 464_154
    assert _params(build_backbone("resnet44")) == _cifar_resnet_params(7) == 657_936
    wide = build_backbone("resnet32", width=4)
    assert wide.out_dim == 256 and _params(wide) == _cifar_resnet_params(5, width=4)


@torch.no_grad()
def test_resnet_forward_shapes():
    net = build_backbone("resnet32").eval()
    assert net.out_dim == 64
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    assert net(torch.randn(2, 3, 28, 28)).shape == (2, 64)  # odd sizes after stride 2 (7x7 last stage)
    gray = build_backbone("resnet44", in_channels=1).eval()
    assert gray(torch.randn(2, 1, 28, 28)).shape == (2, 64)
    assert build_backbone("resnet32", width=2).eval()(torch.randn(1, 3, 32, 32)).shape == (1, 128)


def test_resnet_kaiming_normal_init():
    net = build_backbone("resnet32")
    w = net.layers[-1].conv2.weight  # 64 x 64 x 3 x 3: fan_in 576
    assert w.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.03)
    assert abs(w.mean().item()) < 0.01


@torch.no_grad()
def test_option_a_shortcut_keeps_the_subsampled_input():
    block = BasicBlock(16, 32, stride=2).eval()
    x = torch.randn(2, 16, 8, 8)
    short = block.shortcut(x)
    assert short.shape == (2, 32, 4, 4) and not list(block.shortcut.parameters())
    # input in the middle channels, zeros either side (the LDAM/PPL/KPS reference layout)
    assert torch.equal(short[:, 8:24], x[:, :, ::2, ::2])
    assert short[:, :8].abs().sum() == 0 and short[:, 24:].abs().sum() == 0
    # with the residual branch switched off (bn2 scale and shift 0) the block is relu(shortcut(x))
    block.bn2.weight.zero_()
    block.bn2.bias.zero_()
    assert torch.equal(block(x), F.relu(short))
    # same width, stride 1: identity shortcut
    same = BasicBlock(16, 16).eval()
    same.bn2.weight.zero_()
    same.bn2.bias.zero_()
    assert torch.equal(same(x), F.relu(x))


@torch.no_grad()
def test_convnet_shapes_and_size():
    net = build_backbone("convnet", in_channels=1).eval()
    assert net.out_dim == 64 and net(torch.randn(3, 1, 28, 28)).shape == (3, 64)
    # convs 1->32->32->64->64 (with bias), dense 64*7*7 -> 64, BatchNorm1d(64)
    expected = (9 * 32 + 32) + (9 * 32 * 32 + 32) + (9 * 32 * 64 + 64) + (9 * 64 * 64 + 64)
    expected += 64 * 7 * 7 * 64 + 64 + 2 * 64
    assert _params(net) == expected
    # 'same' pooling rounds up: 30 -> 15 -> 8; a 3-channel 32x32 input with other widths
    odd = build_backbone("convnet", in_channels=1, image_size=30, channels=[8, 16], out_dim=10).eval()
    assert odd.dense.in_features == 16 * 8 * 8 and odd(torch.randn(2, 1, 30, 30)).shape == (2, 10)
    rgb = build_backbone("convnet", image_size=32).eval()
    assert rgb(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    with pytest.raises(ValueError, match="image_size"):
        net(torch.randn(2, 1, 32, 32))


@torch.no_grad()
def test_torchvision_backbones():
    net = build_backbone("resnet10").eval()
    assert net.out_dim == 512 and net(torch.randn(1, 3, 64, 64)).shape == (1, 512)
    # BasicBlock x [1, 1, 1, 1]: 4 blocks, 2 convs each (+ 3 downsample convs) + the stem
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 1 + 8 + 3
    gray = build_backbone("resnet10", in_channels=1).eval()
    assert gray.conv1.in_channels == 1 and gray(torch.randn(1, 1, 64, 64)).shape == (1, 512)
    for name in ("resnet50", "resnext50_32x4d"):
        big = build_backbone(name).eval()
        assert big.out_dim == 2048 and big(torch.randn(1, 3, 64, 64)).shape == (1, 2048)


def test_torchvision_pretrained_from_a_local_file(tmp_path):
    source = build_backbone("resnet10")
    state = dict(source.state_dict())
    state["fc.weight"], state["fc.bias"] = torch.zeros(10, 512), torch.zeros(10)  # a classifier is dropped
    path = tmp_path / "r10.pt"
    torch.save(state, path)
    loaded = build_backbone("resnet10", pretrained=str(path))
    want, got = source.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)
    with pytest.raises(ConfigError, match="in_channels"):
        build_backbone("resnet10", in_channels=1, pretrained=str(path))
    with pytest.raises(ConfigError, match="weights.pt"):
        build_backbone("resnet10", pretrained="/nonexistent/weights.pt")


def test_heads_follow_their_formulas():
    f = torch.randn(5, 8)
    cos = build_head("cosine", 8, 3)
    assert torch.allclose(cos.weight.norm(dim=0), torch.ones(3))  # LDAM init: unit class columns
    manual = torch.stack(
        [torch.stack([fi.dot(wj) / (fi.norm() * wj.norm()) for wj in cos.weight.T]) for fi in f]
    )
    assert torch.allclose(cos(f), manual, atol=1e-6)
    assert cos(f).abs().max() <= 1 + 1e-6 and cos(10 * f).allclose(cos(f), atol=1e-6)

    proto = build_head("prototype", 8, 3)
    assert isinstance(proto, PrototypeHead) and set(dict(proto.named_parameters())) == {"centres"}
    assert torch.allclose(proto(f), -(torch.cdist(f, proto.centres) ** 2), atol=1e-4)
    # far from the origin, ||f||^2 - 2 f.C + ||C||^2 cancels badly near a centre: the clamp keeps D >= 0
    far = build_head("prototype", 64, 10)
    with torch.no_grad():
        far.centres.mul_(100)
    near = far.centres.detach().repeat(20, 1) + 1e-3 * torch.randn(200, 64)
    assert (far.squared_distances(near) >= 0).all() and (far(near) <= 0).all()

    lin = build_head("linear", 8, 3)
    assert lin(f).shape == (5, 3) and lin.bias is not None


def test_prototype_logits_by_hand():
    # centres (0, 0), (3, 0), (0, 4); feature (3, 4): D = 25, 16, 9 -> logits -25, -16, -9, nearest is 2
    centres = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    f = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert squared_distances(f, centres).tolist() == [[25.0, 16.0, 9.0], [0.0, 9.0, 16.0]]
    head = build_head("prototype", 2, 3)
    with torch.no_grad():
        head.centres.copy_(centres)
    assert head(f).tolist() == [[-25.0, -16.0, -9.0], [0.0, -9.0, -16.0]]
    assert head(f).argmax(1).tolist() == [2, 0]


def test_region_head_is_the_prototype_head_plus_radii():
    torch.manual_seed(0)
    plain = PrototypeHead(8, 3)
    torch.manual_seed(0)
    region = RegionPrototypeHead(8, 3, radius_init=0.5)
    assert torch.equal(region.centres, plain.centres)  # the same initial centres (checkpoints, seeds)
    assert list(dict(region.named_parameters())) == ["centres", "radius_param"]
    assert region.radius_sq.allclose(torch.full((3,), 0.25))
    f = torch.randn(4, 8)
    assert torch.equal(region(f), plain(f))
    with torch.no_grad():
        region.radius_param.fill_(2.0)
    region.reset_parameters()  # what cRT-style re-initialisation calls
    assert region.radius_sq.allclose(torch.full((3,), 0.25))


def test_parameters_come_from_the_builders_signatures():
    assert backbone_parameters("resnet32") == {"width": 1}
    assert backbone_parameters("convnet") == {"out_dim": 64, "channels": (32, 64), "image_size": 28}
    assert backbone_parameters("resnet50") == {"pretrained": None}
    assert head_parameters("prototype") == {} and head_parameters("linear") == {}


def test_unknown_names_and_parameters_are_config_errors():
    assert BACKBONES.defined_in("lt_bench") == {
        "resnet32",
        "resnet44",
        "convnet",
        "resnet10",
        "resnet50",
        "resnext50_32x4d",
        "ride_resnet32",
        "ride_resnet10",
        "ride_resnet50",
        "ride_resnext50_32x4d",
        "ride_convnet",
    }
    assert set(HEADS) == {"linear", "cosine", "prototype"}
    with pytest.raises(ConfigError, match="resnet32"):
        build_backbone("resnet33")
    with pytest.raises(ConfigError, match="widht; valid: width"):
        build_backbone("resnet32", widht=2)
    with pytest.raises(ConfigError, match="width"):
        build_backbone("resnet32", width=1.5)
    with pytest.raises(ConfigError, match="in_channels"):
        build_backbone("resnet32", in_channels=0)
    with pytest.raises(ConfigError, match="channels"):
        build_backbone("convnet", channels=32)
    with pytest.raises(ConfigError, match="prototype"):
        build_head("mlp", 8, 3)
    with pytest.raises(ConfigError, match=r"radius_init; valid: \(none\)"):
        build_head("prototype", 8, 3, radius_init=0.1)


def test_a_users_backbone_and_head_register_by_name(monkeypatch):
    backbones, heads = Registry("backbone"), Registry("head")
    for name, entry in BACKBONES.items():
        backbones.register(name, entry)
    for name, entry in HEADS.items():
        heads.register(name, entry)
    monkeypatch.setattr("lt_bench.models.backbones.BACKBONES", backbones)
    monkeypatch.setattr("lt_bench.models.heads.HEADS", heads)

    @backbones.register("tiny")
    class Tiny(nn.Module):
        def __init__(self, in_channels: int, hidden: int = 4, *, depth: int) -> None:
            super().__init__()
            self.net, self.out_dim, self.depth = nn.Conv2d(in_channels, hidden, 1), hidden, depth

        def forward(self, x):
            return self.net(x).mean((2, 3))

    @heads.register("scaled")
    def scaled(in_dim: int, num_classes: int, scale: float = 2.0) -> nn.Module:
        return nn.Sequential(nn.Linear(in_dim, num_classes), nn.Hardtanh(-scale, scale))

    net = build_backbone("tiny", in_channels=1, hidden=6, depth=2)
    assert net.out_dim == 6 and net.depth == 2 and net(torch.zeros(2, 1, 5, 5)).shape == (2, 6)
    assert backbone_parameters("tiny") == {"hidden": 4, "depth": inspect.Parameter.empty}
    with pytest.raises(ConfigError, match="backbone 'tiny' needs depth"):
        build_backbone("tiny", in_channels=1)
    with pytest.raises(ConfigError, match="has no parameter"):
        build_backbone("tiny", in_channels=1, depth=1, width=3)
    assert build_head("scaled", 6, 3, scale=1.0)(100 * torch.ones(1, 6)).abs().max() <= 1.0

    @backbones.register("catch_all")
    def catch_all(in_channels: int, **anything) -> nn.Module:
        return nn.Identity()

    with pytest.raises(ConfigError, match="takes \\*args or \\*\\*kwargs"):
        build_backbone("catch_all", in_channels=1)

    def no_dims(num_classes: int) -> nn.Module:
        return nn.Identity()

    # refused when it registers (lt_bench.registry.CALLS), one line naming the signature lt_bench calls
    with pytest.raises(
        ConfigError, match=r"cannot take lt_bench's call .*\(in_dim, num_classes, <parameters>\)"
    ):
        heads.register("no_dims")(no_dims)
