"""``python -m lt_bench.bench`` (``make bench``): lt_bench's training throughput next to a plain PyTorch loop.

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

The last line is ``lt_bench / plain-loop throughput ratio: X``: lt_bench (Lightning, default fp32
configuration) over the reference loop (PIL + DataLoader), both in fp32. docs/benchmarks.md has figures.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from lt_bench.config import params_of, register, validate
from lt_bench.data.datamodule import InMemoryLoader, LongTailDataModule
from lt_bench.losses import build_loss
from lt_bench.methods import build_method
from lt_bench.methods.base import LOSS_USAGE_KEYS
from lt_bench.methods.phase import mean_unit_similarity, msr_weights
from lt_bench.models import build_backbone

CONF = Path(__file__).resolve().parent / "conf"
NUM_CLASSES = 10


# -- settings --------------------------------------------------------------------------------------
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


def parse_args(argv: list[str] | None = None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m lt_bench.bench", description=__doc__.split("\n\n")[0])
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
    )


# -- timing ----------------------------------------------------------------------------------------
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
        return self.datamodule.train_x

    @property
    def labels(self) -> Tensor:
        return self.datamodule.train_y


def compose(overrides: list[str]) -> DictConfig:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def base_overrides(s: Settings) -> list[str]:
    """lt_bench's configuration for the run: CIFAR-shaped synthetic data, ResNet-32, CE, SGD, defaults."""
    per_class = math.ceil((s.warmup + s.steps) * s.batch_size / NUM_CLASSES)
    accelerator = "cpu" if s.device.type == "cpu" else "gpu"
    devices = 1 if s.device.index is None else f"[{s.device.index}]"
    return [
        "dataset=synthetic",
        "dataset.image_size=32",
        "dataset.channels=3",
        f"dataset.num_classes={NUM_CLASSES}",
        f"dataset.per_class={per_class}",
        "dataset.test_per_class=1",
        "dataset.profile=none",
        f"dataset.batch_size={s.batch_size}",
        "dataset.crop_padding=4",
        "dataset.flip=true",
        "backbone=resnet32",
        "loss=ce",
        "method=standard",
        "trainer.max_epochs=1",
        f"trainer.limit_train_batches={s.warmup + s.steps}",
        "trainer.enable_progress_bar=false",
        f"trainer.accelerator={accelerator}",
        f"trainer.devices={devices}",
        "print_table=false",
    ]


def prepare(s: Settings, run_dir: Path) -> Bench:
    cfg = compose(base_overrides(s))
    validate(cfg)
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
    s, source = b.s, b.datamodule.source
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
    loader = InMemoryLoader(images, labels, b.s.batch_size, train=True, seed=0, drop_last=True)
    augment = b.datamodule.augment
    for x, y, keys, _ in loader:
        yield augment.train(x, keys), y


def run_pil(b: Bench) -> float:
    return plain_loop(b, pil_batches(b))


def run_tensor(b: Bench) -> float:
    # the images move to the device once per run; each step indexes them there
    images, labels = b.images.to(b.s.device), b.labels.to(b.s.device)
    return plain_loop(b, tensor_batches(b, images, labels))


def run_lt_bench(b: Bench, overrides: tuple[str, ...] = ()) -> float:
    """lt_bench's own build path: the composed config, build_method, build_trainer, trainer.fit."""
    from lt_bench.train import build_trainer

    cfg = compose([*base_overrides(b.s), *overrides]) if overrides else b.cfg
    validate(cfg)
    torch.manual_seed(0)
    model = build_method(cfg, b.datamodule.info)
    trainer, _ = build_trainer(cfg, b.run_dir, has_val=False)
    window = Window(b.s.warmup, b.s.steps, b.s.device)
    trainer.callbacks.append(WindowCallback(window))
    trainer.fit(model, datamodule=b.datamodule)
    if math.isnan(window.seconds):
        raise RuntimeError("lt_bench stopped before the last timed step")
    return window.seconds


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
    "tensor": Variant("plain loop, lt_bench tensor pipeline (InMemoryLoader + BatchAugment)", run=run_tensor),
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
    validate(cfg)
    torch.manual_seed(0)
    trainer, _ = build_trainer(cfg, run_dir, has_val=False)
    starts = EpochStarts(s.device)
    trainer.callbacks.append(starts)
    trainer.fit(build_method(cfg, datamodule.info), datamodule=datamodule)
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


# -- losses ----------------------------------------------------------------------------------------
LOSS_BATCH, LOSS_CLASSES = 128, 100


def long_tailed_counts(total: int, classes: int, imbalance: float = 100.0) -> list[int]:
    """CIFAR-LT's exponential profile scaled to ``total`` samples (head first; rounding goes to class 0)."""
    share = [imbalance ** (-i / (classes - 1)) for i in range(classes)]
    counts = [max(1, int(total * w / sum(share))) for w in share]
    counts[0] += total - sum(counts)
    return counts


def conf_losses() -> list[tuple[str, DictConfig]]:
    """Every ``conf/loss`` option, with its ``after_e0`` parameters applied (vs_tla differs from vs there)."""
    losses = []
    for path in sorted((CONF / "loss").glob("*.yaml")):
        node = OmegaConf.load(path)
        after = node.get("after_e0") or {}
        losses.append((path.stem, OmegaConf.merge(node, after)))
    return losses


def time_loss(loss_fn: nn.Module, logits: Tensor, targets: Tensor, reps: int) -> float:
    """Seconds per forward + backward of ``loss_fn`` (the gradient reaches the logits)."""
    synchronize(logits.device)
    start = time.perf_counter()
    for _ in range(reps):
        logits.grad = None
        loss_fn(logits, targets).backward()
    synchronize(logits.device)
    return (time.perf_counter() - start) / reps


def loss_costs(s: Settings) -> dict[str, float]:
    """Seconds per forward + backward of each loss: the fastest of many short rounds, the losses interleaved
    within each round. A busy machine only ever adds time to these sub-millisecond timings, so the
    minimum estimates the cost itself where a median would mostly measure the load."""
    counts = long_tailed_counts(10_847, LOSS_CLASSES)  # CIFAR-100-LT IF 100's size
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, LOSS_CLASSES, (LOSS_BATCH,), generator=g).to(s.device)
    linear = torch.randn(LOSS_BATCH, LOSS_CLASSES, generator=g).to(s.device).requires_grad_()
    cosine = (torch.rand(LOSS_BATCH, LOSS_CLASSES, generator=g) * 2 - 1).to(s.device).requires_grad_()
    cases = []
    for name, node in conf_losses():
        loss_fn = build_loss(node.name, counts, **params_of(node, drop=LOSS_USAGE_KEYS)).to(s.device)
        cases.append((name, loss_fn, cosine if node.get("head") == "cosine" else linear))
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _, loss_fn, logits in cases:  # warm-up
        time_loss(loss_fn, logits, targets, 2)
    for _ in range(s.loss_rounds):
        for name, loss_fn, logits in cases:
            times[name].append(time_loss(loss_fn, logits, targets, s.loss_reps))
    return {name: min(t) for name, t in times.items()}


# -- PHASE -----------------------------------------------------------------------------------------
def median_seconds(fn: Callable[[], object], reps: int, device: torch.device) -> float:
    times = []
    for _ in range(reps):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass(frozen=True)
class PhaseCost:
    n: int
    dim: int
    counts: list[int]
    msr_seconds: float
    subsample: int
    pair_seconds: float
    max_diff: float

    @property
    def pair_flop(self) -> float:
        """``2 sum_j n_j^2 d``: every within-class dot product, multiply and add."""
        return 2.0 * sum(n * n for n in self.counts) * self.dim

    @property
    def rate(self) -> float:
        return 2.0 * self.subsample**2 * self.dim / self.pair_seconds


def phase_cost(s: Settings) -> PhaseCost:
    device, n, dim = s.device, s.phase_n, s.phase_dim
    counts = long_tailed_counts(n, 100)
    labels = torch.repeat_interleave(torch.arange(100), torch.tensor(counts)).to(device)
    features = torch.randn(n, dim, generator=torch.Generator().manual_seed(0)).to(device)
    msr = median_seconds(lambda: msr_weights(features, labels, counts), 3, device)
    # the pairwise form on a subsample of the largest class, in float64 as msr_weights computes
    m = min(s.phase_subsample, counts[0])
    sub = features[:m].double()
    u = F.normalize(sub - sub.mean(0), dim=1)
    pair = median_seconds(lambda: (u @ u.T).mean(1), 3, device)
    zeros = torch.zeros(m, dtype=torch.long, device=device)
    diff = float((mean_unit_similarity(sub, zeros, 1) - (u @ u.T).mean(1)).abs().max())
    return PhaseCost(n, dim, counts, msr, m, pair, diff)


# -- report ----------------------------------------------------------------------------------------
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


def paired_ratio(rates: dict[str, list[float]], a: str, b: str) -> float:
    """Median over rounds of ``a``'s images/s over ``b``'s in the same round: the two ran back to back,
    so a load that changes from round to round cancels out of each quotient."""
    return statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True))


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


def report_losses(costs: dict[str, float], step_seconds: float) -> None:
    ce = costs["ce"]
    print(
        f"LOSS forward + backward on {LOSS_BATCH} x {LOSS_CLASSES} logits (CIFAR-100-LT IF 100 counts); "
        f"'in a step': 1 + (loss - CE) / one lt_bench step ({step_seconds * 1e3:.0f} ms)"
    )
    for name, seconds in costs.items():
        in_step = 1 + (seconds - ce) / step_seconds
        flag = "  > 1.1x CE on its own" if seconds > 1.1 * ce else ""
        cost = f"{seconds * 1e6:8.1f} us  {seconds / ce:5.2f}x CE"
        print(f"LOSS {name:<7} {cost}  {in_step:.4f}x in a step{flag}")


def report_phase(p: PhaseCost) -> None:
    full_gb = p.n**2 * 8 / 1e9
    class_mb = max(p.counts) ** 2 * 8 / 1e6
    print(
        f"PHASE msr_weights on {p.n:,} x {p.dim} float32 features, 100 classes "
        f"({p.counts[0]:,} ... {p.counts[-1]:,} per class, IF 100): {p.msr_seconds:.3g} s"
    )
    print(
        f"PHASE the pairwise within-class similarities it avoids: 2 sum_j n_j^2 d = {p.pair_flop:.2e} FLOP, "
        f"~{p.pair_flop / p.rate:.3g} s at the {p.rate / 1e9:.0f} GFLOP/s that a {p.subsample:,} x "
        f"{p.subsample:,} float64 product of the largest class measured here "
        f"({p.pair_flop / p.rate / p.msr_seconds:.1f}x msr_weights); memory {class_mb:.0f} MB for the "
        f"largest class's matrix, {full_gb:.0f} GB for an N x N one"
    )
    print(f"PHASE check: the O(N d) form equals the pairwise means on that subsample to {p.max_diff:.1e}")


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
    report_losses(loss_costs(s), s.batch_size / statistics.median(rates["lt_bench"]))
    report_phase(phase_cost(s))
    print(f"lt_bench / plain-loop throughput ratio: {paired_ratio(rates, 'lt_bench', 'pil'):.2f}")


if __name__ == "__main__":
    main()
