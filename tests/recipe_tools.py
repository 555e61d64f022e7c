"""What a composed recipe does at a given epoch, read through lt_bench's own code: the LR (``lr_factor``),
the class weights (``schedule_of(...).class_weights``), the weight decay and SAM radius in force
(``LongTailModule._apply_phase_to_optimizer`` on a real optimizer) and the training counts (the profile).

The ``tests/recipes/test_recipes_<family>.py`` files compare these against the authors' values, written out
there with the authors' file each comes from.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from lt_bench.data.profiles import profile_counts
from lt_bench.methods.base import LongTailModule
from lt_bench.optim import build_optimizer, lr_factor
from lt_bench.schedules import Schedule, schedule_of
from lt_bench.startup import check
from tests.helpers import make_config

# the four CIFAR sets every CIFAR recipe runs on (dataset=...)
CIFAR = ("cifar10_lt", "cifar10_step", "cifar100_lt", "cifar100_step")
# training pool per class of the balanced sources the CIFAR recipes profile
POOL = {"cifar10": [5000] * 10, "cifar100": [500] * 100}


def recipe(*overrides: str) -> DictConfig:
    """The composed, validated and resolved config of ``overrides`` (no test shortcuts: full length)."""
    cfg = make_config(*overrides, fast=False)
    check(cfg)  # resolves every interpolation in place
    return cfg


def lr_at(cfg: DictConfig, epoch: int) -> float:
    """The main group's learning rate at 0-based ``epoch``: ``optimizer.lr`` x ``lr_factor``."""
    lr = cfg.lr_schedule
    factor = lr_factor(
        epoch,
        lr.name,
        cfg.trainer.max_epochs,
        warmup_epochs=lr.warmup_epochs,
        milestones=list(lr.milestones),
        factors=list(lr.factors),
        min_factor=lr.min_factor,
        warmup_peak=lr.warmup_peak,
    )
    return cfg.optimizer.lr * factor


def assert_lr(cfg: DictConfig, expected: dict[int, float]) -> None:
    got = {epoch: lr_at(cfg, epoch) for epoch in expected}
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15), got


def schedule(cfg: DictConfig) -> Schedule:
    return schedule_of(cfg.schedule)


def counts(cfg: DictConfig) -> list[int]:
    """Training counts per class of a CIFAR recipe: the profile applied to the balanced pool."""
    d = cfg.dataset
    return profile_counts(d.profile, POOL[d.source], d.imbalance_factor, d.quantity_ratio)


def optimizer_at(cfg: DictConfig, epoch: int) -> dict[str, float]:
    """Weight decay (of the decayed group) and SAM rho in force at ``epoch``, set by the method's own
    phase switch on an optimizer built from the recipe."""
    weight = torch.nn.Parameter(torch.zeros(2, 2))
    optimizer = build_optimizer([{"params": [weight]}], cfg.optimizer)
    module = SimpleNamespace(cfg=cfg, schedule=schedule(cfg), optimizers=lambda: optimizer)
    LongTailModule._apply_phase_to_optimizer(module, epoch)
    group = optimizer.param_groups[0]
    return {"weight_decay": group["weight_decay"], "rho": getattr(optimizer, "rho", None),
            "momentum": group.get("momentum")}  # fmt: skip


def cb_weights(class_counts: list[int], beta: float) -> list[float]:
    """Effective-number weights ``(1 - beta) / (1 - beta^n_j)``, normalised to sum C (Cui et al.)."""
    raw = [(1 - beta) / (1 - beta**n) for n in class_counts]
    return [len(raw) * r / sum(raw) for r in raw]


def power_weights(class_counts: list[int], exponent: float, by_prior: bool = False) -> list[float]:
    """``n_j^-exponent`` (or ``pi_j^-exponent``), normalised to sum C: PPW, DRW's 1/n, ADRW's pi^-nu."""
    total = sum(class_counts)
    raw = [((n / total) if by_prior else n) ** (-exponent) for n in class_counts]
    return [len(raw) * r / sum(raw) for r in raw]


def assert_weights(actual: torch.Tensor | None, expected: list[float] | None) -> None:
    if expected is None:
        assert actual is None
        return
    assert actual is not None
    torch.testing.assert_close(
        actual.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-5, atol=1e-6
    )


def experiment_files(prefix: str, exclude: str | None = None) -> set[str]:
    """The ``conf/experiment`` recipe names starting with ``prefix`` (those starting with ``exclude`` left
    out: another family sharing the prefix)."""
    from tests.helpers import CONF

    names = {p.stem for p in (CONF / "experiment").glob(f"{prefix}*.yaml")}
    return {n for n in names if exclude is None or not n.startswith(exclude)}


def plain(node) -> object:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
