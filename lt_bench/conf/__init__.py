"""The Hydra config tree (a package so that Hydra finds it as ``pkg://lt_bench.conf`` once installed)."""

from pathlib import Path

# The one path of the config tree: every in-process composition (lt_bench.startup.compose) reads it.
CONF_DIR = Path(__file__).resolve().parent
