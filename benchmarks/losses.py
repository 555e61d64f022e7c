"""LOSS: forward + backward of every loss in ``conf/loss`` on 128 x 100 logits, relative to CE, on its own
and as a share of a measured training step."""

from __future__ import annotations

import time

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from benchmarks.common import Settings, long_tailed_counts, synchronize
from lt_bench.conf import CONF_DIR
from lt_bench.config_nodes import params_of
from lt_bench.losses import build_loss
from lt_bench.losses.prototype import PrototypeRegularised
from lt_bench.methods.base import LOSS_USAGE_KEYS

LOSS_BATCH, LOSS_CLASSES = 128, 100


def conf_losses() -> list[tuple[str, DictConfig]]:
    """Every ``conf/loss`` option, with its ``after_e0`` parameters applied (vs_tla differs from vs there)."""
    losses = []
    for path in sorted((CONF_DIR / "loss").glob("*.yaml")):
        node = OmegaConf.load(path)
        after = node.get("after_e0") or {}
        losses.append((path.stem, OmegaConf.merge(node, after)))
    return losses


def time_loss(loss_fn: nn.Module, logits: Tensor, targets: Tensor, reps: int) -> float:
    """Seconds per forward + backward of ``loss_fn`` (the gradient reaches the logits)."""
    synchronize(logits.device)
    start = time.perf_counter()
    for _ in range(reps):
        logits.grad = None
        loss_fn(logits, targets).backward()
    synchronize(logits.device)
    return (time.perf_counter() - start) / reps


def loss_costs(s: Settings) -> dict[str, float]:
    """Seconds per forward + backward of each loss: the fastest of many short rounds, the losses interleaved
    within each round. A busy machine only ever adds time to these sub-millisecond timings, so the
    minimum estimates the cost itself where a median would mostly measure the load."""
    counts = long_tailed_counts(10_847, LOSS_CLASSES)  # CIFAR-100-LT IF 100's size
    g = torch.Generator().manual_seed(0)
    targets = torch.randint(0, LOSS_CLASSES, (LOSS_BATCH,), generator=g).to(s.device)
    linear = torch.randn(LOSS_BATCH, LOSS_CLASSES, generator=g).to(s.device).requires_grad_()
    cosine = (torch.rand(LOSS_BATCH, LOSS_CLASSES, generator=g) * 2 - 1).to(s.device).requires_grad_()
    cases = []
    for name, node in conf_losses():
        loss_fn = build_loss(node.name, counts, **params_of(node, drop=LOSS_USAGE_KEYS)).to(s.device)
        if node.get("prototype_weight"):  # GCPL: the loss plus its prototype term (on any logits here)
            loss_fn = PrototypeRegularised(loss_fn, node.prototype_weight)
        cases.append((name, loss_fn, cosine if node.get("head") == "cosine" else linear))
    times: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _, loss_fn, logits in cases:  # warm-up
        time_loss(loss_fn, logits, targets, 2)
    for _ in range(s.loss_rounds):
        for name, loss_fn, logits in cases:
            times[name].append(time_loss(loss_fn, logits, targets, s.loss_reps))
    return {name: min(t) for name, t in times.items()}


def report_losses(costs: dict[str, float], step_seconds: float) -> None:
    ce = costs["ce"]
    print(
        f"LOSS forward + backward on {LOSS_BATCH} x {LOSS_CLASSES} logits (CIFAR-100-LT IF 100 counts); "
        f"'in a step': 1 + (loss - CE) / one lt_bench step ({step_seconds * 1e3:.0f} ms)"
    )
    for name, seconds in costs.items():
        in_step = 1 + (seconds - ce) / step_seconds
        flag = "  > 1.1x CE on its own" if seconds > 1.1 * ce else ""
        cost = f"{seconds * 1e6:8.1f} us  {seconds / ce:5.2f}x CE"
        print(f"LOSS {name:<7} {cost}  {in_step:.4f}x in a step{flag}")
