"""Optimizers (SGD, SAM) and epoch-wise learning-rate factors."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor


def lr_factor(
    epoch: int,
    name: str,
    max_epochs: int,
    warmup_epochs: int = 5,
    milestones: Sequence[int] = (),
    factors: Sequence[float] = (),
    min_factor: float = 0.0,
) -> float:
    """Multiplier of the base LR at 0-based ``epoch``.

    Warm-up follows the reference code bases, which count epochs from 1 inside the formula:
    ``lr * (E + 1) / warmup`` while ``E < warmup``. Step decay multiplies by ``factors[k]`` (cumulative,
    e.g. 0.01 then 0.0001) from 0-based epoch ``milestones[k]`` on, which is the references'
    ``epoch > 160`` with 1-based epochs. Cosine anneals from the end of warm-up to ``max_epochs``.
    """
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    if name == "step":
        factor = 1.0
        for milestone, f in zip(milestones, factors, strict=True):
            if epoch >= milestone:
                factor = f
        return factor
    if name == "cosine":
        span = max(1, max_epochs - warmup_epochs)
        t = min(1.0, (epoch - warmup_epochs) / span)
        return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


class SAM(torch.optim.SGD):
    """Sharpness-aware minimisation around SGD (Foret et al.).

    ``step(closure)`` takes the gradient ``g`` already computed at ``w`` by the closure's first call,
    moves to ``w + e`` with ``e = rho * g / ||g||`` (global L2 norm), recomputes the gradient there with
    a second closure call, restores ``w`` and takes the SGD step with that gradient. Being an optimizer
    with a closure, it works under Lightning's automatic optimisation, checkpoints like SGD and keeps
    its LR in ``param_groups`` for any scheduler. ``rho`` is a plain attribute so the schedule can change
    it at ``schedule.e0``.
    """

    def __init__(self, params: Iterable, rho: float = 0.05, **sgd_kwargs: float | bool) -> None:
        super().__init__(params, **sgd_kwargs)
        self.rho = rho

    @torch.no_grad()
    def _perturbation(self) -> list[tuple[Tensor, Tensor]]:
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return []
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        scale = self.rho / (norm + 1e-12)
        moved = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                e = p.grad * scale
                p.add_(e)
                moved.append((p, e))
        return moved

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:  # type: ignore[override]
        if closure is None:
            raise RuntimeError("SAM needs a closure that recomputes the loss and gradients")
        with torch.enable_grad():
            loss = closure()
        if self.rho > 0:
            moved = self._perturbation()
            with torch.enable_grad():
                closure()
            with torch.no_grad():
                for p, e in moved:
                    p.sub_(e)
        super().step()
        return loss


def build_optimizer(
    param_groups: list[dict],
    name: str,
    lr: float,
    momentum: float,
    weight_decay: float,
    nesterov: bool,
    rho: float = 0.05,
) -> torch.optim.Optimizer:
    kwargs = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if name == "sam":
        return SAM(param_groups, rho=rho, **kwargs)
    return torch.optim.SGD(param_groups, **kwargs)
