"""Two-stage training on one network: from ``schedule.e0`` the backbone is frozen and only the head trains.

Freezing covers parameters *and* BatchNorm statistics (the backbone stays in eval mode). Whether the
second stage has begun is a persistent buffer, so a run resumed inside stage 2 re-freezes without
re-initialising the head it already trained. cRT (``method=crt``) and PHASE build on this.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from lt_bench.data.datamodule import DataInfo
from lt_bench.methods.base import LongTailModule
from lt_bench.schedules import Schedule


class TwoStageModule(LongTailModule):
    reinit_head: bool = False

    @classmethod
    def stage_switches(cls, cfg: DictConfig) -> list[str]:
        return [f"method={cfg.method.name} enters its second stage"]

    def __init__(self, cfg: DictConfig, info: DataInfo, schedule: Schedule) -> None:
        super().__init__(cfg, info, schedule)
        self.register_buffer("stage2_entered", torch.tensor(False))

    def train(self, mode: bool = True) -> TwoStageModule:
        super().train(mode)
        if mode and bool(self.stage2_entered):
            self.backbone.eval()  # Lightning switches everything to train mode; keep BN statistics fixed
        return self

    def on_stage(self, epoch: int) -> None:
        if epoch < self.schedule.e0:
            return
        self.backbone.requires_grad_(False)
        self.backbone.eval()
        if not bool(self.stage2_entered):
            if self.cfg.method.get("reinit_head", self.reinit_head):
                self._reset_head()
            self.on_enter_stage2()
            self.stage2_entered.fill_(True)

    def _reset_head(self) -> None:
        # Drawn from a generator seeded by the run's seed, not the global one: every DDP rank draws the
        # same head (their global generators part ways under AutoAugment), and so does a resumed run.
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(self.cfg.seed)
            for module in self.head.modules():
                if callable(getattr(module, "reset_parameters", None)):
                    module.reset_parameters()
        optimizer = self.optimizers()
        optimizer = getattr(optimizer, "optimizer", optimizer)
        for p in self.head.parameters():
            optimizer.state.pop(p, None)  # stale momentum from stage 1 would drag the new head

    def on_enter_stage2(self) -> None:
        """Called once, at the first epoch of stage 2 (after freezing)."""
