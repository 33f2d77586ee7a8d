"""The package's import graph flows one way: no circle between its modules (not even one hidden by an import
inside a function, which Python tolerates until the day the order of first use changes), and the layers
import downwards only. The graph is read from the source with ``ast``, not from ``sys.modules`` after an
import, so that lazy imports count and nothing has to run."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import REPO

PACKAGE = "ssa_experiments"

# layer -> the layers it must never import (a layer: a subpackage, or a module at the package root). From the
# top: cli -> training, analysis -> ensembles, pruning, data, models -> store, runtime -> config, repro.
FORBIDDEN: dict[str, set[str]] = {
    "config": {"training", "pruning", "ensembles", "analysis", "cli", "data", "models", "store", "runtime"},
    "repro": {"training", "pruning", "ensembles", "analysis", "cli", "data", "models", "store", "runtime"},
    "pruning": {"ensembles", "training", "analysis", "cli"},
    "analysis": {"training", "cli"},
    # training asks ensembles for a member's callbacks and scorer; the combiner reads runs through store/
    "ensembles": {"training", "analysis", "cli"},
    "store": {"training", "analysis", "ensembles", "pruning"},
}
# layer -> the only layers it may import (besides itself): where a run meets the machine (the device, the
# autocast decision) sits under everything that computes, so training and ensembles can share it
ONLY: dict[str, set[str]] = {
    "runtime": {"config", "repro"},
}
# (importer, imported) -> why it is still there. The one left: GMP's prune_every_steps equal to the steps per
# epoch is per-epoch pruning (one run), and the steps per epoch need the data set's size, so run identity
# reads the data layer. Its place is above data (with the run store), not in config.
KNOWN: dict[tuple[str, str], str] = {
    ("ssa_experiments.config.identity", "ssa_experiments.data.loaders"): "steps per epoch in the identity",
}


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> its file, for every module of the package under ``root``."""
    modules = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imported_names(module: str, path: Path) -> Iterator[tuple[str, str | None]]:
    """(imported module, name imported from it or None) for every import statement in the file, at module
    level or nested in a function, a class or a branch; relative imports made absolute."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield base, alias.name


def resolve(target: str, name: str | None, modules: dict[str, Path]) -> str | None:
    """The package module an import loads: ``from a.b import c`` is module a.b.c where c is a module, else
    a.b; None for imports from outside the package."""
    if name is not None and f"{target}.{name}" in modules:
        return f"{target}.{name}"
    return target if target in modules else None


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (itself excluded)."""
    modules = module_files(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {resolve(t, n, modules) for t, n in imported_names(module, path)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of the graph as [a, b, ..., a], or None: depth-first search for an edge back to a module
    still on the search path."""
    state: dict[str, str] = {}  # "open" while on the path, "done" once all its descendants are explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def layer(module: str) -> str:
    """The layer of a package module: its subpackage (``training``), or the module itself at the root
    (``models``)."""
    return module.split(".")[1] if "." in module else module


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that goes up a layer, as 'importer -> imported (rule)'."""
    bad = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            src, dst = layer(module), layer(target)
            if (module, target) in KNOWN:
                continue
            if dst == "cli" and src != "cli":
                bad.append(f"{module} -> {target} (the CLI is imported by nothing inside the package)")
            elif dst in FORBIDDEN.get(src, ()):
                bad.append(f"{module} -> {target} ({src} must not import {dst})")
            elif src in ONLY and dst != src and dst not in ONLY[src]:
                bad.append(f"{module} -> {target} ({src} imports only {', '.join(sorted(ONLY[src]))})")
    return bad


def test_the_package_has_no_import_circle() -> None:
    cycle = find_cycle(import_graph(REPO))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_layers_import_downwards_only() -> None:
    violations = layering_violations(import_graph(REPO))
    assert not violations, "imports up a layer:\n" + "\n".join(violations)


# ---- the checker itself: it must see a circle through a lazy import, and an import up a layer ----------


def write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_circle_hidden_by_a_lazy_import_is_found(tmp_path: Path) -> None:
    root = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "data/__init__.py": "",
            "data/datasets.py": "def load():\n    from ssa_experiments.data import disk\n",
            "data/disk.py": "from ssa_experiments.data.datasets import load\n",
            "data/loaders.py": "from .datasets import load\n",
        },
    )
    graph = import_graph(root)
    assert graph["ssa_experiments.data.loaders"] == {"ssa_experiments.data.datasets"}  # relative, resolved
    assert find_cycle(graph) == [
        "ssa_experiments.data.datasets",
        "ssa_experiments.data.disk",
        "ssa_experiments.data.datasets",
    ]
    (root / PACKAGE / "data" / "datasets.py").write_text("import os\n")
    assert find_cycle(import_graph(root)) is None


# an import only a type checker runs is an import statement too: it counts
TYPE_ONLY = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ssa_experiments.analysis\n"


@pytest.mark.parametrize(
    ("importer", "text", "rule"),
    [
        ("config/seeds.py", "from ssa_experiments.pruning import targets\n", "config must not"),
        ("pruning/targets.py", "def f():\n    import ssa_experiments.ensembles.members\n", "pruning"),
        ("models.py", "from ssa_experiments.cli.train import main\n", "the CLI is imported by nothing"),
        ("ensembles/members.py", "from ssa_experiments.training import loop\n", "ensembles must not"),
        ("ensembles/members.py", TYPE_ONLY, "ensembles must not import analysis"),
        ("store/read.py", "from ssa_experiments.ensembles import members\n", "store must not import"),
        ("runtime/devices.py", "from ssa_experiments.store import read\n", "runtime imports only config"),
        ("runtime/devices.py", "def f():\n    import ssa_experiments.models\n", "runtime imports only"),
    ],
)
def test_an_import_up_a_layer_is_named(tmp_path: Path, importer: str, text: str, rule: str) -> None:
    root = write_package(
        tmp_path,
        {
            "__init__.py": "",
            **{
                f"{p}/__init__.py": ""
                for p in ("cli", "config", "pruning", "ensembles", "training", "analysis", "store", "runtime")
            },
            "cli/train.py": "def main():\n    pass\n",
            "config/seeds.py": "",
            "pruning/targets.py": "",
            "ensembles/members.py": "",
            "training/loop.py": "",
            "analysis/aggregate.py": "",
            "store/read.py": "",
            "runtime/devices.py": "from ssa_experiments.config import seeds\n",  # allowed: one layer down
            "models.py": "",
            importer: text,
        },
    )
    (violation,) = layering_violations(import_graph(root))
    assert rule in violation and violation.startswith(f"{PACKAGE}.{importer[:-3].replace('/', '.')} -> ")
