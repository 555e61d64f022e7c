"""``python -m lt_bench [group=option ...] [key=value ...]`` — the Hydra entry point."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from lt_bench.config import register
from lt_bench.errors import one_line_errors

register()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from lt_bench.train import train  # heavy imports after Hydra has parsed the command line

    with one_line_errors():
        return train(cfg)


if __name__ == "__main__":
    main()
