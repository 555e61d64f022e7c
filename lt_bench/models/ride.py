"""Multi-expert backbones and heads of RIDE (Wang et al., "Long-tailed Recognition by Routing Diverse
Distribution-Aware Experts", ICLR 2021; frank-xwang/RIDE-LongTailRecognition), as the PPL paper's
CRI+PPW+RIDE uses them (Xu et al., arXiv 2205.12117; simonustc/Imbalance_PPL_CRI, ``CRI+PPW+RIDE/model``).

A RIDE network shares its stem and early stages; each of ``num_experts`` experts has its own later stages
and its own classifier. Which stages are whose follows RIDE's code:

- ``ride_resnet32`` (CIFAR, :class:`MultiExpertCifarResNet`): stem and stage 1 shared; stages 2 and 3 per
  expert (``model/ldam_drw_resnets/ride_resnet_cifar.py``).
- ``ride_convnet`` (28x28 benchmarks, :class:`MultiExpertConvNet`): lt_bench's small CNN with its first
  conv block shared and the rest per expert (no RIDE counterpart; the same 3/4 width reduction).
- ``ride_resnet10`` / ``ride_resnet50`` / ``ride_resnext50_32x4d`` (ImageNet-LT, iNaturalist,
  :class:`MultiExpertImageNetResNet`): stem, layer1 and layer2 shared; layer3 and layer4 per expert
  (``model/fb_resnets/RIDEResNet.py``, ``RIDEResNeXt.py``), built from torchvision's blocks.

**Width.** With ``reduce_dimension`` (RIDE's setting in every published config) each expert's stages are
narrower, so that the experts together cost about one network: 24/48 channels instead of 32/64 on CIFAR,
layer3/layer4 planes 192/384 instead of 256/512 on the ImageNet ResNets (x4 for bottleneck blocks: 1536
features per expert instead of 2048). ``expert_planes`` sets the two widths explicitly.

**Interface.** The backbone returns every expert's pooled features side by side, ``[B, E * d]``
(``out_dim = E * d``), and says how to split them (``num_experts = E``, ``expert_dim = d``), so it stays
a plain backbone: ``method=standard`` puts one head on the concatenation; ``method=ride`` /
``ppl_cri_ride`` put one head per expert on its own slice (:class:`ExpertHeads`), whose mean is the
model's output. Experts share no parameters beyond the shared stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lt_bench.errors import ConfigError
from lt_bench.models.backbones import (
    BACKBONES,
    BasicBlock,
    _kaiming_normal,
    _positive_int,
    conv_blocks,
    he_uniform,
    pooled_side,
)

# RIDE's expert stage widths (planes of the last two stages), reduced and full
CIFAR_PLANES = {True: (24, 48), False: (32, 64)}
IMAGENET_PLANES = {True: (192, 384), False: (256, 512)}
# the reduction both tables apply to the single network's widths, for networks RIDE has no table for
REDUCED_WIDTH = 3 / 4


def _expert_planes(name: str, reduce_dimension: Any, expert_planes: Any, table: dict) -> tuple[int, int]:
    if not isinstance(reduce_dimension, bool):
        raise ConfigError(f"backbone {name!r}: reduce_dimension={reduce_dimension!r} must be true or false")
    if expert_planes is None:
        return table[reduce_dimension]
    if isinstance(expert_planes, int | str) or len(expert_planes) != 2:
        raise ConfigError(
            f"backbone {name!r}: expert_planes={expert_planes!r} must be two widths such as [24, 48] "
            "(the planes of the two expert stages), or null for RIDE's"
        )
    a, b = (_positive_int(name, "expert_planes", p) for p in expert_planes)
    return a, b


class MultiExpertBackbone(nn.Module):
    """A shared trunk (:meth:`stem`), then ``experts[i]`` (the expert's own stages, ending in its
    ``[B, expert_dim]`` features); ``forward`` returns ``[B, E * expert_dim]``, expert ``i``'s features in
    columns ``i * expert_dim : (i + 1) * expert_dim``."""

    experts: nn.ModuleList
    expert_dim: int

    @property
    def num_experts(self) -> int:
        return len(self.experts)

    @property
    def out_dim(self) -> int:
        return self.num_experts * self.expert_dim

    def stem(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """The shared trunk's output, the input of every expert."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        trunk = self.stem(x)
        return torch.cat([expert(trunk) for expert in self.experts], dim=1)


def _pooled() -> list[nn.Module]:
    """Global average pooling to a feature vector; parameter-free, so the experts' parameter names are the
    stages' alone."""
    return [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]


# --------------------------------------------------------------------------------------------------
# CIFAR ResNet-32
# --------------------------------------------------------------------------------------------------
def _basic_stage(in_planes: int, planes: int, blocks: int, stride: int) -> list[nn.Module]:
    return [
        BasicBlock(in_planes if b == 0 else planes, planes, stride if b == 0 else 1) for b in range(blocks)
    ]


class MultiExpertCifarResNet(MultiExpertBackbone):
    """CIFAR ResNet-(6n+2) with option-A shortcuts (lt_bench's :class:`BasicBlock`): 3x3 stem and stage 1
    (``16 x width`` channels) shared, stages 2 and 3 (``planes x width``, stride 2 each) per expert.

    With one expert and ``planes = (32, 64)`` it is :class:`lt_bench.models.backbones.CifarResNet` with the
    same parameters in the same order (the state dicts differ in names only).
    """

    def __init__(
        self,
        blocks_per_stage: int,
        in_channels: int = 3,
        num_experts: int = 3,
        planes: Sequence[int] = (24, 48),
        width: int = 1,
    ) -> None:
        super().__init__()
        first = 16 * width
        p2, p3 = (p * width for p in planes)
        self.conv1 = nn.Conv2d(in_channels, first, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(first)
        self.layers = nn.Sequential(*_basic_stage(first, first, blocks_per_stage, 1))
        self.experts = nn.ModuleList(
            nn.Sequential(
                *_basic_stage(first, p2, blocks_per_stage, 2),
                *_basic_stage(p2, p3, blocks_per_stage, 2),
                *_pooled(),
            )
            for _ in range(num_experts)
        )
        self.expert_dim = p3
        self.apply(_kaiming_normal)

    def stem(self, x: Tensor) -> Tensor:
        return self.layers(F.relu(self.bn1(self.conv1(x))))


@BACKBONES.register("ride_resnet32")
def ride_resnet32(
    in_channels: int = 3,
    num_experts: int = 3,
    reduce_dimension: bool = True,
    expert_planes: Sequence[int] | None = None,
    width: int = 1,
) -> MultiExpertCifarResNet:
    """RIDE's CIFAR ResNet-32: stage 1 shared, stages 2-3 per expert (24/48 x ``width`` channels with
    ``reduce_dimension``, 32/64 without, or ``expert_planes``); ``expert_dim`` = the last width."""
    name = "ride_resnet32"
    planes = _expert_planes(name, reduce_dimension, expert_planes, CIFAR_PLANES)
    if not 16 <= planes[0] <= planes[1]:
        raise ConfigError(
            f"backbone {name!r}: expert_planes={list(planes)} must satisfy 16 <= a <= b (option-A shortcuts "
            "only add channels; stage 1 has 16)"
        )
    return MultiExpertCifarResNet(
        5,
        in_channels=in_channels,
        num_experts=_positive_int(name, "num_experts", num_experts),
        planes=planes,
        width=_positive_int(name, "width", width),
    )


# --------------------------------------------------------------------------------------------------
# The small CNN of 28x28 benchmarks (lt_bench's ``convnet``)
# --------------------------------------------------------------------------------------------------
class MultiExpertConvNet(MultiExpertBackbone):
    """lt_bench's ``convnet`` (ARConvL's 2 x [conv-conv-maxpool] -> dense -> BatchNorm1d) split the way RIDE
    splits a ResNet: the first ``shared`` conv blocks shared, each expert with its own later blocks, dense
    layer and BatchNorm. RIDE has no such network; this one lets a 28x28 benchmark compare the
    multi-expert methods with single-network ones on the same CNN. Initialisation is ``convnet``'s."""

    def __init__(
        self,
        in_channels: int,
        num_experts: int,
        shared: Sequence[int],
        expert_channels: Sequence[int],
        expert_dim: int,
        image_size: int,
    ) -> None:
        super().__init__()
        self.shared = nn.Sequential(*conv_blocks(in_channels, shared))
        side = pooled_side(image_size, len(shared) + len(expert_channels))
        self.experts = nn.ModuleList(
            nn.Sequential(
                *conv_blocks(shared[-1], expert_channels),
                nn.Flatten(1),
                nn.Linear(expert_channels[-1] * side * side, expert_dim),
                nn.BatchNorm1d(expert_dim),
            )
            for _ in range(num_experts)
        )
        self.expert_dim = expert_dim
        self.image_size = image_size
        self.apply(he_uniform)

    def stem(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"ride_convnet was built for {self.image_size}x{self.image_size} inputs but got "
                f"{tuple(x.shape[-2:])}; set backbone.image_size to the input size"
            )
        return self.shared(x)


@BACKBONES.register("ride_convnet")
def ride_convnet(
    in_channels: int = 1,
    num_experts: int = 3,
    channels: Sequence[int] = (16, 32),
    out_dim: int = 64,
    image_size: int = 28,
    shared_blocks: int = 1,
    reduce_dimension: bool = True,
    expert_channels: Sequence[int] | None = None,
    expert_dim: int | None = None,
) -> MultiExpertConvNet:
    """``convnet`` with ``channels`` and ``out_dim`` as RIDE would split it: the blocks
    ``channels[:shared_blocks]`` shared; per expert the remaining blocks and a dense layer, at 3/4 of
    those widths with ``reduce_dimension`` (RIDE's reduction: 32 -> 24 channels, 64 -> 48 features), or
    ``expert_channels`` and ``expert_dim`` when given."""
    name = "ride_convnet"
    if isinstance(channels, int | str) or len(channels) < 2:
        raise ConfigError(
            f"backbone {name!r}: channels={channels!r} must list two or more widths, e.g. [16, 32]"
        )
    widths = [_positive_int(name, "channels", c) for c in channels]
    split = _positive_int(name, "shared_blocks", shared_blocks)
    if split >= len(widths):
        raise ConfigError(
            f"backbone {name!r}: shared_blocks={split} leaves the experts no block of channels={widths}; "
            f"use 1 to {len(widths) - 1}"
        )
    if not isinstance(reduce_dimension, bool):
        raise ConfigError(f"backbone {name!r}: reduce_dimension={reduce_dimension!r} must be true or false")
    factor = REDUCED_WIDTH if reduce_dimension else 1.0
    own = [round(c * factor) for c in widths[split:]]
    if expert_channels is not None:
        if isinstance(expert_channels, int | str) or len(expert_channels) != len(own):
            raise ConfigError(
                f"backbone {name!r}: expert_channels={expert_channels!r} must list {len(own)} widths "
                f"(one per expert block of channels={widths} after shared_blocks={split}), "
                "or null for RIDE's 3/4"
            )
        own = [_positive_int(name, "expert_channels", c) for c in expert_channels]
    dim = round(_positive_int(name, "out_dim", out_dim) * factor) if expert_dim is None else expert_dim
    return MultiExpertConvNet(
        in_channels=_positive_int(name, "in_channels", in_channels),
        num_experts=_positive_int(name, "num_experts", num_experts),
        shared=widths[:split],
        expert_channels=own,
        expert_dim=_positive_int(name, "expert_dim", dim),
        image_size=_positive_int(name, "image_size", image_size),
    )


# --------------------------------------------------------------------------------------------------
# ImageNet ResNets (torchvision blocks)
# --------------------------------------------------------------------------------------------------
def _torchvision_stage(
    block: type, in_planes: int, planes: int, blocks: int, stride: int, groups: int, base_width: int
) -> nn.Sequential:
    """One stage of torchvision's ResNet: ``blocks`` blocks, the first with stride ``stride`` and a
    1x1-conv + BN projection when the shape changes (torchvision's ``ResNet._make_layer``)."""
    out_planes = planes * block.expansion
    downsample = None
    if stride != 1 or in_planes != out_planes:
        downsample = nn.Sequential(
            nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes)
        )
    layers = [block(in_planes, planes, stride, downsample, groups=groups, base_width=base_width)]
    layers += [block(out_planes, planes, groups=groups, base_width=base_width) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class MultiExpertImageNetResNet(MultiExpertBackbone):
    """torchvision's ResNet/ResNeXt layout (7x7 stem, max-pool, four stages of ``block``): stem, layer1
    (64 planes) and layer2 (128) shared, layer3 and layer4 (``planes``, stride 2 each) per expert.

    Initialisation is torchvision's (and RIDE's): Kaiming-normal fan-out convolutions, BatchNorm (1, 0).
    """

    def __init__(
        self,
        block: type,
        layers: Sequence[int],
        in_channels: int = 3,
        num_experts: int = 3,
        planes: Sequence[int] = (192, 384),
        groups: int = 1,
        width_per_group: int = 64,
    ) -> None:
        super().__init__()
        stage = dict(groups=groups, base_width=width_per_group)
        e = block.expansion
        self.shared = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            _torchvision_stage(block, 64, 64, layers[0], 1, **stage),
            _torchvision_stage(block, 64 * e, 128, layers[1], 2, **stage),
        )
        p3, p4 = planes
        self.experts = nn.ModuleList(
            nn.Sequential(
                _torchvision_stage(block, 128 * e, p3, layers[2], 2, **stage),
                _torchvision_stage(block, p3 * e, p4, layers[3], 2, **stage),
                *_pooled(),
            )
            for _ in range(num_experts)
        )
        self.expert_dim = p4 * e
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def stem(self, x: Tensor) -> Tensor:
        return self.shared(x)


def _imagenet(name: str, block: type, layers: list[int], in_channels, num_experts, reduce, planes, **kw):
    return MultiExpertImageNetResNet(
        block,
        layers,
        in_channels=_positive_int(name, "in_channels", in_channels),
        num_experts=_positive_int(name, "num_experts", num_experts),
        planes=_expert_planes(name, reduce, planes, IMAGENET_PLANES),
        **kw,
    )


# torchvision is imported inside the builders, as for the single-network ImageNet backbones
@BACKBONES.register("ride_resnet10")
def ride_resnet10(
    in_channels: int = 3,
    num_experts: int = 3,
    reduce_dimension: bool = True,
    expert_planes: Sequence[int] | None = None,
) -> MultiExpertImageNetResNet:
    """RIDE's ResNet-10 (BasicBlock x [1, 1, 1, 1]; the PPL authors' ImageNet-LT backbone): layer3-4 per
    expert, 192/384 planes with ``reduce_dimension`` (384 features per expert), 256/512 without."""
    from torchvision.models.resnet import BasicBlock as TVBasicBlock

    return _imagenet(
        "ride_resnet10", TVBasicBlock, [1, 1, 1, 1], in_channels, num_experts, reduce_dimension, expert_planes
    )


@BACKBONES.register("ride_resnet50")
def ride_resnet50(
    in_channels: int = 3,
    num_experts: int = 3,
    reduce_dimension: bool = True,
    expert_planes: Sequence[int] | None = None,
) -> MultiExpertImageNetResNet:
    """RIDE's ResNet-50 (torchvision Bottleneck x [3, 4, 6, 3]): layer3-4 per expert, 192/384 planes with
    ``reduce_dimension`` (1536 features per expert), 256/512 without (2048)."""
    from torchvision.models.resnet import Bottleneck

    return _imagenet(
        "ride_resnet50", Bottleneck, [3, 4, 6, 3], in_channels, num_experts, reduce_dimension, expert_planes
    )


@BACKBONES.register("ride_resnext50_32x4d")
def ride_resnext50_32x4d(
    in_channels: int = 3,
    num_experts: int = 3,
    reduce_dimension: bool = True,
    expert_planes: Sequence[int] | None = None,
) -> MultiExpertImageNetResNet:
    """RIDE's ResNeXt-50 32x4d (torchvision Bottleneck, 32 groups of width 4): layer3-4 per expert,
    192/384 planes with ``reduce_dimension`` (1536 features per expert), 256/512 without (2048)."""
    from torchvision.models.resnet import Bottleneck

    return _imagenet(
        "ride_resnext50_32x4d",
        Bottleneck,
        [3, 4, 6, 3],
        in_channels,
        num_experts,
        reduce_dimension,
        expert_planes,
        groups=32,
        width_per_group=4,
    )


# --------------------------------------------------------------------------------------------------
# One head per expert
# --------------------------------------------------------------------------------------------------
class ExpertHeads(nn.Module):
    """One classifier per expert, each on its own expert's slice of the backbone's features.

    :meth:`expert_logits` gives ``[E, B, C]``; ``forward`` their mean over experts, RIDE's ensemble output
    (``torch.stack(outs, dim=1).mean(dim=1)`` in RIDE's models), so evaluation and every caller of the
    module's ``forward`` see the ensemble.
    """

    def __init__(self, heads: Sequence[nn.Module], expert_dim: int) -> None:
        super().__init__()
        if len(heads) < 1:
            raise ValueError("ExpertHeads needs at least one head")
        self.heads = nn.ModuleList(heads)
        self.expert_dim = int(expert_dim)

    @property
    def num_experts(self) -> int:
        return len(self.heads)

    def expert_logits(self, features: Tensor) -> Tensor:
        """``[E, B, C]`` from features ``[B, E * expert_dim]``."""
        batch, width = features.shape
        if width != self.num_experts * self.expert_dim:
            raise ValueError(
                f"ExpertHeads for {self.num_experts} experts of {self.expert_dim} features got features of "
                f"shape {tuple(features.shape)}"
            )
        chunks = features.view(batch, self.num_experts, self.expert_dim).unbind(1)
        return torch.stack([head(chunk) for head, chunk in zip(self.heads, chunks, strict=True)])

    def forward(self, features: Tensor) -> Tensor:
        return self.expert_logits(features).mean(0)
