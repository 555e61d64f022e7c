"""Stage 2 of the two-stage methods (PHASE, cRT) trains the head only: the backbone's parameters and its
BatchNorm statistics must come out of stage 2 exactly as they went in."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lt_bench.train import build_run
from tests.helpers import make_config


class Snapshots(L.Callback):
    """Backbone and head state at the end of every epoch."""

    def __init__(self) -> None:
        self.backbone: list[dict[str, torch.Tensor]] = []
        self.head: list[dict[str, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, module) -> None:
        self.backbone.append({k: v.detach().clone() for k, v in module.backbone.state_dict().items()})
        self.head.append({k: v.detach().clone() for k, v in module.head.state_dict().items()})


def _fit(*overrides: str) -> Snapshots:
    cfg = make_config(*overrides, "trainer.max_epochs=3", "schedule.e0=1", "schedule.e1=1")
    L.seed_everything(cfg.seed, verbose=False)
    _, datamodule, model = build_run(cfg)
    snapshots = Snapshots()
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=3,  # a few steps per stage show what moves and what does not
        limit_val_batches=0,
        use_distributed_sampler=False,
        callbacks=[snapshots],
    )
    trainer.fit(model, datamodule=datamodule)
    return snapshots


@pytest.mark.parametrize("method", ["phase", "crt"])
def test_stage_two_changes_no_backbone_parameter_or_batchnorm_buffer(method):
    snaps = _fit(f"method={method}")
    entering, after = snaps.backbone[0], snaps.backbone[-1]
    assert any("running_mean" in k for k in entering), "the test needs a backbone with BatchNorm"
    for key, value in entering.items():
        assert torch.equal(value, after[key]), f"{key} changed during stage 2"
    # ... while the head did train in stage 2
    assert any(not torch.equal(v, snaps.head[-1][k]) for k, v in snaps.head[0].items())


def test_stage_one_does_train_the_backbone():
    """The check above can fail: without the freeze the same run moves the backbone."""
    snaps = _fit("method=standard")
    assert any(not torch.equal(v, snaps.backbone[-1][k]) for k, v in snaps.backbone[0].items())
