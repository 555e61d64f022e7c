"""One run: compose -> fit -> test -> write ``summary.json`` and plots; returns the swept metric."""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lt_bench import rundir
from lt_bench.best_test_epoch import BestTestEpoch
from lt_bench.checkpointing import (
    AtomicCheckpointIO,
    BestCheckpoint,
    LatestCheckpoint,
    ResumeState,
    check_resumable,
    epochs_done,
    last_checkpoint,
    prepare_checkpoint_dir,
    read_checkpoint,
)
from lt_bench.data.datamodule import LongTailDataModule
from lt_bench.distributed import strategy_of
from lt_bench.errors import ConfigError, TrainingDiverged
from lt_bench.loggers import (
    ModelTestPrefix,
    build_loggers,
    check_logger,
    forget_logged_metrics,
    keep_logged_metrics,
    log_final,
)
from lt_bench.methods import build_method
from lt_bench.metrics import LOWER_IS_BETTER
from lt_bench.schedules import Schedule, plot_schedule, schedule_of
from lt_bench.signals import StopOnSigterm, stop_cleanly_on_sigterm
from lt_bench.startup import print_config_tree, start_process
from lt_bench.summary import format_result, hardware, print_results, result_rows, write_json, write_summary

log = logging.getLogger(__name__)


def build_trainer(
    cfg: DictConfig, run_dir: Path, has_val: bool, with_logger: bool = True, job_type: str = "train"
) -> tuple[L.Trainer, ModelCheckpoint]:
    """The Lightning trainer of a run and the checkpoint callback that selects its model.

    ``with_logger=False``: no logger yet (``trainer.loggers = build_loggers(...)`` later), for a caller that
    must not let a logger create files before the run directory is cleared. ``job_type="eval"``: no W&B
    logger (an evaluation's W&B run is :func:`lt_bench.loggers.log_eval`'s)."""
    t = cfg.trainer
    check_logger(cfg)  # a logger= that cannot be built is refused before the run directory is touched
    last = last_checkpoint(run_dir)
    # `save_last=True` writes last.ckpt only when another checkpoint is saved (a new best; with
    # save_top_k=0, only when training ends): this callback overwrites last.ckpt after every epoch instead.
    latest = LatestCheckpoint(
        dirpath=last.parent, filename=last.stem, enable_version_counter=False, save_on_train_epoch_end=True
    )
    checkpoint = latest
    config = OmegaConf.to_container(cfg, resolve=True)
    # the final model's test logs test_last/*, the selected model's test/* (the keys of summary.json)
    prefix = ModelTestPrefix(selects_model=has_val)
    callbacks: list = [latest, ResumeState(config), StopOnSigterm(last), prefix]
    if has_val:
        checkpoint = BestCheckpoint(
            dirpath=last.parent,
            filename="best-{epoch:03d}",
            monitor=t.select_by,
            mode="min" if t.select_by.removeprefix("val/") in LOWER_IS_BETTER else "max",
            save_top_k=1,
        )
        callbacks.insert(0, checkpoint)
    if t.get("track_test_best"):
        callbacks.append(BestTestEpoch())
    if t.enable_progress_bar:
        callbacks.append(RichProgressBar(leave=False))
    kwargs: dict[str, Any] = {} if has_val else {"limit_val_batches": 0}
    if t.limit_train_batches is not None:
        kwargs["limit_train_batches"] = t.limit_train_batches  # an int: batches; a float: a fraction
    if t.get("gradient_clip_val") is not None:  # applied after every closure call, SAM's two included
        kwargs.update(
            gradient_clip_val=t.gradient_clip_val, gradient_clip_algorithm=t.gradient_clip_algorithm
        )
    trainer = L.Trainer(
        max_epochs=t.max_epochs,
        num_nodes=t.num_nodes,
        fast_dev_run=t.fast_dev_run,
        overfit_batches=t.overfit_batches,
        profiler=t.profiler,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=strategy_of(t),
        precision=t.precision,
        deterministic=t.deterministic,
        check_val_every_n_epoch=t.check_val_every_n_epoch,
        accumulate_grad_batches=t.get("accumulate_grad_batches", 1),
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # our samplers slice a global order per rank themselves
        logger=build_loggers(cfg, run_dir, with_wandb=job_type == "train") if with_logger else False,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        plugins=[AtomicCheckpointIO()],
        **kwargs,
    )
    return trainer, checkpoint


def precision_rewritten(asked: str, runs_as: str) -> list[str]:
    """A warning when Lightning reads ``trainer.precision`` as another setting (``16`` is ``16-mixed``,
    ``bf16`` is ``bf16-mixed``, ...): the summary then records what the run used, not only what was typed."""
    if asked == runs_as:
        return []
    return [
        f"trainer.precision={asked} runs as {runs_as} (Lightning's reading of it); write "
        f"trainer.precision={runs_as} to say so (summary.json: warnings)"
    ]


def realised_imbalance(d: DictConfig, datamodule: LongTailDataModule) -> tuple[float | None, list[str]]:
    """n_max / n_min of the long-tailed training set (before a validation split is held out of it: the
    set ``dataset.imbalance_factor`` describes), and a warning when it differs from the requested factor
    by more than whole-image rounding can explain.

    With ``n_max``, ``n_min`` the realised counts, rounding alone keeps ``IF`` within
    ``[n_max / (n_min + r), (n_max + 1) / n_min]``, ``r`` = 1 (2 after a ``dataset.quantity_ratio`` < 1,
    which rounds down twice). Outside it the data could not give the requested factor: ``n_max / IF`` is
    below one image (every class keeps at least one), or the classes' pools differ in size
    (``even_minority`` keeps ``1/IF`` of each even class's own images). ``profile: none`` requests nothing.
    """
    data = datamodule.data
    labels = [data.train.labels]
    if d.val_fraction > 0 and data.val is not None:  # held out of the long-tailed set: count it back
        labels.append(data.val.labels)
    counts = torch.bincount(torch.cat([y.cpu() for y in labels]), minlength=datamodule.info.num_classes)
    n_max, n_min = int(counts.max()), int(counts.min())
    if n_min == 0:
        return None, []  # a class without training images is the source's to report (profile: none)
    realised = n_max / n_min
    if d.profile == "none":
        return realised, []
    wanted, slack = float(d.imbalance_factor), 1 if d.quantity_ratio == 1 else 2
    if n_max / (n_min + slack) <= wanted * (1 + 1e-9) and wanted <= (n_max + 1) / n_min * (1 + 1e-9):
        return realised, []
    if n_max / wanted < 1:
        why = "n_max / IF is less than one image, and every class keeps at least one"
    else:
        why = "the classes' training pools do not allow it"
    return realised, [
        f"dataset.imbalance_factor={wanted:g} asks for n_max/n_min = {wanted:g}, but the long-tailed "
        f"training set has {n_max}/{n_min} = {realised:.4g} ({why}); the run goes on with that factor "
        "(summary.json: realised_imbalance_factor)"
    ]


def build_run(
    cfg: DictConfig, class_counts: list[int] | None = None
) -> tuple[Schedule, LongTailDataModule, L.LightningModule]:
    """The run's one schedule, handed to the data (which draws epochs as its sampling says) and to the
    method (weights, mixing, stage switches).

    ``class_counts``: the training counts of a model trained on other data of the same classes
    (:mod:`lt_bench.eval` on another test set); the method's groups, priors and buffers follow them.
    """
    schedule = schedule_of(cfg.schedule)
    datamodule = LongTailDataModule(cfg.dataset, cfg.seed, schedule)
    info = datamodule.prepare()
    if class_counts is not None:
        if len(class_counts) != info.num_classes:
            raise ConfigError(
                f"the model was trained on {len(class_counts)} classes but dataset={cfg.dataset.name} has "
                f"{info.num_classes}; evaluate it on data with the classes it was trained on"
            )
        info = dataclasses.replace(info, class_counts=list(class_counts), train_size=sum(class_counts))
    return schedule, datamodule, build_method(cfg, info, schedule)


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
    resumed = None
    if ckpt_path is not None:
        resumed = read_checkpoint(Path(ckpt_path), "pass a checkpoint python -m lt_bench wrote")
        check_resumable(resumed, ckpt_path, model, cfg.trainer.max_epochs)
    if trainer.is_global_zero:
        run_dir = Path(trainer.default_root_dir)
        prepare_checkpoint_dir(
            last_checkpoint(run_dir).parent, resumed, Path(ckpt_path) if ckpt_path else None
        )
        if resumed is not None:
            forget_logged_metrics(run_dir, epochs_done(resumed))
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    if has_val and model.val_result is None:  # resumed from a finished run: fit trained and validated nothing
        trainer.validate(model, datamodule=datamodule, verbose=False)
    val_last = model.val_result
    # read before any test: loading the best checkpoint into the model would restore its older record
    tracker = next((c for c in trainer.callbacks if isinstance(c, BestTestEpoch)), None)
    test_best = None if tracker is None else tracker.summary()
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
    if test_best is not None:  # a figure of its own: `test` and `best_epoch` above never depend on it
        summary["test_best_epoch"] = test_best
    return summary


def train(cfg: DictConfig, run_dir: Path | None = None) -> float:
    """Train and test one configuration; return the metric a sweeper optimises.

    The run directory (:mod:`lt_bench.rundir`): a finished run that the command would continue is left as
    it is (its outcome returned again); otherwise the directory is locked for the run, and a run that
    starts over there needs it free of another run's outputs, or ``overwrite=true``; those are removed only
    once every check that needs no training has passed. Of the processes of a multi-process run, rank 0
    alone locks, clears and writes the directory.
    """
    started_at = time.time()
    hydra_files = rundir.hydra_files(cfg)  # before start_process() resolves cfg in place
    start_process(cfg)
    if cfg.print_config and rank_zero_only.rank == 0:
        print_config_tree(cfg)
    run_dir = run_dir or rundir.run_dir_of_job()
    finished = rundir.finished_run(cfg, run_dir)
    if finished is not None:
        return rundir.finished_outcome(finished, run_dir)
    first_rank = rank_zero_only.rank == 0

    with rundir.prepared(cfg, run_dir, hydra_files, owner=first_rank) as directory:
        ckpt_path = directory.resume_from
        schedule, datamodule, model = build_run(cfg)
        info, has_val = datamodule.info, datamodule.has_val
        trainer, checkpoint = build_trainer(cfg, run_dir, has_val, with_logger=False)
        # before fit: under DDP, rank 0 refuses before it launches the other processes
        datamodule.check_training(trainer.world_size, trainer.limit_train_batches)
        directory.clear_earlier()  # only now that the command has passed every check that needs no training
        trainer.loggers = build_loggers(cfg, run_dir)  # loggers write files: after the earlier ones are gone
        start = f"resuming from {ckpt_path}" if ckpt_path else "fresh start"
        log.info("run directory %s; %s", run_dir, start)
        log.info(
            "data: %d classes, train %d (counts %s), val %d, test %d",
            info.num_classes,
            info.train_size,
            info.class_counts,
            info.val_size,
            info.test_size,
        )
        realised_if, start_warnings = realised_imbalance(cfg.dataset, datamodule)
        start_warnings += precision_rewritten(str(cfg.trainer.precision), str(trainer.precision))
        if trainer.is_global_zero:
            for line in start_warnings:  # one line each, at start, on stderr (the log file gets it too)
                print(f"lt_bench: warning: {line}", file=sys.stderr)
                log.warning("%s", line)
        if ckpt_path is not None:
            keep_logged_metrics(trainer.logger, run_dir)

        record: dict[str, Any] = {
            "class_counts": info.class_counts,
            "epochs": cfg.trainer.max_epochs,
            "seed": cfg.seed,
            "realised_imbalance_factor": realised_if,
            "warnings": start_warnings,
            "config": OmegaConf.to_container(cfg, resolve=True),
            "hardware": hardware(trainer.strategy.root_device),
            "started_at": started_at,
        }
        try:
            with stop_cleanly_on_sigterm(trainer, run_dir):
                summary = _fit_and_test(cfg, trainer, checkpoint, model, datamodule, ckpt_path)
        except TrainingDiverged as err:  # a result too: a requeue or a sweep must not train it again
            err = TrainingDiverged(f"{err} {_kept_checkpoint(run_dir)}")
            if trainer.is_global_zero:
                directory.write_hydra_files()
                write_json(
                    run_dir / rundir.SUMMARY,
                    {"status": "diverged", "reason": str(err), **record, "finished_at": time.time()},
                )
            raise err from None
        summary = {"status": "finished", **summary, **record, "finished_at": time.time()}

        if trainer.is_global_zero:
            # .hydra/ with the summary: the command that wrote the results describes them, never one refused
            # by a check made once training has started (a checkpoint that does not fit, say)
            directory.write_hydra_files()
            # summary.json, confusion_*.npy beside it, per_class_accuracy.png, reliability.png
            confusion = write_summary(run_dir, summary, info.class_counts)
            for label, result in result_rows(summary):
                log.info("%s: %s", label, format_result(result))
            log.info("wrote %s", run_dir / rundir.SUMMARY)
            if schedule.active:
                plot_schedule(schedule, cfg.trainer.max_epochs, run_dir / "schedule.png")
            if cfg.print_table:
                print_results(summary, run_dir)
            # W&B: per-class chart, plots, figures, summary.json; TensorBoard: HPARAMS and the plots
            log_final(trainer.loggers, summary, confusion.get(summary["test"]["confusion"]), run_dir)
    return rundir.objective(summary)


def _kept_checkpoint(run_dir: Path) -> str:
    """The sentence a divergence error ends with: what the user can resume from."""
    last = last_checkpoint(run_dir)
    if not last.exists():
        return "No checkpoint was written yet."
    return f"The last good checkpoint stays in {last}."
