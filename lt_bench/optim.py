"""Optimizers (SGD, AdamW, and SAM around either) and epoch-wise learning-rate factors."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from lt_bench.errors import ConfigError


def lr_factor(
    epoch: int,
    name: str,
    max_epochs: int,
    warmup_epochs: int = 5,
    milestones: Sequence[int] = (),
    factors: Sequence[float] = (),
    min_factor: float = 0.0,
    warmup_peak: float = 1.0,
) -> float:
    """Multiplier of the base LR at 0-based ``epoch``.

    Warm-up follows the reference code bases, which count epochs from 1 inside the formula:
    ``lr * warmup_peak * (E + 1) / warmup`` while ``E < warmup``. With the default ``warmup_peak = 1`` it
    reaches the base LR at its last epoch (kaidic/LDAM-DRW's ``lr * epoch / 5`` over 5 epochs). wang22ti/DDC's
    400-epoch schedule (utils/utils.py) keeps ``lr * epoch / 5`` but over 10 epochs, so it climbs to twice
    the base LR at epoch 10 and drops to it at epoch 11: ``warmup_epochs=10, warmup_peak=2``.
    Step decay multiplies by ``factors[k]`` (cumulative, e.g. 0.01 then 0.0001) from 0-based epoch
    ``milestones[k]`` on, which is the references' ``epoch > 160`` with 1-based epochs. Cosine anneals
    from the end of warm-up to ``max_epochs`` (with no warm-up: ``0.5 (1 + cos(pi E / max_epochs))``).
    """
    if epoch < warmup_epochs:
        return warmup_peak * (epoch + 1) / warmup_epochs
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


class SharpnessAware:
    """Sharpness-aware minimisation (Foret et al.) around the optimizer it is mixed into (SGD, AdamW).

    ``step(closure)`` takes the gradient ``g`` already computed at ``w`` by the closure's first call,
    moves to ``w + e`` with ``e = rho * g / ||g||`` (global L2 norm), recomputes the gradient there with
    a second closure call, restores ``w`` and takes the base optimizer's step with that gradient. Being
    an optimizer with a closure, it works under Lightning's automatic optimisation, checkpoints like its
    base optimizer and keeps its LR in ``param_groups`` for any scheduler. ``rho`` is a plain attribute so
    the schedule can change it at ``schedule.e0``.
    """

    def __init__(self, params: Iterable, rho: float = 0.05, **base_kwargs: Any) -> None:
        super().__init__(params, **base_kwargs)
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

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
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


class SAM(SharpnessAware, torch.optim.SGD):
    """SAM around SGD (``optimizer=sam``, ``optimizer.base=sgd``)."""


class SAMAdamW(SharpnessAware, torch.optim.AdamW):
    """SAM around AdamW (``optimizer=sam optimizer.base=adamw``)."""


# optimizer.name (or optimizer.base under SAM) -> (plain class, SAM class)
_BASES: dict[str, tuple[type[torch.optim.Optimizer], type[torch.optim.Optimizer]]] = {
    "sgd": (torch.optim.SGD, SAM),
    "adamw": (torch.optim.AdamW, SAMAdamW),
}


def decay_groups(param_groups: list[dict], decay_norm_and_bias: bool) -> list[dict]:
    """The method's param groups as the optimizer gets them, each tagged ``method_group`` (its index in
    ``param_groups``, which picks its LR factor).

    With ``decay_norm_and_bias=False`` each group's 1-D tensors (biases and the scales and shifts of
    normalisation layers, the rule of timm and of the DeiT/ConvNeXt AdamW recipes) move to a twin group
    with ``weight_decay = 0`` and ``decay_follows_phase = False``, so that ``optimizer.weight_decay_after``
    leaves them undecayed too. The twin keeps every other key of its group (lr, ...); empty groups are
    dropped.
    """
    out: list[dict] = []
    for index, group in enumerate(param_groups):
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        if decay_norm_and_bias:
            out.append({**group, "params": params, "method_group": index})
            continue
        decayed = [p for p in params if p.ndim > 1]
        flat = [p for p in params if p.ndim <= 1]
        if decayed:
            out.append({**group, "params": decayed, "method_group": index})
        if flat:
            no_decay = {"weight_decay": 0.0, "decay_follows_phase": False, "method_group": index}
            out.append({**group, "params": flat, **no_decay})
    return out


def build_optimizer(param_groups: list[dict], o: Any) -> torch.optim.Optimizer:
    """The optimizer ``o`` (an ``optimizer`` config node: ``lt_bench.config.OptimizerConfig``'s keys, typed
    loosely so that this module stays below the configuration layer) describes, over :func:`decay_groups`.

    SGD takes ``momentum``, ``nesterov``; AdamW ``betas``, ``eps`` and decays decoupled from the gradient
    (``w <- w - lr * weight_decay * w``, Loshchilov & Hutter), as ``torch.optim.AdamW`` does; ``sam`` wraps
    the one ``o.base`` names.
    """
    base = o.base if o.name == "sam" else o.name
    if base not in _BASES or o.name not in (*_BASES, "sam"):
        raise ConfigError(
            f"optimizer={o.name!r} (base {base!r}) is not known; choose optimizer=sgd|adamw|sam, "
            "and optimizer.base=sgd|adamw under sam"
        )
    if base == "adamw":
        kwargs: dict[str, Any] = dict(lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    else:
        kwargs = dict(lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)
    plain, sharpness_aware = _BASES[base]
    groups = decay_groups(param_groups, o.decay_norm_and_bias)
    if o.name == "sam":
        return sharpness_aware(groups, rho=o.rho, **kwargs)
    return plain(groups, **kwargs)
