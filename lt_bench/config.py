"""Structured configs: the schema Hydra checks every composed config against, plus value checks.

Hydra rejects unknown keys and wrong types against these dataclasses at start-up. Ranges and
cross-field rules that a type cannot express are checked by :func:`validate`, which raises
:class:`ConfigError` with one message naming the key and the fix.

Groups whose keys depend on the chosen option (``loss``, ``backbone``, ``method``, ``logger``) are open
nodes here; their builders check the keys against what that option accepts.

``dataset`` is typed but open. :class:`DatasetConfig` holds the keys lt_bench's sources and backends read,
and Hydra type-checks them when it composes; the node also accepts keys it does not name, so a source of
your own (registered in :data:`lt_bench.data.sources.SOURCES`) can read keys of its own that its dataset
YAML sets. A source declares the keys it reads by its loader's keyword parameters
(:func:`lt_bench.data.sources.source_keys`); :func:`validate` rejects, in one line, a dataset key that
is neither a :class:`DatasetConfig` field nor declared by the chosen ``dataset.source``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from lt_bench.data.profiles import PROFILES
from lt_bench.data.sources import source_keys
from lt_bench.errors import ConfigError
from lt_bench.schedules import Schedule, schedule_of


@dataclass
class DatasetConfig:
    """The dataset keys every source shares, type-checked at composition (see the module docstring)."""

    source: str = "mnist_lt"  # what is read: a name registered in lt_bench.data.sources.SOURCES
    name: str = "${.source}"  # display name only (run tags, report columns), e.g. cifar10_lt for cifar10
    root: str | None = None
    profile: str = "exp"  # one of lt_bench.data.profiles.PROFILES
    imbalance_factor: float = 100.0
    quantity_ratio: float = 1.0
    val_fraction: float = 0.0
    test_per_class: int = 100  # embedded sources: balanced held-out test split
    batch_size: int = 128  # global batch: divided across DDP processes
    eval_batch_size: int = 1000
    drop_last: bool = False
    crop_padding: int = 4
    flip: bool = True
    autoaugment: bool = False  # torchvision's CIFAR10 AutoAugment policy, per image, on the batch
    randaugment: bool = False  # torchvision's RandAugment (the VS+TLA+ADRW authors' --randaug)
    cutout: int = 0  # side of the square erased per image (16 in the CIFAR recipes); 0 = off
    color_jitter: float = 0.0  # brightness/contrast/saturation strength; 0 = off
    many_threshold: int = 100
    few_threshold: int = 20
    group_by: str = "threshold"  # threshold | thirds
    # read by the synthetic source (image_size is also the crop size of the file-based datasets)
    num_classes: int = 10
    per_class: int = 100
    image_size: int = 16
    channels: int = 3
    # file-based datasets (imagenet_lt, inat2018)
    split_dir: str | None = None  # folder holding the split lists (default: dataset.root)
    num_workers: int = 4  # DataLoader worker processes
    use_val_list: bool = False  # imagenet_lt: ImageNet_LT_val.txt as the validation split


@dataclass
class OptimizerConfig:
    name: str = "sgd"  # sgd | adamw | sam
    lr: float = 0.1
    momentum: float = 0.9  # sgd
    weight_decay: float = 2e-4
    nesterov: bool = False  # sgd
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    eps: float = 1e-8  # adamw
    decay_norm_and_bias: bool = True  # false: no weight decay on 1-D tensors (biases, norm scales/shifts)
    base: str = "sgd"  # the optimizer SAM wraps: sgd | adamw
    rho: float = 0.05  # SAM neighbourhood radius before schedule.e0
    rho_after: float | None = None  # SAM radius from schedule.e0 on (None: keep rho)
    weight_decay_after: float | None = None  # weight decay from schedule.e0 on (None: keep)


@dataclass
class LRScheduleConfig:
    name: str = "step"  # step | cosine | constant
    warmup_epochs: int = 5
    milestones: list[int] = field(default_factory=list)  # 0-based epochs at which a factor starts
    factors: list[float] = field(default_factory=list)  # cumulative factor from each milestone on
    min_factor: float = 0.0  # cosine floor


@dataclass
class TrainerConfig:
    max_epochs: int = 30
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    precision: str = "32-true"
    deterministic: bool = False
    select_by: str = "val/balanced_acc"  # metric that picks the best checkpoint when a val split exists
    check_val_every_n_epoch: int = 1
    enable_progress_bar: bool = True
    log_every_n_steps: int = 50
    limit_train_batches: float | None = None
    channels_last: bool = False  # backbone and batches in NHWC (faster convolutions, bf16 on GPUs above all)
    compile: bool = False  # torch.compile the backbone (in place: checkpoints keep their keys)


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)  # opened by _schema()
    backbone: Any = MISSING
    loss: Any = MISSING
    schedule: Schedule = MISSING  # the schedule's one definition is its own schema
    optimizer: OptimizerConfig = MISSING
    lr_schedule: LRScheduleConfig = MISSING
    method: Any = MISSING
    trainer: TrainerConfig = MISSING
    logger: Any = MISSING
    seed: int = 0
    ckpt_path: str | None = None
    print_table: bool = True
    plugins: list[str] = field(default_factory=list)  # modules imported first (their registrations)


def _epoch_fraction(fraction: str, max_epochs: int) -> int:
    """``${lt.epoch:0.8}`` -> int(0.8 * trainer.max_epochs): recipes stay proportional to run length."""
    return int(float(fraction) * int(max_epochs))


def _epoch_fractions(*args: Any) -> list[int]:
    *fractions, max_epochs = args
    return [int(float(f) * int(max_epochs)) for f in fractions]


def register() -> None:
    """Register the schema and our resolvers (idempotent)."""
    if not OmegaConf.has_resolver("lt.epoch"):
        OmegaConf.register_new_resolver("lt.epoch", _epoch_fraction)
        OmegaConf.register_new_resolver("lt.epochs", _epoch_fractions)
    ConfigStore.instance().store(name="lt_bench_schema", node=_schema())


def _schema() -> DictConfig:
    """:class:`Config` with the ``dataset`` node open to the keys a source adds (its fields stay typed)."""
    schema = OmegaConf.structured(Config)
    OmegaConf.set_struct(schema.dataset, False)
    return schema


KNOWN = {
    "dataset.profile": PROFILES,
    "optimizer.name": ("sgd", "adamw", "sam"),
    "optimizer.base": ("sgd", "adamw"),
    "lr_schedule.name": ("step", "cosine", "constant"),
}


def _known() -> dict[str, tuple[str, ...]]:
    # lt_bench.metrics pulls in torchmetrics: imported when a run validates, not when the CLI starts
    from lt_bench.metrics import GROUP_BY

    return {**KNOWN, "dataset.group_by": GROUP_BY}


_DATASET_KEYS = frozenset(f.name for f in fields(DatasetConfig))


def _check_dataset_keys(d: DictConfig) -> None:
    own = source_keys(d.source)  # a ConfigError listing the sources when dataset.source is none of them
    unknown = [key for key in d if key not in _DATASET_KEYS and key not in own]
    if unknown:
        raise ConfigError(
            f"{', '.join(f'dataset.{key}' for key in unknown)}: not a dataset key "
            f"(lt_bench.config.DatasetConfig) and not read by dataset.source={d.source!r} "
            f"(its keys: {', '.join(own) or 'none'}); fix the spelling, or remove it"
        )


def _get(cfg: DictConfig, dotted: str) -> Any:
    return OmegaConf.select(cfg, dotted)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def validate(cfg: DictConfig) -> None:
    """Check values a type cannot: ranges, choices and cross-field rules."""
    try:
        OmegaConf.resolve(cfg)
    except Exception as err:  # an interpolation that cannot resolve is a config error, not a crash
        raise ConfigError(f"could not resolve the configuration: {err}") from None
    for key, choices in _known().items():
        value = _get(cfg, key)
        _require(
            value in choices,
            f"{key}={value!r} is not a known option; choose one of: {', '.join(choices)} "
            f"(e.g. {key}={choices[0]})",
        )
    d, o, t, lr = cfg.dataset, cfg.optimizer, cfg.trainer, cfg.lr_schedule
    _check_dataset_keys(d)
    _require(
        d.imbalance_factor >= 1,
        f"dataset.imbalance_factor={d.imbalance_factor} must be >= 1 (n_max / n_min, e.g. 100)",
    )
    _require(
        0 < d.quantity_ratio <= 1,
        f"dataset.quantity_ratio={d.quantity_ratio} must be in (0, 1] (fraction of each class kept)",
    )
    _require(
        0 <= d.val_fraction < 1,
        f"dataset.val_fraction={d.val_fraction} must be in [0, 1) (e.g. 0.1 for a 90/10 split)",
    )
    _require(d.batch_size >= 1, f"dataset.batch_size={d.batch_size} must be >= 1")
    _require(d.crop_padding >= 0, f"dataset.crop_padding={d.crop_padding} must be >= 0")
    _require(
        d.few_threshold <= d.many_threshold,
        f"dataset.few_threshold ({d.few_threshold}) must be <= dataset.many_threshold ({d.many_threshold})",
    )
    schedule_of(cfg.schedule)  # the schedule validates itself
    _require(o.lr > 0, f"optimizer.lr={o.lr} must be > 0")
    _require(o.weight_decay >= 0, f"optimizer.weight_decay={o.weight_decay} must be >= 0")
    _require(o.rho >= 0, f"optimizer.rho={o.rho} must be >= 0")
    _require(
        len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas),
        f"optimizer.betas={list(o.betas)} must be two numbers in [0, 1) (e.g. optimizer.betas=[0.9,0.999])",
    )
    _require(o.eps > 0, f"optimizer.eps={o.eps} must be > 0 (e.g. 1e-8)")
    _require(
        len(lr.milestones) == len(lr.factors),
        f"lr_schedule.milestones ({list(lr.milestones)}) and lr_schedule.factors ({list(lr.factors)}) "
        "must have the same length",
    )
    _require(
        list(lr.milestones) == sorted(lr.milestones),
        f"lr_schedule.milestones={list(lr.milestones)} must be increasing",
    )
    _require(t.max_epochs >= 1, f"trainer.max_epochs={t.max_epochs} must be >= 1")
    _require(
        all(math.isfinite(v) for v in (d.imbalance_factor, o.lr)),
        "non-finite values are not allowed in dataset.imbalance_factor, optimizer.lr",
    )
    for group in ("loss", "backbone", "method", "logger"):
        _require(
            isinstance(cfg[group], DictConfig) and "name" in cfg[group],
            f"config group '{group}' needs a 'name'; pick an option with {group}=NAME",
        )


def params_of(node: DictConfig, drop: tuple[str, ...] = ("name",)) -> dict[str, Any]:
    """A group node as plain keyword arguments, without its bookkeeping keys."""
    container = OmegaConf.to_container(node, resolve=True)
    assert isinstance(container, dict)
    return {k: v for k, v in container.items() if k not in drop}


def flatten_config(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config -> ``{"loss.gamma": 0.2, ...}`` (lists stay leaves): the W&B run table and the report
    filter and group by flat keys."""
    flat: dict[str, Any] = {}
    for key, value in node.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat
