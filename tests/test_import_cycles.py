"""No import cycles in src/seq2seq: no module imports one that imports it back, directly or
through others. Every import counts: at the top, inside a function (a lazy import), or under
`if TYPE_CHECKING:`. Importing `a.b.c` also runs the packages `a.b` and `a`, so those count
too, except the packages the importing module lies in (they are already running)."""

from __future__ import annotations

import ast
from pathlib import Path

import seq2seq

SOURCE = Path(seq2seq.__file__).parent


def module_names() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its own name)."""
    names = {}
    for path in SOURCE.rglob("*.py"):
        parts = ["seq2seq", *path.relative_to(SOURCE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the package that importing `name` (at `path`) runs, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    runs = set()
    for target in targets:
        while target:
            # A package the importer lies in is already running when the import happens.
            if target in modules and not name.startswith(f"{target}.") and target != name:
                runs.add(target)
            target = target.rpartition(".")[0]
    return runs


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                group.add(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph[node]:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(group, graph) for group in groups]


def _cycle_in(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A path from the group's first module back to itself, within the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for nxt in sorted(graph[node] & group):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                frontier.append(nxt)
    raise AssertionError(f"no cycle through {start}")


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def test_no_module_imports_one_that_imports_it_back():
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_walk_finds_lazy_and_type_checking_imports_and_cycles(tmp_path):
    """The checker itself: a function-level import and a TYPE_CHECKING one are edges, a
    package's parents run with it, and a cycle through three modules is found."""
    package = tmp_path / "seq2seq"
    (package / "inner").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "inner" / "__init__.py").write_text("from seq2seq.inner.c import C\n")
    (package / "a.py").write_text("def f():\n    from seq2seq import b\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from seq2seq.inner.d import D\n"
    )
    (package / "inner" / "c.py").write_text("from . import d\n")
    (package / "inner" / "d.py").write_text("import seq2seq.a\n")
    modules = {
        "seq2seq": package / "__init__.py",
        "seq2seq.a": package / "a.py",
        "seq2seq.b": package / "b.py",
        "seq2seq.inner": package / "inner" / "__init__.py",
        "seq2seq.inner.c": package / "inner" / "c.py",
        "seq2seq.inner.d": package / "inner" / "d.py",
    }
    graph = {name: imported(name, path, modules) for name, path in modules.items()}
    assert graph["seq2seq.a"] == {"seq2seq.b"}
    assert graph["seq2seq.b"] == {"seq2seq.inner", "seq2seq.inner.d"}
    assert graph["seq2seq.inner.c"] == {"seq2seq.inner.d"}  # its own package is running
    assert graph["seq2seq.inner.d"] == {"seq2seq.a"}
    # a -> b -> inner -> inner.c -> inner.d -> a, of which the shortest way back to a:
    assert cycles(graph) == [["seq2seq.a", "seq2seq.b", "seq2seq.inner.d", "seq2seq.a"]]
