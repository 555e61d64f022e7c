"""``python -m lt_bench [group=option ...] [key=value ...]`` — the Hydra entry point."""

from __future__ import annotations

import logging
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lt_bench.config import register
from lt_bench.errors import TrainingDiverged, one_line_errors

register()


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
            message = f"{err} The sweep goes on."
            print(f"lt_bench: error: {message}", file=sys.stderr)
            logging.getLogger("lt_bench").error("%s", message)
            return None


if __name__ == "__main__":
    main()
