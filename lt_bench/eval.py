"""``python -m lt_bench.eval ckpt=PATH [overrides]``: evaluate a trained model again, in a folder of its own
beside the evaluated run (``RUN/eval/SPLIT-DATE_TIME``, or ``hydra.run.dir=PATH``).

The folder is the evaluation's alone (:func:`lt_bench.rundir.prepared_evaluation`): locked while it runs,
never one that holds a training run's files or an earlier evaluation's, and never while a training still
runs in the evaluated run's directory; ``.hydra/`` is written with ``summary.json``, which is written
last. SIGTERM / SIGINT stop it at once with one line (:class:`lt_bench.signals.StopAtOnce`).

The model and its data are rebuilt from the configuration stored with the checkpoint (the one
:class:`~lt_bench.checkpointing.ResumeState` keeps in every checkpoint, else the run directory's
``.hydra/config.yaml``), through the training run's own :func:`~lt_bench.train.build_run` and
:func:`~lt_bench.train.build_trainer`; the command line changes only what it names:

- a key (``dataset.root=/data``, ``trainer.devices=2``) takes the given value;
- a group (``dataset=mnist``: another test set of the same classes) replaces that whole node;
- ``split=test|val|train`` chooses the images, ``save=[logits,features]`` writes ``outputs_<split>.npz``,
  ``posthoc.la=[...]`` / ``posthoc.tau_norm=[...]`` sweep post-hoc adjustments (:mod:`lt_bench.posthoc`),
  ``confusion=true`` keeps the confusion matrix of any number of classes.

The evaluation is the training run's test (``trainer.test`` on the same module class with the same loader
and metric), so on the same data, process count and thread count it gives exactly the training run's
figures, and ``summary.json`` holds the result under the split's name with the keys of training's
``test``. The training class counts (many/medium/few groups, the logit adjustment's prior) come with the
checkpoint, so they stay the training set's when another dataset is evaluated.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
import yaml
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import MISSING, DictConfig, OmegaConf
from torch import Tensor, nn

from lt_bench import config as config_module
from lt_bench import rundir
from lt_bench.checkpointing import CHECKPOINT_DIR, LAST, read_checkpoint
from lt_bench.config import Config
from lt_bench.config_nodes import is_operational
from lt_bench.data.datamodule import split_changes
from lt_bench.data.samplers import eval_shard
from lt_bench.errors import ConfigError, one_line_errors, one_line_hydra_errors
from lt_bench.loggers import log_eval
from lt_bench.methods.base import CLASS_COUNTS_KEY
from lt_bench.models.heads import CosineHead, PrototypeHead
from lt_bench.posthoc import (
    SAVABLE,
    Predictions,
    check_head,
    check_sweep,
    save_predictions,
    sweep,
    sweep_rows,
)
from lt_bench.rundir import run_dir_of_checkpoint, run_dir_of_job
from lt_bench.signals import StopAtOnce
from lt_bench.startup import start_process
from lt_bench.summary import format_result, hardware, print_table, write_summary
from lt_bench.train import build_run, build_trainer

log = logging.getLogger("lt_bench.eval")  # not __main__ under python -m

SPLITS = ("test", "val", "train")
# config groups whose option a command line may name (`dataset=NAME`): the node is replaced as a whole
CONFIG_GROUPS = (
    "dataset",
    "backbone",
    "loss",
    "schedule",
    "optimizer",
    "lr_schedule",
    "method",
    "trainer",
    "logger",
)


@dataclass
class PosthocConfig:
    """The built-in adjustments' taus; a plugin's adjustment adds its own key (``+posthoc.NAME=[...]``)."""

    la: list[float] = field(default_factory=list)  # taus of z - tau log pi
    tau_norm: list[float] = field(default_factory=list)  # taus of w / ||w||^tau
    select_by: str = "balanced_acc"


@dataclass
class EvalConfig(Config):
    """The training schema plus evaluation's own keys (see conf/eval.yaml)."""

    ckpt: str = MISSING
    split: str = "test"
    save: list[str] = field(default_factory=list)
    posthoc: PosthocConfig = field(default_factory=PosthocConfig)
    confusion: bool | None = None


# top-level keys of the eval config that are not the training run's
EVAL_KEYS = tuple(f.name for f in fields(EvalConfig) if f.name not in {g.name for g in fields(Config)})


def register() -> None:
    """The training schema and resolvers, the eval schema conf/eval.yaml starts from, and the resolver of
    its output folder (idempotent)."""
    config_module.register()
    if not OmegaConf.has_resolver("lt.evaluations"):
        OmegaConf.register_new_resolver("lt.evaluations", rundir.evaluations_folder)
    ConfigStore.instance().store(name="lt_bench_eval_schema", node=config_module._schema(EvalConfig))


# -- the checkpoint and its configuration -------------------------------------------------------------------
def checkpoint_file(ckpt: str) -> Path:
    """``ckpt`` itself when it is a file; for a run directory, the model its ``summary.json["test"]``
    reports: the best checkpoint when model selection ran, else ``last.ckpt``."""
    path = Path(ckpt)
    if path.is_file():
        return path
    if path.is_dir():
        folder = path / CHECKPOINT_DIR
        best = sorted(folder.glob("best-*.ckpt"))
        if len(best) == 1:
            return best[0]
        if len(best) > 1:  # the summary names the selected epoch; without it, guessing would be silent
            chosen = selected_checkpoint(path, best)
            if chosen is not None:
                return chosen
            names = ", ".join(b.name for b in best)
            raise ConfigError(
                f"ckpt={ckpt}: {folder} holds {len(best)} best checkpoints ({names}) and no summary.json "
                f"names the selected epoch; pass the one to evaluate: ckpt={best[-1]}"
            )
        if (folder / LAST).is_file():
            return folder / LAST
        raise ConfigError(f"ckpt={ckpt}: the directory holds no {CHECKPOINT_DIR}/{LAST}; pass a .ckpt file")
    rundir.check_ckpt_exists(ckpt)
    raise ConfigError(f"ckpt={ckpt} is neither a file nor a directory; pass a checkpoint or a run directory")


def selected_checkpoint(run_dir: Path, best: list[Path]) -> Path | None:
    """Of several ``best-epoch=*.ckpt``, the one of the epoch the run's ``summary.json`` selected
    (``best_epoch``), or None when the summary is missing, unreadable or names none of them."""
    try:
        epoch = int(json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["best_epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return next((b for b in best if b.stem.split("epoch=")[-1].split("-")[0] == f"{epoch:03d}"), None)


def stored_config(checkpoint: dict[str, Any], path: Path) -> DictConfig:
    """The resolved configuration the checkpoint stores, else its run directory's ``.hydra/config.yaml``."""
    state = (checkpoint.get("callbacks") or {}).get("ResumeState") or {}
    if isinstance(state.get("config"), dict):
        return OmegaConf.create(state["config"])
    saved = run_dir_of_checkpoint(path) / ".hydra" / "config.yaml"
    if saved.is_file():
        return OmegaConf.create(yaml.safe_load(saved.read_text()))
    raise ConfigError(
        f"ckpt={path} stores no configuration and {saved} does not exist; evaluate a checkpoint written by "
        "python -m lt_bench (or keep it inside its run directory)"
    )


def trained_class_counts(checkpoint: dict[str, Any], path: Path) -> list[int] | None:
    """The training counts the checkpoint records, else those of the ``summary.json`` beside it."""
    if checkpoint.get(CLASS_COUNTS_KEY) is not None:
        return [int(n) for n in checkpoint[CLASS_COUNTS_KEY]]
    summary = run_dir_of_checkpoint(path) / "summary.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return [int(n) for n in json.loads(summary.read_text())["class_counts"]]
    return None


def apply_overrides(stored: DictConfig, composed: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """The stored run configuration, typed by the training schema, with what ``overrides`` name taken from
    ``composed`` (the eval command line as Hydra composed it): a group (``dataset=NAME``) replaces its
    node, a key (``dataset.root=PATH``) takes its value; evaluation's own keys are left out."""
    try:
        cfg = OmegaConf.merge(config_module._schema(), stored)
    except Exception as err:  # a key this version no longer has, or a value of the wrong type
        raise ConfigError(
            f"the checkpoint's configuration does not fit this version of lt_bench: {err}"
        ) from None
    groups, keys = [], []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if key.split(".")[0] in EVAL_KEYS or key.split(".")[0].split("/")[0] == "hydra":
            continue
        if key in ("experiment", "debug"):
            raise ConfigError(
                f"{key}= composes a training run; evaluation rebuilds the run from the checkpoint's "
                "configuration: name the keys to change instead (e.g. dataset=NAME, dataset.root=PATH)"
            )
        if override.is_delete() or override.package is not None:
            raise ConfigError(
                f"{override.input_line}: evaluation takes group=option and key=value overrides only"
            )
        (groups if key in CONFIG_GROUPS else keys).append(key)
    for group in groups:
        cfg[group] = composed[group]
    for key in keys:
        value = OmegaConf.select(composed, key)
        if OmegaConf.is_config(value):  # a node or a list: its plain values
            value = OmegaConf.to_container(value, resolve=True)
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    return cfg


def changes_data(overrides: Sequence[str]) -> bool:
    """Whether the overrides change which images the dataset holds (not merely where they are)."""
    keys = [o.key_or_group for o in OverridesParser.create().parse_overrides(list(overrides))]
    return any(k == "dataset" or (k.startswith("dataset.") and not is_operational(k)) for k in keys)


def check_same_images(trained: DictConfig, evaluated: DictConfig) -> dict[str, Any]:
    """On the training run's own data (same ``dataset.source``), every split must hold the images it held in
    training: a key that redraws them (``dataset.val_fraction``, the data seed, the profile, ...;
    :func:`lt_bench.data.datamodule.split_changes`) would score training images as validation or test
    images, or pick a post-hoc tau on them. ConfigError naming the keys. Another dataset of the same
    classes (``dataset=NAME``) is allowed; the returned record says which data were evaluated."""
    changed = split_changes(trained.dataset, trained.seed, evaluated.dataset, evaluated.seed)
    same_source = trained.dataset.source == evaluated.dataset.source
    if same_source and changed:
        raise ConfigError(
            f"{', '.join(changed)} would change which images the splits hold relative to training (the "
            "model would be scored, or a post-hoc tau chosen, on images it was trained on); drop "
            f"{'it' if len(changed) == 1 else 'them'}: evaluation keeps the training run's splits. Another "
            "dataset of the same classes is dataset=NAME"
        )
    return {
        "evaluated": str(evaluated.dataset.name),
        "trained_on": str(trained.dataset.name),
        "same_as_training": same_source,
    }


def check_weights_fit(model: nn.Module, state_dict: dict[str, Tensor]) -> None:
    """ConfigError naming the first differences when the checkpoint's weights do not fit ``model``."""
    own = model.state_dict()
    problems = [f"{k} is missing from the checkpoint" for k in own if k not in state_dict]
    problems += [f"{k} is in the checkpoint but not in the model" for k in state_dict if k not in own]
    problems += [
        f"{k} is {list(state_dict[k].shape)} in the checkpoint and {list(own[k].shape)} here"
        for k in own
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ConfigError(
            f"the checkpoint does not fit the model rebuilt from its configuration with these overrides: "
            f"{'; '.join(problems[:3])}{more}. The data must keep the classes, channels and image size the "
            "model was trained on, and the backbone/method/loss.head overrides its architecture"
        )


# -- recording and gathering outputs ----------------------------------------------------------------------
def head_facts(model: L.LightningModule) -> dict[str, Any]:
    """What post-hoc adjustments need to know about the model's head."""
    head = model.head
    if isinstance(head, nn.Linear):
        bias = None if head.bias is None else head.bias.detach().cpu()
        return {"head": "linear", "head_weight": head.weight.detach().cpu(), "head_bias": bias}
    for kind, cls in (("cosine", CosineHead), ("prototype", PrototypeHead)):  # ARConvL's region head too
        if isinstance(head, cls):
            return {"head": kind}
    return {"head": "other"}


def gather_shards(strategy: Any, rows: Tensor, n: int) -> Tensor:
    """The [n, ...] rows of the whole split from every rank's :func:`eval_shard` rows (all ranks call it)."""
    world = strategy.world_size
    if world == 1:
        return rows
    device = strategy.root_device
    lengths = strategy.all_gather(torch.tensor([len(rows)], device=device)).view(-1).tolist()
    padded = torch.zeros((max(lengths), *rows.shape[1:]), dtype=rows.dtype, device=device)
    padded[: len(rows)] = rows.to(device)  # shards differ by at most one row: pad to the longest
    gathered = strategy.all_gather(padded).cpu()
    whole = torch.empty((n, *rows.shape[1:]), dtype=rows.dtype)
    for rank in range(world):
        whole[eval_shard(n, rank, world)] = gathered[rank, : lengths[rank]]
    return whole


class PredictionRecorder(L.Callback):
    """Keeps what ``test_step`` returns (logits, features, targets) and, at the end of the test, the whole
    split's rows in split order (gathered from every rank)."""

    def __init__(self, features: bool) -> None:
        self.keep_features = features
        self.n = 0
        self.parts: dict[str, list[Tensor]] = {}
        self.whole: dict[str, Tensor] = {}

    def start(self, n: int) -> None:
        self.n, self.parts, self.whole = n, {"logits": [], "targets": [], "features": []}, {}

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if not isinstance(outputs, dict) or "logits" not in outputs:
            raise ConfigError(
                f"method={pl_module.cfg.method.name} returns no outputs from its test_step, so save= and "
                "posthoc= have nothing to record; evaluate it without them"
            )
        self.parts["logits"].append(outputs["logits"].detach().float().cpu())
        self.parts["targets"].append(outputs["targets"].detach().long().cpu())
        if self.keep_features:
            self.parts["features"].append(outputs["features"].detach().float().cpu())

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        for name, parts in self.parts.items():
            if parts:
                self.whole[name] = gather_shards(trainer.strategy, torch.cat(parts), self.n)
        self.parts = {}


@contextlib.contextmanager
def serving_as_test(datamodule: Any, split: str) -> Iterator[int]:
    """The datamodule's test loader serves ``split`` (val, or the un-augmented training images) for the
    duration; yields the split's size. The loader, its sharding and the metric stay the training test's."""
    data = datamodule.data
    chosen = {"test": data.test, "val": data.val, "train": data.train}[split]
    if chosen is None:
        raise ConfigError(
            f"split={split}: this run has no validation split (dataset.val_fraction=0 in its configuration)"
        )
    original, data.test = data.test, chosen
    try:
        yield len(chosen)
    finally:
        data.test = original


# -- the evaluation -----------------------------------------------------------------------------------------
def check_request(cfg: DictConfig) -> None:
    if cfg.split not in SPLITS:
        raise ConfigError(f"split={cfg.split!r}; choose one of: {', '.join(SPLITS)}")
    unknown = [s for s in cfg.save if s not in SAVABLE]
    if unknown:
        raise ConfigError(
            f"save={list(cfg.save)}: {', '.join(unknown)} unknown; save a subset of {list(SAVABLE)}"
        )


def posthoc_taus(cfg: DictConfig) -> dict[str, list[float]]:
    """``{adjustment: taus}`` of every ``posthoc.`` list given (every key but ``select_by``)."""
    return {a: [float(t) for t in v] for a, v in cfg.posthoc.items() if a != "select_by" and v}


def evaluate(
    cfg: DictConfig,
    overrides: Sequence[str],
    run_dir: Path,
    hydra_files: dict[str, str] | None = None,
    stop: StopAtOnce | None = None,
) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt`` as the command line says, into ``run_dir`` (a folder of its own:
    :func:`lt_bench.rundir.prepared_evaluation`); returns the summary (rank 0 writes it, with
    ``hydra_files`` and last). ``stop``: the process's stop-signal handling, whose stop waits for the
    final writes."""
    check_request(cfg)
    ckpt = checkpoint_file(cfg.ckpt)
    with rundir.prepared_evaluation(run_dir, run_dir_of_checkpoint(ckpt), owner=rundir.first_rank()):
        return _evaluate(cfg, overrides, run_dir, ckpt, hydra_files or {}, stop or StopAtOnce("", ""))


def _evaluate(
    cfg: DictConfig,
    overrides: Sequence[str],
    run_dir: Path,
    ckpt: Path,
    hydra_files: dict[str, str],
    stop: StopAtOnce,
) -> dict[str, Any]:
    started_at = time.time()
    checkpoint = read_checkpoint(
        ckpt, "pass ckpt= a checkpoint that python -m lt_bench wrote, or its run directory"
    )
    stored = stored_config(checkpoint, ckpt)
    run_cfg = apply_overrides(stored, cfg, overrides)
    run_cfg.ckpt_path = None
    start_process(run_cfg)
    data = check_same_images(OmegaConf.merge(config_module._schema(), stored), run_cfg)
    check_sweep(posthoc_taus(cfg), cfg.posthoc.select_by)  # a plugin's adjustment is known from here

    counts = trained_class_counts(checkpoint, ckpt)
    if counts is None and changes_data(overrides):
        raise ConfigError(
            f"ckpt={ckpt} records no training class counts (it predates them) and no summary.json is beside "
            "it, so the many/medium/few groups of other data are unknown; evaluate it on its own dataset"
        )
    _, datamodule, model = build_run(run_cfg, class_counts=counts)
    counts = list(model.info.class_counts)
    check_weights_fit(model, checkpoint["state_dict"])
    model.load_state_dict(checkpoint["state_dict"])
    if cfg.confusion is not None:
        model.test_metrics = model.test_metrics.like(confusion=cfg.confusion)

    facts = head_facts(model)
    taus = posthoc_taus(cfg)
    for adjustment in taus:  # before any evaluation: a tau-norm of a cosine head is refused at once
        check_head(adjustment, facts["head"])

    trainer, _ = build_trainer(run_cfg, run_dir, has_val=False, job_type="eval")
    # the loss of the epoch the checkpoint continues with, as training's own test after fit uses
    trainer.fit_loop.epoch_progress.current.completed = int(checkpoint.get("epoch", -1)) + 1
    recorder = PredictionRecorder(features=bool("features" in cfg.save or "tau_norm" in taus))
    if cfg.save or taus:
        trainer.callbacks.append(recorder)
    # post-hoc taus are chosen on the validation split, so it is evaluated first when there is one
    splits = [cfg.split]
    if taus and cfg.split != "val" and datamodule.data.val is not None:
        splits.insert(0, "val")
    results: dict[str, dict[str, Any]] = {}
    outputs: dict[str, Predictions] = {}
    for split in splits:
        with serving_as_test(datamodule, split) as n:
            recorder.start(n)
            trainer.test(model, datamodule=datamodule, verbose=False)
        results[split] = model.test_result
        if recorder.whole:
            w = recorder.whole
            outputs[split] = Predictions(
                logits=w["logits"],
                targets=w["targets"],
                indices=torch.arange(n),
                class_counts=counts,
                features=w.get("features"),
                logit_scale=model.logit_scale,
                **facts,
            )

    summary: dict[str, Any] = {
        **results,
        "split": cfg.split,
        "checkpoint": str(ckpt.resolve()),
        "checkpoint_epoch": checkpoint.get("epoch"),
        "class_counts": counts,
        "dataset": data,
        "overrides": [o for o in overrides if not o.startswith("hydra")],
    }
    if not trainer.is_global_zero:
        return summary
    if taus:
        new_metric = lambda: model.test_metrics.like(confusion=False)  # figures only
        summary["posthoc"] = sweep(outputs, taus, new_metric, "val", cfg.posthoc.select_by)
    with stop.deferred():  # a stop signal now waits for these writes; summary.json is the last of them
        if cfg.save:
            name = f"outputs_{cfg.split}.npz"
            save_predictions(run_dir / name, outputs[cfg.split], keep=list(cfg.save))
            summary["outputs"] = name
        summary["config"] = OmegaConf.to_container(run_cfg, resolve=True)
        summary["hardware"] = hardware(trainer.strategy.root_device)
        summary.update(started_at=started_at, finished_at=time.time())
        rundir.write_hydra_files(run_dir, hydra_files)
        write_summary(run_dir, summary, counts, key=cfg.split)
        stop.outcome = f"the evaluation had finished: {run_dir / 'summary.json'} is complete"
    log_eval(run_cfg, summary, run_dir, run_dir_of_checkpoint(ckpt))  # W&B, when the run used it
    log.info("%s: %s", cfg.split, format_result(summary[cfg.split]))
    log.info("wrote %s", run_dir / "summary.json")
    if run_cfg.print_table:
        print_summary(summary, run_dir)
    return summary


def posthoc_rows(report: dict[str, Any], split: str) -> list[tuple[str, dict[str, Any]]]:
    """One (label, figures on ``split``) per adjustment and tau; the selected tau is marked."""
    rows = []
    on, select_by = report["selected_on"], report["select_by"]
    for adjustment, row, chosen in sweep_rows(report):
        label = f"{adjustment} tau={row['tau']:g}"
        if on is not None and on != split:
            value = row[on].get(select_by)
            label += f" ({on} {select_by} {'—' if value is None else f'{100 * value:.2f}'})"
        rows.append((label + (" *" if chosen else ""), row[split]))
    return rows


def print_summary(summary: dict[str, Any], run_dir: Path) -> None:
    split = summary["split"]
    result = summary[split]
    footer = (
        f"{split} images: {result['n']}   checkpoint: {summary['checkpoint']} (epoch "
        f"{summary['checkpoint_epoch']})   run directory: {run_dir}"
    )
    print_table([(f"{split} split", result)], footer)
    report = summary.get("posthoc")
    if report:
        on = report["selected_on"]
        note = (
            f"* = chosen on the {on} split by {report['select_by']}"
            if on is not None
            else "no validation split: no tau is chosen (choosing on the test split would tune on it)"
        )
        print_table(posthoc_rows(report, split), note, title=f"post-hoc adjustments, {split} split")


register()
one_line_hydra_errors()  # Hydra's refusals of the command line: one line, exit status 2


EVALUATE_AGAIN = "run the evaluation again"


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    run_dir = run_dir_of_job()
    stop = StopAtOnce(
        "the evaluation",
        f"no summary.json was written in {run_dir}; {EVALUATE_AGAIN} (a new folder: leave hydra.run.dir out)",
    )
    with one_line_errors(then=EVALUATE_AGAIN), stop.installed():
        if OmegaConf.is_missing(cfg, "ckpt"):
            raise ConfigError(rundir.MISSING_CKPT)
        files = rundir.hydra_files(cfg)  # .hydra/*, written with the summary
        evaluate(cfg, list(HydraConfig.get().overrides.task), run_dir, files, stop)


if __name__ == "__main__":
    main()
