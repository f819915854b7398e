"""The package's import graph: no cycles, and no module imports an entry point as a library.

Every import statement counts, also those inside functions (a lazy import still ties the two
modules together); only ``if TYPE_CHECKING:`` blocks, which never run, are left out. Importing
``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` too, so it is an edge to those as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "wavelab"
# `python -m` targets: scripts, not libraries.
ENTRIES = {
    "wavelab.run",
    "wavelab.eval",
    "wavelab.sample",
    "wavelab.export",
    "wavelab.report",
    "wavelab.wavgpt.codec.__main__",
    "wavelab.wavgpt.plots.__main__",
    "wavelab.bench.__main__",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every dotted name an import statement of ``tree`` may load (modules and attributes)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        edges = set()
        for name in imported_names(tree, module, path.name == "__init__.py"):
            parts = name.split(".")
            # the module itself and every package above it run on import
            edges.update(
                ".".join(parts[:i])
                for i in range(1, len(parts) + 1)
                if ".".join(parts[:i]) in files
            )
        edges.discard(module)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for succ in sorted(graph[node]):
            if state.get(succ) == 1:
                return [*path[path.index(succ) :], succ]
            if succ not in state and (cycle := visit(succ)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_walker_sees_lazy_imports_and_packages():
    source = """
import wavelab.a
from wavelab.b import c
from . import d
from .e import f
def g():
    from wavelab.h import i
if TYPE_CHECKING:
    from wavelab.never import j
"""
    names = imported_names(ast.parse(source), "wavelab.pkg.mod", is_package=False)
    assert {"wavelab.a", "wavelab.b.c", "wavelab.pkg.d", "wavelab.pkg.e.f", "wavelab.h.i"} <= names
    assert not any("never" in n for n in names)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_graph_holds_every_module_and_known_edges(graph):
    assert ENTRIES <= set(graph)
    assert "wavelab.wavgpt.code.sparse_code" in graph["wavelab.wavgpt.model.core"]
    assert "wavelab.wavgpt.module" in graph["wavelab.wavgpt.codec.api"]  # a lazy import
    assert "wavelab.wavgpt.codec" in graph["wavelab.wavgpt.plots.callback"]


MODEL_PACKAGES = ("wavelab.wavegpt", "wavelab.wavgpt")


def model_package(module: str) -> str | None:
    return next((p for p in MODEL_PACKAGES if module == p or module.startswith(p + ".")), None)


def test_the_shared_core_imports_no_model(graph):
    offenders = {
        m: sorted(e for e in graph[m] if model_package(e))
        for m in graph
        if model_package(m) is None and any(model_package(e) for e in graph[m])
    }
    assert not offenders, f"shared modules importing a model package: {offenders}"


def test_no_model_package_imports_another(graph):
    offenders = {
        m: sorted(e for e in graph[m] if model_package(e) not in (None, model_package(m)))
        for m in graph
        if model_package(m)
    }
    assert not any(offenders.values()), f"model packages importing each other: {offenders}"


def test_the_shared_core_names_no_model_module():
    """Not even in a string: the core reads a model's spec, never its module path."""
    shared = [p for p in PACKAGE.rglob("*.py") if model_package(module_name(p)) is None]
    named = {str(p): pkg for p in shared for pkg in MODEL_PACKAGES if pkg in p.read_text()}
    assert not named, named


def test_no_import_cycles(graph):
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_module_imports_an_entry_point(graph):
    offenders = {m: sorted(graph[m] & ENTRIES) for m in graph if graph[m] & ENTRIES}
    assert not offenders, f"entry points imported as libraries: {offenders}"


@pytest.mark.parametrize("path", sorted((PACKAGE / "wavgpt" / "code").glob("*.py")), ids=str)
def test_the_format_imports_no_model_or_lightning_code(path):
    """The byte format (wavgpt/code/) stands alone: its own parts and wavelab's errors only."""
    names = imported_names(ast.parse(path.read_text()), module_name(path), is_package=False)
    own = ("wavelab.wavgpt.code", "wavelab.core.errors")
    foreign = {n for n in names if n.startswith(("wavelab.", "lightning"))}
    assert not {n for n in foreign if not n.startswith(own)}, names
