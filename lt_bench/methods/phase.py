"""PHASE: difficulty-aware weighting (stage 1), then multi-scale reweighting of the classifier (stage 2).

Stage 1 (epochs before ``schedule.e0``) trains the whole network with the configured loss — the
asymmetric loss with label smoothing (``loss=asl``) for DAW. At ``schedule.e0`` the backbone is frozen
(parameters and BatchNorm statistics), features of the un-augmented training set are extracted once
and :func:`msr_weights` gives every training sample a weight; the head then trains with per-sample
weighted cross-entropy until the end.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor

from lt_bench.data.datamodule import DataInfo
from lt_bench.errors import ConfigError
from lt_bench.methods.registry import METHODS
from lt_bench.methods.two_stage import TwoStageModule
from lt_bench.schedules import Schedule

LOCAL_FORMS = ("mapped", "raw")


def global_weights(class_counts: Tensor, gamma: float) -> Tensor:
    """``w_n_j = pi_j^-gamma``, normalised to mean 1 over classes."""
    pi = class_counts.double() / class_counts.sum()
    w = pi.pow(-gamma)
    return w / w.mean()


def mean_unit_similarity(features: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``s_i = (1/n_j) sum_{k in class j} u_i . u_k`` with ``u = (phi - mu_j) / ||phi - mu_j||``.

    Exact in O(N d): the sum over k is the dot product with the class's sum of unit vectors, so the
    O(sum_j n_j^2 d) pairwise similarity matrix is never formed.
    """
    f = features.double()
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).double()
    centres = torch.zeros(num_classes, f.shape[1], dtype=f.dtype, device=f.device).index_add_(0, labels, f)
    centres /= counts[:, None]
    u = F.normalize(f - centres[labels], dim=1)
    unit_sums = torch.zeros_like(centres).index_add_(0, labels, u)
    return (u * unit_sums[labels]).sum(1) / counts[labels]


def local_weights(similarity: Tensor, labels: Tensor, num_classes: int, form: str = "mapped") -> Tensor:
    """Intra-class weights from mean similarity.

    ``mapped`` (default): the paper's ``1/s`` is undefined for ``s <= 0``, which is common in high
    dimension, so ``s~ = (1 + s)/2`` in [0, 1], ``w = 1 / max(s~, 1e-3)``, normalised to mean 1 within each
    class (the local term redistributes weight inside a class; the global term sets class totals).
    ``raw``: the paper's ``w = 1/s`` with ``s`` clamped to at least 1e-3, not normalised.
    """
    if form == "raw":
        return 1.0 / similarity.clamp_min(1e-3)
    if form != "mapped":
        raise ConfigError(f"method.local_form={form!r} is not known; choose one of: {', '.join(LOCAL_FORMS)}")
    w = 1.0 / ((1.0 + similarity) / 2).clamp_min(1e-3)
    sums = torch.zeros(num_classes, dtype=w.dtype, device=w.device).index_add_(0, labels, w)
    counts = torch.bincount(labels, minlength=num_classes).clamp_min(1).to(w.dtype)
    return w / (sums / counts)[labels]


def msr_weights(
    features: Tensor,
    labels: Tensor,
    class_counts: Tensor | list[int],
    alpha: float = 0.8,
    gamma: float = 1.0,
    local_form: str = "mapped",
) -> Tensor:
    """Multi-scale reweighting: ``w_i = alpha w_n[y_i] + (1 - alpha) w_e_i`` for every training sample."""
    counts = torch.as_tensor(class_counts, device=features.device)
    num_classes = len(counts)
    similarity = mean_unit_similarity(features, labels, num_classes)
    w_local = local_weights(similarity, labels, num_classes, local_form)
    w_global = global_weights(counts, gamma).to(w_local.device)[labels]
    return (alpha * w_global + (1 - alpha) * w_local).float()


@METHODS.register("phase")
class PhaseMethod(TwoStageModule):
    """``method=phase``: DAW (``loss=asl``) on the whole network, then MSR-weighted CE on the head."""

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        super().check_config(cfg)
        m = cfg.method
        if not 0 <= m.alpha <= 1:
            raise ConfigError(f"method.alpha={m.alpha} must be in [0, 1] (0.8 in the paper)")
        if m.local_form not in LOCAL_FORMS:
            raise ConfigError(f"method.local_form={m.local_form!r}; choose one of: {', '.join(LOCAL_FORMS)}")

    def __init__(self, cfg: DictConfig, info: DataInfo, schedule: Schedule) -> None:
        super().__init__(cfg, info, schedule)
        # persistent, so a run resumed inside stage 2 uses the weights computed at e0
        self.register_buffer("sample_weights", torch.ones(info.train_size))

    @torch.no_grad()
    def extract_features(self) -> tuple[Tensor, Tensor]:
        datamodule = self.trainer.datamodule
        features, labels = [], []
        for images, y in datamodule.unaugmented_train_loader():
            features.append(self.backbone(images.to(self.device)))  # normalised by the loader
            labels.append(y.to(self.device))
        return torch.cat(features), torch.cat(labels)

    def on_enter_stage2(self) -> None:
        features, labels = self.extract_features()
        m = self.cfg.method
        weights = msr_weights(features, labels, self.info.class_counts, m.alpha, m.gamma, m.local_form)
        self.sample_weights.copy_(weights)

    def training_loss(self, x: Tensor, y: Tensor, indices: Tensor, batch_idx: int) -> Tensor:
        if not bool(self.stage2_entered):
            return super().training_loss(x, y, indices, batch_idx)
        logits = self(x)
        return (F.cross_entropy(logits, y, reduction="none") * self.sample_weights[indices]).mean()
