"""The library's import graph, read from the source (``ast`` over every file, imports inside functions included,
so a lazy import cannot hide a cycle): packages form a DAG, no two modules of one package import each other in a
circle, the trainer and the evaluation never reach each other (what both need, embedding samples through a model
and the quick dev metrics, lives in ``ctvlp.inference.embedding``), the library never imports Snakemake, and the
package root holds at most 4 modules.

Why: a cycle between packages makes every package depend on every other one in the cycle; a newcomer cannot
change or test one of them alone, and lazy imports that "break" a cycle only move the failure to run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / "ctvlp"
TOP = "ctvlp"  # the package root's own modules (ctvlp/__init__.py, cli.py): the top of the graph


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def package_of(name: str) -> str:
    """The subpackage a module belongs to (``ctvlp.models.spectre`` -> ``models``); root modules -> TOP."""
    parts = name.split(".")
    if len(parts) == 1 or (len(parts) == 2 and not is_package(name)):
        return TOP
    return parts[1]


def imported_names(path: Path) -> set[str]:
    """Every module name an import statement anywhere in the file names (relative imports resolved), plus
    string constants passed to ``importlib.import_module``."""
    name = module_name(path)
    here = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:  # `from pkg import module` imports the module, `from module import name` it
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return found


def module_edges() -> dict[str, set[str]]:
    """module -> the ctvlp modules it imports (a name that is an attribute of a module counts as that module)."""
    edges = {}
    for name, path in MODULES.items():
        targets = set()
        for imported in imported_names(path):
            while imported and imported not in MODULES:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        edges[name] = targets
    return edges


EDGES = module_edges()


def package_edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {package_of(m): set() for m in MODULES}
    for source, targets in EDGES.items():
        graph[package_of(source)].update(package_of(t) for t in targets if package_of(t) != package_of(source))
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (or a node importing itself)."""
    found = []
    for node in sorted(graph):
        component = sorted(n for n in reachable(graph, node) if node in reachable(graph, n))
        if component and component[0] == node and (len(component) > 1 or node in graph[node]):
            found.append(component)
    return found


def why(graph: dict[str, set[str]], source: str, target: str) -> list[str]:
    """The modules through which package ``source`` imports package ``target`` (for the failure message)."""
    return sorted(f"{m} -> {t}" for m, ts in EDGES.items() for t in ts
                  if package_of(m) == source and package_of(t) == target)


def test_the_graph_reads_every_module():
    assert len(MODULES) > 50 and "ctvlp.cli" in MODULES and "ctvlp.models.spectre" in MODULES
    assert "ctvlp.core.state_dict" in EDGES["ctvlp.models.spectre"]  # imports in a from-import are resolved
    assert package_of("ctvlp.cli") == TOP and package_of("ctvlp.core.config") == "core"


def test_no_two_packages_import_each_other_even_through_others():
    graph = package_edges()
    found = cycles(graph)
    detail = {f"{a} -> {b}": why(graph, a, b) for cycle in found for a in cycle for b in graph[a] if b in cycle}
    assert not found, f"package cycles {found}: {detail}"
    assert not any(TOP in targets for pkg, targets in graph.items() if pkg != TOP), "a package imports ctvlp.cli"


def test_no_module_cycle_inside_a_package():
    by_package: dict[str, dict[str, set[str]]] = {}
    for source, targets in EDGES.items():
        by_package.setdefault(package_of(source), {})[source] = {t for t in targets
                                                                if package_of(t) == package_of(source)}
    found = {pkg: cycles(graph) for pkg, graph in by_package.items() if cycles(graph)}
    assert not found, found


def test_core_is_a_leaf():
    """core holds what every package may import (config, ids, state-dict I/O, metrics): it imports none of them."""
    assert package_edges()["core"] == set(), {t: why(package_edges(), "core", t) for t in package_edges()["core"]}


def test_train_and_evaluate_never_reach_each_other_and_both_use_the_embedding_module():
    graph = package_edges()
    assert "evaluate" not in reachable(graph, "train"), why(graph, "train", "evaluate")
    assert "train" not in reachable(graph, "evaluate"), why(graph, "evaluate", "train")
    for package in ("train", "evaluate"):
        assert any("ctvlp.inference.embedding" in targets for m, targets in EDGES.items()
                   if package_of(m) == package), package


def test_foreign_checkpoint_conversion_is_used_only_by_the_cli():
    graph = package_edges()
    users = sorted(pkg for pkg, targets in graph.items() if "convert" in targets)
    assert users == [TOP], users


def test_the_library_never_imports_snakemake():
    offenders = sorted(m for m, p in MODULES.items()
                       if any(n == "snakemake" or n.startswith("snakemake.") for n in imported_names(p)))
    assert not offenders, offenders


def test_at_most_four_modules_at_the_package_root():
    root = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(root) <= 4, root
