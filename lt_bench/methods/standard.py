"""``method=standard``: any loss x any schedule on a backbone and head — the base module as it is."""

from lt_bench.methods.base import LongTailModule


class StandardMethod(LongTailModule):
    """Plain composition; every behaviour comes from the loss, schedule and optimizer groups."""
