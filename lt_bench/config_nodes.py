"""Plain helpers over composed config nodes, shared by the run, its checkpoints, its loggers and the report.

A leaf: it imports nothing of lt_bench, so every layer can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Keys that change how a run is executed or reported, not what it computes: a resume may change them
# (lt_bench.checkpointing) and the report does not group runs by them (lt_bench.report). An entry ending
# in "." covers a whole node and the key that picks its option (``logger.`` covers ``logger=wandb``).
OPERATIONAL_KEYS = (
    "ckpt_path",
    "overwrite",
    "print_table",
    "print_config",
    "hydra.",
    "logger.",
    "dataset.root",
    "dataset.split_dir",
    "dataset.num_workers",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.strategy",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "trainer.channels_last",
    "trainer.compile",
)


def is_operational(key: str) -> bool:
    """Whether the dotted ``key`` is one of :data:`OPERATIONAL_KEYS` or lies under one."""
    return any(key == k.rstrip(".") or key.startswith(k.rstrip(".") + ".") for k in OPERATIONAL_KEYS)


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
