"""``logger=csv|tensorboard|wandb``, and what a finished run adds to W&B.

W&B never prompts and never waits on a network it cannot reach: without an API key, with the server
unreachable (``WANDB_MODE=online`` included), or when the server does not start the run within
:data:`INIT_TIMEOUT_S` seconds (``WANDB_INIT_TIMEOUT`` sets it), the run is written offline under
``<run dir>/wandb`` and one line says why and how to upload it (``wandb sync``). In a multirun every
job is its own W&B run, grouped by the sweep directory's name and named by its overrides;
:func:`log_final` logs the per-class accuracy and the confusion matrix and finishes the run, so the
next job of the same process starts a new one.
"""

from __future__ import annotations

import csv
import math
import netrc
import os
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from omegaconf import DictConfig, OmegaConf

from lt_bench.atomic import atomic_write
from lt_bench.config_nodes import flatten_config
from lt_bench.errors import ConfigError
from lt_bench.metrics import CONFUSION_MAX_CLASSES, SCALAR_KEYS

METRICS_FILE = "metrics.csv"  # Lightning's CSVLogger file name (ExperimentWriter.NAME_METRICS_FILE)

LOGGER_NAMES = ("csv", "tensorboard", "wandb")
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
def sweep_group(sweep_dir: str | Path) -> str:
    """The W&B group of a multirun: the sweep directory's name, with its date folder when the name is only a
    time (Hydra's default ``multirun/DATE/TIME`` would otherwise collide across days)."""
    path = Path(sweep_dir)
    name = path.name or str(path)
    looks_like_time = len(name) == 8 and name.replace("-", "").isdigit()
    return f"{path.parent.name}_{name}" if looks_like_time and path.parent.name else name


def run_identity(cfg: DictConfig) -> tuple[str | None, str | None]:
    """``(group, name)`` for W&B: ``logger.group`` if set; in a multirun the sweep's group and the job's
    overrides as its name (e.g. ``loss=la,seed=1``); W&B's own choice otherwise."""
    group = cfg.logger.get("group")
    name = None
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized():
            hydra_cfg = HydraConfig.get()
            if hydra_cfg.mode == RunMode.MULTIRUN:
                group = group or sweep_group(hydra_cfg.sweep.dir)
                name = hydra_cfg.job.override_dirname or None
    except (ImportError, ValueError):  # outside Hydra (a user's own script): no sweep to group by
        pass
    return group, name


def run_tags(cfg: DictConfig) -> list[str]:
    """Tags to filter the dashboard by what a run composed, plus ``logger.tags``."""
    tags = [f"{group}={cfg[group].name}" for group in ("method", "loss", "schedule", "dataset")]
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


def build_wandb_logger(cfg: DictConfig, run_dir: Path):
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    env = os.environ
    mode, reason = choose_wandb_mode(
        cfg.logger.get("mode"),
        env,
        has_credentials(env, Path.home()),
        lambda: server_reachable(*wandb_host(env)),
    )
    os.environ.setdefault("WANDB_SILENT", "true")
    _writable_home_or_redirect(run_dir)
    if wandb.run is not None:
        # a previous job of this process (basic/joblib launcher) ended without finishing its run:
        # Lightning would silently reuse it for this job
        wandb.finish(exit_code=1)
    group, name = run_identity(cfg)
    config = flatten_config(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    config["run_dir"] = str(run_dir)
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
            tags=run_tags(cfg),
            job_type=cfg.logger.get("job_type"),
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


def build_logger(cfg: DictConfig, run_dir: Path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    name = cfg.logger.name
    if name == "csv":
        # every logged row reaches the file at once (an append; rows come once per epoch or log interval),
        # so a kill -9 loses none: Lightning's default holds 100 steps' rows in memory
        return CSVLogger(save_dir=str(run_dir), name="", version="", flush_logs_every_n_steps=1)
    if name == "tensorboard":
        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
    if name == "wandb":
        return build_wandb_logger(cfg, run_dir)
    raise ConfigError(f"logger={name!r} is not known; choose one of: {', '.join(LOGGER_NAMES)}")


# -- the end of a run ----------------------------------------------------------------------------------
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
    for key in ("best_epoch", "selected_by", "epochs"):
        if summary.get(key) is not None:
            scalars[f"final/{key}"] = summary[key]
    return scalars


def _find_wandb_logger(logger: Any):
    from lightning.pytorch.loggers import WandbLogger

    candidates = logger if isinstance(logger, list | tuple) else [logger]
    return next((c for c in candidates if isinstance(c, WandbLogger)), None)


def log_final(logger: Any, summary: Mapping[str, Any], confusion: Any = None) -> None:
    """Log the per-class accuracy table and the test confusion matrix (``confusion``, [C, C]; summary.json
    holds only its file name), then finish the W&B run. Does nothing for other loggers, so ``train`` can
    call it whatever ``logger=`` is."""
    wandb_logger = _find_wandb_logger(logger)
    if wandb_logger is None:
        return
    import wandb

    run = wandb_logger.experiment
    table = wandb.Table(columns=["class", "train_count", "test_recall", "test_last_recall"])
    for row in per_class_rows(summary):
        table.add_data(*row)
    payload: dict[str, Any] = {
        "final/per_class": table,
        "final/per_class_accuracy": wandb.plot.bar(
            table, "class", "test_recall", title="per-class test accuracy (classes by index)"
        ),
    }
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
    run.log(payload)
    run.summary.update(final_scalars(summary))
    run.finish()


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
    if not isinstance(logger, CSVLogger) or Path(logger.log_dir) != run_dir or not path.is_file():
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
