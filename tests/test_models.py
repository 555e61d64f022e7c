"""Backbones and heads: shapes, the CIFAR ResNet's structure, and the heads' formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lt_bench.errors import ConfigError
from lt_bench.models import build_backbone, build_head
from lt_bench.models.backbones import BasicBlock


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_resnet32_structure_and_size():
    net = build_backbone("resnet32")
    # conv1 16*3*9 + bn 32; stage1: 5 blocks x (2 convs 16*16*9 + 2 bn 32); stage2: first conv 16->32,
    # then 9 convs 32*32*9, 10 bn of 64; stage3 likewise with 64; option-A shortcuts have no parameters
    expected = (16 * 3 * 9 + 32) + 5 * (2 * 16 * 16 * 9 + 2 * 32)
    expected += 32 * 16 * 9 + 9 * 32 * 32 * 9 + 10 * 64
    expected += 64 * 32 * 9 + 9 * 64 * 64 * 9 + 10 * 128
    assert _params(net) == expected  # 464,154 with a 10-class linear head
    assert _params(net) + 64 * 10 + 10 == 464_154
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 64)
    assert build_backbone("resnet44", width=4)(torch.randn(2, 3, 32, 32)).shape == (2, 256)


def test_option_a_shortcut_keeps_subsampled_input_in_middle_channels():
    block = BasicBlock(16, 32, stride=2)
    x = torch.randn(1, 16, 8, 8)
    short = block.shortcut(x)
    assert short.shape == (1, 32, 4, 4)
    assert torch.equal(short[:, 8:24], x[:, :, ::2, ::2])
    assert short[:, :8].abs().sum() == 0 and short[:, 24:].abs().sum() == 0


def test_convnet_and_torchvision_backbones():
    assert build_backbone("convnet", in_channels=1)(torch.randn(3, 1, 28, 28)).shape == (3, 64)
    net = build_backbone("resnet10")
    assert net.out_dim == 512 and net(torch.randn(1, 3, 64, 64)).shape == (1, 512)
    assert build_backbone("resnet10", in_channels=1)(torch.randn(1, 1, 64, 64)).shape == (1, 512)


def test_heads_follow_their_formulas():
    f = torch.randn(5, 8)
    cos = build_head("cosine", 8, 3)
    expected = F.normalize(f, dim=1) @ F.normalize(cos.weight, dim=0)
    assert torch.allclose(cos(f), expected) and cos(f).abs().max() <= 1 + 1e-6
    proto = build_head("prototype", 8, 3)
    assert torch.allclose(proto(f), -(torch.cdist(f, proto.centres) ** 2), atol=1e-4)
    assert torch.allclose(proto.radius_sq, torch.full((3,), 0.01))
    assert build_head("linear", 8, 3)(f).shape == (5, 3)


def test_unknown_names_and_parameters_are_config_errors():
    with pytest.raises(ConfigError, match="resnet32"):
        build_backbone("resnet33")
    with pytest.raises(ConfigError, match="widht"):
        build_backbone("resnet32", widht=2)
    with pytest.raises(ConfigError):
        build_head("mlp", 8, 3)
    with pytest.raises(ConfigError, match="weights.pt"):
        build_backbone("resnet10", pretrained="/nonexistent/weights.pt")
