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

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks.arconvl import arconvl_steps, report_arconvl
from benchmarks.common import Settings, machine, paired_ratio
from benchmarks.losses import loss_costs, report_losses
from benchmarks.phase import phase_cost, report_phase
from benchmarks.ride import report_ride, ride_steps, sizes
from benchmarks.throughput import (
    DEFAULT_VARIANTS,
    NUM_CLASSES,
    VARIANTS,
    data_costs,
    prepare,
    report_data,
    report_throughput,
    throughput,
    whole_epochs,
)


def parse_args(argv: list[str] | None = None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, help="timed steps per variant and round (cpu 8, cuda 200)")
    p.add_argument("--warmup", type=int, help="untimed steps before them (cpu 2, cuda 20)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--workers", type=int, help="DataLoader workers of the PIL loop (cpu 0, cuda 4)")
    p.add_argument("--threads", type=int, help="torch threads for every variant (default: torch's)")
    p.add_argument("--variants", help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    p.add_argument("--epochs", type=int, default=0, help="also time N >= 3 CIFAR-10-LT-sized epochs")
    p.add_argument("--arconvl", action="store_true", help="also time ARConvL steps against CE steps")
    p.add_argument("--ride", action="store_true", help="also size and time the 3-expert RIDE ResNet-32")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    cuda = device.type == "cuda"
    if a.threads:
        torch.set_num_threads(a.threads)
    variants = tuple(a.variants.split(",")) if a.variants else DEFAULT_VARIANTS
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or "pil" not in variants or "lt_bench" not in variants:
        p.error(f"--variants needs pil and lt_bench, from {', '.join(VARIANTS)}; got {a.variants}")
    if a.epochs and a.epochs < 3:
        p.error("--epochs needs at least 3: the first epoch warms up, the others are timed start to start")
    quick = a.quick
    return Settings(
        device=device,
        batch_size=16 if quick else a.batch_size,
        warmup=max(1, a.warmup if a.warmup is not None else (1 if quick else 20 if cuda else 2)),
        steps=max(1, a.steps if a.steps is not None else (2 if quick else 200 if cuda else 8)),
        rounds=1 if quick else max(1, a.rounds),
        workers=a.workers if a.workers is not None else (4 if cuda else 0),
        variants=variants,
        loss_reps=5 if quick else 20,
        loss_rounds=1 if quick else 25,
        phase_n=5_000 if quick else 100_000,
        phase_dim=64 if quick else 512,
        phase_subsample=200 if quick else 2_000,
        epochs=a.epochs,
        arconvl=a.arconvl,
        ride=a.ride,
    )


def main(argv: list[str] | None = None) -> None:
    from lt_bench.train import _quiet_lightning

    s = parse_args(argv)
    _quiet_lightning()
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
