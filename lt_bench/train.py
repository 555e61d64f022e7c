"""One run: compose -> fit -> test -> write ``summary.json`` and plots; returns the swept metric."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from omegaconf import DictConfig, OmegaConf

from lt_bench.checkpointing import (
    AtomicCheckpointIO,
    BestCheckpoint,
    ResumeState,
    StopOnSigterm,
    keep_logged_metrics,
    last_checkpoint,
    resolve_ckpt_path,
    stop_cleanly_on_sigterm,
)
from lt_bench.config import validate
from lt_bench.data.datamodule import LongTailDataModule
from lt_bench.loggers import build_logger, log_final
from lt_bench.methods import build_method
from lt_bench.outputs import SCALAR_KEYS, plot_run_per_class, print_results, result_rows, write_json
from lt_bench.registry import import_plugins
from lt_bench.schedules import Schedule, plot_schedule, schedule_of

log = logging.getLogger(__name__)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _quiet_lightning() -> None:
    # Lightning's start-up chatter (GPU/TPU availability, model summary) buries the results table.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")


def run_dir_of(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path("outputs/manual")


def build_trainer(cfg: DictConfig, run_dir: Path, has_val: bool) -> tuple[L.Trainer, ModelCheckpoint]:
    t = cfg.trainer
    last = last_checkpoint(run_dir)
    # `save_last=True` writes last.ckpt only when another checkpoint is saved (a new best; with
    # save_top_k=0, only when training ends): this callback overwrites last.ckpt after every epoch instead.
    latest = ModelCheckpoint(dirpath=last.parent, filename=last.stem, enable_version_counter=False)
    checkpoint = latest
    config = OmegaConf.to_container(cfg, resolve=True)
    callbacks: list = [latest, ResumeState(config), StopOnSigterm(last)]
    if has_val:
        checkpoint = BestCheckpoint(
            dirpath=last.parent,
            filename="best-{epoch:03d}",
            monitor=t.select_by,
            mode="min" if t.select_by.endswith("loss") else "max",
            save_top_k=1,
        )
        callbacks.insert(0, checkpoint)
    if t.enable_progress_bar:
        callbacks.append(RichProgressBar(leave=False))
    kwargs: dict[str, Any] = {} if has_val else {"limit_val_batches": 0}
    if t.limit_train_batches is not None:
        kwargs["limit_train_batches"] = t.limit_train_batches
    trainer = L.Trainer(
        max_epochs=t.max_epochs,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=t.strategy,
        precision=t.precision,
        deterministic=t.deterministic,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # our samplers slice a global order per rank themselves
        logger=build_logger(cfg, run_dir),
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
        **kwargs,
    )
    return trainer, checkpoint


def build_run(cfg: DictConfig) -> tuple[Schedule, LongTailDataModule, L.LightningModule]:
    """The run's one schedule, handed to the data (which draws epochs as its sampling says) and to the
    method (weights, mixing, stage switches)."""
    schedule = schedule_of(cfg.schedule)
    datamodule = LongTailDataModule(cfg.dataset, cfg.seed, schedule)
    return schedule, datamodule, build_method(cfg, datamodule.prepare(), schedule)


def _epoch_of(path: str) -> int | None:
    if "epoch=" not in path:
        return None
    return int(Path(path).stem.split("epoch=")[1].split("-")[0])


def _fit_and_test(
    cfg: DictConfig,
    trainer: L.Trainer,
    checkpoint: ModelCheckpoint,
    model: L.LightningModule,
    datamodule: LongTailDataModule,
    ckpt_path: str | None,
) -> dict[str, Any]:
    """Fit (from ``ckpt_path`` when given), test the final and the selected model; the summary's results."""
    info, has_val = datamodule.prepare(), datamodule.has_val
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    val_last = model.val_result
    trainer.test(model, datamodule=datamodule, verbose=False)
    test_last = model.test_result
    summary: dict[str, Any] = {
        "class_counts": info.class_counts,
        "epochs": cfg.trainer.max_epochs,
        "seed": cfg.seed,
        "test_last": test_last,
    }
    if has_val and checkpoint.best_model_path:
        trainer.test(model, datamodule=datamodule, ckpt_path=checkpoint.best_model_path, verbose=False)
        summary.update(
            test=model.test_result,
            val=val_last,
            best_epoch=_epoch_of(checkpoint.best_model_path),
            best_val=float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None,
            selected_by=cfg.trainer.select_by,
        )
    else:
        summary.update(test=test_last, best_epoch=cfg.trainer.max_epochs - 1, selected_by="last")
    return summary


def train(cfg: DictConfig, run_dir: Path | None = None) -> float:
    """Train and test one configuration; return the metric a sweeper optimises."""
    started_at = time.time()
    import_plugins(cfg.get("plugins") or [])
    validate(cfg)
    _quiet_lightning()
    run_dir = run_dir or run_dir_of(cfg)
    ckpt_path = resolve_ckpt_path(cfg.ckpt_path, run_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")

    schedule, datamodule, model = build_run(cfg)
    info, has_val = datamodule.info, datamodule.has_val
    log.info("run directory %s; %s", run_dir, f"resuming from {ckpt_path}" if ckpt_path else "fresh start")
    log.info(
        "data: %d classes, train %d (counts %s), val %d, test %d",
        info.num_classes,
        info.train_size,
        info.class_counts,
        info.val_size,
        info.test_size,
    )
    trainer, checkpoint = build_trainer(cfg, run_dir, has_val)
    if ckpt_path is not None:
        keep_logged_metrics(trainer.logger, run_dir)

    with stop_cleanly_on_sigterm(trainer, run_dir):
        summary = _fit_and_test(cfg, trainer, checkpoint, model, datamodule, ckpt_path)
    summary["config"] = OmegaConf.to_container(cfg, resolve=True)
    summary.update(started_at=started_at, finished_at=time.time())

    if trainer.is_global_zero:
        write_json(run_dir / "summary.json", summary)
        for label, result in result_rows(summary):
            log.info("%s: %s", label, ", ".join(f"{k}={_percent(result.get(k))}" for k in SCALAR_KEYS))
        log.info("wrote %s", run_dir / "summary.json")
        plot_run_per_class(summary["test"], info.class_counts, run_dir / "per_class_accuracy.png")
        if schedule.active:
            plot_schedule(schedule, cfg.trainer.max_epochs, run_dir / "schedule.png")
        if cfg.print_table:
            print_results(summary, run_dir)
        log_final(trainer.logger, summary)
    if summary.get("best_val") is not None:
        return summary["best_val"]
    return float(summary["test"]["balanced_acc"])
