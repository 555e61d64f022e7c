"""``python -m lt_bench.data.check dataset=NAME dataset.root=DIR [key=value ...]``: check a dataset's files.

Takes the same Hydra overrides as ``python -m lt_bench``, loads the dataset exactly as a run would
(split lists, idx/.mat/pickle files, the profile), checks that every listed image of a file-based
dataset exists under ``dataset.root`` and decodes the first image of each split (``--open N``: the
first N), and prints a class-count summary.
Exits 0 when the data is usable, 2 with one clear message when it is not.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from lt_bench.errors import ConfigError, LtBenchError

CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_config(overrides: Sequence[str]):
    """The run configuration for these overrides (the same composition ``python -m lt_bench`` does)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lt_bench.config import register, validate
    from lt_bench.registry import import_plugins

    register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
    except Exception as err:  # Hydra's own errors (unknown group option, bad override syntax, type)
        raise ConfigError(f"invalid overrides {' '.join(overrides)}: {err}") from None
    import_plugins(cfg.get("plugins") or [])  # a source of your own registers itself there
    validate(cfg)
    return cfg


def summarize(class_counts: Sequence[int], many_threshold: int, few_threshold: int) -> dict:
    """Counts summary: classes, total, max/min, imbalance factor and many/medium/few class numbers."""
    counts = list(class_counts)
    present = [c for c in counts if c > 0]
    n_max, n_min = max(counts), min(counts)
    return {
        "num_classes": len(counts),
        "total": sum(counts),
        "max": n_max,
        "min": n_min,
        "imbalance_factor": (n_max / min(present)) if present else float("nan"),
        "many": sum(c > many_threshold for c in counts),
        "medium": sum(few_threshold <= c <= many_threshold for c in counts),
        "few": sum(c < few_threshold for c in counts),
    }


def check(overrides: Sequence[str], open_images: int = 1) -> dict:
    """Load and check the dataset the overrides select; returns the summary that :func:`main` prints.

    Raises:
        ConfigError, DataError: the first problem found.
    """
    from lt_bench.data.datamodule import LongTailDataModule
    from lt_bench.data.files import FileData

    cfg = compose_config(overrides)
    d = cfg.dataset
    module = LongTailDataModule(d, cfg.seed)
    info = module.prepare()
    if isinstance(module.data, FileData):  # in-memory data is fully read (and checked) by prepare already
        module.data.verify(open_images)
    summary = summarize(info.class_counts, d.many_threshold, d.few_threshold)
    summary.update(
        dataset=d.name, train=info.train_size, val=info.val_size, test=info.test_size, profile=d.profile
    )
    return summary


def format_summary(s: dict) -> str:
    return "\n".join(
        [
            f"{s['dataset']}: OK (profile {s['profile']})",
            f"  classes           {s['num_classes']}",
            f"  train images      {s['total']}",
            f"  val / test images {s['val']} / {s['test']}",
            f"  max / min count   {s['max']} / {s['min']}",
            f"  imbalance factor  {s['imbalance_factor']:.1f}",
            f"  many / medium / few classes  {s['many']} / {s['medium']} / {s['few']}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    open_images = 1
    if "--open" in args:
        i = args.index("--open")
        try:
            open_images = int(args[i + 1])
        except (IndexError, ValueError):
            print("lt_bench.data.check: error: --open needs a number of images", file=sys.stderr)
            return 2
        del args[i : i + 2]
    try:
        summary = check(args, open_images)
    except LtBenchError as err:
        print(f"lt_bench.data.check: error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
