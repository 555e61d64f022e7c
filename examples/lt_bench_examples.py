"""Worked examples of extending lt_bench from your own module, without editing the package.

Run them with (from any directory; examples/ on PYTHONPATH, its conf/ on Hydra's search path)::

    PYTHONPATH=examples python -m lt_bench plugins=[lt_bench_examples] \
        'hydra.searchpath=[file://examples/conf]' loss=poly1 dataset=npz_example dataset.path=my.npz

- ``loss=poly1``: Poly-1 (Leng et al., "PolyLoss", ICLR 2022), ``CE + epsilon (1 - p_y)``.
- ``dataset=npz_example``: any ``.npz`` with ``train_images`` [N, C, H, W] or [N, H, W] uint8,
  ``train_labels`` [N], ``test_images``, ``test_labels``; the long-tail profile is applied on top.
- ``+posthoc.tau_norm_nobias=[...]`` (``python -m lt_bench.eval ckpt=RUN plugins=[lt_bench_examples] ...``):
  tau-normalisation with the head's bias dropped, as Kang et al.'s released notebook computes it
  (``features @ (w / ||w||^tau).T``); lt_bench's ``tau_norm`` keeps the bias so that tau = 0 is the model.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lt_bench.data.sources import SOURCES, ImageSource, TensorSplit
from lt_bench.errors import DataError
from lt_bench.losses.base import LOSSES, LogitLoss, Real
from lt_bench.posthoc import POSTHOC, Predictions, adjustment, tau_normalised_logits


@LOSSES.register("poly1")
class Poly1Loss(LogitLoss):
    """``l_i = CE(z_i, y_i) + epsilon (1 - p_{y_i})``; epsilon = 0 is cross-entropy."""

    def __init__(self, class_counts, *, epsilon: Annotated[float, Real(low=-1.0)] = 1.0) -> None:
        super().__init__()
        self.epsilon = epsilon

    def per_sample(self, logits: Tensor, targets: Tensor) -> Tensor:
        ce = F.cross_entropy(logits, targets, reduction="none")
        p_y = torch.exp(-ce)
        return ce + self.epsilon * (1.0 - p_y)


def _split(data: np.lib.npyio.NpzFile, name: str) -> TensorSplit:
    images = torch.from_numpy(np.ascontiguousarray(data[f"{name}_images"]))
    if images.dtype != torch.uint8:
        raise DataError(f"{name}_images must be uint8 (0-255), got {images.dtype}")
    if images.dim() == 3:  # grey images without a channel axis
        images = images[:, None]
    return TensorSplit(images, torch.from_numpy(data[f"{name}_labels"]).long())


@SOURCES.register("npz")
def load_npz(path: str) -> ImageSource:
    """``dataset.path``: the .npz file (this source's own key, declared by this parameter)."""
    try:
        data = np.load(path)
    except OSError as err:
        raise DataError(f"dataset.path={path}: cannot read it ({err}); point it at an .npz file") from None
    train, test = _split(data, "train"), _split(data, "test")
    scaled = train.images.float() / 255
    dims = [0, 2, 3]
    mean = tuple(scaled.mean(dim=dims).tolist())
    std = tuple(scaled.std(dim=dims).clamp_min(1e-3).tolist())
    num_classes = int(max(train.labels.max(), test.labels.max())) + 1
    return ImageSource(train=train, test=test, num_classes=num_classes, mean=mean, std=std)


@POSTHOC.register("tau_norm_nobias")
@adjustment(needs=("features", "head_weight"), heads=("linear",))
def tau_norm_without_bias(outputs: Predictions, tau: float) -> Tensor:
    """``f . w_j / ||w_j||^tau`` (no bias), scaled as the model's logits are."""
    logits = tau_normalised_logits(outputs.features, outputs.head_weight, None, tau)
    return logits * outputs.logit_scale
