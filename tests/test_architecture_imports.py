"""The house of `server/jansamvad/` stays a house: no import circle, at most two imports that run back up.

Read from the source with `ast` (nothing is imported), like the protocol package's no-I/O check. Definitions, as in
docs/architecture.md ("Floors"):

- an import is any `import jansamvad.x` / `from jansamvad.x import y` of ours: at module level (also under
  `TYPE_CHECKING`: a type that names another module ties the two together as much as a call does) or in a function;
- a **circle** is two or more modules that import each other at module level, directly or through others;
- a module's **floor** is 1 + the highest floor of what it imports (a module that imports nothing of ours is on 0);
- a **back-arrow** is an import in a function whose target already imports its importer (directly or through
  others): it is only possible lazily, and it points at a module on the same or a higher floor.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "server" / "jansamvad"
MAX_BACK_ARROWS = 2
MAX_LINES = 460  # "no file over ~450 lines"
# Longer today, and not split yet (each is another item's or engineer's): they may shrink, never grow.
KNOWN_LONG: dict[str, int] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _target(name: str) -> str | None:
    """The module of ours an imported dotted name lives in (`jansamvad.node.Node` -> `jansamvad.node`)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            found = _target(alias.name)
            if found:
                yield found
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        for alias in node.names:  # `from jansamvad import node` imports the module jansamvad.node
            found = _target(f"{node.module}.{alias.name}")
            if found:
                yield found


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(module-level imports, imports inside functions) of one file, as module names of ours."""
    tree = ast.parse(path.read_text(), str(path))
    eager: set[str] = set()
    lazy: set[str] = set()

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            (lazy if inside else eager).update(_imports(child))
            walk(child, inside)

    walk(tree, False)
    me = module_name(path)
    eager.discard(me)
    lazy.discard(me)
    return eager, lazy - eager


def graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    eager: dict[str, set[str]] = {}
    lazy: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        eager[name], lazy[name] = imports_of(path)
    return eager, lazy


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _reaches(edges: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        v = todo.pop()
        if v == goal:
            return True
        for w in edges[v] - seen:
            seen.add(w)
            todo.append(w)
    return False


def back_arrows(eager: dict[str, set[str]], lazy: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Lazy imports whose target already imports the importer; the other lazy imports join the graph."""
    edges = {name: set(targets) for name, targets in eager.items()}
    back = []
    for name in sorted(lazy):
        for target in sorted(lazy[name]):
            if _reaches(edges, target, name):
                back.append((name, target))
            else:
                edges[name].add(target)
    return back


def floors(edges: dict[str, set[str]]) -> dict[str, int]:
    floor: dict[str, int] = {}

    def of(v: str) -> int:
        if v not in floor:
            floor[v] = 1 + max((of(w) for w in edges[v]), default=-1)
        return floor[v]

    for v in edges:
        of(v)
    return floor


def test_architecture_imports_have_no_circle() -> None:
    eager, _ = graph()
    assert len(eager) > 40  # the walk found the package
    assert circles(eager) == []


def test_architecture_imports_run_back_up_at_most_twice() -> None:
    eager, lazy = graph()
    assert circles(eager) == []  # floors need a graph without circles
    back = back_arrows(eager, lazy)
    assert len(back) <= MAX_BACK_ARROWS, f"imports that run back up: {back}"


def test_architecture_imports_floors_put_protocol_at_the_bottom_and_the_node_above_the_edge() -> None:
    eager, lazy = graph()
    edges = {name: eager[name] | lazy[name] for name in eager}
    for name, target in back_arrows(eager, lazy):
        edges[name].discard(target)
    floor = floors(edges)
    assert floor["jansamvad.protocol.codes"] == 0
    assert floor["jansamvad.node"] > floor["jansamvad.gateway"] > floor["jansamvad.connection"]
    assert floor["jansamvad.node"] > floor["jansamvad.client"]


def test_architecture_imports_checker_finds_a_circle_and_a_back_arrow() -> None:
    # The checker itself: a made-up graph with one circle and one lazy import back up.
    assert circles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert back_arrows({"a": {"b"}, "b": set()}, {"a": set(), "b": {"a"}}) == [("b", "a")]
    assert floors({"a": {"b"}, "b": set()}) == {"a": 1, "b": 0}


def test_architecture_no_module_is_over_the_line_budget() -> None:
    long = {}
    for name, path in MODULES.items():
        lines = len(path.read_text().splitlines())
        if lines > KNOWN_LONG.get(name, MAX_LINES):
            long[name] = lines
    assert long == {}, f"modules over {MAX_LINES} lines (or longer than they were): {long}"
