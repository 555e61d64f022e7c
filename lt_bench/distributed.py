"""DDP with a bounded wait: a rank that stops answering ends the run instead of holding the others forever.

Every collective (the gradient all-reduce, the per-step stop agreement of :mod:`lt_bench.signals`, the
barrier after a checkpoint, the start-up rendezvous) waits at most :func:`collective_timeout` seconds for
the other ranks; then it raises on the ranks that wait, and the run ends.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import torch.distributed
from lightning.pytorch.strategies import DDPStrategy, Strategy, StrategyRegistry

from lt_bench.errors import ConfigError

TIMEOUT_ENV = "LT_BENCH_COLLECTIVE_TIMEOUT"
# Long enough for the legitimate gaps between two collectives (rank 0 writing a checkpoint to slow
# storage while the others wait at the barrier; the other ranks building the data before the
# rendezvous), short enough that a stuck rank costs minutes, not Lightning's default 30.
DEFAULT_TIMEOUT_S = 600.0


def seconds_from_env(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive number of seconds from environment variable ``name`` (``default`` when unset)."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"{name}={raw!r} must be a positive number of seconds (default {default:g})")
    return seconds


def collective_timeout(env: Mapping[str, str]) -> float:
    """Seconds one collective may wait for the other ranks: ``LT_BENCH_COLLECTIVE_TIMEOUT`` or 600."""
    return seconds_from_env(env, TIMEOUT_ENV, DEFAULT_TIMEOUT_S)


def strategy_of(trainer_cfg: Any, env: Mapping[str, str] = os.environ) -> str | Strategy:
    """``trainer.strategy`` for ``L.Trainer``: every ``ddp*`` name becomes its DDP strategy with the
    collective timeout; other names (``auto``, ``fsdp``, ...) pass through as Lightning reads them."""
    name = trainer_cfg.strategy
    if not isinstance(name, str) or name not in StrategyRegistry:
        return name
    entry = StrategyRegistry[name]
    if entry["strategy"] is not DDPStrategy:
        return name
    return DDPStrategy(**entry["init_params"], timeout=timedelta(seconds=collective_timeout(env)))


# what gloo raises (a plain RuntimeError) on a rank whose peer never joined a collective, or went away
# in the middle of one; torch's own DistError covers the rendezvous and the store
_LOST_PEER = ("Timed out waiting", "Connection closed by peer", "Connection reset by peer")


def lost_rank(err: BaseException, world_size: int) -> str | None:
    """Why ``err`` means another rank stopped answering or died (its message's first line), or None."""
    text = str(err)
    lost = isinstance(err, torch.distributed.DistError) or (
        isinstance(err, RuntimeError) and any(m in text for m in _LOST_PEER)
    )
    if world_size > 1 and lost:
        return text.strip().splitlines()[0]
    return None
