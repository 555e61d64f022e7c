"""How every lt_bench process starts: compose a configuration, check it, set up the process.

One owner for what training, evaluation, the data check, the benchmarks and the tests all do first:

- :func:`compose`: the run configuration for a list of overrides, in-process (the composition
  ``python -m lt_bench`` does through ``@hydra.main``).
- :func:`check`: plug-ins imported, values validated (:func:`lt_bench.config.validate`), then the chosen
  method's own checks (:meth:`LongTailModule.check_config`): every refusal before any data are read.
- :func:`start_process`: :func:`check`, then Lightning's start-up chatter silenced, the seed set and
  float32 matmuls allowed TF32 — the same in every entry point.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

from omegaconf import DictConfig

from lt_bench.conf import CONF_DIR
from lt_bench.config import register, validate
from lt_bench.errors import ConfigError
from lt_bench.registry import import_plugins


def compose(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """The configuration ``python -m lt_bench OVERRIDES`` would run (composed, not yet validated).

    Hydra's own refusals (an unknown option or key, a bad override, a wrong type) become one
    :class:`ConfigError` naming the overrides.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides))
    except Exception as err:
        raise ConfigError(f"invalid overrides {' '.join(overrides)}: {err}") from None


def check(cfg: DictConfig) -> None:
    """Import the configured plug-ins, validate the values, run the method's own checks (in place:
    interpolations are resolved)."""
    import_plugins(cfg.get("plugins") or [])  # a source, loss or method of the user's registers itself
    validate(cfg)
    from lt_bench.methods import check_method_config  # torch and Lightning: after Hydra parsed the CLI

    check_method_config(cfg)


def quiet_lightning() -> None:
    """Lightning's start-up chatter (GPU/TPU availability, model summary) buries the results table."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*The number of training batches.*")
    warnings.filterwarnings("ignore", message=".*isinstance.treespec, LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
    warnings.filterwarnings("ignore", message=".*across ranks is zero.*")  # an empty split under debug=fdr


# the groups first, in the order a user composes them; every other top-level key after them
TREE_ORDER = (
    "dataset",
    "backbone",
    "loss",
    "schedule",
    "method",
    "optimizer",
    "lr_schedule",
    "trainer",
    "logger",
)


def print_config_tree(cfg: DictConfig) -> None:
    """The resolved configuration as a tree on stdout (``print_config=false`` turns it off), so that a run's
    log starts with what it runs, as lightning-hydra-template's runs do."""
    from omegaconf import OmegaConf
    from rich import print as rich_print
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("config", guide_style="dim")
    keys = [k for k in TREE_ORDER if k in cfg] + [k for k in cfg if k not in TREE_ORDER]
    for key in keys:
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if OmegaConf.is_config(node) else str(node)
        tree.add(f"[bold]{key}[/bold]").add(Syntax(text.rstrip(), "yaml", theme="ansi_dark"))
    rich_print(tree)


def start_process(cfg: DictConfig) -> None:
    """:func:`check` the configuration, then set up this process for a run of it."""
    import lightning as L
    import torch

    check(cfg)
    quiet_lightning()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    torch.set_float32_matmul_precision("high")
