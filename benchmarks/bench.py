"""``python -m benchmarks.bench`` (``make bench``): lt_bench's training throughput next to a plain loop.

Every figure comes from one process, one device and one thread count. Output lines start with a tag:

``THROUGHPUT``  images/s training ResNet-32 (CIFAR, 10 classes) on synthetic CIFAR-shaped uint8 images for
                a fixed number of steps, several ways (:data:`VARIANTS`). The variants run interleaved in
                rounds (A B C ..., A B C ...), so a machine whose load drifts slows them alike, and each
                figure is the median over rounds; every round of every variant starts with warm-up steps
                that are not timed. The timed window runs from the end of the last warm-up step to the end
                of the last step (data fetch, augmentation, forward, backward and optimizer step of each),
                with the device synchronised at its two ends only.
``RATIO``       the median over rounds of the quotient of two variants within each round (they ran back to
                back, so load that changes between rounds cancels); the ``x`` column of THROUGHPUT too.
``DATA``        the two input pipelines alone (no model), per batch: where the tensor pipeline's gain comes
                from.
``EPOCHS``      (``--epochs N``) seconds per epoch of a CIFAR-10-LT IF 100-sized run per lt_bench variant,
                start to start (steps, epoch-end checkpoint, LR schedule), and 200 times that.
``LOSS``        forward + backward of every loss in ``conf/loss`` on 128 x 100 logits, relative to CE, on
                its own (fastest of many interleaved rounds) and as a share of the measured training step.
``PHASE``       :func:`msr_weights` on 100,000 x 512 features against the pairwise within-class similarity
                matrix it never forms (FLOP count x the rate measured on a subsample).
``ARCONVL``     (``--arconvl``) ms per ARConvL training step against a CE step on the same convnet and data,
                fp32 and bf16-mixed + channels_last, interleaved in rounds; ratios paired by round
                (``python -m benchmarks.arconvl``: this section alone).
``RIDE``        (``--ride``) parameters, MACs per image and ms per training step of the 3-expert RIDE
                ResNet-32 (``method=ride``) against the plain ResNet-32 (``loss=ldam``), interleaved in rounds
                (``python -m benchmarks.ride``: this section alone).

The last line is ``lt_bench / plain-loop throughput ratio: X``: lt_bench (Lightning, default fp32
configuration) over the reference loop (PIL + DataLoader), both in fp32. docs/benchmarks.md has figures.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks.arconvl import arconvl_steps, report_arconvl
from benchmarks.cli import parse_args
from benchmarks.common import machine, paired_ratio
from benchmarks.losses import loss_costs, report_losses
from benchmarks.phase import phase_cost, report_phase
from benchmarks.ride import report_ride, ride_steps, sizes
from benchmarks.throughput import (
    NUM_CLASSES,
    data_costs,
    prepare,
    report_data,
    report_throughput,
    throughput,
    whole_epochs,
)
from lt_bench.startup import quiet_lightning


def main(argv: list[str] | None = None) -> None:
    s = parse_args(argv)
    quiet_lightning()
    torch.set_float32_matmul_precision("high")  # as lt_bench.train does, for every variant alike
    print(f"lt_bench bench: {machine(s.device)}")
    print(
        f"ResNet-32, {NUM_CLASSES} classes, synthetic 32x32x3 uint8 images, batch {s.batch_size}; per "
        f"variant and round {s.warmup} warm-up + {s.steps} timed steps; {s.rounds} rounds, variants "
        "interleaved; medians over rounds"
    )
    with tempfile.TemporaryDirectory(prefix="lt_bench_bench_") as tmp:
        bench = prepare(s, Path(tmp))
        rates = throughput(bench)
        report_throughput(s, rates)
        report_data(s, data_costs(bench))
        if s.epochs:
            whole_epochs(s, Path(tmp))
        if s.arconvl:
            report_arconvl(s, arconvl_steps(s, Path(tmp) / "arconvl"))
        if s.ride:
            report_ride(s, sizes(s), ride_steps(s, Path(tmp) / "ride"))
    report_losses(loss_costs(s), s.batch_size / statistics.median(rates["lt_bench"]))
    report_phase(phase_cost(s))
    print(f"lt_bench / plain-loop throughput ratio: {paired_ratio(rates, 'lt_bench', 'pil'):.2f}")


if __name__ == "__main__":
    main()
