"""Backbones (features) and heads (logits)."""

from lt_bench.models.backbones import BACKBONE_NAMES, build_backbone
from lt_bench.models.heads import HEAD_NAMES, build_head

__all__ = ["BACKBONE_NAMES", "HEAD_NAMES", "build_backbone", "build_head"]
