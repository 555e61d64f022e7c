"""``python -m lt_bench.check_data dataset=NAME dataset.root=DIR [--open N] [key=value ...]``: check data.

Takes the same Hydra overrides as ``python -m lt_bench``, checks the configuration as a run does
(:func:`lt_bench.startup.check`), loads the dataset exactly as a run would (split lists,
idx/.mat/pickle files, the profile), checks that every listed image of a file-based dataset exists
under ``dataset.root`` and decodes the first image of each split (``--open N``: the first N, N >= 0),
and prints a class-count summary.
Exits 0 when the data is usable, 2 with one clear message when it is not.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lt_bench.errors import LtBenchError

PROG = "lt_bench.check_data"


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


def check_dataset(overrides: Sequence[str], open_images: int = 1) -> dict:
    """Load and check the dataset the overrides select; returns the summary that :func:`main` prints.

    Raises:
        ConfigError, DataError: the first problem found.
    """
    from lt_bench.data.datamodule import LongTailDataModule
    from lt_bench.data.files import FileData
    from lt_bench.startup import check, compose

    cfg = compose(overrides)
    check(cfg)
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


def _open_count(args: list[str]) -> int | None:
    """Remove ``--open N`` from ``args`` and return N (1 without it); None when N is not an integer >= 0."""
    if "--open" not in args:
        return 1
    i = args.index("--open")
    value = args[i + 1] if i + 1 < len(args) else ""
    del args[i : i + 2]
    try:
        count = int(value)
    except ValueError:
        return None
    return count if count >= 0 else None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    open_images = _open_count(args)
    if open_images is None:
        print(f"{PROG}: error: --open needs a number of images >= 0, e.g. --open 5", file=sys.stderr)
        return 2
    try:
        summary = check_dataset(args, open_images)
    except LtBenchError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
