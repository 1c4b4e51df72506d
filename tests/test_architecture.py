"""The package's own import graph: no cycle, nothing below the command line imports it."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "harness"


def imports_of(path: Path) -> set[str]:
    """Modules of `harness` that a file imports, anywhere in it (functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("harness."):
            found.add(node.module.split(".")[1])
    return found & {p.stem for p in PACKAGE.glob("*.py")}


def graph() -> dict[str, set[str]]:
    return {p.stem: imports_of(p) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


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


def test_the_import_graph_has_no_cycle():
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_only_the_entry_points_import_the_command_line():
    importers = {m for m, deps in graph().items() if "cli" in deps}
    assert importers <= {"__main__"}, importers


def test_every_module_stays_readable_in_one_sitting():
    long = {p.name: n for p in PACKAGE.glob("*.py")
            if (n := len(p.read_text().splitlines())) > 300 and p.stem != "config"}
    assert not long, long
