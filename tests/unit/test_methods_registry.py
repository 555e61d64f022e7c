"""METHODS: every shipped method option names a registered class; the paper compositions are the standard
module; an unknown name is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lt_bench.errors import ConfigError
from lt_bench.methods import METHODS, build_method
from lt_bench.methods.standard import StandardMethod
from tests.helpers import CONF


def _method_name(path: Path) -> str:
    node = OmegaConf.load(path)
    return node.method.name if "method" in node else node.name  # @package _global_ options nest it


@pytest.mark.parametrize("path", sorted(Path(CONF, "method").glob("*.yaml")), ids=lambda p: p.stem)
def test_each_method_option_is_registered_under_its_file_name(path):
    assert _method_name(path) == path.stem and path.stem in METHODS


@pytest.mark.parametrize("name", ["ppl_cri", "kps_ga", "vs_tla_adrw"])
def test_paper_compositions_are_the_standard_module(name):
    assert METHODS.get(name) is StandardMethod


def test_unknown_method_names_the_choices():
    cfg = OmegaConf.create({"method": {"name": "standrad"}})
    with pytest.raises(
        ConfigError, match="method='standrad' is not known; choose one of: arconvl, crt, kps_ga"
    ):
        build_method(cfg, None, None)
