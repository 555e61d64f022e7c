"""cRT (Kang et al.): classifier re-training — from ``schedule.e0`` a re-initialised head trains on the
frozen backbone; with ``schedule=drs`` the second stage samples classes uniformly."""

from lt_bench.methods.registry import METHODS
from lt_bench.methods.two_stage import TwoStageModule


@METHODS.register("crt")
class ClassifierRetraining(TwoStageModule):
    reinit_head = True
