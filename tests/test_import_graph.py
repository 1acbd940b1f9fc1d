"""minivit's modules import one another without cycles, lazy (in-function) imports included.

A cycle hidden behind an import inside a function still ties two modules into one room:
each needs the other to be understood. The graph is read from the source with ``ast``.

The kernel seam is one-way: dispatch loads the kernels, which import only the reference
(minivit/ops), never dispatch or the modules that call it.
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


KNOWN_CYCLE_GROUPS: list[set] = []  # none: every module can be read without the ones that import it


def names_bound_in(path: Path) -> set[str]:
    """The names a module binds at its top level (imports, assignments, definitions)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {target.id for target in targets if isinstance(target, ast.Name)}
    return names


def import_graph() -> dict[str, set[str]]:
    """{module: the minivit modules it imports}. ``from minivit import backend`` is an edge to
    minivit.backend (the submodule), not to the package; ``from minivit import preset`` is an
    edge to the package, which defines the name; a name that is neither (a module that does
    not exist yet) is no edge."""
    modules = module_files()

    def known(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def defines(base: str, name: str) -> bool:
        """Whether ``from base import name`` takes ``name`` from the module ``base`` itself."""
        path = modules.get(base)
        if path is None or path.name != "__init__.py" or name == "*":
            return True  # a plain module (or an unknown one: counted, to be safe)
        return name in names_bound_in(path)  # a package: only what its __init__ defines

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
                        if submodule in modules:
                            edges.add(submodule)
                        elif defines(base, alias.name):
                            edges.add(known(base))
        graph[name] = edges - {name, None}
    return graph


def cycle_groups(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that import one another in a circle: the strongly connected
    components with more than one module (Tarjan's algorithm)."""
    index, lowlink, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(node):
        index[node] = lowlink[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                lowlink[node] = min(lowlink[node], lowlink[target])
            elif target in on_stack:
                lowlink[node] = min(lowlink[node], index[target])
        if lowlink[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_graph_sees_the_modules_and_their_imports():
    graph = import_graph()
    assert "minivit.training.trainer" in graph and "minivit.data.cifar10" in graph
    assert "minivit.evaluate" in graph["minivit.training.trainer"]
    assert "minivit.data.dataset" in graph["minivit.data.cifar10"]
    assert "minivit.backend" in graph["minivit.model"]  # from minivit import backend
    assert "minivit.finetune" not in graph["minivit.training.trainer"]


def test_cycle_groups_find_a_lazy_cycle():
    assert cycle_groups({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycle_groups({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_minivit_modules():
    for group in cycle_groups(import_graph()):
        assert any(group <= known for known in KNOWN_CYCLE_GROUPS), \
            "modules that import one another in a circle: " + ", ".join(sorted(group))


def test_the_training_rooms_are_in_no_cycle():
    rooms = {"minivit.train", "minivit.finetune", "minivit.evaluate", "minivit.adapt", "minivit.checkpoint",
             "minivit.convert", "minivit.atomic", "minivit.cli"}
    rooms |= {name for name in module_files() if name.startswith(("minivit.training", "minivit.data"))}
    for group in cycle_groups(import_graph()):
        assert not group & rooms, "in an import cycle: " + ", ".join(sorted(group))


def test_the_trainer_holds_the_order_and_its_rooms_do_not_need_it():
    """The Trainer imports its rooms (resume, schedule, step, report, divergence); none of them imports the Trainer,
    so each can be read, tested and reused (the benchmarks take TrainStep) without it."""
    graph = import_graph()
    rooms = {"minivit.training.resume", "minivit.training.schedule", "minivit.training.step",
             "minivit.training.report", "minivit.training.divergence"}
    assert rooms <= graph["minivit.training.trainer"]
    for room in rooms:
        assert "minivit.training.trainer" not in graph[room], room
