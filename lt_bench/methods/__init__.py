"""Method registry: ``method=NAME`` selects the LightningModule class."""

from __future__ import annotations

from omegaconf import DictConfig

from lt_bench.data.datamodule import DataInfo
from lt_bench.errors import ConfigError
from lt_bench.methods.arconvl import ARConvLMethod
from lt_bench.methods.base import LongTailModule
from lt_bench.methods.crt import ClassifierRetraining
from lt_bench.methods.phase import PhaseMethod
from lt_bench.methods.standard import StandardMethod

METHODS: dict[str, type[LongTailModule]] = {
    "standard": StandardMethod,
    "crt": ClassifierRetraining,
    "phase": PhaseMethod,
    "arconvl": ARConvLMethod,
    # compositions of a loss and a schedule: the standard module, named for the paper
    "ppl_cri": StandardMethod,
    "kps_ga": StandardMethod,
    "vs_tla_adrw": StandardMethod,
}


def build_method(cfg: DictConfig, info: DataInfo) -> LongTailModule:
    name = cfg.method.name
    if name not in METHODS:
        raise ConfigError(f"method={name!r} is not known; choose one of: {', '.join(sorted(METHODS))}")
    return METHODS[name](cfg, info)
