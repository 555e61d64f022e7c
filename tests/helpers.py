"""Small constructors shared by the loss tests: float64 logits, labels, and a tolerant comparison."""

import math

import torch


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def y(*labels: int) -> torch.Tensor:
    return torch.tensor(labels)


def approx(value: torch.Tensor, expected: float, tol: float = 1e-6) -> None:
    assert math.isclose(value.item(), expected, rel_tol=tol, abs_tol=tol), (value.item(), expected)
