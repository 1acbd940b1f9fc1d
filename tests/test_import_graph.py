"""minivit's modules import one another without cycles, lazy (in-function) imports included.

A cycle hidden behind an import inside a function still ties two modules into one room:
each needs the other to be understood. The graph is read from the source with ``ast``.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "minivit"


def module_files() -> dict[str, Path]:
    """{"minivit.data.cifar10": path, "minivit.data": path of its __init__, ...}"""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    """{module: the minivit modules it imports}. ``from minivit import backend`` is an edge to
    minivit.backend (the submodule), not to the package."""
    modules = module_files()

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                edges |= {known(alias.name) for alias in node.names if alias.name.startswith("minivit")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..data import y
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                if base.startswith("minivit"):
                    for alias in node.names:
                        submodule = f"{base}.{alias.name}"
                        edges.add(submodule if submodule in modules else known(base))
        graph[name] = edges - {name, None}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, grey/black marking)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_graph_sees_the_modules_and_their_imports():
    graph = import_graph()
    assert "minivit.training.trainer" in graph and "minivit.data.cifar10" in graph
    assert "minivit.evaluate" in graph["minivit.training.trainer"]
    assert "minivit.data.dataset" in graph["minivit.data.cifar10"]
    assert "minivit.backend" in graph["minivit.model"]  # from minivit import backend


def test_find_cycle_finds_a_lazy_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_among_minivit_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
