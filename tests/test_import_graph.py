"""No import cycles inside autox_video or autox_operator: every import arrow points down.

The graph is read with `ast` (nothing is imported): module-level imports and imports inside
functions both count, since a lazy import that goes back up is still a circle in the design;
imports under `if TYPE_CHECKING:` are left out, they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [ROOT / "autox_video", ROOT / "operator" / "autox_operator"]


def module_files(package: Path) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package rooted at `package`."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement under `node`, skipping the bodies of `if TYPE_CHECKING:`."""
    found: list[ast.Import | ast.ImportFrom] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            found.append(child)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                found.extend(_imports(ast.Module(body=[other], type_ignores=[])))
        else:
            found.extend(_imports(child))
    return found


def _packages_run(module: str, target: str) -> set[str]:
    """The packages whose `__init__` importing `target` runs: those above it (and it) outside `module`'s own."""
    parts = target.split(".")
    own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1)} - own


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The known modules one import statement of `module` loads, with the package `__init__`s it runs."""
    if isinstance(node, ast.Import):
        return {m for alias in node.names for m in {alias.name} | _packages_run(module, alias.name)} & known
    base = node.module or ""
    if node.level:
        anchor = module.split(".") if is_package else module.split(".")[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    targets = _packages_run(module, base)
    for alias in node.names:
        # `from pkg import sub` loads the submodule; `from pkg import name` reads pkg's __init__.
        submodule = f"{base}.{alias.name}"
        targets.add(submodule if submodule in known else base)
    return targets & known


def import_graph(packages: list[Path]) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports, read from the source with `ast`."""
    files: dict[str, Path] = {}
    for package in packages:
        files.update(module_files(package))
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _imports(tree):
            edges |= _targets(module, is_package, node, known)
        edges.discard(module)
        graph[module] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a, b, ..., a) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(node: str) -> None:  # Tarjan; the graphs are small enough for recursion
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & component):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # unreachable for a real component


def describe(cycles: list[list[str]]) -> str:
    """The cycles one a line, as `a -> b -> a`."""
    return "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_no_import_cycle_in_autox_video_or_autox_operator() -> None:
    graph = import_graph(PACKAGES)
    assert "autox_video.config" in graph and "autox_operator.reconcile" in graph
    assert "autox_video.spec.search" in graph["autox_video.search.section"]
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + describe(cycles)


def test_the_checker_finds_a_cycle_through_a_lazy_import_and_ignores_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.leaf import VALUE\n")
    (pkg / "sub" / "leaf.py").write_text("VALUE = 1\n")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .sub import VALUE\n    return VALUE\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\nelse:\n    import os\n"
    )
    graph = import_graph([pkg])
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.sub"} and graph["pkg.c"] == set()
    assert find_cycles(graph) == []

    (pkg / "sub" / "leaf.py").write_text("def g():\n    import pkg.a\n\nVALUE = 1\n")
    assert find_cycles(import_graph([pkg])) == [["pkg.a", "pkg.b", "pkg.sub", "pkg.sub.leaf", "pkg.a"]]


def test_importing_a_submodule_runs_its_package_init_so_a_re_export_can_close_a_cycle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "models").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "config.py").write_text("from pkg.models.search import Search\n")
    (pkg / "models" / "search.py").write_text("class Search: ...\n")
    (pkg / "models" / "training.py").write_text("from pkg.config import Search\n")
    (pkg / "models" / "__init__.py").write_text("")
    assert find_cycles(import_graph([pkg])) == []

    (pkg / "models" / "__init__.py").write_text("from .training import Search\n")
    cycles = find_cycles(import_graph([pkg]))
    assert describe(cycles) == "pkg.config -> pkg.models -> pkg.models.training -> pkg.config"
