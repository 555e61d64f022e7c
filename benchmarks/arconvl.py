"""ARCONVL: one ARConvL training step against one CE step on the same backbone and data, in fp32 and in
bf16-mixed + channels_last.

Both train ARConvL's small CNN (``backbone=convnet``, channels [32, 64], 64-d features: the network of
``experiment=arconvl_mnist``, Fashion-MNIST's too) on synthetic 28x28x1 images of 10 classes, batch
``--batch-size``, through lt_bench's own build path, with the same optimizer (SGD, momentum 0.9, no weight
decay, as ARConvL's recipes); CE is ``method=standard loss=ce`` with the linear head, ARConvL
``method=arconvl``.
The four variants run interleaved in rounds like THROUGHPUT's, and every ratio is the median over rounds
of the quotient within a round. ``python -m benchmarks.arconvl`` (``make bench``'s options) runs this
section alone.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from benchmarks.cli import run_alone
from benchmarks.common import (
    NUM_CLASSES,
    Settings,
    interleaved_steps,
    paired_ratio,
    synthetic_data_overrides,
    trainer_overrides,
)

METHODS = {"ce": ("method=standard", "loss=ce"), "arconvl": ("method=arconvl", "method.latent_dim=64")}
PRECISIONS = {
    "fp32": (),
    "bf16_cl": ("trainer.precision=bf16-mixed", "trainer.channels_last=true"),
}
VARIANTS = {f"{m}_{p}": (*METHODS[m], *PRECISIONS[p]) for p in PRECISIONS for m in METHODS}


def base_overrides(s: Settings) -> list[str]:
    return [
        *synthetic_data_overrides(s, image_size=28, channels=1),
        "dataset.val_fraction=0",
        "dataset.crop_padding=0",
        "dataset.flip=false",
        "backbone=convnet",
        "backbone.channels=[32,64]",
        "backbone.out_dim=64",
        "optimizer.weight_decay=0",
        *trainer_overrides(s),
    ]


def arconvl_steps(s: Settings, run_dir: Path) -> dict[str, list[float]]:
    """Seconds per training step of every variant in every round, interleaved."""
    return interleaved_steps(s, base_overrides(s), VARIANTS, run_dir)


def report_arconvl(s: Settings, seconds: dict[str, list[float]]) -> None:
    print(
        f"ARCONVL convnet [32, 64] -> 64-d features, {NUM_CLASSES} classes, synthetic 28x28x1 images, batch "
        f"{s.batch_size}, SGD without weight decay for both; ms per training step (median over rounds)"
    )
    for key, values in seconds.items():
        method, precision = key.split("_", 1)
        each = " ".join(f"{v * 1e3:.1f}" for v in values)
        print(
            f"ARCONVL {method:<8} {precision:<8} {statistics.median(values) * 1e3:8.1f} ms/step  "
            f"[rounds: {each}]"
        )
    print(
        "ARCONVL arconvl / ce step cost (paired by round): "
        f"fp32 {paired_ratio(seconds, 'arconvl_fp32', 'ce_fp32'):.2f}, "
        f"bf16-mixed + channels_last {paired_ratio(seconds, 'arconvl_bf16_cl', 'ce_bf16_cl'):.2f}"
    )
    print(
        "ARCONVL bf16-mixed + channels_last speed-up over fp32: "
        f"ce {paired_ratio(seconds, 'ce_fp32', 'ce_bf16_cl'):.2f}x, "
        f"arconvl {paired_ratio(seconds, 'arconvl_fp32', 'arconvl_bf16_cl'):.2f}x"
    )


def main(argv: list[str] | None = None) -> None:
    run_alone(argv, "arconvl", lambda s, tmp: report_arconvl(s, arconvl_steps(s, tmp)))


if __name__ == "__main__":
    main()
