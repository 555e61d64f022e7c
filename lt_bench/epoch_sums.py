"""Figures of an epoch's training steps, summed on the device and read once at the epoch's end."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

EPOCH_SUMS_KEY = "lt_bench_epoch_sums"


class EpochSums:
    """Figures of the epoch's training steps, summed on the device weighted by batch size, read as means
    once at the epoch's end.

    Two device ops per step instead of ``self.log``, whose bookkeeping costs ~0.6 ms of host time per call
    (a few percent of a GPU step; for ARConvL's four loss terms ~1.1 ms on a 2-core CPU host, more than
    their own forward and backward); the means are the figures ``self.log(on_epoch=True)`` gave. A group
    (``names``) is one stacked tensor: one op for all its figures. The sums travel in every checkpoint
    (:meth:`lt_bench.methods.base.LongTailModule.on_save_checkpoint`), so an epoch resumed midway
    averages over all its batches.
    """

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.samples: dict[str, int] = {}
        self.names: dict[str, tuple[str, ...]] = {}

    def add(self, key: str, value: Tensor, n: int, names: tuple[str, ...] | None = None) -> None:
        """Add ``value`` (a scalar, or one figure per entry of ``names``: logged as ``key + name``) for a
        batch of ``n`` samples."""
        weighted = value.detach().float() * n
        self.sums[key] = self.sums[key] + weighted if key in self.sums else weighted
        self.samples[key] = self.samples.get(key, 0) + n
        if names is not None:
            self.names[key] = names

    def take(self) -> dict[str, Tensor]:
        """The epoch's means by logged name, and a fresh start for the next epoch."""
        means: dict[str, Tensor] = {}
        for key, total in self.sums.items():
            mean = total / self.samples[key]
            if key in self.names:
                means.update({key + name: m for name, m in zip(self.names[key], mean.unbind(), strict=True)})
            else:
                means[key] = mean
        self.sums, self.samples = {}, {}
        return means

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "samples": dict(self.samples), "names": dict(self.names)}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.sums = {k: v.to(device) for k, v in state.get("sums", {}).items()}
        self.samples = dict(state.get("samples", {}))
        self.names = {k: tuple(v) for k, v in state.get("names", {}).items()}
