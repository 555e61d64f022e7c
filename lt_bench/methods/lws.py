"""LWS (Kang et al., ICLR 2020, "Decoupling representation and classifier"): learnable weight scaling.

Stage 1 (epochs before ``schedule.e0``) trains the whole network as ``method=standard`` does. From ``e0``
the backbone (parameters and BatchNorm statistics) and the classifier are frozen and only one scale per
class trains: ``z_j = f_j (w_j . x + b_j)``, ``f`` starting at 1, with class-balanced sampling
(``schedule=drs``, as cRT). The scales rescale each class's logits, i.e. its weight norm, which is the
bias towards head classes that tau-normalisation removes by a formula and LWS learns from balanced data.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from lt_bench.errors import ConfigError
from lt_bench.methods.registry import METHODS
from lt_bench.methods.two_stage import TwoStageModule


class ScaledHead(nn.Module):
    """``head(f) * scale`` with one learnable ``scale`` [C] per class (1 at start)."""

    def __init__(self, head: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.head = head
        self.scale = nn.Parameter(torch.ones(num_classes))

    def forward(self, features: Tensor) -> Tensor:
        return self.head(features) * self.scale


@METHODS.register("lws")
class LearnableWeightScaling(TwoStageModule):
    """``method=lws``: standard training, then per-class logit scales on the frozen classifier."""

    reinit_head = False

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        super().check_config(cfg)
        if cfg.method.get("reinit_head", False):
            raise ConfigError(
                "method=lws scales the classifier stage 1 trained; method.reinit_head=true would replace it "
                "with a random one that stays frozen (re-initialising is method=crt)"
            )

    def build_model(self) -> tuple[nn.Module, nn.Module]:
        backbone, head = super().build_model()
        return backbone, ScaledHead(head, self.info.num_classes)

    def param_groups(self) -> list[dict]:
        # The optimizer is built once, before stage 2, so it holds the scales from the start; a parameter
        # whose requires_grad is off gets no gradient, and SGD/AdamW/SAM leave it untouched (no decay, no
        # momentum step): frozen exactly.
        return [{"params": list(self.parameters())}]

    def on_stage(self, epoch: int) -> None:
        super().on_stage(epoch)  # freezes the backbone from e0 on
        stage2 = epoch >= self.schedule.e0
        self.head.head.requires_grad_(not stage2)
        self.head.scale.requires_grad_(stage2)
