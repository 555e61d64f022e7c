"""The LightningModule every method builds on: backbone + head + loss, driven by one schedule.

The module wires pure pieces together and owns no maths: class weights, sampling probabilities and
mixing progress come from :class:`lt_bench.schedules.Schedule` at ``trainer.current_epoch``; losses
come from :func:`lt_bench.losses.build_loss`; every metric from :class:`LongTailMetrics`.
Methods whose training procedure differs (two stages, extra parameters) subclass it and override the
narrow hooks: :meth:`param_groups`, :meth:`lr_lambdas`, :meth:`training_loss`, :meth:`on_stage`.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig
from torch import Tensor, nn

from lt_bench.config import check_stage_switches
from lt_bench.config_nodes import params_of
from lt_bench.data.datamodule import DataInfo
from lt_bench.epoch_sums import EPOCH_SUMS_KEY, EpochSums
from lt_bench.errors import TrainingDiverged
from lt_bench.losses import build_loss
from lt_bench.losses.base import LogitLoss
from lt_bench.losses.prototype import with_prototype_loss
from lt_bench.metrics import LongTailMetrics, scalar_metrics
from lt_bench.mixing import label_weights, mix_batch, sample_lambda
from lt_bench.models import build_backbone, build_head
from lt_bench.models.heads import CosineHead
from lt_bench.optim import build_optimizer, lr_factor
from lt_bench.schedules import Schedule

# keys of a loss node that configure how it is used rather than the loss formula itself
LOSS_USAGE_KEYS = ("name", "head", "after_e0", "prototype_weight")
# where checkpoints keep the training class counts (read by lt_bench.eval)
CLASS_COUNTS_KEY = "lt_bench_class_counts"


def batch_seed(seed: int, epoch: int, batch_idx: int, rank: int) -> int:
    """A reproducible seed per (run seed, epoch, step, rank): resumed runs redraw the same numbers."""
    return ((seed * 1_000_003 + epoch) * 1_000_003 + batch_idx) * 1_009 + rank


class LongTailModule(L.LightningModule):
    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        """Refuse, with one :class:`ConfigError` line, a configuration this method cannot train as asked.

        Called by :func:`lt_bench.startup.check` after :func:`lt_bench.config.validate` and before any
        data are read; a method with keys or rules of its own overrides it (calling ``super()``)."""
        check_stage_switches(cfg, cls.stage_switches(cfg))

    @classmethod
    def stage_switches(cls, cfg: DictConfig) -> list[str]:
        """What this method does at ``schedule.e0`` (worded for an error message); none by default."""
        return []

    def __init__(self, cfg: DictConfig, info: DataInfo, schedule: Schedule) -> None:
        super().__init__()
        self.cfg, self.info = cfg, info
        counts = torch.tensor(info.class_counts, dtype=torch.float32)
        self.register_buffer("class_counts", counts, persistent=False)
        self.schedule = schedule
        self.backbone, self.head = self.build_model()
        self._apply_speed_options()
        self.loss_before, self.loss_after = self.build_losses()
        self.val_metrics = self.new_metrics()
        self.test_metrics = self.new_metrics()
        self.class_weights: Tensor | None = None
        self.loss_terms: dict[str, Tensor] = {}  # parts of a composite loss, named when it diverges
        self.test_result: dict[str, Any] | None = None
        self.test_prefix = "test"  # "test_last": the final model's test before the selected one's
        self.val_result: dict[str, Any] | None = None
        # first non-finite loss of the epoch, (batch index, value), recorded on the device
        self._non_finite: tuple[Tensor, Tensor] | None = None
        # the epoch's training loss (and a method's loss terms), summed on the device
        self.epoch_sums = EpochSums()

    # -- construction -------------------------------------------------------------------------------
    def new_metrics(self) -> LongTailMetrics:
        """A fresh long-tail metric for this data: groups by training count as ``dataset.`` says."""
        d = self.cfg.dataset
        return LongTailMetrics(
            num_classes=self.info.num_classes,
            class_counts=self.info.class_counts,
            many_threshold=d.many_threshold,
            few_threshold=d.few_threshold,
            group_by=d.group_by,
        )

    def build_model(self) -> tuple[nn.Module, nn.Module]:
        info = self.info
        backbone_params = params_of(self.cfg.backbone)
        backbone = build_backbone(
            self.cfg.backbone.name, in_channels=info.in_channels, **self._with_image_size(backbone_params)
        )
        head = build_head(self.cfg.loss.get("head", "linear"), backbone.out_dim, info.num_classes)
        return backbone, head

    def _apply_speed_options(self) -> None:
        """``trainer.channels_last`` and ``trainer.compile``, applied to the backbone only: the head is
        tiny and stays in float32 (see :meth:`forward`)."""
        t = self.cfg.trainer
        self.channels_last = bool(t.get("channels_last", False))
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        if t.get("compile", False):
            self.backbone.compile()  # in place: state_dict keys (and so checkpoints) stay unchanged

    def _with_image_size(self, params: dict) -> dict:
        if self.cfg.backbone.name == "convnet":
            params.setdefault("image_size", self.info.image_size)
        return params

    def build_losses(self) -> tuple[LogitLoss, LogitLoss]:
        """The loss before ``schedule.e0`` and from it on (``loss.after_e0`` overrides, e.g. GA, TLA)."""
        name = self.cfg.loss.name
        params = params_of(self.cfg.loss, drop=LOSS_USAGE_KEYS)
        before = build_loss(name, self.info.class_counts, **params)
        after_e0 = self.cfg.loss.get("after_e0")
        switch = params_of(after_e0, drop=()) if after_e0 else {}
        after = build_loss(name, self.info.class_counts, **{**params, **switch}) if switch else before
        weight = self.cfg.loss.get("prototype_weight", 0.0)  # GCPL, on a prototype head
        return with_prototype_loss(before, weight, self.head), with_prototype_loss(after, weight, self.head)

    # -- schedule ----------------------------------------------------------------------------------
    def loss_at(self, epoch: int) -> LogitLoss:
        return self.loss_after if epoch >= self.schedule.e0 else self.loss_before

    @property
    def loss_fn(self) -> LogitLoss:
        return self.loss_at(self.current_epoch)

    def on_train_epoch_start(self) -> None:
        self._enter_epoch(self.current_epoch)

    def on_train_start(self) -> None:
        # Resumed inside an epoch (a SIGTERM checkpoint), Lightning skips on_train_epoch_start: the
        # epoch's weights, optimizer settings and frozen backbone must still be in place, and its
        # schedule values logged as the uninterrupted run logs them.
        if self.trainer.fit_loop.restarted_mid_epoch:
            self._enter_epoch(self.current_epoch)

    def _enter_epoch(self, epoch: int) -> None:
        values = {
            f"schedule/{k}": float(v) for k, v in self.schedule.values(epoch, self.info.class_counts).items()
        }
        self.log_dict(values, on_step=False, on_epoch=True, sync_dist=False)
        weights = self.schedule.class_weights(epoch, self.info.class_counts)
        self.class_weights = None if weights is None else weights.to(self.device)
        self._apply_phase_to_optimizer(epoch)
        self._log_learning_rates()
        self.on_stage(epoch)

    def _log_learning_rates(self) -> None:
        """The epoch's learning rate: ``lr`` (the first parameter group's), and ``lr/group<k>`` for a
        method's further groups (ARConvL's radii, a head with its own factor)."""
        optimizer = self.optimizers()
        groups = getattr(optimizer, "optimizer", optimizer).param_groups
        rates = {}
        for group in groups:
            index = group.get("method_group", 0)
            key = "lr" if index == 0 else f"lr/group{index}"
            rates.setdefault(key, float(group["lr"]))
        self.log_dict(rates, on_step=False, on_epoch=True, sync_dist=False)

    def _apply_phase_to_optimizer(self, epoch: int) -> None:
        """SAM's rho and the weight decay may take another value from ``schedule.e0`` on."""
        o = self.cfg.optimizer
        optimizer = self.optimizers()
        optimizer = getattr(optimizer, "optimizer", optimizer)
        late = epoch >= self.schedule.e0
        if o.name == "sam" and o.rho_after is not None:
            optimizer.rho = o.rho_after if late else o.rho
        if o.weight_decay_after is not None:
            for group in optimizer.param_groups:
                if group.get("decay_follows_phase", True):
                    group["weight_decay"] = o.weight_decay_after if late else o.weight_decay

    def on_stage(self, epoch: int) -> None:
        """Hook for methods whose procedure changes with the epoch (freezing, re-initialising)."""

    # -- training ----------------------------------------------------------------------------------
    def embed(self, x: Tensor) -> Tensor:
        """Backbone features (in bfloat16 under ``trainer.precision=bf16-mixed``)."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.logits_of(self.embed(x))

    def logits_of(self, features: Tensor) -> Tensor:
        """The head's outputs for backbone ``features``."""
        # The head (and so the loss on its logits) runs in float32 even under mixed precision: bfloat16
        # keeps ~3 significant digits, too few for cosines scaled by s = 30 or log-prior offsets.
        with torch.autocast(features.device.type, enabled=False):
            return self.head(features.float())

    def mixed_targets(
        self, x: Tensor, y: Tensor, batch_idx: int
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor | None]]]:
        """The (possibly mixed) input and its (labels, per-sample label weights) pairs: ``[(y, None)]``
        without mixing; with it, the draw seeded by (seed, epoch, step, rank), so a resume redraws it."""
        if self.schedule.mixing == "none":
            return x, [(y, None)]
        epoch = self.current_epoch
        generator = torch.Generator().manual_seed(
            batch_seed(self.cfg.seed, epoch, batch_idx, self.global_rank)
        )
        lam = sample_lambda(self.schedule.mix_alpha, generator)
        perm = torch.randperm(len(y), generator=generator).to(y.device)
        mixed, y_a, y_b = mix_batch(x, y, lam, perm)
        w_a = label_weights(
            lam,
            self.class_counts[y_a],
            self.class_counts[y_b],
            self.schedule.kappa,
            self.schedule.tau,
            self.schedule.mix_progress(epoch),
        )
        return mixed, [(y_a, w_a), (y_b, 1 - w_a)]

    def training_loss(self, x: Tensor, y: Tensor, indices: Tensor, batch_idx: int) -> Tensor:
        """The loss of one batch; ``indices`` are the samples' positions in the training set."""
        loss_fn, weights = self.loss_fn, self.class_weights
        inputs, targets = self.mixed_targets(x, y, batch_idx)
        logits = self(inputs)
        (first, w_first), *rest = targets
        loss = loss_fn(logits, first, weights, w_first)
        for labels, label_weights_ in rest:
            loss = loss + loss_fn(logits, labels, weights, label_weights_)
        return loss

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        x, y, indices = batch
        loss = self.training_loss(x, y, indices, batch_idx)
        self._watch_finite(loss, batch_idx)
        self.epoch_sums.add("train/loss", loss, len(y))
        return loss

    def on_train_epoch_end(self) -> None:
        means = self.epoch_sums.take()
        loss = means.pop("train/loss", None)
        if loss is not None:
            self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=False)
        if means:  # a method's loss terms
            self.log_dict(means, on_step=False, on_epoch=True, sync_dist=False)

    def _finite_check_due(self, batch_idx: int) -> bool:
        """Reading the flag makes the host wait for the device, so on an accelerator it is read every
        ``trainer.log_every_n_steps`` steps and at the epoch's last batch (before validation and the
        epoch's checkpoint); on the CPU, where nothing runs ahead, every step."""
        if self.device.type == "cpu":
            return True
        every = max(1, self.trainer.log_every_n_steps)
        return (batch_idx + 1) % every == 0 or batch_idx + 1 >= self.trainer.num_training_batches

    def _watch_finite(self, loss: Tensor, batch_idx: int) -> None:
        """Record the first non-finite loss of the epoch on the device; stop once the record is read."""
        value = loss.detach().float()
        if self._non_finite is None or batch_idx == 0:
            self._non_finite = (value.new_full((), -1, dtype=torch.long), value.new_zeros(()))
        step, first_value = self._non_finite
        is_first = ~torch.isfinite(value) & (step < 0)
        step = torch.where(is_first, batch_idx, step)
        self._non_finite = (step, torch.where(is_first, value, first_value))
        if self._finite_check_due(batch_idx) and int(step) >= 0:
            self._diverged(self._non_finite[1], int(step))

    def _diverged(self, loss: Tensor, batch_idx: int) -> None:
        params = params_of(self.cfg.loss, drop=LOSS_USAGE_KEYS)
        terms = {k: float(v) for k, v in self.loss_terms.items()}
        values = self.schedule.values(self.current_epoch, self.info.class_counts)
        raise TrainingDiverged(
            f"the {self.cfg.loss.name} loss {params} became {loss.item()} at epoch {self.current_epoch}, "
            f"step {batch_idx}{f' (terms {terms})' if terms else ''} (schedule values {values}). "
            "Lower optimizer.lr or check the loss parameters."
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A step can overflow the weights while its loss was still finite; saving them would replace the
        # last good checkpoint with a useless one. One check per checkpoint, not per step.
        finite = torch.stack([torch.isfinite(p).all() for p in self.parameters()]).all()
        if not bool(finite):
            raise TrainingDiverged(
                f"the weights became non-finite during epoch {self.current_epoch} (after {self.global_step} "
                f"optimizer steps) while the loss stayed finite. Lower optimizer.lr or check the loss "
                "parameters."
            )
        checkpoint[EPOCH_SUMS_KEY] = self.epoch_sums.state_dict()
        # the training counts (groups, priors): lt_bench.eval needs them to evaluate on other data
        checkpoint[CLASS_COUNTS_KEY] = list(self.info.class_counts)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # a resumed fit continues the epoch's sums; testing a checkpoint (the best one) continues no epoch
        if self._trainer is None or self.trainer.state.fn != TrainerFn.FITTING:
            return
        self.epoch_sums.load_state_dict(checkpoint.get(EPOCH_SUMS_KEY) or {}, self.device)

    # -- evaluation --------------------------------------------------------------------------------
    @property
    def logit_scale(self) -> float:
        """The factor between the head's outputs and the logits the model's softmax is taken of.

        A cosine head outputs cosines in [-1, 1]; the losses that train it (LDAM, CRI, KPS) put ``s cos``
        into their softmax, so evaluation scales by the loss's ``s`` (the argmax is unchanged; the
        training-only margins are not applied). Every other head: 1.
        """
        if not isinstance(self.head, CosineHead):
            return 1.0
        return float(getattr(self.loss_fn, "s", 1.0))

    def eval_outputs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(features, logits)`` of an evaluation batch: the head's input, and the logits every figure
        comes from — predictions are their argmax, probabilities (ECE, NLL) their softmax."""
        features = self.embed(x)
        logits = self.loss_fn.predict(self.logits_of(features))
        scale = self.logit_scale
        return features, logits if scale == 1.0 else logits * scale

    def _eval_step(self, batch: tuple[Tensor, Tensor], metrics: LongTailMetrics) -> dict[str, Tensor]:
        x, y = batch
        features, logits = self.eval_outputs(x)
        metrics.update(logits, y)
        return {"features": features, "logits": logits, "targets": y}

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        # returned for callbacks (lt_bench.eval's save= and posthoc=); Lightning keeps no test outputs
        return self._eval_step(batch, self.test_metrics)

    def _finish(self, metrics: LongTailMetrics, prefix: str) -> dict[str, Any]:
        result = metrics.compute()  # summed over processes: every sample counted once
        metrics.reset()
        scalars = {f"{prefix}/{k}": v for k, v in scalar_metrics(result).items()}
        self.log_dict(scalars, prog_bar=False, sync_dist=False)
        return result

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.val_metrics.reset()
            return
        self.val_result = self._finish(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self.test_result = self._finish(self.test_metrics, self.test_prefix)

    # -- optimisation ------------------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def lr_lambdas(self) -> list:
        lr, epochs = self.cfg.lr_schedule, self.cfg.trainer.max_epochs

        def factor(epoch: int) -> float:
            return lr_factor(
                epoch,
                lr.name,
                epochs,
                warmup_epochs=lr.warmup_epochs,
                milestones=list(lr.milestones),
                factors=list(lr.factors),
                min_factor=lr.min_factor,
                warmup_peak=lr.get("warmup_peak", 1.0),
            )

        return [factor]

    def configure_optimizers(self) -> dict:
        optimizer = build_optimizer(self.param_groups(), self.cfg.optimizer)
        lambdas = self.lr_lambdas()
        # one factor for every group, or one per method group; build_optimizer may split a method group
        # (no decay on biases and norms), so each optimizer group names the method group it came from
        lambdas = [lambdas[g["method_group"] if len(lambdas) > 1 else 0] for g in optimizer.param_groups]
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
