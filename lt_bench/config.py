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
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from lt_bench.conf import CONF_DIR
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
    # seed of the data themselves: the embedded sources' test hold-out, the profile's per-class subset and
    # the validation split (null: follow `seed`); training randomness (initialisation, batch order,
    # augmentation) always follows `seed`. The LDAM-DRW-based code bases draw their CIFAR-LT subset with
    # rand_number 0, KPS with 666: the recipes set theirs.
    subset_seed: int | None = None
    # in-memory datasets: false feeds the pixels as float32 in 0-255, not (x / 255 - mean) / std (the ARConvL
    # TensorFlow reference feeds raw pixels)
    normalize: bool = True


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
    # LR factor reached at the last warm-up epoch: warm-up is warmup_peak * (E + 1) / warmup_epochs. 1
    # (default) warms up to the base LR; 2 over 10 epochs is wang22ti/DDC's 400-epoch lr * E / 5
    warmup_peak: float = 1.0


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
    # an int is a number of batches, a float in (0, 1] a fraction of the epoch. Typed Any so that 1 stays
    # the int 1 (one batch): a float field would turn it into 1.0, which Lightning reads as 100%.
    limit_train_batches: Any = None
    channels_last: bool = False  # backbone and batches in NHWC (faster convolutions, bf16 on GPUs above all)
    compile: bool = False  # torch.compile the backbone (in place: checkpoints keep their keys)
    gradient_clip_val: float | None = None  # clip the gradients before every optimizer step (null: off)
    gradient_clip_algorithm: str = "norm"  # norm (global L2 norm of all gradients) | value (each element)
    accumulate_grad_batches: int = 1  # optimizer step every k batches: effective batch k x dataset.batch_size
    # evaluate the test set after every epoch and report the epoch with the best test top-1 as
    # summary.json's `test_best_epoch` (optimistic, as the CIFAR code bases report it; it selects nothing)
    track_test_best: bool = False
    num_nodes: int = (
        1  # machines of a multi-node DDP run, trainer.devices processes each (docs/distributed.md)
    )
    # Lightning's debugging switches (the debug= presets): fast_dev_run true or N runs N batches of fit and
    # test once (no checkpoint, no metrics.csv); overfit_batches N (or a fraction) trains and validates on
    # the same few batches; profiler simple | advanced | pytorch prints where the time went
    fast_dev_run: Any = False
    overfit_batches: Any = 0
    profiler: str | None = None


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
    overwrite: bool = False  # a fresh run may replace the outputs of another run in its directory
    print_table: bool = True
    print_config: bool = True  # the composed configuration as a tree at start (false: quiet)
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


def _schema(node_type: type = Config) -> DictConfig:
    """:class:`Config` (or a subclass: lt_bench.eval's) with the ``dataset`` node open to the keys a source
    adds (its fields stay typed)."""
    schema = OmegaConf.structured(node_type)
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


# Nodes a dataclass of the schema types. Hydra's `+key=value` adds a key even to these: it applies the
# override with OmegaConf.update(..., force_add=True), which lifts struct mode for that one key, so the
# schema's unknown-key error never fires and the key is recorded in the config but read by nothing.
# validate() closes that gap: a key of a typed node must be a field of its dataclass.
def _typed_nodes() -> tuple[tuple[str, type], ...]:
    return (
        ("", Config),
        ("trainer", TrainerConfig),
        ("optimizer", OptimizerConfig),
        ("lr_schedule", LRScheduleConfig),
    )


# Keys lt_bench.loggers reads with a default although the option's YAML does not set them (docs/sweeps.md
# adds them with `+logger.tags=[...]`).
OPTIONAL_KEYS = {("logger", "wandb"): ("tags", "job_type")}


def _option_keys(group: str, name: str) -> list[str] | None:
    """The keys option ``name`` of the open ``group`` has: those its YAML in lt_bench/conf sets (a method's
    file holds its own keys only, under ``method:``), plus :data:`OPTIONAL_KEYS`. None for an option of a
    plugin's config path: its builder checks its keys."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        return None
    node = OmegaConf.load(path)
    own = node.get(group) if isinstance(node.get(group), DictConfig) else node
    return [str(k) for k in own if k != "defaults"] + list(OPTIONAL_KEYS.get((group, name), ()))


def _check_option_keys(cfg: DictConfig) -> None:
    for group in ("method", "logger"):
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or "name" not in node:
            continue
        # logger=[tensorboard,wandb] merges several options into one node, each naming itself under `use`
        keys = [_option_keys(group, str(option)) for option in (node.get("use") or [node.name])]
        known = None if None in keys else list(dict.fromkeys(k for option_keys in keys for k in option_keys))
        unknown = [] if known is None else [key for key in node if key not in known]
        if unknown:
            raise ConfigError(
                f"{', '.join(f'{group}.{key}' for key in unknown)}: {group}={node.name} has no such key, so "
                f"nothing would read it (a '+' adds any key, even a misspelt one); its keys are: "
                f"{', '.join(k for k in known if k != 'name') or 'none'}. Fix the spelling, or remove it"
            )


def _check_typed_keys(cfg: DictConfig) -> None:
    for node, schema in _typed_nodes():
        keys = cfg if not node else cfg[node]
        if not isinstance(keys, DictConfig):
            continue
        known = [f.name for f in fields(schema)]
        unknown = [key for key in keys if key not in known]
        if unknown:
            prefix, kind = (f"{node}.", node) if node else ("", "top-level")
            raise ConfigError(
                f"{', '.join(prefix + key for key in unknown)}: no such {kind} key, so nothing would read it "
                f"(a '+' adds any key, even a misspelt one); the {kind} keys are: {', '.join(known)}. "
                "Fix the spelling, or remove it"
            )


GRADIENT_CLIP_ALGORITHMS = ("norm", "value")


def _devices_ok(devices: Any) -> bool:
    """What Lightning's ``Trainer(devices=)`` accepts: a count >= 1, -1 (all), "auto", or device indices
    (a list, or a string such as "0,1")."""
    if isinstance(devices, str):
        if devices.strip() == "auto":
            return True
        parts = devices.split(",")
        if not all(p.strip().lstrip("-").isdigit() for p in parts):
            return False
        devices = int(parts[0]) if len(parts) == 1 else [int(p) for p in parts]
    if isinstance(devices, ListConfig | list):
        indices = list(devices)
        valid = all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices)
        return bool(indices) and valid and len(set(indices)) == len(indices)
    return isinstance(devices, int) and not isinstance(devices, bool) and (devices >= 1 or devices == -1)


def _check_execution(t: DictConfig) -> None:
    """``trainer.accelerator``, ``devices``, ``strategy`` and ``precision``, which Lightning checks only when
    the trainer is built, with a traceback: the names it knows, and a device this machine has."""
    from lightning.fabric.connector import _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    accelerators = ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators()))
    _require(
        t.accelerator in accelerators,
        f"trainer.accelerator={t.accelerator!r} is not known; choose one of: {', '.join(accelerators)}",
    )
    if t.accelerator != "auto":
        kinds = ("cuda", "mps") if t.accelerator == "gpu" else (t.accelerator,)
        _require(
            any(AcceleratorRegistry[kind]["accelerator"].is_available() for kind in kinds),
            f"trainer.accelerator={t.accelerator}: this machine has no such device (torch sees none); use "
            "trainer.accelerator=cpu, or auto (a GPU when there is one, else the CPU)",
        )
    _require(
        _devices_ok(t.devices),
        f"trainer.devices={t.devices!r} must be a number of devices >= 1 (e.g. 2), -1 for all, auto, or a "
        "list of device indices (e.g. [0,1])",
    )
    strategies = ("auto", *StrategyRegistry.available_strategies())
    _require(
        t.strategy in strategies,
        f"trainer.strategy={t.strategy!r} is not known; choose one of: auto, ddp, ddp_spawn, fsdp, ... "
        f"(all: {', '.join(strategies)})",
    )
    precisions = (*typing.get_args(_PRECISION_INPUT_STR), *typing.get_args(_PRECISION_INPUT_STR_ALIAS))
    _require(
        str(t.precision) in precisions,
        f"trainer.precision={t.precision!r} is not known; choose one of: {', '.join(precisions)} "
        "(e.g. bf16-mixed on a GPU)",
    )


def _check_selection(select_by: str) -> None:
    """Lightning's checkpoint callback finds an unknown monitor only after the first epoch, and fails."""
    from lt_bench.metrics import SCALAR_KEYS

    metrics = [f"val/{key}" for key in SCALAR_KEYS]
    _require(
        select_by in metrics,
        f"trainer.select_by={select_by} is not a metric the validation logs; choose one of: "
        f"{', '.join(metrics)}",
    )


def _check_trainer(cfg: DictConfig) -> None:
    t, o = cfg.trainer, cfg.optimizer
    limit = t.limit_train_batches
    batches = isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1
    fraction = isinstance(limit, float) and 0 < limit <= 1
    _require(
        limit is None or batches or fraction,
        f"trainer.limit_train_batches={limit!r} must be an integer >= 1 (a number of batches, e.g. 2) or a "
        "float in (0, 1] (a fraction of each epoch, e.g. 0.25), or null for the whole epoch",
    )
    clip = t.gradient_clip_val
    _require(
        clip is None or (math.isfinite(clip) and clip > 0),
        f"trainer.gradient_clip_val={clip} must be a number > 0 (e.g. 1.0), or null for no clipping",
    )
    _require(
        t.gradient_clip_algorithm in GRADIENT_CLIP_ALGORITHMS,
        f"trainer.gradient_clip_algorithm={t.gradient_clip_algorithm!r} is not known; choose one of: "
        f"{', '.join(GRADIENT_CLIP_ALGORITHMS)} (norm: the global L2 norm of all gradients)",
    )
    k = t.accumulate_grad_batches
    _require(k >= 1, f"trainer.accumulate_grad_batches={k} must be >= 1 (1: a step every batch)")
    _require(
        k == 1 or o.name != "sam",
        f"trainer.accumulate_grad_batches={k} does not work with optimizer=sam: SAM recomputes the "
        "gradient at the perturbed weights on the last batch only, so the step would mix the accumulated "
        "gradient of k batches with that of one; raise dataset.batch_size (or trainer.devices) instead, or "
        "set trainer.accumulate_grad_batches=1",
    )
    _require(
        not str(t.select_by).startswith("test"),
        f"trainer.select_by={t.select_by} would choose the model on the test set; select by a validation "
        "metric (e.g. trainer.select_by=val/balanced_acc with dataset.val_fraction=0.1). "
        "trainer.track_test_best=true reports the best test epoch separately, as the papers do",
    )
    _check_selection(t.select_by)
    _check_execution(t)
    _check_debugging(t)
    _require(
        t.check_val_every_n_epoch >= 1,
        f"trainer.check_val_every_n_epoch={t.check_val_every_n_epoch} must be >= 1 (1: validate every epoch)",
    )


# the optimizer keys only some optimizers read (lt_bench.optim.build_optimizer): SGD's, AdamW's (of the
# optimizer built, optimizer.base under SAM) and SAM's own
OPTIMIZER_ONLY_KEYS = {"sgd": ("momentum", "nesterov"), "adamw": ("betas", "eps"), "sam": ("base", "rho")}
OPTIMIZER_NAMES = {"sgd": "SGD", "adamw": "AdamW", "sam": "SAM"}


def _check_optimizer(o: DictConfig) -> None:
    """A key the chosen optimizer does not read, set to anything but its default, is refused: it would be
    recorded in the run's config and ignored (``optimizer=adamw optimizer.nesterov=true``)."""
    _require(
        o.rho_after is None or o.name == "sam",
        f"optimizer.rho_after={o.rho_after} is read by optimizer=sam only (optimizer={o.name} has no "
        "radius); use optimizer=sam, or remove optimizer.rho_after",
    )
    built = o.base if o.name == "sam" else o.name
    defaults = {f.name: f.default for f in fields(OptimizerConfig) if f.default is not MISSING}
    defaults["betas"] = OptimizerConfig().betas
    for reader, keys in OPTIMIZER_ONLY_KEYS.items():
        if reader in (built, o.name):
            continue
        for key in keys:
            value = o.get(key)
            value = list(value) if isinstance(value, ListConfig) else value
            if value != defaults[key]:
                shown = str(value).lower() if isinstance(value, bool) else value
                under = f"optimizer={o.name}" + (f" optimizer.base={o.base}" if o.name == "sam" else "")
                use = f"optimizer={reader}" + (
                    f" (or optimizer=sam optimizer.base={reader})" if reader != "sam" else ""
                )
                raise ConfigError(
                    f"optimizer.{key}={shown} is read by {OPTIMIZER_NAMES[reader]} only; {under} ignores it: "
                    f"use {use}, or remove optimizer.{key}"
                )


PROFILERS = ("simple", "advanced", "pytorch")


def _check_debugging(t: DictConfig) -> None:
    fdr = t.fast_dev_run
    _require(
        isinstance(fdr, bool) or (isinstance(fdr, int) and fdr >= 0),
        f"trainer.fast_dev_run={fdr!r} must be true, false or a number of batches >= 0 (e.g. 2)",
    )
    overfit = t.overfit_batches
    _require(
        (isinstance(overfit, int) and not isinstance(overfit, bool) and overfit >= 0)
        or (isinstance(overfit, float) and 0 <= overfit <= 1),
        f"trainer.overfit_batches={overfit!r} must be a number of batches >= 0 (e.g. 3) or a fraction in "
        "[0, 1] of the training set; 0 turns it off",
    )
    _require(
        t.profiler is None or t.profiler in PROFILERS,
        f"trainer.profiler={t.profiler!r} is not known; choose one of: {', '.join(PROFILERS)}, or null",
    )
    _require(t.num_nodes >= 1, f"trainer.num_nodes={t.num_nodes} must be >= 1 (machines of a DDP run)")


def _stage_switch_fix(epochs: int, schedule: str) -> str:
    if epochs < 2:
        return "a switch needs two epochs or more: raise trainer.max_epochs"
    if schedule == "none":
        return "schedule=none has no switch: add one, e.g. schedule=two_stage (80% of the run) or drw"
    return (
        f"set schedule.e0 to a 0-based epoch in [1, {epochs - 1}] (and schedule.e1 with it for a step "
        "schedule) or raise trainer.max_epochs (the presets' e0 is a fraction of the run, rounded down)"
    )


def check_stage_switches(cfg: DictConfig, method_switches: list[str] | tuple[str, ...] = ()) -> None:
    """Everything that happens at ``schedule.e0`` must happen inside the run.

    Switches (a two-stage method's stage 2, ``loss.after_e0``, ``optimizer.rho_after`` and
    ``weight_decay_after``) need ``1 <= e0 < trainer.max_epochs``: at ``e0 >= max_epochs`` the switch
    never comes, at ``e0 = 0`` what comes before it never runs. A schedule that weights, re-samples or
    mixes by its progress needs ``e0 < max_epochs`` for a step (``e0 == e1``), ``e0 < max_epochs - 1``
    for a ramp (``p(E)`` is 0 up to ``e0``); from epoch 0 (``schedule=rw``, ``rs``, ``pb``) is fine.
    A step learning-rate milestone at or after ``max_epochs`` never applies.

    ``method_switches``: what the chosen method itself does at ``e0`` (a two-stage method's stage 2); the
    method declares it (:meth:`lt_bench.methods.base.LongTailModule.stage_switches`) and calls this from
    its ``check_config``, so this module needs no knowledge of the methods."""
    s, epochs = schedule_of(cfg.schedule), int(cfg.trainer.max_epochs)
    e0, e1 = s.e0, s.e1
    switches = list(method_switches)
    if cfg.loss.get("after_e0"):
        switches.append("loss.after_e0 takes effect")
    o = cfg.optimizer
    if o.name == "sam" and o.rho_after is not None:
        switches.append("optimizer.rho_after takes effect")
    if o.weight_decay_after is not None:
        switches.append("optimizer.weight_decay_after takes effect")
    where = f"schedule={s.name}, trainer.max_epochs={epochs}"
    if switches and e0 >= epochs:
        raise ConfigError(
            f"schedule.e0={e0} >= trainer.max_epochs={epochs}: the run ends before the switch at "
            f"schedule.e0, where {' and '.join(switches)}, so it never happens; "
            f"{_stage_switch_fix(epochs, s.name)}"
        )
    if switches and e0 == 0:
        raise ConfigError(
            f"schedule.e0=0 ({where}): {' and '.join(switches)} from the first epoch, so what comes "
            f"before the switch never runs; {_stage_switch_fix(epochs, s.name)}"
        )
    driven = [
        what
        for what, on in (
            ("class weights", s.weighting != "none"),
            ("re-sampling", s.sampling != "instance"),
            ("PPmix label weights", s.mixing == "ppmix"),
        )
        if on
    ]
    if driven and e1 == e0 and e0 >= epochs:
        raise ConfigError(
            f"schedule.e0={e0} >= trainer.max_epochs={epochs}: schedule={s.name}'s {' and '.join(driven)} "
            f"switch on at schedule.e0 (0-based), which this run never reaches; set schedule.e0 below "
            f"{epochs} (and schedule.e1 with it) or raise trainer.max_epochs"
        )
    fix = (
        "raise trainer.max_epochs"
        if epochs < 2
        else f"set schedule.e0 below {epochs - 1} or raise trainer.max_epochs"
    )
    if driven and e1 > e0 and e0 >= epochs - 1:
        raise ConfigError(
            f"schedule.e0={e0} with trainer.max_epochs={epochs}: schedule={s.name}'s progress p(E) is 0 "
            f"up to epoch e0 and the run ends there, so none of its {', '.join(driven)} ever takes "
            f"effect; {fix}"
        )
    lr = cfg.lr_schedule
    late = [m for m in lr.milestones if m >= epochs]
    if lr.name == "step" and late:
        raise ConfigError(
            f"lr_schedule.milestones={list(lr.milestones)}: {', '.join(map(str, late))} >= "
            f"trainer.max_epochs={epochs}, so those LR factors never apply; use 0-based epochs below "
            f"{epochs}, or drop the override (the default is 80% and 90% of the run)"
        )


def validate(cfg: DictConfig) -> None:
    """Check values a type cannot: ranges, choices and cross-field rules."""
    try:
        OmegaConf.resolve(cfg)
    except Exception as err:  # an interpolation that cannot resolve is a config error, not a crash
        raise ConfigError(f"could not resolve the configuration: {err}") from None
    _check_typed_keys(cfg)
    _check_option_keys(cfg)
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
    _require(d.eval_batch_size >= 1, f"dataset.eval_batch_size={d.eval_batch_size} must be >= 1 (e.g. 1000)")
    _require(
        0 <= cfg.seed < 2**32,
        f"seed={cfg.seed} must be in [0, 2**32) (numpy's range; e.g. seed=0)",
    )
    _require(d.cutout >= 0, f"dataset.cutout={d.cutout} must be >= 0 (the erased square's side; 0: off)")
    _require(
        math.isfinite(d.color_jitter) and d.color_jitter >= 0,
        f"dataset.color_jitter={d.color_jitter} must be a finite number >= 0 (0: off)",
    )
    _require(
        d.subset_seed is None or 0 <= d.subset_seed < 2**32,
        f"dataset.subset_seed={d.subset_seed} must be null (follow seed) or in [0, 2**32) (numpy's range)",
    )
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
        0 <= o.momentum < 1,
        f"optimizer.momentum={o.momentum} must be in [0, 1) (0: plain SGD, e.g. 0.9)",
    )
    _require(
        not o.nesterov or o.momentum > 0,
        f"optimizer.nesterov=true needs optimizer.momentum > 0 (it is {o.momentum}); set a momentum, or "
        "optimizer.nesterov=false",
    )
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
    _require(
        all(math.isfinite(f) and f > 0 for f in lr.factors),
        f"lr_schedule.factors={list(lr.factors)} must all be finite numbers > 0 (cumulative factors of the "
        "base LR, e.g. [0.01,0.0001])",
    )
    _require(
        0 <= lr.min_factor <= 1,
        f"lr_schedule.min_factor={lr.min_factor} must be in [0, 1] (the cosine floor, x base LR)",
    )
    _require(
        lr.warmup_epochs >= 0,
        f"lr_schedule.warmup_epochs={lr.warmup_epochs} must be >= 0 (0: no warm-up)",
    )
    _require(
        math.isfinite(lr.warmup_peak) and lr.warmup_peak > 0,
        f"lr_schedule.warmup_peak={lr.warmup_peak} must be a finite number > 0 (1: warm up to the base LR)",
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
    _check_trainer(cfg)
    _check_optimizer(o)
    check_stage_switches(cfg)
