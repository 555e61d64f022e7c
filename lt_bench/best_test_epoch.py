"""``trainer.track_test_best``: the epoch with the best test top-1, as the CIFAR code bases report it.

A Lightning callback beside the model, not part of it: it evaluates the test set after every training
epoch and keeps the best epoch's result. The figure is optimistic (the test set chooses the epoch), so it
is reported apart (``summary.json["test_best_epoch"]``) and chooses nothing: neither ``test`` nor
``best_epoch`` nor any checkpoint depends on it, and the pass changes no weight, no BatchNorm statistic
and no random generator.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor

from lt_bench.metrics import scalar_metrics

# where checkpoints keep the record, and how summary.json labels it
TEST_BEST_KEY = "lt_bench_test_best"
TEST_BEST_NOTE = (
    "optimistic: the epoch with the best test top-1, selected on the test set, as the CIFAR code bases "
    "(LDAM-DRW, PPL, KPS, DDC) report it; no checkpoint or result is chosen by it (see test, best_epoch)"
)


def rank_zero_buffers(module: torch.nn.Module, world_size: int) -> list[tuple[Tensor, Tensor]]:
    """With several processes, load rank 0's floating-point buffers (BatchNorm statistics, which every
    rank updates from its own batches) into this rank's module; returns (buffer, own copy) to restore.

    ``trainer.test`` evaluates rank 0's module on every rank (Lightning syncs the module states first), so
    the per-epoch pass does too: one model, whatever the number of processes. Restored after the pass,
    so training goes on from each rank's own statistics, as without tracking."""
    if world_size < 2 or not torch.distributed.is_initialized():
        return []
    floating = [b for b in module.buffers() if b.is_floating_point()]
    own = [(b, b.detach().clone()) for b in floating]
    for b in floating:
        torch.distributed.broadcast(b.data, src=0)
    return own


class BestTestEpoch(L.Callback):
    """Evaluate the test set with each epoch's weights; keep the epoch with the best top-1 (LDAM-DRW's
    ``best_acc1``: the best test top-1 over all epochs, the earlier epoch on a tie).

    It runs at the end of each training epoch, before the checkpoint callbacks save the epoch (Lightning
    calls them last), so ``last.ckpt`` holds the record (under :data:`TEST_BEST_KEY`) and a resumed run
    continues it. Every rank evaluates its shard of the test set (split without padding) with rank 0's
    module (:func:`rank_zero_buffers`) and ``compute`` sums the per-rank states: each image counts once
    and the figures are those ``trainer.test`` gives.
    """

    def __init__(self) -> None:
        self.record: dict[str, Any] | None = None  # {"epoch", "result", "epochs_evaluated"}
        self.metrics: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.metrics is None:
            self.metrics = pl_module.new_metrics().to(pl_module.device)

    @torch.no_grad()
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = self.metrics
        was_training = pl_module.training
        own_buffers = rank_zero_buffers(pl_module, trainer.world_size)
        pl_module.eval()
        try:
            with trainer.precision_plugin.test_step_context():
                for batch in trainer.datamodule.test_dataloader():
                    pl_module._eval_step(pl_module._apply_batch_transfer_handler(batch), metrics)
        finally:
            pl_module.train(was_training)
            for buffer, own in own_buffers:
                buffer.copy_(own)
        result = metrics.compute()
        metrics.reset()
        result.pop("confusion", None)  # C x C per epoch in every checkpoint would be large (iNat: 8142^2)
        pl_module.log_dict({f"test_epoch/{k}": v for k, v in scalar_metrics(result).items()}, sync_dist=False)
        record = self.record
        best = None if record is None else record["result"].get("top1")
        evaluated = 1 if record is None else record["epochs_evaluated"] + 1
        if record is None or (result["top1"] is not None and (best is None or result["top1"] > best)):
            record = {"epoch": pl_module.current_epoch, "result": result}
        self.record = {**record, "epochs_evaluated": evaluated}

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if self.record is not None:
            checkpoint[TEST_BEST_KEY] = self.record

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        # a resumed fit continues the record; testing a checkpoint (the best one) must not roll it back
        if trainer.state.fn == TrainerFn.FITTING:
            self.record = checkpoint.get(TEST_BEST_KEY)

    def summary(self) -> dict[str, Any] | None:
        """``summary.json["test_best_epoch"]``: the test-selected epoch and its result, labelled."""
        if self.record is None:
            return None
        record = self.record
        return {
            "epoch": record["epoch"],
            "selected_by": "test/top1",
            "epochs_evaluated": record["epochs_evaluated"],
            "result": record["result"],
            "note": TEST_BEST_NOTE,
        }
