"""Long-tail metrics: one confusion-matrix state; every figure is derived from it."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lt_bench.errors import ConfigError

SCALARS = ("top1", "balanced_acc", "many", "medium", "few", "gmean")


def class_groups(class_counts: list[int], many_threshold: int, few_threshold: int, group_by: str) -> dict:
    """Class indices of the many / medium / few groups by training count."""
    C = len(class_counts)
    if group_by == "thirds":
        order = sorted(range(C), key=lambda j: -class_counts[j])
        a, b = round(C / 3), round(2 * C / 3)
        return {"many": order[:a], "medium": order[a:b], "few": order[b:]}
    return {
        "many": [j for j in range(C) if class_counts[j] > many_threshold],
        "medium": [j for j in range(C) if few_threshold <= class_counts[j] <= many_threshold],
        "few": [j for j in range(C) if class_counts[j] < few_threshold],
    }


class LongTailMetrics(Metric):
    full_state_update = False

    def __init__(
        self,
        num_classes: int,
        class_counts: list[int],
        many_threshold: int = 100,
        few_threshold: int = 20,
        group_by: str = "threshold",
    ) -> None:
        super().__init__()
        if len(class_counts) != num_classes:
            raise ConfigError(f"{len(class_counts)} class counts given for {num_classes} classes")
        if few_threshold > many_threshold:
            raise ConfigError(f"few_threshold ({few_threshold}) must be <= many_threshold ({many_threshold})")
        if group_by not in ("threshold", "thirds"):
            raise ConfigError(f"group_by={group_by!r}; choose threshold or thirds")
        self.num_classes = num_classes
        self.groups = class_groups(list(class_counts), many_threshold, few_threshold, group_by)
        self.add_state(
            "confusion", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, preds: Tensor, targets: Tensor) -> None:
        if preds.ndim == 2:
            preds = preds.argmax(1)
        index = targets.long() * self.num_classes + preds.long()
        self.confusion += torch.bincount(index, minlength=self.num_classes**2).view(self.num_classes, -1)

    def compute(self) -> dict[str, Any]:
        cm = self.confusion.double().cpu()
        support = cm.sum(1)
        recall = cm.diag() / support.clamp_min(1)
        present = support > 0
        r = recall[present]
        n = int(cm.sum())

        def group_mean(members: list[int]) -> float | None:
            vals = [float(recall[j]) for j in members if present[j]]
            return sum(vals) / len(vals) if vals else None

        gmean = 0.0 if (r == 0).any() or len(r) == 0 else math.exp(float(r.log().mean()))
        return {
            "top1": float(cm.diag().sum() / max(n, 1)),
            "balanced_acc": float(r.mean()) if len(r) else 0.0,
            "many": group_mean(self.groups["many"]),
            "medium": group_mean(self.groups["medium"]),
            "few": group_mean(self.groups["few"]),
            "gmean": gmean,
            "per_class": [float(recall[j]) if present[j] else None for j in range(self.num_classes)],
            "n": n,
            "confusion": self.confusion.cpu().tolist(),
        }


def scalar_metrics(result: dict[str, Any]) -> dict[str, float]:
    return {k: float(result[k]) for k in SCALARS if result.get(k) is not None}
