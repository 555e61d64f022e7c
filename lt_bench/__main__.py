"""``python -m lt_bench [group=option ...] [key=value ...]`` — the Hydra entry point."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lt_bench.config import register
from lt_bench.errors import ConfigError, TrainingDiverged, one_line_errors, one_line_hydra_errors

register()
one_line_hydra_errors()  # Hydra's refusals of the command line: one line, exit status 2

BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def _in_a_search() -> bool:
    """A multirun whose sweeper chooses the jobs (Optuna, or any sweeper but Hydra's grid)."""
    hydra_cfg = HydraConfig.get()
    return hydra_cfg.mode == RunMode.MULTIRUN and hydra_cfg.sweeper.get("_target_") != BASIC_SWEEPER


def _job_failed(err: Exception, outcome: str) -> None:
    message = f"{err} {outcome}"
    print(f"lt_bench: error: {message}", file=sys.stderr)
    logging.getLogger("lt_bench").error("%s", message)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from lt_bench.train import train  # heavy imports after Hydra has parsed the command line

    with one_line_errors():
        try:
            return train(cfg)
        except TrainingDiverged as err:
            if HydraConfig.get().mode != RunMode.MULTIRUN:
                raise
            # one job's result, recorded in its summary.json: the sweep goes on. No objective: Optuna
            # records the trial as failed (a NaN would make hydra-optuna-sweeper 1.2 itself fail).
            _job_failed(err, "The sweep goes on.")
            return None
        except ConfigError as err:
            if not _in_a_search():
                raise
            # a trial the search drew but lt_bench refuses (a range past the run, a combination the
            # checks forbid): a failed trial, refused before anything was written; the search goes on
            _job_failed(err, "The trial is recorded as failed; the search goes on.")
            return None


if __name__ == "__main__":
    main()
