"""Backbones (features) and heads (logits), each chosen by name from its registry."""

from lt_bench.models import ride  # noqa: F401  (registers RIDE's multi-expert backbones)
from lt_bench.models.backbones import BACKBONES, backbone_parameters, build_backbone
from lt_bench.models.heads import HEADS, build_head, head_parameters

__all__ = ["BACKBONES", "HEADS", "backbone_parameters", "build_backbone", "build_head", "head_parameters"]
