"""The package's layering, read from its source: no import cycle between its modules
(imports inside functions count; those only for type checkers do not), a pure core, and
actor processes that do not load the backtester."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import SRC

PACKAGE = SRC / "cival"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (anywhere in it but under TYPE_CHECKING)."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("cival"):
                    module = resolve(target)
                    if module is not None and module != name:
                        found.add(module)
        graph[name] = found
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    # cival.cli imports its commands' modules inside the functions that run them.
    assert "cival.session" in graph["cival.cli"] and "cival.backtest.sweep" in graph["cival.cli"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_between_the_packages_modules():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_core_imports_no_service_library_and_nothing_above_it():
    graph = import_graph()
    for name, path in _modules().items():
        if not name.startswith("cival.core"):
            continue
        above = sorted(m for m in graph[name] if not m.startswith("cival.core"))
        assert not above, f"{name} imports {above}: the core imports nothing above it"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        libraries = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        libraries |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        assert not libraries & {"ray", "redis", "asyncpg", "vectorbt", "numba"}, f"{name} imports a service library"


def test_nothing_below_the_actors_imports_them_and_the_backtester_never_does():
    graph = import_graph()
    for name, imports in graph.items():
        if name.startswith(("cival.core", "cival.execution", "cival.strategies", "cival.allocation", "cival.goals",
                            "cival.backtest", "cival.data", "cival.store")):
            assert not any(m.startswith("cival.actors") for m in imports), f"{name} imports the actors"
        if name.startswith("cival.backtest"):
            assert not any(m.startswith(("cival.session", "cival.runtime")) for m in imports), f"{name} imports a session"


def test_an_actor_process_does_not_load_the_backtester():
    code = "import sys, cival.actors.remote; print(sorted(m for m in sys.modules if m.startswith('cival.backtest')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": str(SRC)}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
