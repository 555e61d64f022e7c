"""RIDE: the 3-expert ResNet-32 of ``method=ride`` (RIDE's reduced expert widths) against the plain ResNet-32
of ``method=standard loss=ldam``, both with cosine heads on 10 classes: parameters, multiply-accumulates
per 32x32 image, and ms per training step on the bench's device.

The parameter and MAC counts are of the networks lt_bench builds (backbone + heads); MACs are counted by
forward hooks on every convolution and on the heads' matrix products for one 32x32x3 image. The step time
runs both through lt_bench's own build path on synthetic CIFAR-shaped images, batch ``--batch-size``,
interleaved in rounds like THROUGHPUT's; the ratio is the median over rounds of the quotient within a round.
``python -m benchmarks.ride`` (``make bench``'s options) runs this section alone; ``--ride`` adds it to
``python -m benchmarks.bench``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from benchmarks.cli import run_alone
from benchmarks.common import (
    Settings,
    compose,
    interleaved_steps,
    paired_ratio,
    synthetic_data_overrides,
    trainer_overrides,
)
from lt_bench.data.datamodule import LongTailDataModule
from lt_bench.models.heads import CosineHead

EXPERTS = 3
VARIANTS = {
    "resnet32": ("method=standard", "backbone=resnet32", "loss=ldam", "schedule=none"),
    "ride_resnet32": (
        "method=ride",
        "backbone=ride_resnet32",
        f"backbone.num_experts={EXPERTS}",
        "loss=ldam",
        "schedule=none",
    ),
}
# sized only: the same experts at full width (32/64 channels), what RIDE's width reduction saves
FULL_WIDTH = ("ride_resnet32_full", (*VARIANTS["ride_resnet32"], "backbone.reduce_dimension=false"))


@dataclass(frozen=True)
class Size:
    parameters: int
    macs: int


def base_overrides(s: Settings) -> list[str]:
    return [
        *synthetic_data_overrides(s, image_size=32, channels=3),
        "dataset.crop_padding=4",
        "dataset.flip=true",
        *trainer_overrides(s),
    ]


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass: convolutions and cosine heads (their matrix product)."""
    total = 0

    def conv(module: nn.Conv2d, inputs, output) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        total += output.numel() // output.shape[0] * k

    def head(module: CosineHead, inputs, output) -> None:
        nonlocal total
        total += module.weight.numel()

    handles = [
        m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else head)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | CosineHead)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def sizes(s: Settings) -> dict[str, Size]:
    """Parameters and MACs per image of every variant's network (backbone + heads), built as a run does."""
    from lt_bench.methods import build_method
    from lt_bench.schedules import schedule_of

    base = base_overrides(s)
    datamodule = LongTailDataModule(compose(base).dataset, 0)
    info = datamodule.prepare()
    result = {}
    for key, overrides in [*VARIANTS.items(), FULL_WIDTH]:
        cfg = compose([*base, *overrides])
        model = build_method(cfg, info, schedule_of(cfg.schedule)).eval()
        parameters = sum(p.numel() for p in model.parameters())
        result[key] = Size(parameters, count_macs(model, torch.zeros(1, 3, 32, 32)))
    return result


def ride_steps(s: Settings, run_dir: Path) -> dict[str, list[float]]:
    """Seconds per training step of both variants in every round, interleaved."""
    return interleaved_steps(s, base_overrides(s), VARIANTS, run_dir)


def report_ride(s: Settings, size: dict[str, Size], seconds: dict[str, list[float]]) -> None:
    print(
        f"RIDE ResNet-32 vs {EXPERTS}-expert RIDE ResNet-32 (stage 1 shared, stages 2-3 at 24/48 channels "
        f"per expert), cosine heads, 10 classes; batch {s.batch_size}, {s.device}"
    )
    for key, values in seconds.items():
        each = " ".join(f"{v * 1e3:.1f}" for v in values)
        print(
            f"RIDE {key:<18} {size[key].parameters:>9,} parameters {size[key].macs / 1e6:8.2f} M MACs/image "
            f"{statistics.median(values) * 1e3:8.1f} ms/step  [rounds: {each}]"
        )
    plain, ride, full = size["resnet32"], size["ride_resnet32"], size[FULL_WIDTH[0]]
    print(
        f"RIDE {FULL_WIDTH[0]:<18} {full.parameters:>9,} parameters {full.macs / 1e6:8.2f} M MACs/image "
        f"(reduce_dimension=false: {full.macs / plain.macs:.2f}x the MACs; not timed)"
    )
    print(
        f"RIDE ride_resnet32 / resnet32: parameters {ride.parameters / plain.parameters:.2f}x, "
        f"MACs {ride.macs / plain.macs:.2f}x, "
        f"step time {paired_ratio(seconds, 'ride_resnet32', 'resnet32'):.2f}x (paired by round)"
    )


def main(argv: list[str] | None = None) -> None:
    run_alone(argv, "ride", lambda s, tmp: report_ride(s, sizes(s), ride_steps(s, tmp)))


if __name__ == "__main__":
    main()
