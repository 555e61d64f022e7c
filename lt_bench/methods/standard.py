"""``method=standard``: any loss x any schedule on a backbone and head — the base module as it is."""

from lt_bench.methods.base import LongTailModule
from lt_bench.methods.registry import METHODS


@METHODS.register("standard")
# compositions of a loss and a schedule: the standard module, named for the paper
@METHODS.register("ppl_cri")
@METHODS.register("kps_ga")
@METHODS.register("vs_tla_adrw")
class StandardMethod(LongTailModule):
    """Plain composition; every behaviour comes from the loss, schedule and optimizer groups."""
