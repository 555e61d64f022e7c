"""Epoch orders for training and shards for evaluation, DDP-aware by construction.

A training order is a pure function of ``(labels, seed, epoch, class probabilities)``, drawn with a
CPU generator seeded from ``(seed, epoch)`` only. Every process therefore computes the same GLOBAL
index list, cuts it into the same global batches and takes its strided slice of each
(:func:`rank_slice`): the union over ranks of step k is exactly global batch k, so 1 and N processes
see the same data, and a run resumed at epoch E draws the epochs an uninterrupted run would.

Class probabilities (class-aware sampling, ``p_j`` per class, then uniform within the class):

- :func:`class_probabilities`: ``p_j ∝ n_j^q`` (q = 1 instance, q = 0 class-balanced, q = 1/2
  square-root; PPS's paper form with ``q(E) = 1 - delta * p(E)``).
- :func:`mixture_probabilities`: ``(1 - f) n_j / N + f / C`` (progressive-balanced with
  ``f = E / E_total``; PPS in the authors' code with ``f = delta * p(E)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

_MASK64 = (1 << 64) - 1


def _counts_tensor(class_counts: Sequence[int] | Tensor) -> Tensor:
    counts = torch.as_tensor(class_counts, dtype=torch.float64).flatten()
    if counts.numel() == 0 or bool((counts < 0).any()) or not bool((counts > 0).any()):
        raise ValueError(f"class_counts must be non-negative with at least one non-empty class, got {counts}")
    return counts


def class_probabilities(class_counts: Sequence[int] | Tensor, q: float) -> Tensor:
    """Per-class sampling probabilities ``p_j = n_j^q / sum_k n_k^q`` (float64, sums to 1).

    Classes with no training samples get probability 0 for every q (``0 ** 0`` would otherwise make
    an empty class as likely as any other under class-balanced sampling).
    """
    counts = _counts_tensor(class_counts)
    present = counts > 0
    weights = torch.where(present, counts.clamp_min(1.0).pow(q), torch.zeros_like(counts))
    return weights / weights.sum()


def mixture_probabilities(class_counts: Sequence[int] | Tensor, f: float) -> Tensor:
    """Per-class probabilities ``(1 - f) n_j / N + f / C`` (float64, sums to 1), ``f`` in [0, 1].

    ``f = 0`` is instance sampling, ``f = 1`` class-balanced. ``C`` counts the non-empty classes
    only, so an empty class is never drawn.
    """
    if not 0.0 <= f <= 1.0:
        raise ValueError(f"mixture fraction f={f} must be in [0, 1]")
    counts = _counts_tensor(class_counts)
    present = counts > 0
    balanced = present.double() / present.sum()
    return (1.0 - f) * counts / counts.sum() + f * balanced


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU generator seeded from ``(seed, epoch)`` alone.

    The two numbers go through a 64-bit avalanche mix, so neighbouring seeds and epochs give
    unrelated streams (seed s at epoch e+1 is not seed s+1 at epoch e).
    """
    mixed = _splitmix64((_splitmix64(seed & _MASK64) ^ (epoch & _MASK64)) & _MASK64)
    # manual_seed takes a non-negative value below 2**63 without complaint on every backend
    return torch.Generator(device="cpu").manual_seed(mixed & ((1 << 63) - 1))


def draw_epoch(labels: Tensor, seed: int, epoch: int, class_probs: Tensor | None) -> Tensor:
    """The global order of one training epoch: ``N = len(labels)`` indices into the training set.

    - ``class_probs is None``: a random permutation of ``range(N)`` (instance sampling without
      replacement, every sample once per epoch).
    - otherwise: N draws with replacement, each picking class j with probability ``class_probs[j]``
      and then a sample of that class uniformly, i.e. sample i has probability ``p_{y_i} / n_{y_i}``.
      Drawn in two stages (class, then position inside the class), which is exact and has no limit on
      the number of samples.

    ``labels`` must live on the CPU (the order is computed there so every rank agrees bit for bit).
    """
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D, got shape {tuple(labels.shape)}")
    labels = labels.cpu().long()
    n = labels.numel()
    g = epoch_generator(seed, epoch)
    if class_probs is None:
        return torch.randperm(n, generator=g)
    counts = torch.bincount(labels, minlength=class_probs.numel())
    probs = class_probs.detach().cpu().double().flatten()
    if probs.numel() != counts.numel():
        raise ValueError(f"class_probs has {probs.numel()} entries but labels hold {counts.numel()} classes")
    if bool((probs < 0).any()) or not float(probs.sum()) > 0:
        raise ValueError("class_probs must be non-negative and not all zero")
    if bool(((probs > 0) & (counts == 0)).any()):
        raise ValueError("class_probs gives a positive probability to a class with no training samples")
    by_class = torch.argsort(labels, stable=True)  # indices grouped by class, class 0 first
    starts = torch.cumsum(counts, 0) - counts
    cls = torch.multinomial(probs, n, replacement=True, generator=g)
    u = torch.rand(n, generator=g, dtype=torch.float64)
    within = (u * counts[cls]).long().clamp_max(counts[cls] - 1)
    return by_class[starts[cls] + within]


def global_batches(order: Tensor, batch_size: int, drop_last: bool, *, world_size: int = 1) -> list[Tensor]:
    """Cut an epoch order into global batches of ``batch_size`` (the last may be smaller).

    ``drop_last`` drops a final partial batch. With ``world_size > 1`` a final batch smaller than
    ``world_size`` is dropped as well: some rank would get no sample of it, and every rank must take
    the same number of steps (a collective waiting for a rank that has stopped hangs).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    batches = list(order.split(batch_size))
    if batches and ((drop_last and len(batches[-1]) < batch_size) or len(batches[-1]) < world_size):
        batches.pop()
    return batches


def rank_slice(batch: Tensor, rank: int, world_size: int) -> Tensor:
    """This rank's part of a global batch: ``batch[rank::world_size]``.

    Strided rather than contiguous, so the ranks' sizes differ by at most one and their union is
    exactly the global batch.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    return batch[rank::world_size]


def eval_shard(n: int, rank: int, world_size: int) -> Tensor:
    """This rank's evaluation indices ``arange(n)[rank::world_size]``.

    The shards partition ``range(n)``: every sample is evaluated exactly once, with no padding
    duplicates, so a summed confusion matrix counts ``n`` samples on any number of processes.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must be in [0, world_size={world_size})")
    return torch.arange(n)[rank::world_size]
