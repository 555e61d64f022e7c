"""``logger=csv|tensorboard|wandb``. W&B never prompts or waits on a network: without credentials it
writes an offline run that ``wandb sync`` uploads later."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from lt_bench.errors import ConfigError

LOGGER_NAMES = ("csv", "tensorboard", "wandb")


def _wandb_mode(requested: str | None) -> str:
    if requested:
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    has_key = bool(os.environ.get("WANDB_API_KEY")) or Path("~/.netrc").expanduser().exists()
    return "online" if has_key else "offline"


def build_logger(cfg: DictConfig, run_dir: Path):
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    name = cfg.logger.name
    if name == "csv":
        return CSVLogger(save_dir=str(run_dir), name="", version="")
    if name == "tensorboard":
        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
    if name == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        mode = _wandb_mode(cfg.logger.get("mode"))
        os.environ.setdefault("WANDB_SILENT", "true")
        logger = WandbLogger(
            project=cfg.logger.get("project", "lt_bench"),
            entity=cfg.logger.get("entity"),
            group=cfg.logger.get("group"),
            save_dir=str(run_dir),
            mode=mode,
            config=OmegaConf.to_container(cfg, resolve=True),
        )
        return logger
    raise ConfigError(f"logger={name!r} is not known; choose one of: {', '.join(LOGGER_NAMES)}")
