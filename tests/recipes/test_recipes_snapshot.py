"""Every published recipe resolves to the values recorded in ``tests/data/recipes_snapshot.json``.

The snapshot was taken from the 39 per-dataset recipe files before they were collapsed into one recipe per
paper family and setting (issue 14). Each entry of :data:`RECIPES` maps a recorded name (the old file name)
to the overrides that give that recipe now; the fully composed and resolved config must equal the recorded
one, so a refactor of ``conf/experiment/`` or ``conf/method/`` cannot move a value unnoticed.

A deliberate change of a recipe (or of a group default that recipes inherit) changes the snapshot. Then
regenerate it and review what moved in the diff:

    LT_BENCH_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest -q tests/recipes/test_recipes_snapshot.py
    git diff tests/data/recipes_snapshot.json

A new recipe: add its name and overrides to :data:`RECIPES` and regenerate.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from lt_bench.conf import CONF_DIR as CONF
from lt_bench.startup import compose
from tests.recipe_tools import CIFAR

SNAPSHOT = Path(__file__).resolve().parents[1] / "data" / "recipes_snapshot.json"
UPDATE = os.environ.get("LT_BENCH_UPDATE_SNAPSHOT", "") not in ("", "0")

# dotted keys left out of the comparison (none: every resolved value counts)
EXCLUDE: tuple[str, ...] = ()

VS_SETTINGS = [f"{d}_if{q}" for d in CIFAR for q in (10, 100)]

RECIPES: dict[str, list[str]] = {
    # the CIFAR recipes that do not depend on the dataset: the dataset is chosen on the command line
    **{f"ppl_cri_{d}": ["experiment=ppl_cri", f"dataset={d}"] for d in CIFAR[:2]},
    # CIFAR-100's CRI values (the authors' cifar100_CRI.yaml) are a recipe of their own (issue 15)
    **{f"ppl_cri_{d}": ["experiment=ppl_cri_cifar100", f"dataset={d}"] for d in CIFAR[2:]},
    **{f"ldam_drw_{d}": ["experiment=ldam_drw", f"dataset={d}"] for d in CIFAR},
    **{f"ppl_cri_ride_{d}": ["experiment=ppl_cri_ride", f"dataset={d}"] for d in CIFAR},
    **{f"ride_{d}": ["experiment=ride", f"dataset={d}"] for d in CIFAR},
    "ppl_cri_ride_imagenet_lt": ["experiment=ppl_cri_ride_imagenet_lt"],
    "ppl_cri_ride_inat2018": ["experiment=ppl_cri_ride_inat2018"],
    "ride_imagenet_lt": ["experiment=ride_imagenet_lt"],
    "ride_inat2018": ["experiment=ride_inat2018"],
    **{f"phase_{d}": ["experiment=phase", f"dataset={d}"] for d in CIFAR},
    **{f"kps_ga_{d}": ["experiment=kps_ga", f"dataset={d}"] for d in CIFAR},
    "phase_cifar100_lt_enhanced": ["experiment=phase_enhanced"],
    # VS + TLA + ADRW: the authors' values per dataset and imbalance factor
    **{f"vs_tla_adrw_{s}": [f"experiment=vs_tla_adrw_{s}"] for s in VS_SETTINGS},
    **{f"vs_tla_adrw_sam_{s}": [f"experiment=vs_tla_adrw_sam_{s}"] for s in VS_SETTINGS},
    # ARConvL: MNIST and Fashion-MNIST share the small-CNN recipe
    "arconvl": ["experiment=arconvl"],
    "arconvl_mnist": ["experiment=arconvl_mnist"],
    "arconvl_fashion": ["experiment=arconvl_fashion"],
    "arconvl_svhn": ["experiment=arconvl_svhn"],
    "arconvl_cifar10": ["experiment=arconvl_cifar10"],
    # large scale
    "ppl_cri_imagenet_lt": ["experiment=ppl_cri_imagenet_lt"],
    "ppl_cri_inat2018": ["experiment=ppl_cri_inat2018"],
    "kps_ga_imagenet_lt": ["experiment=kps_ga_imagenet_lt"],
    "kps_ga_inat2018": ["experiment=kps_ga_inat2018"],
    "phase_imagenet_lt": ["experiment=phase_imagenet_lt"],
    "vs_tla_adrw_sam_imagenet_lt": ["experiment=vs_tla_adrw_sam_imagenet_lt"],
}


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix[:-1]: node}


def _compared(config: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v for k, v in _flatten(config).items() if not any(k == e or k.startswith(f"{e}.") for e in EXCLUDE)
    }


@pytest.fixture(scope="module")
def resolved() -> dict[str, dict[str, Any]]:
    configs = {
        name: OmegaConf.to_container(compose(overrides), resolve=True) for name, overrides in RECIPES.items()
    }
    if UPDATE:
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(json.dumps(configs, indent=1, sort_keys=True) + "\n")
    return configs


@pytest.fixture(scope="module")
def golden(resolved) -> dict[str, dict[str, Any]]:
    return json.loads(SNAPSHOT.read_text())


def test_snapshot_and_recipes_name_the_same_recipes(golden):
    assert sorted(golden) == sorted(RECIPES)


def test_every_experiment_file_is_covered():
    """Each file in conf/experiment is a recipe named here or a base another recipe includes."""
    files = {p.stem: p.read_text() for p in Path(CONF, "experiment").glob("*.yaml")}
    named = {
        o.split("=", 1)[1] for overrides in RECIPES.values() for o in overrides if o.startswith("experiment=")
    }
    included = {
        m for text in files.values() for m in re.findall(r"^\s*-\s*/experiment/(\w+)@_here_", text, re.M)
    }
    assert named <= set(files), sorted(named - set(files))
    assert set(files) <= named | included, sorted(set(files) - named - included)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_resolves_to_its_snapshot(name, resolved, golden):
    now, then = _compared(resolved[name]), _compared(golden[name])
    moved = {k: (then.get(k, "<absent>"), now.get(k, "<absent>")) for k in sorted(set(now) | set(then))
             if now.get(k, "<absent>") != then.get(k, "<absent>")}  # fmt: skip
    assert not moved, f"{' '.join(RECIPES[name])}: (snapshot, now) per key: {moved}"


# keys a method file may set besides method.*: KPS-GA's gradient adjustment and its I0 define the method,
# PPL's PPmix curvature (the authors' ppm_alpha 3) defines it
METHOD_EXTRA_KEYS = {"kps_ga": {"loss", "schedule"}, "ppl_cri": {"schedule"}}


@pytest.mark.parametrize("path", sorted(Path(CONF, "method").glob("*.yaml")), ids=lambda p: p.stem)
def test_method_files_set_only_their_own_keys(path):
    """A method= file holds the method's keys and group defaults; trainer/optimizer/dataset go in recipes."""
    text = path.read_text()
    if "# @package _global_" not in text:
        return  # packaged under method: it can only set method.*
    keys = set(OmegaConf.load(path)) - {"defaults"}
    assert keys <= {"method"} | METHOD_EXTRA_KEYS.get(path.stem, set()), sorted(keys)
