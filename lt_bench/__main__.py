"""``python -m lt_bench [group=option ...] [key=value ...]`` — the Hydra entry point."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from lt_bench.config import register
from lt_bench.errors import LtBenchError

register()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from lt_bench.train import train  # heavy imports after Hydra has parsed the command line

    try:
        return train(cfg)
    except LtBenchError as err:
        # one clear line instead of a traceback; SystemExit passes through Hydra untouched
        print(f"lt_bench: error: {err}", file=sys.stderr)
        logging.getLogger("lt_bench").error("%s", err)
        raise SystemExit(err.exit_code) from None


if __name__ == "__main__":
    main()
