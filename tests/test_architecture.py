"""The import graph of phototag points down only (docs/architecture.md).

Every ``import`` of every module is read with `ast`, those inside functions included (a lazy
import is still a dependency), and folded onto packages: ``phototag.X`` for each subpackage
and top-level module X. The graph must stay within `ALLOWED`, which is acyclic.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "phototag"

#: Which packages each package may import (besides itself). The root package ``phototag``
#: re-exports the public API; other modules may only read its ``__version__``.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "extras": {"errors"},
    "cache": set(),
    "fileio": {"errors"},
    "filenames": set(),
    "imaging": {"errors"},
    "metadata": {"errors", "fileio", "filenames", "imaging"},
    "data": {"errors", "fileio", "filenames", "imaging", "metadata"},
    "search": {"errors"},
    "evaluation": {"errors", "data"},
    "features": {"errors", "extras", "cache", "fileio", "imaging", "data"},
    "training": {"errors", "cache", "fileio", "data", "evaluation", "features"},
    "models": {
        "errors",
        "extras",
        "fileio",
        "data",
        "evaluation",
        "features",
        "search",
        "training",
    },
    "pretrained": {"errors", "models"},
    "finetune": {"errors", "fileio", "data", "features", "training", "models"},
    "library": {
        "errors",
        "cache",
        "fileio",
        "filenames",
        "imaging",
        "metadata",
        "data",
        "evaluation",
        "features",
        "models",
        "pretrained",
    },
    "engines": {
        "errors",
        "imaging",
        "data",
        "evaluation",
        "features",
        "models",
        "pretrained",
        "library",
    },
    "app": {
        "errors",
        "extras",
        "cache",
        "fileio",
        "filenames",
        "imaging",
        "metadata",
        "data",
        "evaluation",
        "features",
        "search",
        "training",
        "models",
        "pretrained",
        "finetune",
        "library",
        "engines",
    },
    "__main__": {"app"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> list[tuple[str, str]]:
    """(imported module, imported name or "") of every phototag import in `path`."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(base, alias.name) for alias in node.names]
    return [(target, name) for target, name in found if target.split(".")[0] == ROOT]


def unit(module: str) -> str:
    """The package a module belongs to: X of ``phototag.X...``, or the root."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


@cache
def package_graph() -> dict[str, set[str]]:
    """Package -> the packages it imports (read once per test session)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in sorted((SRC / ROOT).rglob("*.py")):
        source = unit(module_name(path))
        graph.setdefault(source, set())
        for target, name in imported(path):
            if target == ROOT and name and (SRC / ROOT / name).exists():
                target = f"{ROOT}.{name}"  # `from phototag import metrics`: a package
            if target == ROOT and source != ROOT:
                assert name == "__version__", f"{path}: imports {name} from the root package"
                continue
            if unit(target) != source:
                graph[source].add(unit(target))
    return graph


def test_allowed_layering_has_no_cycle():
    try:
        order = list(TopologicalSorter(ALLOWED).static_order())
    except CycleError as error:  # pragma: no cover - fails the test with the cycle
        pytest.fail(f"the allowed layering has a cycle: {error.args[1]}")
    assert set(order) >= set(ALLOWED)


def test_every_package_is_in_the_layering():
    graph = package_graph()
    missing = sorted(set(graph) - set(ALLOWED) - {ROOT})
    assert not missing, f"packages missing from ALLOWED (add them where they belong): {missing}"


def test_imports_point_down_only():
    wrong = {
        f"phototag.{source} -> phototag.{target}"
        for source, targets in package_graph().items()
        if source != ROOT
        for target in targets - ALLOWED.get(source, set())
    }
    assert not wrong, f"imports outside the allowed layering: {sorted(wrong)}"


def test_library_code_never_imports_the_app():
    users = {
        source
        for source, targets in package_graph().items()
        if "app" in targets and source not in ("app", "__main__")
    }
    assert not users, f"library code importing phototag.app: {sorted(users)}"


#: Private names still imported across packages, each waiting for its owner to make it public.
PRIVATE_IMPORTS_TO_REMOVE = {("phototag.models.regression.annotators", "_Pool")}


def test_no_private_name_is_imported_across_packages():
    found = set()
    for path in sorted((SRC / ROOT).rglob("*.py")):
        source = module_name(path)
        for target, name in imported(path):
            private = name.startswith("_") and name != "__version__"
            private = private or any(part.startswith("_") for part in target.split("."))
            if private and unit(target) != unit(source):
                found.add((source, name or target))
    assert found <= PRIVATE_IMPORTS_TO_REMOVE, sorted(found - PRIVATE_IMPORTS_TO_REMOVE)


def test_the_graph_reads_lazy_and_relative_imports(tmp_path, monkeypatch):
    """The parser sees imports inside functions and resolves relative ones."""
    package = tmp_path / ROOT / "models" / "toy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from .net import Net\n")
    module = package / "net.py"
    module.write_text("def f():\n    from ...app import cli\n    import phototag.data\n")
    monkeypatch.setattr(f"{__name__}.SRC", tmp_path)
    assert imported(package / "__init__.py") == [("phototag.models.toy.net", "Net")]
    assert imported(module) == [("phototag.app", "cli"), ("phototag.data", "")]
    assert unit(module_name(module)) == "models"
