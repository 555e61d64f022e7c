"""THROUGHPUT, RATIO, DATA and EPOCHS: lt_bench's training throughput next to a plain PyTorch loop.

ResNet-32 (CIFAR, 10 classes) on synthetic CIFAR-shaped uint8 images, several ways (:data:`VARIANTS`):
the reference loop on PIL images and torchvision transforms, the same loop on lt_bench's tensor pipeline,
and lt_bench itself (fp32, channels_last, bf16-mixed, compile).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from benchmarks.common import (
    NUM_CLASSES,
    Settings,
    Window,
    compose,
    paired_ratio,
    synchronize,
    synthetic_data_overrides,
    timed_fit,
    trainer_overrides,
)
from lt_bench.data.datamodule import LongTailDataModule
from lt_bench.data.memory import TrainLoader
from lt_bench.data.samplers import EpochBatches
from lt_bench.data.sources import TensorSplit
from lt_bench.methods import build_method
from lt_bench.models import build_backbone
from lt_bench.schedules import schedule_of
from lt_bench.startup import check


# -- the data every variant trains on --------------------------------------------------------------
@dataclass
class Bench:
    """What the variants share: settings, the lt_bench configuration and the prepared data."""

    s: Settings
    cfg: DictConfig
    datamodule: LongTailDataModule
    run_dir: Path

    @property
    def images(self) -> Tensor:
        return self.datamodule.data.train.images

    @property
    def labels(self) -> Tensor:
        return self.datamodule.data.train.labels


def base_overrides(s: Settings) -> list[str]:
    """lt_bench's configuration for the run: CIFAR-shaped synthetic data, ResNet-32, CE, SGD, defaults."""
    return [
        *synthetic_data_overrides(s, image_size=32, channels=3),
        "dataset.crop_padding=4",
        "dataset.flip=true",
        "backbone=resnet32",
        "loss=ce",
        "method=standard",
        *trainer_overrides(s),
    ]


def prepare(s: Settings, run_dir: Path) -> Bench:
    cfg = compose(base_overrides(s))
    check(cfg)
    datamodule = LongTailDataModule(cfg.dataset, cfg.seed)
    datamodule.prepare()
    return Bench(s, cfg, datamodule, run_dir)


# -- the variants ----------------------------------------------------------------------------------
def plain_model(device: torch.device) -> nn.Module:
    """The same network lt_bench builds for ``backbone=resnet32 loss=ce``: ResNet-32 and a linear head."""
    torch.manual_seed(0)
    backbone = build_backbone("resnet32", in_channels=3)
    return nn.Sequential(backbone, nn.Linear(backbone.out_dim, NUM_CLASSES)).to(device)


def plain_loop(b: Bench, batches: Iterator[tuple[Tensor, Tensor]]) -> float:
    """The reference training loop (fp32, CE, SGD as lt_bench's defaults); seconds of the timed steps.

    The loss is summed on the device and read once at the end: a per-step ``loss.item()`` (common in
    reference code) would only slow this baseline down on a GPU."""
    s = b.s
    model = plain_model(s.device)
    o = b.cfg.optimizer
    optimizer = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    window = Window(s.warmup, s.steps, s.device)
    total = torch.zeros((), device=s.device)
    for index, (x, y) in enumerate(batches):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.detach()
        if window.step_done(index):
            break
    if not math.isfinite(float(total)) or math.isnan(window.seconds):
        raise RuntimeError("the plain loop diverged or ran out of batches")
    return window.seconds


class PILImages(torch.utils.data.Dataset):
    """torchvision.datasets.CIFAR10's layout: HWC uint8 arrays, a PIL image per item, then transforms."""

    def __init__(self, images: Tensor, labels: Tensor, transform: Callable) -> None:
        self.data = images.permute(0, 2, 3, 1).contiguous().numpy()
        self.targets = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.data[index])), self.targets[index]


def pil_transform(mean, std) -> Callable:
    from torchvision import transforms as T

    return T.Compose(
        [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)]
    )


def pil_batches(b: Bench) -> Iterator[tuple[Tensor, Tensor]]:
    s, source = b.s, b.datamodule.data.source
    dataset = PILImages(b.images.cpu(), b.labels.cpu(), pil_transform(source.mean, source.std))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=s.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=s.workers,
        pin_memory=s.device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )
    for x, y in loader:
        yield x.to(s.device, non_blocking=True), y.to(s.device, non_blocking=True)


def tensor_batches(b: Bench, images: Tensor, labels: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
    batches = EpochBatches(labels, b.s.batch_size, seed=0, drop_last=True)
    loader = TrainLoader(TensorSplit(images, labels), batches)
    augment = b.datamodule.data.augment
    for x, y, keys, _ in loader:
        yield augment.train(x, keys), y


def run_pil(b: Bench) -> float:
    return plain_loop(b, pil_batches(b))


def run_tensor(b: Bench) -> float:
    # the images move to the device once per run; each step indexes them there
    images, labels = b.images.to(b.s.device), b.labels.to(b.s.device)
    return plain_loop(b, tensor_batches(b, images, labels))


def run_lt_bench(b: Bench, overrides: tuple[str, ...] = ()) -> float:
    """lt_bench's own build path (:func:`timed_fit`) on the shared data."""
    cfg = compose([*base_overrides(b.s), *overrides]) if overrides else b.cfg
    return timed_fit(b.s, cfg, b.datamodule, b.run_dir)


@dataclass(frozen=True)
class Variant:
    """A plain loop (``run``) or lt_bench with extra configuration ``overrides``."""

    label: str
    run: Callable[[Bench], float] | None = None
    overrides: tuple[str, ...] = ()

    def seconds(self, b: Bench) -> float:
        return self.run(b) if self.run is not None else run_lt_bench(b, self.overrides)


BF16_CL = ("trainer.precision=bf16-mixed", "trainer.channels_last=true")
VARIANTS: dict[str, Variant] = {
    "pil": Variant("plain loop, PIL images + torchvision transforms + DataLoader", run=run_pil),
    "tensor": Variant("plain loop, lt_bench tensor pipeline (TrainLoader + BatchAugment)", run=run_tensor),
    "lt_bench": Variant("lt_bench: StandardMethod in its Lightning Trainer, fp32"),
    "lt_bench_cl": Variant("lt_bench, trainer.channels_last=true", overrides=("trainer.channels_last=true",)),
    "lt_bench_bf16": Variant("lt_bench, trainer.precision=bf16-mixed channels_last=true", overrides=BF16_CL),
    "lt_bench_compile": Variant(
        "lt_bench, bf16-mixed + channels_last + trainer.compile=true",
        overrides=(*BF16_CL, "trainer.compile=true"),
    ),
}
# every variant but torch.compile's, whose compilation takes minutes (``--variants`` adds it)
DEFAULT_VARIANTS = ("pil", "tensor", "lt_bench", "lt_bench_cl", "lt_bench_bf16")


def data_costs(b: Bench) -> dict[str, float]:
    """Seconds per training batch of each input pipeline alone, no model: the fastest of interleaved rounds
    of 10 batches, each round after a first batch (which starts DataLoader workers) that is not timed."""
    s = b.s
    images, labels = b.images.to(s.device), b.labels.to(s.device)
    feeds = {"pil": lambda: pil_batches(b), "tensor": lambda: tensor_batches(b, images, labels)}
    n = min(10, s.warmup + s.steps - 1)
    times: dict[str, list[float]] = {key: [] for key in feeds}
    for _ in range(1 if s.rounds == 1 else 7):
        for key, feed in feeds.items():
            batches = feed()
            next(batches)
            synchronize(s.device)
            start = time.perf_counter()
            for _, _batch in zip(range(n), batches, strict=False):
                pass
            synchronize(s.device)
            times[key].append((time.perf_counter() - start) / n)
    return {key: min(t) for key, t in times.items()}


def report_data(s: Settings, costs: dict[str, float]) -> None:
    pil, tensor = costs["pil"] * 1e3, costs["tensor"] * 1e3
    print(
        f"DATA input pipeline alone, per batch of {s.batch_size}: PIL + transforms + DataLoader "
        f"({s.workers} workers) {pil:.2f} ms, lt_bench tensor pipeline {tensor:.2f} ms "
        f"({pil / tensor:.1f}x faster)"
    )


def throughput(b: Bench) -> dict[str, list[float]]:
    """Images/s of every variant in every round, the variants interleaved within each round."""
    images = b.s.steps * b.s.batch_size
    rates: dict[str, list[float]] = {key: [] for key in b.s.variants}
    for _ in range(b.s.rounds):
        for key in b.s.variants:
            rates[key].append(images / VARIANTS[key].seconds(b))
    return rates


# -- whole epochs ----------------------------------------------------------------------------------
CIFAR10_LT = ("dataset.per_class=5000", "dataset.profile=exp", "dataset.imbalance_factor=100")


class EpochStarts(L.Callback):
    """The time every training epoch starts: start-to-start spans hold the whole epoch (its steps, the
    epoch-end checkpoint, the LR schedule)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.starts = device, []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        synchronize(self.device)
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        self.on_train_epoch_start(trainer, pl_module)


def epoch_seconds(
    s: Settings, datamodule: LongTailDataModule, run_dir: Path, overrides: tuple[str, ...]
) -> float:
    """Median seconds per epoch of a CIFAR-10-LT IF 100-sized run, its first epoch (warm-up) left out."""
    from lt_bench.train import build_trainer

    cfg = compose([*base_overrides(s), *CIFAR10_LT, f"trainer.max_epochs={s.epochs}", *overrides])
    cfg.trainer.limit_train_batches = None
    check(cfg)
    torch.manual_seed(0)
    trainer, _ = build_trainer(cfg, run_dir, has_val=False)
    starts = EpochStarts(s.device)
    trainer.callbacks.append(starts)
    trainer.fit(build_method(cfg, datamodule.info, schedule_of(cfg.schedule)), datamodule=datamodule)
    spans = [b - a for a, b in zip(starts.starts[1:], starts.starts[2:], strict=False)]
    return statistics.median(spans)


def whole_epochs(s: Settings, run_dir: Path) -> None:
    cfg = compose([*base_overrides(s), *CIFAR10_LT])
    datamodule = LongTailDataModule(cfg.dataset, cfg.seed)
    info = datamodule.prepare()
    steps = math.ceil(info.train_size / s.batch_size)
    for key in s.variants:
        variant = VARIANTS[key]
        if variant.run is not None:
            continue
        seconds = epoch_seconds(s, datamodule, run_dir / f"epochs_{key}", variant.overrides)
        print(
            f"EPOCHS {key:<16} CIFAR-10-LT IF 100 size ({info.train_size:,} images, {steps} steps of "
            f"{s.batch_size}): {seconds:.3f} s/epoch, 200 epochs ~ {200 * seconds:.0f} s"
        )


def report_throughput(s: Settings, rates: dict[str, list[float]]) -> None:
    width = max(len(VARIANTS[k].label) for k in rates)
    for key, r in rates.items():
        each = " ".join(f"{v:.1f}" for v in r)
        print(
            f"THROUGHPUT {key:<16} {VARIANTS[key].label:<{width}}  {statistics.median(r):9.1f} images/s  "
            f"{paired_ratio(rates, key, 'pil'):5.2f}x  [rounds: {each}]"
        )
    if s.workers == 0:
        print("THROUGHPUT (the PIL loop decodes in the training process: --workers 0)")
    print("RATIO: medians over rounds of the quotient within each round")
    if "tensor" in rates:
        tensor_over_pil = paired_ratio(rates, "tensor", "pil")
        print(f"RATIO tensor pipeline / PIL pipeline, same plain loop: {tensor_over_pil:.2f}")
        print(
            "RATIO lt_bench / plain loop on the same tensor pipeline (Lightning's overhead): "
            f"{paired_ratio(rates, 'lt_bench', 'tensor'):.2f}"
        )
    for key in ("lt_bench_cl", "lt_bench_bf16", "lt_bench_compile"):
        if key in rates:
            print(f"RATIO {key} / lt_bench: {paired_ratio(rates, key, 'lt_bench'):.2f}")
