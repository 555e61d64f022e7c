"""RIDE without its router, trained end to end in one stage: ``method=ride`` (LDAM-DRW per expert, as RIDE)
and ``method=ppl_cri_ride`` (CRI + PPW per expert: the PPL paper's CRI+PPW+RIDE).

The network is a multi-expert backbone (``backbone=ride_resnet32 | ride_resnet10 | ride_resnet50 |
ride_resnext50_32x4d``, :mod:`lt_bench.models.ride`) with one ``loss.head`` per expert; the model's output,
which evaluation argmaxes, is the mean of the experts' logits. The loss is
:func:`lt_bench.losses.ride.ride_loss`: the run's ``loss=`` (any registered logit loss) on every expert with
the schedule's class weights ``self.class_weights``, minus ``method.diversity_weight`` times RIDE's
distribution-aware diversity term, whose per-class temperatures follow the schedule's weight exponent.
RIDE's expert-assignment (routing) module and its second stage are left out, as CRI+PPW+RIDE does; every
stage switch is the schedule's (DRW at ``schedule.e0``, PPW over ``[e0, e1]``).

``method.*`` keys: ``diversity_weight`` (lambda; RIDE's ``additional_diversity_factor`` is ``-lambda``),
``diversity_temperature`` (T), ``diversity_reweight`` (RIDE's ``reweight_factor`` f), ``diversity_scale``
(s of the diversity term; null: the loss's ``s`` on a cosine head, else 1).

Reporting: validation and test also score every expert on its own; ``summary.json``'s test results hold
``experts``, one result per expert with the ensemble's keys (``top1``, ``balanced_acc``, many/medium/few,
``gmean``, ``per_class``, ``n``; no confusion matrix), and ``val/expert{i}/...``, ``test/expert{i}/...``
are logged. Per epoch it logs ``train/loss_classification`` and ``train/loss_diversity``.

Nothing lives outside the module: the temperatures are a function of the epoch, the per-expert metrics are
torchmetrics states summed over processes like the ensemble's, so DDP, resuming and bf16 behave as for
every method (the heads and the loss run in float32, as :meth:`LongTailModule.forward` does).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from lt_bench.config_nodes import params_of
from lt_bench.data.datamodule import DataInfo
from lt_bench.errors import ConfigError
from lt_bench.losses.ride import diversity_factors, diversity_temperatures, ride_loss
from lt_bench.methods.base import LongTailModule
from lt_bench.methods.registry import METHODS
from lt_bench.metrics import LongTailMetrics, scalar_metrics
from lt_bench.models import build_backbone, build_head
from lt_bench.models.heads import CosineHead
from lt_bench.models.ride import ExpertHeads
from lt_bench.schedules import Schedule

# RIDE's RIDELoss defaults (frank-xwang/RIDE-LongTailRecognition, model/loss.py)
DEFAULTS = {
    "diversity_weight": 0.2,
    "diversity_temperature": 1.0,
    "diversity_reweight": 0.05,
    "diversity_scale": None,
}
TERM_NAMES = ("classification", "diversity")
RIDE_BACKBONES = "ride_resnet32, ride_resnet10, ride_resnet50, ride_resnext50_32x4d"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def ride_settings(cfg: DictConfig) -> dict[str, Any]:
    """The ``method.*`` keys with RIDE's defaults, checked; ConfigError names the key and the fix."""
    given = params_of(cfg.method)
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ConfigError(
            f"method={cfg.method.name} has no key(s) {', '.join(unknown)}; valid: {', '.join(DEFAULTS)}"
        )
    m = {**DEFAULTS, **given}
    if not (_finite(m["diversity_weight"]) and m["diversity_weight"] >= 0):
        raise ConfigError(
            f"method.diversity_weight={m['diversity_weight']!r} must be a number >= 0 (lambda; RIDE's "
            "additional_diversity_factor -0.45 is method.diversity_weight=0.45)"
        )
    if not (_finite(m["diversity_temperature"]) and m["diversity_temperature"] > 0):
        raise ConfigError(f"method.diversity_temperature={m['diversity_temperature']!r} must be a number > 0")
    if not (_finite(m["diversity_reweight"]) and 0 <= m["diversity_reweight"] < 1):
        raise ConfigError(
            f"method.diversity_reweight={m['diversity_reweight']!r} must be in [0, 1) "
            "(RIDE's reweight_factor)"
        )
    scale = m["diversity_scale"]
    if scale is not None and not (_finite(scale) and scale > 0):
        raise ConfigError(f"method.diversity_scale={scale!r} must be a number > 0, or null (the loss's s)")
    if cfg.loss.get("prototype_weight", 0):
        raise ConfigError(
            f"method={cfg.method.name} has no GCPL prototype term; drop loss.prototype_weight "
            "(a prototype head per expert works: loss.head=prototype)"
        )
    return m


@METHODS.register("ride")
@METHODS.register(
    "ppl_cri_ride"
)  # CRI+PPW on this module: its conf/method/ppl_cri_ride.yaml picks loss and schedule
class RIDEMethod(LongTailModule):
    """Multi-expert backbone + one head per expert; RIDE's loss; per-expert and ensemble metrics."""

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        super().check_config(cfg)
        ride_settings(cfg)

    def __init__(self, cfg: DictConfig, info: DataInfo, schedule: Schedule) -> None:
        m = ride_settings(cfg)
        super().__init__(cfg, info, schedule)
        self.diversity_weight = float(m["diversity_weight"])
        self.diversity_temperature = float(m["diversity_temperature"])
        self.diversity_scale = self._diversity_scale(m["diversity_scale"])
        factors = diversity_factors(info.class_counts, float(m["diversity_reweight"]))
        self.register_buffer("diversity_factors", factors, persistent=False)
        experts = self.head.num_experts
        self.expert_val_metrics = nn.ModuleList(self.new_metrics() for _ in range(experts))
        self.expert_test_metrics = nn.ModuleList(self.new_metrics() for _ in range(experts))

    # -- construction -------------------------------------------------------------------------------
    def build_model(self) -> tuple[nn.Module, ExpertHeads]:
        cfg, info = self.cfg, self.info
        backbone = build_backbone(cfg.backbone.name, in_channels=info.in_channels, **params_of(cfg.backbone))
        experts, expert_dim = getattr(backbone, "num_experts", None), getattr(backbone, "expert_dim", None)
        if not isinstance(experts, int) or not isinstance(expert_dim, int):
            raise ConfigError(
                f"method={cfg.method.name} needs a multi-expert backbone ({RIDE_BACKBONES}); "
                f"backbone={cfg.backbone.name} has no num_experts / expert_dim"
            )
        kind = cfg.loss.get("head", "linear")
        heads = [build_head(kind, expert_dim, info.num_classes) for _ in range(experts)]
        return backbone, ExpertHeads(heads, expert_dim)

    def _diversity_scale(self, scale: float | None) -> float:
        """``s`` of the diversity term: the given one, else the loss's ``s`` on a cosine head (RIDE's
        normed classifier scales cosines by s before its loss), else 1 (plain logits)."""
        if scale is not None:
            return float(scale)
        loss_s = getattr(self.loss_before, "s", None)
        if self.cfg.loss.get("head", "linear") == "cosine" and _finite(loss_s):
            return float(loss_s)
        return 1.0

    # -- forward -------------------------------------------------------------------------------------
    def expert_logits(self, x: Tensor) -> Tensor:
        """``[E, B, C]``: every expert's head outputs, in float32 (the backbone may run in bfloat16)."""
        return self.expert_logits_of(self.embed(x))

    def expert_logits_of(self, features: Tensor) -> Tensor:
        """``[E, B, C]`` from the backbone's ``features``."""
        with torch.autocast(features.device.type, enabled=False):
            return self.head.expert_logits(features.float())

    def temperatures(self, epoch: int) -> Tensor:
        """The diversity term's per-class temperatures ``T u^a(E)`` at ``epoch``."""
        exponent = self.schedule.weight_exponent(epoch)
        return diversity_temperatures(self.diversity_factors, self.diversity_temperature, exponent)

    # -- training ----------------------------------------------------------------------------------
    def training_loss(self, x: Tensor, y: Tensor, indices: Tensor, batch_idx: int) -> Tensor:
        epoch, loss_fn, weights = self.current_epoch, self.loss_fn, self.class_weights
        inputs, targets = self.mixed_targets(x, y, batch_idx)
        logits = self.expert_logits(inputs)
        with torch.autocast(logits.device.type, enabled=False):

            def classification(z: Tensor) -> Tensor:
                return sum(loss_fn(z, t, weights, s) for t, s in targets)

            terms = ride_loss(
                logits, classification, self.temperatures(epoch), self.diversity_weight, self.diversity_scale
            )
        parts = torch.stack([terms.classification, terms.diversity]).detach()
        self.epoch_sums.add("train/loss_", parts, len(y), names=TERM_NAMES)
        self.loss_terms = dict(zip(TERM_NAMES, parts.unbind(), strict=True))
        return terms.total

    # -- evaluation --------------------------------------------------------------------------------
    @property
    def logit_scale(self) -> float:
        """The base class's factor for one cosine head, for every expert's: the experts' heads are alike."""
        if not isinstance(self.head.heads[0], CosineHead):
            return 1.0
        return float(getattr(self.loss_fn, "s", 1.0))

    def _eval_experts(
        self, batch: tuple[Tensor, Tensor], ensemble: LongTailMetrics, experts: nn.ModuleList
    ) -> dict[str, Tensor]:
        """Figures of the ensemble (the module's forward: the experts' mean) and of each expert, from
        logits scaled as the base class scales one head's; returns the ensemble's outputs for callbacks
        (lt_bench.eval's save= and posthoc=), features being every expert's side by side."""
        x, y = batch
        features = self.embed(x)
        logits = self.expert_logits_of(features)
        scale, predict = self.logit_scale, self.loss_fn.predict
        mean = predict(logits.mean(0)) * scale
        ensemble.update(mean, y)
        for metric, z in zip(experts, logits, strict=True):
            metric.update(predict(z) * scale, y)
        return {"features": features, "logits": mean, "targets": y}

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_experts(batch, self.val_metrics, self.expert_val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        return self._eval_experts(batch, self.test_metrics, self.expert_test_metrics)

    def _finish_experts(self, experts: nn.ModuleList, prefix: str) -> list[dict[str, Any]]:
        results = []
        for i, metric in enumerate(experts):
            result = metric.compute()  # summed over processes, as the ensemble's
            metric.reset()
            result.pop("confusion", None)
            scalars = {f"{prefix}/expert{i}/{k}": v for k, v in scalar_metrics(result).items()}
            self.log_dict(scalars, prog_bar=False, sync_dist=False)
            results.append(result)
        return results

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.trainer.sanity_checking:
            for metric in self.expert_val_metrics:
                metric.reset()
            return
        experts = self._finish_experts(self.expert_val_metrics, "val")
        if self.val_result is not None:
            self.val_result["experts"] = experts

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        experts = self._finish_experts(self.expert_test_metrics, self.test_prefix)
        if self.test_result is not None:
            self.test_result["experts"] = experts
