"""``method=standard``: any loss x any schedule on a backbone and head — the base module as it is.

Three of the papers' methods need no module of their own: each is a loss and a schedule on this one, and
its ``method=`` name only selects those groups (``conf/method/NAME.yaml``) and labels the run —
``ppl_cri`` (CRI + PPW + PPmix), ``kps_ga`` (KPS with gradient adjustment from ``e0``) and ``vs_tla_adrw``
(VS, then TLA + ADRW from ``e0``). The names are registered here so that ``method.name`` in a summary says
which paper's method ran.
"""

from lt_bench.methods.base import LongTailModule
from lt_bench.methods.registry import METHODS


@METHODS.register("standard")
@METHODS.register("ppl_cri")
@METHODS.register("kps_ga")
@METHODS.register("vs_tla_adrw")
class StandardMethod(LongTailModule):
    """Plain composition; every behaviour comes from the loss, schedule and optimizer groups."""
