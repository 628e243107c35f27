"""The package's import graph has no cycle (DESIGN.md, Layout: each module imports only
modules below it).

Every module of the package is parsed with ``ast`` (not imported) and each import of a
fastrnn module is an edge, wherever it sits: at the top of the file, inside a function or
under ``if TYPE_CHECKING``.  An import inside a function that closes a cycle only hides
the cycle until the function runs, so it counts like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fastrnn"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    """Every module of the package, by dotted name: the Python sources, and the compiled
    kernels (``.pyx``: they import no module of the package, only ``cimport`` C)."""
    return {_module_name(p): p for pattern in ("*.pyx", "*.py")
            for p in sorted(PACKAGE.rglob(pattern))}


def _target(name: str, modules) -> str | None:
    """The module an import of ``name`` runs: ``name`` if it is one of ours, else the
    package whose attribute it is (``from . import blas_info`` runs ``fastrnn``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def _edges(name: str, is_package: bool, source: str, modules) -> set[str]:
    """The modules of ``modules`` (names) that module ``name`` imports, given its
    ``source``."""
    package = name if is_package else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                base_name = ".".join(base + ([node.module] if node.module else []))
            else:
                base_name = node.module or ""
            # `from X import y`: the submodule X.y when there is one, else X itself
            names = [f"{base_name}.{alias.name}" if f"{base_name}.{alias.name}" in modules
                     else base_name for alias in node.names]
        else:
            continue
        for imported in names:
            target = _target(imported, modules)
            if target is not None and target != name:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: set() if path.suffix == ".pyx" else
            _edges(name, path.name == "__init__.py", path.read_text(), modules)
            for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = GREY
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == GREY:
                return stack[stack.index(nxt):] + [nxt]
            if colour[nxt] == WHITE:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = BLACK
        return None

    for node in sorted(graph):
        if colour[node] == WHITE:
            found = visit(node)
            if found:
                return found
    return None


def test_every_kind_of_import_is_an_edge():
    modules = {"fastrnn", "fastrnn.a", "fastrnn.b", "fastrnn.c", "fastrnn.d", "fastrnn.e",
               "fastrnn.sub", "fastrnn.sub.f", "fastrnn.sub.g"}
    source = """
import numpy
from typing import TYPE_CHECKING
from . import a, blas_info
from .b import thing
if TYPE_CHECKING:
    from .c import Other
def later():
    import fastrnn.d
    from fastrnn.e import x
"""
    # blas_info is no module: importing it runs the package
    assert _edges("fastrnn.mod", False, source, modules) == {
        "fastrnn", "fastrnn.a", "fastrnn.b", "fastrnn.c", "fastrnn.d", "fastrnn.e"}
    assert _edges("fastrnn.sub.g", False, "from . import f\nfrom .. import a\n"
                  "from ..b import y\n", modules) == {"fastrnn.sub.f", "fastrnn.a",
                                                       "fastrnn.b"}
    assert _edges("fastrnn.sub", True, "from . import f\nfrom .g import y\n"
                  "from .. import c\n", modules) == {"fastrnn.sub.f", "fastrnn.sub.g",
                                                      "fastrnn.c"}


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert {"fastrnn", "fastrnn._core", "fastrnn.models", "fastrnn.data"} <= set(graph)
    assert "fastrnn.models" in graph["fastrnn.io"]            # from ..models import ...
    assert "fastrnn.io.files" in graph["fastrnn.io"]          # from .files import ...
    assert "fastrnn._engine" in graph["fastrnn.cells"]        # from . import _engine
    assert "fastrnn._validate" in graph["fastrnn.data"]       # from .._validate import ...
    assert "fastrnn._core" in graph["fastrnn._engine"]        # the compiled kernels


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


COMPILED = {"fastrnn._blas", "fastrnn._core", "fastrnn._step", "fastrnn._floor"}


def test_only_the_engine_and_the_process_setup_import_the_kernels():
    """DESIGN.md: ``_engine`` is the only Python module that calls the compiled kernels
    (``_runtime`` binds their threads at import, ``_tuning`` sets their thresholds; the
    CLI's ``info`` command reports where the extension was loaded from)."""
    allowed = {"fastrnn._engine", "fastrnn._runtime", "fastrnn._tuning", "fastrnn.cli.info"}
    graph = import_graph()
    users = {name for name, deps in graph.items() if deps & COMPILED and name not in COMPILED}
    assert users <= allowed, sorted(users - allowed)
