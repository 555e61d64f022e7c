"""Method registry: ``method=NAME`` selects the LightningModule class registered as NAME in METHODS."""

from __future__ import annotations

from omegaconf import DictConfig

from lt_bench.data.datamodule import DataInfo
from lt_bench.methods import arconvl, crt, lws, phase, ride, standard  # noqa: F401  (importing them registers them)
from lt_bench.methods.base import LongTailModule
from lt_bench.methods.registry import METHODS
from lt_bench.schedules import Schedule


def check_method_config(cfg: DictConfig) -> None:
    """The chosen method's own checks (:meth:`LongTailModule.check_config`), before any data are read."""
    METHODS.get(cfg.method.name).check_config(cfg)


def build_method(cfg: DictConfig, info: DataInfo, schedule: Schedule) -> LongTailModule:
    """The ``method=`` module for data ``info``, driven by the run's one ``schedule``.

    The method's checks run again here (cheap), so a module built outside an entry point (a notebook, a
    test, a benchmark) is refused exactly as ``python -m lt_bench`` refuses it."""
    method = METHODS.get(cfg.method.name)
    method.check_config(cfg)
    return method(cfg, info, schedule)


__all__ = ["METHODS", "build_method", "check_method_config"]
