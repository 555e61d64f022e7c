"""ARConvL: adaptive region-based prototype learning (Li et al., ECML PKDD 2023).

A prototype head (learnable centres ``C_j`` and radii ``R_j^2 = a_j^2``) on the backbone's latent
features; the loss ``L_M + L_C + L_R + L_D`` of :func:`lt_bench.losses.arconvl.arconvl_loss`; prediction
by the nearest centre. The radii learn from the region loss alone, in their own optimizer group with
their own learning rate: ``method.radius_lr_warm`` (1e-3) for the first ``method.radius_warm_epochs``
(3) epochs, ``method.radius_lr`` (1e-2) after, never decayed with the main schedule and without weight
decay (the reference code keeps it constant; the paper uses no decay on them either). Unlike the
reference code, which rebuilds its SGD optimizer every step and so never accumulates momentum, both
groups use real SGD momentum (``optimizer.momentum``, 0.9 in the paper).

Per epoch it logs ``train/loss_{margin,centre,region,distribution}`` (batch-size-weighted means, summed
on the device during the epoch), ``arconvl/beta``, ``arconvl/sigma2``, ``arconvl/radius_mean`` and
``radius/{j}`` (``R_j``); with a 2-D latent space it draws the class regions into ``arconvl_regions.png``
in the run directory when training ends.
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from lt_bench.config_nodes import params_of
from lt_bench.data.datamodule import DataInfo
from lt_bench.errors import ConfigError
from lt_bench.losses.arconvl import (
    adaptive_beta,
    adaptive_margin,
    arconvl_loss,
    class_alpha,
    log_prior,
    region_bounds,
)
from lt_bench.methods.base import LongTailModule
from lt_bench.methods.registry import METHODS
from lt_bench.models import build_backbone
from lt_bench.models.heads import RegionPrototypeHead
from lt_bench.plots import plot_regions
from lt_bench.schedules import Schedule

PLOT_NAME = "arconvl_regions.png"
TERM_NAMES = ("margin", "centre", "region", "distribution")
PLOT_MAX_POINTS = 3000


def radius_lr_factor(epoch: int, radius_lr: float, radius_lr_warm: float, warm_epochs: int) -> float:
    """Multiplier of the radius group's base LR (``radius_lr``) at 0-based ``epoch``:
    ``radius_lr_warm / radius_lr`` while ``epoch < warm_epochs``, then 1."""
    return radius_lr_warm / radius_lr if epoch < warm_epochs else 1.0


@METHODS.register("arconvl")
class ARConvLMethod(LongTailModule):
    """``method=arconvl``: prototype head, region/distribution/adaptive-margin losses, radius LR group."""

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        super().check_config(cfg)
        m = cfg.method
        if cfg.loss.name != "ce":
            raise ConfigError(
                f"method=arconvl trains with its own loss; loss={cfg.loss.name} would be ignored "
                "(keep loss=ce)"
            )
        s = cfg.schedule
        if s.weighting != "none" or s.mixing != "none":
            raise ConfigError(
                "method=arconvl has no class weights or mixing; use a schedule whose weighting and mixing "
                f"are 'none' (got weighting={s.weighting}, mixing={s.mixing})"
            )
        if m.gamma < 0:
            raise ConfigError(f"method.gamma={m.gamma} must be >= 0 (0.05 in the paper)")
        if m.radius_lr <= 0 or m.radius_lr_warm <= 0 or m.radius_warm_epochs < 0:
            raise ConfigError(
                f"method.radius_lr ({m.radius_lr}) and method.radius_lr_warm ({m.radius_lr_warm}) must be "
                f"> 0 and method.radius_warm_epochs ({m.radius_warm_epochs}) >= 0"
            )
        if cfg.loss.get("prototype_weight", 0):
            raise ConfigError(
                "method=arconvl pulls features to their centres with its own distribution loss; drop "
                "loss.prototype_weight (GCPL's term, for method=standard with loss.head=prototype)"
            )

    def __init__(self, cfg: DictConfig, info: DataInfo, schedule: Schedule) -> None:
        super().__init__(cfg, info, schedule)
        self.register_buffer("alpha", class_alpha(info.class_counts), persistent=False)
        self.register_buffer("log_prior", log_prior(info.class_counts), persistent=False)

    # -- construction -------------------------------------------------------------------------------
    def build_model(self) -> tuple[nn.Module, nn.Module]:
        """Backbone with ``method.latent_dim`` outputs (convnet's ``out_dim``; other backbones must already
        give that many) and the prototype head, whatever ``loss.head`` says."""
        cfg, info = self.cfg, self.info
        latent = cfg.method.get("latent_dim")
        params = self._with_image_size(params_of(cfg.backbone))
        if cfg.backbone.name == "convnet" and latent is not None:
            params["out_dim"] = latent
        backbone = build_backbone(cfg.backbone.name, in_channels=info.in_channels, **params)
        if latent is not None and backbone.out_dim != latent:
            raise ConfigError(
                f"method.latent_dim={latent} but backbone {cfg.backbone.name} gives {backbone.out_dim}-d "
                f"features; set method.latent_dim={backbone.out_dim} (or null), or use backbone=convnet"
            )
        head = RegionPrototypeHead(backbone.out_dim, info.num_classes, cfg.method.get("radius_init", 0.1))
        return backbone, head

    # -- training ----------------------------------------------------------------------------------
    def training_loss(self, x: Tensor, y: Tensor, indices: Tensor, batch_idx: int) -> Tensor:
        # the backbone runs under autocast (bf16-mixed); only its output is cast, because
        # ||f||^2 - 2 f.C + ||C||^2 cancels badly in bfloat16: distances and losses stay float32
        features = self.embed(x).float()
        with torch.autocast(features.device.type, enabled=False):
            terms = arconvl_loss(
                self.head.squared_distances(features),
                self.head.centres,
                self.head.radius_sq,
                y,
                self.alpha,
                self.log_prior,
                self.cfg.method.gamma,
            )
        parts = torch.stack([terms.margin, terms.centre, terms.region, terms.distribution]).detach()
        self.epoch_sums.add("train/loss_", parts, len(y), names=TERM_NAMES)
        self.loss_terms = dict(zip(TERM_NAMES, parts.unbind(), strict=True))
        return terms.total

    def region_state(self) -> dict[str, float]:
        """``beta``, ``sigma^2``, the mean radius and each ``R_j`` at the current parameters."""
        r_ben_sq, r_upp_sq = region_bounds(self.head.centres, self.head.radius_sq)
        radii = self.head.radius_sq.detach().sqrt()
        state = {
            "arconvl/beta": float(adaptive_beta(r_ben_sq, r_upp_sq)),
            "arconvl/sigma2": float(adaptive_margin(r_ben_sq, r_upp_sq)),
            "arconvl/radius_mean": float(radii.mean()),
        }
        state.update({f"radius/{j}": float(r) for j, r in enumerate(radii)})
        return state

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.log_dict(self.region_state(), on_step=False, on_epoch=True, sync_dist=False)

    def on_train_end(self) -> None:
        if self.head.centres.shape[1] == 2 and self.trainer.is_global_zero:
            self.plot_regions(Path(self.trainer.default_root_dir) / PLOT_NAME)

    @torch.no_grad()
    def plot_regions(self, path: Path) -> None:
        """Draw the regions over (a fixed random sample of) the un-augmented training features."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None:
            return
        was_training = self.training
        self.eval()  # BatchNorm running statistics, as at evaluation
        features, labels = [], []
        for images, y in datamodule.unaugmented_train_loader():
            features.append(self.backbone(images.to(self.device)).cpu())
            labels.append(y.cpu())
        self.train(was_training)
        f, y = torch.cat(features), torch.cat(labels)
        if len(y) > PLOT_MAX_POINTS:
            keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.cfg.seed))
            f, y = f[keep[:PLOT_MAX_POINTS]], y[keep[:PLOT_MAX_POINTS]]
        path.parent.mkdir(parents=True, exist_ok=True)
        title = f"ARConvL regions after {self.trainer.current_epoch} epochs"
        plot_regions(f, y, self.head.centres, self.head.radius_sq.sqrt(), path, title)

    # -- optimisation ------------------------------------------------------------------------------
    def param_groups(self) -> list[dict]:
        """Everything but the radii in the main group; the radii alone, without weight decay, at
        ``method.radius_lr`` (the phase-dependent weight decay leaves them alone too)."""
        radius = self.head.radius_param
        others = [p for p in self.parameters() if p.requires_grad and p is not radius]
        return [
            {"params": others},
            {
                "params": [radius],
                "lr": float(self.cfg.method.radius_lr),
                "weight_decay": 0.0,
                "decay_follows_phase": False,
            },
        ]

    def lr_lambdas(self) -> list:
        """The main schedule for the main group; the radius warm-up switch for the radius group."""
        m = self.cfg.method
        main = super().lr_lambdas()[0]
        lr, warm, epochs = float(m.radius_lr), float(m.radius_lr_warm), int(m.radius_warm_epochs)

        def radius(epoch: int) -> float:
            return radius_lr_factor(epoch, lr, warm, epochs)

        return [main, radius]
