"""``logger=csv|tensorboard|wandb|none`` (or a list, ``logger=[tensorboard,wandb]``), and what a finished
run adds to TensorBoard and W&B.

``metrics.csv`` is the file of record: the CSV logger is always one of the loggers, unless ``logger=none``
(no logger at all).

W&B never prompts and never waits on a network it cannot reach: without an API key, with the server
unreachable (``WANDB_MODE=online`` included), or when the server does not start the run within
:data:`INIT_TIMEOUT_S` seconds (``WANDB_INIT_TIMEOUT`` sets it), the run is written offline under
``<run dir>/wandb`` and one line says why and how to upload it (``wandb sync``). In a multirun every
job is its own W&B run; a run's group is its setting (the overrides that change the science, without the
seed) and its name the setting and the seed; :func:`log_final` logs the per-class accuracy, the
confusion matrix and the plots and finishes the run, so the next job of the same process starts a new
one. :func:`log_eval` logs an evaluation as a run of the training run's group.
"""

from __future__ import annotations

import csv
import hashlib
import math
import netrc
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from lt_bench.atomic import atomic_write
from lt_bench.config_nodes import flatten_config, setting_name
from lt_bench.errors import ConfigError
from lt_bench.metrics import CONFUSION_MAX_CLASSES, SCALAR_KEYS
from lt_bench.posthoc import sweep_rows

METRICS_FILE = "metrics.csv"  # Lightning's CSVLogger file name (ExperimentWriter.NAME_METRICS_FILE)

LOGGER_NAMES = ("csv", "tensorboard", "wandb", "none")
WANDB_MODES = ("online", "offline", "disabled")
DEFAULT_WANDB_URL = "https://api.wandb.ai"
# wandb's own default is 90 s, spent again on every job of a sweep when the server does not answer
INIT_TIMEOUT_S = 20.0
# The confusion-matrix chart holds C x C cells: past CONFUSION_MAX_CLASSES it is unreadable and the upload
# is large, so only the per-class table is logged (ImageNet-LT has 1,000 classes, iNaturalist 8,142).


# -- choosing the mode ---------------------------------------------------------------------------------
def wandb_host(env: Mapping[str, str]) -> tuple[str, int]:
    """Host and port of the W&B server (``WANDB_BASE_URL`` for a self-hosted one)."""
    url = urlparse(env.get("WANDB_BASE_URL") or DEFAULT_WANDB_URL)
    port = url.port or (80 if url.scheme == "http" else 443)
    return url.hostname or "api.wandb.ai", port


def has_credentials(env: Mapping[str, str], home: Path) -> bool:
    """An API key in the environment, or a netrc entry for the W&B host (where ``wandb login`` writes it)."""
    if env.get("WANDB_API_KEY"):
        return True
    path = Path(env["NETRC"]) if env.get("NETRC") else home / ".netrc"
    try:
        return netrc.netrc(str(path)).authenticators(wandb_host(env)[0]) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def server_reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a TCP connection opens within ``timeout`` seconds (bounded, unlike W&B's own retries)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def choose_wandb_mode(
    requested: str | None,
    env: Mapping[str, str],
    credentials: bool,
    reachable: Callable[[], bool],
) -> tuple[str, str]:
    """``(mode, reason)``: ``logger.mode`` wins, then ``WANDB_MODE``; otherwise online only with credentials
    and a reachable server. Online without credentials would make wandb prompt for a key, and online with
    an unreachable server would wait for it (then fail), so neither ever is."""
    for source, mode in (("logger.mode", requested), ("WANDB_MODE", env.get("WANDB_MODE"))):
        if not mode:
            continue
        mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)  # wandb's legacy spellings
        if mode not in WANDB_MODES:
            raise ConfigError(f"{source}={mode!r} is not a W&B mode; choose one of: {', '.join(WANDB_MODES)}")
        if mode == "online" and not credentials:
            return "offline", f"{source}=online but no W&B API key (run `wandb login` or set WANDB_API_KEY)"
        if mode == "online" and not reachable():
            return "offline", f"{source}=online but the W&B server is not reachable"
        return mode, f"{source}={mode}"
    if not credentials:
        return "offline", "no W&B API key"
    if not reachable():
        return "offline", "W&B server not reachable"
    return "online", "API key found and server reachable"


# -- what identifies a run -----------------------------------------------------------------------------
# W&B refuses a group or run name past 128 characters
WANDB_NAME_MAX = 128


def sweep_group(sweep_dir: str | Path) -> str:
    """The name of a sweep directory (the run's ``sweep=`` tag), with its date folder when the name is only
    a time (Hydra's default ``multirun/DATE/TIME`` would otherwise collide across days)."""
    path = Path(sweep_dir)
    name = path.name or str(path)
    looks_like_time = len(name) == 8 and name.replace("-", "").isdigit()
    return f"{path.parent.name}_{name}" if looks_like_time and path.parent.name else name


def hydra_job() -> tuple[list[str] | None, str | None]:
    """``(overrides, sweep directory)`` of the Hydra job this process runs: the command line's overrides
    (``hydra.overrides.task``, a trial's sampled values included) and, in a multirun, the sweep's
    directory. ``(None, None)`` outside Hydra (a user's own script, an in-process test)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return None, None
        hydra_cfg = HydraConfig.get()
        sweep = str(hydra_cfg.sweep.dir) if hydra_cfg.mode == RunMode.MULTIRUN else None
        return [str(o) for o in hydra_cfg.overrides.task], sweep
    except (ImportError, ValueError):
        return None, None


def _bounded(text: str) -> str:
    if len(text) <= WANDB_NAME_MAX:
        return text
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return f"{text[: WANDB_NAME_MAX - 10]}..{digest}"


def run_identity(cfg: DictConfig, overrides: Sequence[str] | None = None) -> tuple[str | None, str | None]:
    """``(group, name)`` for W&B.

    The group is the run's *setting*: its overrides that change the science, without ``seed`` and the
    execution-only keys (:func:`lt_bench.config_nodes.setting_name`, the report's grouping), so every seed
    of a configuration lands in one group, whichever sweep ran it; ``logger.group`` replaces it. The name
    is the setting and the seed (``loss=la, seed=1``). ``overrides``: the run's command-line overrides
    (default: this Hydra job's); without any (outside Hydra) the group is ``logger.group`` and W&B names
    the run."""

    if overrides is None:
        overrides, _ = hydra_job()
    group = cfg.logger.get("group")
    if overrides is None:
        return group, None
    setting = setting_name(list(overrides))
    return _bounded(group or setting), _bounded(f"{setting}, seed={cfg.seed}")


def run_tags(cfg: DictConfig, sweep_dir: str | None = None) -> list[str]:
    """Tags to filter the dashboard by what a run composed, ``sweep=NAME`` (the sweep directory's name) in
    a multirun, plus ``logger.tags``. ``sweep_dir``: default this Hydra job's."""
    if sweep_dir is None:
        _, sweep_dir = hydra_job()
    tags = [f"{group}={cfg[group].name}" for group in ("method", "loss", "schedule", "dataset")]
    if sweep_dir:
        tags.append(f"sweep={sweep_group(sweep_dir)}"[:64])  # W&B's limit on a tag
    return tags + [str(t) for t in (cfg.logger.get("tags") or [])]


# -- building ------------------------------------------------------------------------------------------
def _is_rank_zero() -> bool:
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _writable_home_or_redirect(run_dir: Path) -> None:
    """wandb keeps settings and a cache under HOME; where HOME is read-only, keep them in the run dir."""
    home = Path.home()
    if os.access(home, os.W_OK):
        return
    for var, sub in (
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_DATA_DIR", "data"),
    ):
        os.environ.setdefault(var, str(run_dir / "wandb" / f".{sub}"))


def start_or_offline(make: Callable[[str], Any], mode: str, reason: str) -> tuple[Any, str, str]:
    """``(logger, mode, reason)``: ``make(mode)``, its W&B run started now on rank 0 when online (the
    wait bounded by the init timeout), and ``make("offline")`` instead when the server does not start it.

    Lightning would start the run inside ``fit``, where a server that accepts connections but never
    answers as W&B (a proxy, a wrong ``WANDB_BASE_URL``) ends the run in a traceback.
    """
    import wandb

    logger = make(mode)
    if mode != "online" or not _is_rank_zero():
        return logger, mode, reason
    try:
        logger.experiment  # noqa: B018 - wandb.init
    except (wandb.errors.Error, TimeoutError) as err:
        wandb.finish(exit_code=1)
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return make("offline"), "offline", f"W&B did not start the run online: {first_line}"
    return logger, mode, reason


def log_model_of(node: DictConfig) -> bool | str:
    """``logger.log_model``, as Lightning's WandbLogger reads it: ``false`` (no checkpoint uploaded),
    ``true`` (the selected and the last checkpoint, once training ends), ``all`` (every checkpoint as it
    is written)."""
    value = node.get("log_model", False)
    value = {"true": True, "false": False}.get(str(value).lower(), value) if isinstance(value, str) else value
    if value is None or value is False:
        return False
    if value is True or value == "all":
        return value
    raise ConfigError(
        f"logger.log_model={value!r} is not a choice; choose false (no checkpoint uploaded), true (the "
        "selected and last checkpoints, at the end of training) or all (every checkpoint as it is written)"
    )


def build_wandb_logger(
    cfg: DictConfig,
    run_dir: Path,
    *,
    overrides: Sequence[str] | None = None,
    sweep_dir: str | None = None,
    job_type: str | None = None,
    extra_config: Mapping[str, Any] | None = None,
):
    """Lightning's WandbLogger for the run in ``run_dir``, its W&B run started (online, or offline with one
    line saying why). Identity: :func:`run_identity` and :func:`run_tags` (``overrides`` and ``sweep_dir``
    default to this Hydra job's); ``job_type``: ``logger.job_type``, default ``train``."""
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    env = os.environ
    mode, reason = choose_wandb_mode(
        cfg.logger.get("mode"),
        env,
        has_credentials(env, Path.home()),
        lambda: server_reachable(*wandb_host(env)),
    )
    log_model = log_model_of(cfg.logger)
    os.environ.setdefault("WANDB_SILENT", "true")
    _writable_home_or_redirect(run_dir)
    if wandb.run is not None:
        # a previous job of this process (basic/joblib launcher) ended without finishing its run:
        # Lightning would silently reuse it for this job
        wandb.finish(exit_code=1)
    group, name = run_identity(cfg, overrides)
    config = flatten_config(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    config.update(run_dir=str(run_dir), **(extra_config or {}))
    # WANDB_INIT_TIMEOUT, when set, is wandb's to read (and check)
    settings = (
        {} if env.get("WANDB_INIT_TIMEOUT") else {"settings": wandb.Settings(init_timeout=INIT_TIMEOUT_S)}
    )

    def make(mode: str) -> WandbLogger:
        logger = WandbLogger(
            project=cfg.logger.get("project") or "lt_bench",
            entity=cfg.logger.get("entity"),
            group=group,
            name=name,
            save_dir=str(run_dir),
            mode=mode,
            config=config,
            tags=run_tags(cfg, sweep_dir),
            job_type=job_type or cfg.logger.get("job_type") or "train",
            log_model=log_model,
            **settings,
        )
        # Lightning always passes anonymous=None, which wandb >= 0.19 answers with a deprecation warning
        getattr(logger, "_wandb_init", {}).pop("anonymous", None)
        return logger

    logger, mode, reason = start_or_offline(make, mode, reason)
    if mode == "offline" and _is_rank_zero():
        print(
            f"wandb: offline ({reason}): the run is saved in {run_dir / 'wandb'}; "
            f"upload it later with `wandb sync {run_dir / 'wandb'}`",
            file=sys.stderr,
            flush=True,
        )
    return logger


def logger_names(node: DictConfig | Mapping[str, Any]) -> list[str]:
    """The loggers ``logger=`` asks for, in the order they are built: ``csv`` first and always (the file of
    record, ``metrics.csv``), then ``tensorboard`` and ``wandb`` when named; ``[]`` for ``logger=none``.

    ``logger=wandb`` is one option; ``logger=[tensorboard,wandb]`` merges several into the one node, each
    naming itself under ``logger.use`` (a config stored before ``use`` existed has its ``name`` only)."""
    use = node.get("use")
    named = [str(k) for k, on in use.items() if on] if use else [str(node.get("name"))]
    unknown = [n for n in named if n not in LOGGER_NAMES]
    if unknown:
        raise ConfigError(
            f"logger={unknown[0]!r} is not known; choose one of: {', '.join(LOGGER_NAMES)}, or a list "
            "such as logger=[tensorboard,wandb]"
        )
    if "none" in named:
        if len(named) > 1:
            others = ", ".join(n for n in named if n != "none")
            raise ConfigError(f"logger=none means no logger at all, so it does not combine with {others}")
        return []
    return ["csv", *(n for n in ("tensorboard", "wandb") if n in named)]


def check_logger(cfg: DictConfig) -> None:
    """Refuse, in one line, a ``logger`` node no logger can be built from (before anything is written)."""
    names = logger_names(cfg.logger)
    if "wandb" in names:
        log_model_of(cfg.logger)
        choose_wandb_mode(cfg.logger.get("mode"), {}, credentials=True, reachable=lambda: True)


def build_loggers(cfg: DictConfig, run_dir: Path, with_wandb: bool = True) -> list[Any]:
    """The Lightning loggers of a run in ``run_dir`` (:func:`logger_names`): the CSV logger first (what
    ``trainer.logger`` returns; a resume keeps its rows), then TensorBoard (``<run dir>/tensorboard``) and
    W&B. Pass the list to ``Trainer(logger=...)`` or set ``trainer.loggers``. ``with_wandb=False``: no
    W&B logger (an evaluation's W&B run is :func:`log_eval`'s)."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers: list[Any] = []
    for name in logger_names(cfg.logger):
        if name == "wandb" and not with_wandb:
            continue
        if name == "csv":
            # every logged row reaches the file at once (an append; rows come once per epoch or log
            # interval), so a kill -9 loses none: Lightning's default holds 100 steps' rows in memory
            loggers.append(CSVLogger(save_dir=str(run_dir), name="", version="", flush_logs_every_n_steps=1))
        elif name == "tensorboard":
            # no hp_metric placeholder: log_final writes the hyper-parameters with the run's final figures
            loggers.append(
                TensorBoardLogger(
                    save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False
                )
            )
        else:
            loggers.append(build_wandb_logger(cfg, run_dir))
    return loggers


def build_logger(cfg: DictConfig, run_dir: Path) -> Any:
    """:func:`build_loggers` as ``Trainer(logger=...)`` takes it: the one logger, the list when there are
    several, ``False`` for none."""
    loggers = build_loggers(cfg, run_dir)
    return loggers[0] if len(loggers) == 1 else (loggers or False)


class ModelTestPrefix(Callback):
    """Names what each ``trainer.test`` logs: ``test/...`` for the selected model (a test from its
    checkpoint, or the only test of a run without model selection) and ``test_last/...`` for the final
    epoch's model when the selected one is tested after it, so the two never share a key (the keys
    summary.json uses too). It sets the module's ``test_prefix`` before each test."""

    def __init__(self, selects_model: bool) -> None:
        self.selects_model = selects_model

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        tests_selected = trainer.ckpt_path is not None or not self.selects_model
        pl_module.test_prefix = "test" if tests_selected else "test_last"


# -- the end of a run ----------------------------------------------------------------------------------
PLOTS = ("per_class_accuracy.png", "reliability.png", "schedule.png")  # lt_bench.summary's and schedule's
# files of the run directory saved with the W&B run (the resolved values are in summary.json's "config")
SAVED_FILES = ("summary.json", ".hydra/config.yaml", ".hydra/overrides.yaml")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def per_class_rows(summary: Mapping[str, Any]) -> list[list[Any]]:
    """``[class, training count, test recall, final-epoch test recall]`` per class."""
    counts = summary["class_counts"]
    selected = summary["test"]["per_class"]
    last = (summary.get("test_last") or summary["test"])["per_class"]
    return [[j, int(counts[j]), _number(selected[j]), _number(last[j])] for j in range(len(counts))]


def confusion_rows(confusion: Any) -> list[list[Any]]:
    """``[actual, predicted, count]`` for every cell of a [C, C] matrix (nested lists, tensor or array),
    the layout of W&B's confusion-matrix chart."""
    return [[str(a), str(p), int(n)] for a, row in enumerate(confusion) for p, n in enumerate(row)]


def final_scalars(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The run's headline figures for the W&B run summary (and the runs table's columns)."""
    scalars: dict[str, Any] = {}
    for split in ("test", "test_last", "val"):
        result = summary.get(split)
        if isinstance(result, Mapping):
            for key in SCALAR_KEYS:
                if _number(result.get(key)) is not None:
                    scalars[f"final/{split}/{key}"] = float(result[key])
    for key in ("best_epoch", "best_val", "selected_by", "epochs"):
        if summary.get(key) is not None:
            scalars[f"final/{key}"] = summary[key]
    return scalars


def _of_type(loggers: Any, kind: str) -> Any:
    from lightning.pytorch import loggers as pl_loggers

    cls = {"wandb": pl_loggers.WandbLogger, "tensorboard": pl_loggers.TensorBoardLogger}[kind]
    candidates = loggers if isinstance(loggers, list | tuple) else [loggers]
    return next((c for c in candidates if isinstance(c, cls)), None)


def _find_wandb_logger(logger: Any):
    return _of_type(logger, "wandb")


def _plots(run_dir: Path | None) -> list[Path]:
    return [] if run_dir is None else [run_dir / name for name in PLOTS if (run_dir / name).is_file()]


def _per_class_chart(summary: Mapping[str, Any]) -> Any:
    """One table, ``final/per_class_table`` (class, training count, test recall of the selected and of the
    final model), drawn as the bar chart ``final/per_class``."""
    import wandb

    table = wandb.Table(columns=["class", "train_count", "test_recall", "test_last_recall"])
    for row in per_class_rows(summary):
        table.add_data(*row)
    return wandb.plot.bar(table, "class", "test_recall", title="per-class test accuracy (classes by index)")


def log_final_wandb(
    run: Any, summary: Mapping[str, Any], confusion: Any = None, run_dir: Path | None = None
) -> None:
    """Log what a finished run adds to its W&B run ``run`` (not finished here): the per-class chart, the
    confusion matrix, the plots as images, the headline figures in the run summary, and summary.json with
    the run's ``.hydra`` files saved with it."""
    import wandb

    payload: dict[str, Any] = {"final/per_class": _per_class_chart(summary)}
    if confusion is None and isinstance(summary["test"].get("confusion"), list):  # an older summary
        confusion = summary["test"]["confusion"]
    if confusion is not None and 0 < len(confusion) <= CONFUSION_MAX_CLASSES:
        cells = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=confusion_rows(confusion))
        payload["final/confusion_matrix"] = wandb.plot.plot_table(
            "wandb/confusion_matrix/v1",
            cells,
            {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
            {"title": "test confusion matrix"},
        )
    for path in _plots(run_dir):
        payload[f"plots/{path.stem}"] = wandb.Image(str(path))
    run.log(payload)
    run.summary.update(final_scalars(summary))
    for name in SAVED_FILES if run_dir is not None else ():
        if (run_dir / name).is_file():  # copied (or linked) into the run's files/, uploaded with it
            run.save(str(run_dir / name), base_path=str(run_dir), policy="now", glob=False)


def tensorboard_hparams(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flat configuration as TensorBoard's HPARAMS tab takes it: numbers, text and booleans (a list or
    a missing value as its text)."""
    flat = flatten_config(config)
    return {k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in flat.items()}


def log_final_tensorboard(
    logger: Any, summary: Mapping[str, Any], config: Mapping[str, Any] | None, run_dir: Path | None
) -> None:
    """TensorBoard's HPARAMS entry of the run (the flat configuration against its final figures, so the
    tab compares the runs of a sweep) and the plots as images."""
    import numpy as np
    from PIL import Image

    metrics = {k: v for k, v in final_scalars(summary).items() if _number(v) is not None}
    if config is not None:
        logger.log_hyperparams(tensorboard_hparams(config), metrics)
    writer = logger.experiment
    for path in _plots(run_dir):
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
        writer.add_image(f"plots/{path.stem}", pixels, global_step=summary.get("epochs"), dataformats="HWC")
    logger.finalize("success")  # flushed and closed
    if config is not None:  # Lightning wrote hparams.yaml empty at fit's end and keeps an existing one
        import yaml

        text = yaml.safe_dump(dict(logger.hparams), sort_keys=False)
        atomic_write(Path(logger.log_dir) / "hparams.yaml", lambda f: f.write(text))


def log_final(
    logger: Any,
    summary: Mapping[str, Any],
    confusion: Any = None,
    run_dir: Path | None = None,
) -> None:
    """What a finished run adds to its loggers (``logger``: one logger or ``trainer.loggers``), then the
    W&B run is finished so the next job of the same process starts its own.

    W&B: :func:`log_final_wandb`. TensorBoard: :func:`log_final_tensorboard` (the configuration is
    ``summary["config"]``). ``confusion``: the test confusion matrix, [C, C] (summary.json holds only its
    file name); ``run_dir``: where the plots and summary.json are. Nothing for the CSV logger, so
    ``train`` can call it whatever ``logger=`` is."""
    if not _is_rank_zero():
        return
    tensorboard = _of_type(logger, "tensorboard")
    if tensorboard is not None:
        log_final_tensorboard(tensorboard, summary, summary.get("config"), run_dir)
    wandb_logger = _of_type(logger, "wandb")
    if wandb_logger is None:
        return
    run = wandb_logger.experiment
    log_final_wandb(run, summary, confusion, run_dir)
    run.finish()


# -- evaluation: its own W&B run, in the training run's group -------------------------------------------
def training_overrides(train_run_dir: Path | None) -> list[str] | None:
    """The command-line overrides of the training run in ``train_run_dir`` (``.hydra/overrides.yaml``)."""
    path = None if train_run_dir is None else Path(train_run_dir) / ".hydra" / "overrides.yaml"
    if path is None or not path.is_file():
        return None
    import yaml

    loaded = yaml.safe_load(path.read_text()) or []
    return [str(o) for o in loaded]


def posthoc_columns(posthoc: Mapping[str, Any], split: str) -> list[str]:
    """The columns of :func:`posthoc_rows`."""
    on, select_by = posthoc.get("selected_on"), posthoc.get("select_by")
    chosen_by = [f"{on}/{select_by}"] if on else []
    return ["adjustment", "tau", "selected", *(f"{split}/{k}" for k in SCALAR_KEYS), *chosen_by]


def posthoc_rows(posthoc: Mapping[str, Any], split: str) -> list[list[Any]]:
    """``[adjustment, tau, selected, <split> figures..., <selection split>'s select_by figure]`` per tau of
    the post-hoc sweep in an eval summary (``summary["posthoc"]``, :func:`lt_bench.posthoc.sweep`); the last
    column only when a tau was chosen on a split (the validation split)."""
    on, select_by = posthoc.get("selected_on"), posthoc.get("select_by")
    rows = []
    for adjustment, row, chosen in sweep_rows(posthoc):
        figures = row.get(split) or {}
        chosen_by = [_number((row.get(on) or {}).get(select_by))] if on else []
        figures_row = [_number(figures.get(k)) for k in SCALAR_KEYS]
        rows.append([adjustment, float(row["tau"]), chosen, *figures_row, *chosen_by])
    return rows


def log_eval(
    cfg: DictConfig,
    summary: Mapping[str, Any],
    run_dir: Path,
    train_run_dir: Path | None = None,
) -> bool:
    """Log an evaluation (``python -m lt_bench.eval``) as a W&B run of ``job_type="eval"`` in the training
    run's group; returns whether it did.

    ``cfg``: the evaluated run's configuration as the evaluation ran it (the checkpoint's stored config with
    the command's overrides; a ``logger=wandb`` on the eval command line replaces the stored logger);
    ``summary``: the eval summary (``summary[summary["split"]]`` the figures, ``summary["posthoc"]`` the
    post-hoc sweep, if any); ``run_dir``: the evaluation's directory (the W&B files go to its ``wandb/``);
    ``train_run_dir``: the training run's directory, whose ``.hydra/overrides.yaml`` gives the group
    (the training run's setting: :func:`run_identity`).

    Nothing happens unless W&B is one of ``cfg.logger``'s loggers. The run holds the figures
    (``eval/<split>/<metric>`` in its summary), the post-hoc sweep as the table ``eval/posthoc`` (one row
    per adjustment and tau: the split's figures, the figure it was selected by, whether it was
    selected), the per-class chart, and summary.json; it is finished before this returns.
    """
    if "wandb" not in logger_names(cfg.logger) or not _is_rank_zero():
        return False
    import wandb

    overrides = training_overrides(train_run_dir)
    extra = {"evaluated_run_dir": str(train_run_dir)} if train_run_dir is not None else {}
    logger = build_wandb_logger(
        cfg, run_dir, overrides=overrides, sweep_dir="", job_type="eval", extra_config=extra
    )
    run = logger.experiment
    split = str(summary.get("split", "test"))
    result = summary.get(split)
    scalars: dict[str, Any] = {}
    if isinstance(result, Mapping):
        scalars = {
            f"eval/{split}/{k}": float(result[k]) for k in SCALAR_KEYS if _number(result.get(k)) is not None
        }
    payload: dict[str, Any] = dict(scalars)
    posthoc = summary.get("posthoc")
    if isinstance(posthoc, Mapping):
        columns = posthoc_columns(posthoc, split)
        payload["eval/posthoc"] = wandb.Table(columns=columns, data=posthoc_rows(posthoc, split))
    if isinstance(result, Mapping) and "per_class" in result and "class_counts" in summary:
        counts = summary["class_counts"]
        table = wandb.Table(columns=["class", "train_count", f"{split}_recall"])
        for j, recall in enumerate(result["per_class"]):
            table.add_data(j, int(counts[j]), _number(recall))
        payload["eval/per_class"] = wandb.plot.bar(
            table, "class", f"{split}_recall", title=f"per-class {split} accuracy"
        )
    run.log(payload)
    run.summary.update({**scalars, "eval/checkpoint": summary.get("checkpoint"), "eval/split": split})
    if (run_dir / "summary.json").is_file():
        run.save(str(run_dir / "summary.json"), base_path=str(run_dir), policy="now", glob=False)
    run.finish()
    return True


# -- metrics.csv: the file of record, kept whole through a resume ----------------------------------------
def _kept_rows_writer(log_dir: str, columns: list[str]) -> Any:
    """Lightning's CSV writer, except that it never deletes ``metrics.csv`` and rewrites it atomically.

    Lightning's writer deletes an existing ``metrics.csv`` when it is created, and rewrites the file in
    place when a new column appears (the test figures at the end): a kill during either loses the rows
    logged before it. This one appends to the file, and a rewrite replaces it only once the new content is
    on disk (:func:`lt_bench.atomic.atomic_write`).
    """
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    class KeptRowsWriter(ExperimentWriter):
        def __init__(self) -> None:
            super().__init__(log_dir)
            self.metrics_keys = sorted(columns)  # the file's header: appended rows follow it

        def _check_log_dir_exists(self) -> None:
            """Keeps the file (Lightning's deletes it)."""

        def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
            path = Path(self.metrics_file_path)
            _write_rows(path, _read_rows(path), fieldnames)

    return KeptRowsWriter()


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, rows: list[dict[str, str]], columns: list[str]) -> None:
    def write(f: Any) -> None:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(path, write)


def keep_logged_metrics(logger: Any, run_dir: Path) -> None:
    """A run resumed in its own directory keeps the ``metrics.csv`` rows logged before the interruption:
    the CSV logger appends to the file instead of replacing it (:func:`_kept_rows_writer`)."""
    from lightning.pytorch.loggers import CSVLogger

    path = run_dir / METRICS_FILE
    candidates = logger if isinstance(logger, list | tuple) else [logger]  # one logger or trainer.loggers
    logger = next((c for c in candidates if isinstance(c, CSVLogger)), None)
    if logger is None or Path(logger.log_dir) != run_dir or not path.is_file():
        return
    with path.open(newline="") as f:
        columns = csv.DictReader(f).fieldnames or []
    logger._experiment = _kept_rows_writer(logger.log_dir, list(columns))  # what `logger.experiment` returns


def forget_logged_metrics(run_dir: Path, from_epoch: int) -> None:
    """Drop the ``metrics.csv`` rows of epochs ``from_epoch`` on: a kill can leave rows logged after the
    checkpoint a resume starts from, and the resumed run logs those epochs (and a finished run's test
    rows, at epoch ``max_epochs``) again."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows, columns = list(reader), list(reader.fieldnames or [])
    kept = [row for row in rows if not row.get("epoch") or int(float(row["epoch"])) < from_epoch]
    if len(kept) < len(rows):
        _write_rows(path, kept, columns)
