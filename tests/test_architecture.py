"""The package's layout: folders by concept, imports pointing down only, no cycle, short modules."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "harness"

# Lowest first. A module may import its own unit and the units before it, never one after it.
# The base modules are the top-level files every concept shares; `study` (the story) uses every
# concept; `bench` and `compress` (the command that writes and runs a study) run the story; the
# command line sits above all.
ORDER = [
    {"config", "files", "logs", "tracking", "registry", "record", "methods"},
    {"distill"},
    {"data"},
    {"teacher"},
    {"deploy"},
    {"training"},
    {"search"},
    {"confirm"},
    {"report"},
    {"study"},
    {"bench", "compress"},
    {"cli", "__main__"},
]


def modules() -> dict[str, Path]:
    """Dotted names inside `harness` ("distill.losses", "config") of every module but the package's own."""
    out = {}
    for p in PACKAGE.rglob("*.py"):
        rel = p.relative_to(PACKAGE).with_suffix("")
        if rel.parts == ("__init__",):
            continue
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = p
    return out


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Modules of `harness` that a file imports, anywhere in it (functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; the package imports itself by absolute name")
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "harness":
            base = node.module.split(".", 1)[1] if "." in node.module else ""
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                found.add(sub if sub in known else base)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".", 1)[1] for a in node.names if a.name.startswith("harness."))
    return {m for m in found if m in known}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(path, set(mods)) - {name} for name, path in mods.items()}


# The method registry and the loss math it calls sit with the base modules: `config` builds each
# method's section from the registry (distill/methods/, which imports no TensorFlow at import time).
METHOD_UNIT = ("distill.methods", "distill.losses")


def unit(module: str) -> str:
    if module in METHOD_UNIT or module.startswith("distill.methods."):
        return "methods"
    return module.split(".")[0]


def rank(module: str) -> int:
    for i, units in enumerate(ORDER):
        if unit(module) in units:
            return i
    raise AssertionError(f"harness.{module} is in no unit of ORDER: add its folder to the order")


def upward(g: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {d}" for m, deps in g.items() for d in deps if rank(d) > rank(m))


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(g.get(node, ())):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state and (cycle := visit(node, [])):
            return cycle
    return None


def test_every_import_points_down_the_folder_order():
    assert upward(graph()) == []


def test_the_order_check_sees_an_upward_import():
    g = graph()
    g["distill.losses"] = g["distill.losses"] | {"search.trial"}
    g["data.sources"] = g["data.sources"] | {"distill.models"}  # downward: allowed
    assert upward(g) == ["distill.losses -> search.trial"]


def test_the_graph_sees_imports_of_every_form():
    g = graph()
    assert "search.trial" in g["study"] or "search.workers" in g["study"]  # from harness.search.x import y
    assert "distill.losses" in g["distill.methods.kd"]  # inside a function
    assert "config" in g["distill.models"]  # from harness.config import ...


def test_the_import_graph_has_no_cycle():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_only_the_entry_points_import_the_command_line():
    importers = {m for m, deps in graph().items() if "cli" in deps}
    assert importers <= {"__main__"}, importers


def test_every_folder_says_what_it_holds():
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc.split()) >= 20 and "Imports" in doc, f"{init}: a paragraph on what it holds and imports"


def test_every_module_stays_readable_in_one_sitting():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 300}
    assert not long, long


def test_the_confirmation_and_the_bench_train_through_training_not_the_search():
    g = graph()
    reaching = sorted(f"{m} -> {d}" for m, deps in g.items() if unit(m) in ("confirm", "bench")
                      for d in deps if unit(d) == "search")
    assert reaching == []
