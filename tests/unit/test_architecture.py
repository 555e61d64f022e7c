"""The package's layers as docs/development.md states them: every import of an lt_bench module (at module
level or inside a function) goes to a module of the same layer or a lower one, and no two modules import
each other, directly or round a longer cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import ROOT

PACKAGE = ROOT / "lt_bench"

# docs/development.md's table, bottom up: the first prefix that matches a module names its layer
LAYERS = [
    (1, "leaves", ("errors", "config_nodes", "conf", "stats", "plots", "epoch_sums", "atomic", "signature",
                   "distributed", "registry")),
    (2, "maths", ("metrics", "mixing", "optim", "models", "losses", "schedules")),
    (3, "data", ("data",)),
    (4, "run parts", ("config", "summary", "checkpointing", "loggers", "signals", "best_test_epoch",
                      "posthoc", "rundir")),
    (5, "methods", ("methods",)),
    (6, "start-up", ("startup",)),
    (7, "entry points", ("train", "__main__", "eval", "check_data", "report")),
]  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    for number, _, prefixes in LAYERS:
        if top in prefixes:
            return number
    raise AssertionError(f"lt_bench.{module} is in no layer of docs/development.md's table")


def imports_of(path: Path) -> set[str]:
    """The lt_bench modules ``path`` imports (``from lt_bench.x import y`` counts ``x.y`` when that is a
    module, else ``x``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lt_bench.")}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("lt_bench")
        ):
            base = node.module
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                as_module = ROOT / Path(*candidate.split("."))
                found.add(candidate if as_module.with_suffix(".py").exists() or as_module.is_dir() else base)
    return {name.removeprefix("lt_bench.").removeprefix("lt_bench") for name in found} - {""}


GRAPH = {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_every_import_goes_to_the_same_layer_or_below(module):
    upward = {m for m in GRAPH[module] if layer_of(m) > layer_of(module)}
    assert not upward, (
        f"lt_bench.{module} (layer {layer_of(module)}) imports a higher layer: {sorted(upward)}"
    )


def test_the_import_graph_has_no_cycle():
    # a package imports its own submodules (its face); those edges are no cycle of the code's structure
    edges = {m: {t for t in ts if not t.startswith(f"{m}.")} for m, ts in GRAPH.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if state.get(target) == 1:
                cycle = path[path.index(target) :] + [target] if target in path else [module, target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if target in edges and not state.get(target):
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if not state.get(module):
            visit(module, [module])
