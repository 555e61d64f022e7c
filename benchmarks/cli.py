"""The benchmarks' command line: ``make bench``'s options, and one section run on its own."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.common import Settings, machine
from benchmarks.throughput import DEFAULT_VARIANTS, VARIANTS
from lt_bench.startup import quiet_lightning


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


def run_alone(argv: list[str] | None, name: str, section: Callable[[Settings, Path], None]) -> None:
    """``python -m benchmarks.NAME``: one section with ``make bench``'s options, in a scratch folder."""
    import tempfile

    s = parse_args(argv)
    quiet_lightning()
    torch.set_float32_matmul_precision("high")  # as lt_bench.startup.start_process does
    print(f"lt_bench bench: {machine(s.device)}")
    print(f"per variant and round {s.warmup} warm-up + {s.steps} timed steps; {s.rounds} rounds")
    with tempfile.TemporaryDirectory(prefix=f"lt_bench_{name}_") as tmp:
        section(s, Path(tmp))
