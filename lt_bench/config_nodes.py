"""Plain helpers over composed config nodes and override lists, shared by the run, its checkpoints, its
loggers and the report: which keys are execution-only, and what a run's *setting* is.

A leaf: it imports nothing of lt_bench, so every layer can use it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
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


def canonical(value: Any) -> str:
    """One spelling per value, so ``5``, ``5.0`` and ``"5"`` from overrides and configs group together."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            return text[1:-1]  # a quoted override value is the string itself
        for number in (int, float):  # float() also reads 1e-4, which YAML 1.1 would keep as text
            try:
                return canonical(number(text))
            except ValueError:
                pass
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered
        return "null" if lowered in ("null", "none", "~") else text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, dict):
        # a config group node (e.g. ``loss``) is known by its option name
        return str(value["name"]) if "name" in value else json.dumps(value, sort_keys=True)
    if value is None:
        return "null"
    return str(value)


def parse_overrides(lines: Sequence[str]) -> dict[str, str]:
    """Hydra override strings -> ``{key: value}`` in command-line order.

    ``+key=v`` and ``++key=v`` add or force a key and count as ``key``; deletions (``~key``) carry no value
    and are skipped; ``hydra.*`` overrides are bookkeeping, not configuration.
    """
    parsed: dict[str, str] = {}
    for line in lines:
        text = str(line).strip()
        if not text or text.startswith("~") or "=" not in text:
            continue
        key, value = text.split("=", 1)
        key = key.lstrip("+").strip()
        if key.startswith("hydra.") or key.startswith("hydra/"):
            continue
        parsed[key] = value.strip()
    return parsed


# The seed is what we average over; the execution-only keys (is_operational) never define a setting either.
NOT_SWEPT = ("seed",)


def defines_setting(key: str) -> bool:
    """Whether an override of ``key`` changes the science: not the seed, not an execution-only key."""
    return key not in NOT_SWEPT and not is_operational(key)


def setting_of(overrides: Sequence[str] | Mapping[str, str]) -> tuple[str, ...]:
    """The setting of a run: its ``key=value`` overrides that change the science, sorted by key, each value
    in one spelling (:func:`canonical`).

    ``overrides`` is Hydra's override list (``["loss=la", "seed=1", "+x=2", "logger=wandb"]``, as in
    ``.hydra/overrides.yaml`` or ``HydraConfig.get().overrides.task``) or an already parsed
    ``{key: value}``. ``seed``, the execution-only keys and deletions (``~key``) are dropped, ``+``/``++``
    prefixes ignored, so every seed of a setting, and a resumed or re-logged run, give the same tuple.
    """
    parsed = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
    return tuple(f"{k}={canonical(v)}" for k, v in sorted(parsed.items()) if defines_setting(k))


def setting_name(overrides: Sequence[str] | Mapping[str, str]) -> str:
    """:func:`setting_of` as one string, ``"key=value, key=value"``; ``"defaults"`` when nothing changes the
    science."""
    return ", ".join(setting_of(overrides)) or "defaults"
