"""What every benchmark section shares: the settings, the timing window, config composition, the machine."""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from lt_bench.startup import compose


@dataclass(frozen=True)
class Settings:
    device: torch.device
    batch_size: int
    warmup: int
    steps: int
    rounds: int
    workers: int
    variants: tuple[str, ...]
    loss_reps: int
    loss_rounds: int
    phase_n: int
    phase_dim: int
    phase_subsample: int
    epochs: int
    arconvl: bool = False
    ride: bool = False


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Window:
    """Times the steps after ``warmup``: from the end of step ``warmup`` to the end of the last one."""

    def __init__(self, warmup: int, steps: int, device: torch.device) -> None:
        self.warmup, self.steps, self.device = warmup, steps, device
        self.start = self.seconds = math.nan

    def step_done(self, index: int) -> bool:
        """Call after step ``index`` (0-based); True once the last timed step is done."""
        if index + 1 == self.warmup:
            synchronize(self.device)
            self.start = time.perf_counter()
        elif index + 1 == self.warmup + self.steps:
            synchronize(self.device)
            self.seconds = time.perf_counter() - self.start
            return True
        return False


class WindowCallback(L.Callback):
    def __init__(self, window: Window) -> None:
        self.window = window

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.window.step_done(batch_idx)


def median_seconds(fn: Callable[[], object], reps: int, device: torch.device) -> float:
    times = []
    for _ in range(reps):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paired_ratio(values: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of ``a``'s value over ``b``'s in the same round: the two ran back to back, so a
    load that changes from round to round cancels out of each quotient."""
    return statistics.median(x / y for x, y in zip(values[a], values[b], strict=True))


def long_tailed_counts(total: int, classes: int, imbalance: float = 100.0) -> list[int]:
    """CIFAR-LT's exponential profile scaled to ``total`` samples (head first; rounding goes to class 0)."""
    share = [imbalance ** (-i / (classes - 1)) for i in range(classes)]
    counts = [max(1, int(total * w / sum(share))) for w in share]
    counts[0] += total - sum(counts)
    return counts


NUM_CLASSES = 10


def synthetic_data_overrides(s: Settings, image_size: int, channels: int) -> list[str]:
    """Balanced synthetic images, enough for ``warmup + steps`` batches of one epoch, one test image a
    class: the data every bench variant trains on."""
    per_class = math.ceil((s.warmup + s.steps) * s.batch_size / NUM_CLASSES)
    return [
        "dataset=synthetic",
        f"dataset.image_size={image_size}",
        f"dataset.channels={channels}",
        f"dataset.num_classes={NUM_CLASSES}",
        f"dataset.per_class={per_class}",
        "dataset.test_per_class=1",
        "dataset.profile=none",
        f"dataset.batch_size={s.batch_size}",
    ]


def trainer_overrides(s: Settings) -> list[str]:
    """The trainer settings every lt_bench variant runs with: one epoch of ``warmup + steps`` batches on
    the bench's device, no progress bar, no results table."""
    accelerator = "cpu" if s.device.type == "cpu" else "gpu"
    devices = 1 if s.device.index is None else f"[{s.device.index}]"
    return [
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={s.warmup + s.steps}",
        "trainer.enable_progress_bar=false",
        f"trainer.accelerator={accelerator}",
        f"trainer.devices={devices}",
        "print_table=false",
    ]


def processor_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return models[0] if models else platform.processor() or platform.machine()


def machine(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else processor_name()
    return (
        f"{device} ({name}), {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"lightning {L.__version__}"
    )


def timed_fit(s: Settings, cfg: DictConfig, datamodule, run_dir: Path) -> float:
    """Seconds of the timed window of one lt_bench run through its own build path: the composed config,
    ``build_method``, ``build_trainer`` (its checkpoint, resume and logger callbacks), ``trainer.fit``."""
    from lt_bench.methods import build_method
    from lt_bench.schedules import schedule_of
    from lt_bench.startup import check
    from lt_bench.train import build_trainer

    check(cfg)
    torch.manual_seed(0)
    model = build_method(cfg, datamodule.info, schedule_of(cfg.schedule))
    trainer, _ = build_trainer(cfg, run_dir, has_val=False)
    window = Window(s.warmup, s.steps, s.device)
    trainer.callbacks.append(WindowCallback(window))
    trainer.fit(model, datamodule=datamodule)
    if math.isnan(window.seconds):
        raise RuntimeError("lt_bench stopped before the last timed step")
    return window.seconds


def interleaved_steps(
    s: Settings, base: list[str], variants: dict[str, tuple[str, ...]], run_dir: Path
) -> dict[str, list[float]]:
    """Seconds per training step of every variant in every round, the variants interleaved in each, on one
    datamodule built from ``base``."""
    from lt_bench.data.datamodule import LongTailDataModule

    datamodule = LongTailDataModule(compose(base).dataset, 0)
    datamodule.prepare()
    seconds: dict[str, list[float]] = {key: [] for key in variants}
    for _ in range(s.rounds):
        for key, overrides in variants.items():
            cfg = compose([*base, *overrides])
            seconds[key].append(timed_fit(s, cfg, datamodule, run_dir / key) / s.steps)
    return seconds
