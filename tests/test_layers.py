"""The package's layers, checked from its source: imports point down, siblings stay apart, no import circle,
no module over 400 lines. See docs/architecture.md for the layers and why.

Every `import` and `from … import` of `kedascaler.*` counts, wherever it is written: at the top, inside a
function, under `if TYPE_CHECKING:`. A failure names the file, the line and the rule it breaks. The checker is
plain `ast` (no import-linter): it needs the line of each import, the TYPE_CHECKING and function-local ones
included, and one walk gives all four rules; it is tested below on small made-up trees, so each rule is seen
to fail as well as to pass.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "kedascaler"

# From the top down; folders on one level are siblings and must not import each other.
LEVELS: tuple[tuple[str, ...], ...] = (
    ("cli",),  # the only composition root
    ("sim", "server", "observe", "actuate"),
    ("loop",),
    ("sources",),
    ("spec",),
    ("engine",),
    ("kits", "proto"),
)
LAYER_RANK = {folder: len(LEVELS) - i for i, level in enumerate(LEVELS) for folder in level}
MAX_LINES = 400
# engine/ decides from its arguments alone: no I/O, no clock, no hidden randomness (docs/architecture.md)
IMPURE = frozenset({
    "asyncio", "datetime", "grpc", "http", "io", "json", "kubernetes", "logging", "os", "pathlib",
    "prometheus_api_client", "prometheus_client", "random", "requests", "shutil", "socket", "subprocess", "sys",
    "tempfile", "threading", "time", "urllib", "yaml",
})
GENERATED = ("proto/externalscaler_pb2",)  # protoc's output (kedascaler/proto/generate.py): no line limit


@dataclass(frozen=True)
class Import:
    """One import of a package module: who imports what, where."""

    source: str  # importing module, dotted
    target: str  # imported module, dotted (the deepest name that is a module of the package)
    path: Path  # the importing file, relative to the repository root
    line: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def module_name(path: Path, root: Path) -> str:
    """`kedascaler/loop/board.py` → `kedascaler.loop.board`; a package's `__init__.py` → the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package (dotted name → file), `.py` files only."""
    return {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}


def _absolute(node: ast.ImportFrom, source: str, is_package: bool) -> str:
    """The module a `from X import …` names, relative imports resolved against the importing module."""
    if not node.level:
        return node.module or ""
    base = source.split(".") if is_package else source.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The deepest prefix of `name` that is a module of the package (None for other libraries)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(path: Path, source: str, modules: dict[str, Path], root: Path,
               package: str = PACKAGE) -> Iterator[Import]:
    """Every import of a package module in one file, at any depth of the tree (functions, TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    rel = path.relative_to(root)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, source, is_package)
            # `from pkg import mod` imports the module pkg.mod when there is one, else a name of pkg
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for name in names:
            if name != package and not name.startswith(package + "."):
                continue
            target = _resolve(name, modules)
            if target is not None and target != source:
                yield Import(source, target, rel, node.lineno)


def all_imports(root: Path, package: str = PACKAGE) -> list[Import]:
    modules = package_modules(root, package)
    found = {(i.source, i.target, i.line): i
             for name, path in modules.items() for i in imports_of(path, name, modules, root, package)}
    return sorted(found.values(), key=lambda i: (str(i.path), i.line, i.target))


def layer_of(module: str) -> str | None:
    """The layer folder of a dotted module name (None for the root package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


# -- the four rules: each returns its violations as lines "file:line: rule: detail" --

def unplaced_modules(modules: dict[str, Path], root: Path) -> list[str]:
    """Modules outside every layer folder (the root package may exist, empty of imports)."""
    out = []
    for name, path in modules.items():
        layer = layer_of(name)
        if layer is not None and layer not in LAYER_RANK:
            out.append(f"{path.relative_to(root)}:1: no layer: '{layer}' is not in the layer table "
                       f"(tests/test_layers.py LEVELS, docs/architecture.md)")
    return out


def upward_imports(imports: Iterable[Import]) -> list[str]:
    """A lower layer imports a higher one."""
    out = []
    for i in imports:
        src, dst = layer_of(i.source), layer_of(i.target)
        if src is None or dst is None or src not in LAYER_RANK or dst not in LAYER_RANK:
            if src is None:
                out.append(f"{i.where}: root imports: the root package imports {i.target}")
            continue
        if LAYER_RANK[dst] > LAYER_RANK[src]:
            out.append(f"{i.where}: import goes up a layer: {src}/ (lower) imports {i.target} ({dst}/, higher)")
    return out


def sibling_imports(imports: Iterable[Import]) -> list[str]:
    """Two folders on one level import each other."""
    out = []
    for i in imports:
        src, dst = layer_of(i.source), layer_of(i.target)
        if src and dst and src != dst and src in LAYER_RANK and LAYER_RANK.get(dst) == LAYER_RANK[src]:
            out.append(f"{i.where}: siblings import each other: {src}/ imports {i.target} ({dst}/, same level)")
    return out


def import_cycles(imports: Iterable[Import]) -> list[str]:
    """Import circles among modules: one shortest circle per strongly connected group, edge by edge."""
    graph: dict[str, dict[str, Import]] = {}
    for i in imports:
        graph.setdefault(i.source, {}).setdefault(i.target, i)
    out = []
    for group in _strongly_connected(graph):
        if len(group) < 2:
            continue
        cycle = _shortest_cycle(graph, group, min(group))
        edges = [graph[a][b] for a, b in zip(cycle, cycle[1:] + cycle[:1], strict=True)]
        chain = " → ".join(cycle + cycle[:1])
        steps = "; ".join(f"{e.where} imports {e.target}" for e in edges)
        out.append(f"{edges[0].where}: import circle ({len(group)} modules in it): {chain} ({steps})")
    return out


def long_modules(modules: dict[str, Path], root: Path, limit: int = MAX_LINES) -> list[str]:
    out = []
    for path in modules.values():
        rel = path.relative_to(root)
        if any(str(rel.with_suffix("")).startswith(f"{PACKAGE}/{g}") for g in GENERATED):
            continue
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            out.append(f"{rel}:{limit + 1}: module over {limit} lines: {lines} lines (split it by idea)")
    return out


def _strongly_connected(graph: dict[str, dict[str, Import]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, {})))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return groups


def _shortest_cycle(graph: dict[str, dict[str, Import]], group: set[str], start: str) -> list[str]:
    """Breadth-first from `start` back to it, inside the group."""
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, {})):
                if child not in group:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return path[::-1]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a strongly connected group always has one


def impure_engine_imports(modules: dict[str, Path], root: Path) -> list[str]:
    """engine/ imports a module of I/O, clock, logging or global randomness."""
    out = []
    for name, path in modules.items():
        if layer_of(name) != "engine":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for top in {n.split(".")[0] for n in names} & IMPURE:
                out.append(f"{path.relative_to(root)}:{node.lineno}: engine is pure: it imports {top}")
    return out


def violations(root: Path) -> dict[str, list[str]]:
    modules = package_modules(root)
    imports = all_imports(root)
    return {
        "placed": unplaced_modules(modules, root),
        "down": upward_imports(imports),
        "siblings": sibling_imports(imports),
        "acyclic": import_cycles(imports),
        "short": long_modules(modules, root),
        "pure": impure_engine_imports(modules, root),
    }


def _report(found: list[str], rule: str) -> str:
    return f"{len(found)} violation(s) of '{rule}' (docs/architecture.md):\n" + "\n".join(found)


# -- the package as it stands --

@pytest.fixture(scope="module")
def package() -> dict[str, list[str]]:
    return violations(ROOT)


def test_the_checker_sees_the_package(package: dict[str, list[str]]) -> None:
    imports = all_imports(ROOT)
    assert len(package_modules(ROOT)) > 50 and len(imports) > 100, "the walk found too little: wrong root?"
    assert {layer_of(i.source) for i in imports} >= {"cli", "loop", "engine"}


def test_every_module_sits_in_a_layer(package: dict[str, list[str]]) -> None:
    assert not package["placed"], _report(package["placed"], "every module sits in a layer folder")


def test_no_import_goes_up_a_layer(package: dict[str, list[str]]) -> None:
    assert not package["down"], _report(package["down"], "imports point down")


def test_siblings_do_not_import_each_other(package: dict[str, list[str]]) -> None:
    assert not package["siblings"], _report(package["siblings"], "siblings do not import each other")


def test_no_import_circle(package: dict[str, list[str]]) -> None:
    assert not package["acyclic"], _report(package["acyclic"], "no import circle")


def test_no_module_over_400_lines(package: dict[str, list[str]]) -> None:
    assert not package["short"], _report(package["short"], f"no module over {MAX_LINES} lines")


def test_engine_does_no_io_and_reads_no_clock(package: dict[str, list[str]]) -> None:
    assert not package["pure"], _report(package["pure"], "engine/ is pure")


# -- the checker on made-up trees: each rule can fail --

def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"kedascaler/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tmp_path).parents:
            if parent != Path(".") and not (tmp_path / parent / "__init__.py").exists():
                (tmp_path / parent / "__init__.py").write_text("")
        path.write_text(text)
    return tmp_path


def test_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "kedascaler/cli/main.py": "from kedascaler.loop import reconcile\nimport kedascaler.server.app\n",
        "kedascaler/server/app.py": ("from kedascaler.loop.board import Board\n"
                                     "from kedascaler.proto import externalscaler_pb2\n"),
        "kedascaler/loop/reconcile.py": "from . import board\nfrom ..engine.decide import decide\n",
        "kedascaler/loop/board.py": "import json\nfrom kedascaler.engine import types\n",
        "kedascaler/engine/decide.py": "from kedascaler.engine.types import Decision\n",
        "kedascaler/engine/types.py": "import math\n",
        "kedascaler/proto/externalscaler_pb2.py": "\n" * 900,  # generated: no line limit
    })
    assert violations(root) == {"placed": [], "down": [], "siblings": [], "acyclic": [], "short": [], "pure": []}


def test_checker_finds_an_upward_import_inside_a_function_and_under_type_checking(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "kedascaler/engine/decide.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                        "    from kedascaler.loop.board import Board\n"
                                        "def f():\n    from ..sources import base\n"),
        "kedascaler/loop/board.py": "",
        "kedascaler/sources/base.py": "",
    })
    found = violations(root)["down"]
    assert found == [
        "kedascaler/engine/decide.py:3: import goes up a layer: engine/ (lower) imports kedascaler.loop.board "
        "(loop/, higher)",
        "kedascaler/engine/decide.py:5: import goes up a layer: engine/ (lower) imports kedascaler.sources.base "
        "(sources/, higher)",
    ]


def test_checker_finds_an_impure_engine(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"kedascaler/engine/decide.py": "import math\ndef f():\n    from time import monotonic\n"})
    assert violations(root)["pure"] == ["kedascaler/engine/decide.py:3: engine is pure: it imports time"]


def test_checker_finds_siblings(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"kedascaler/sim/fleet.py": "import kedascaler.server.app as app\n",
                            "kedascaler/server/app.py": ""})
    assert violations(root)["siblings"] == [
        "kedascaler/sim/fleet.py:1: siblings import each other: sim/ imports kedascaler.server.app "
        "(server/, same level)"]


def test_checker_finds_a_circle_and_names_its_edges(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "kedascaler/spec/a.py": "from kedascaler.spec import b\n",
        "kedascaler/spec/b.py": "x = 1\nfrom kedascaler.spec.c import y\n",
        "kedascaler/spec/c.py": "def g():\n    from . import a\n",
    })
    assert violations(root)["acyclic"] == [
        "kedascaler/spec/a.py:1: import circle (3 modules in it): kedascaler.spec.a → kedascaler.spec.b → "
        "kedascaler.spec.c → kedascaler.spec.a (kedascaler/spec/a.py:1 imports kedascaler.spec.b; "
        "kedascaler/spec/b.py:2 imports kedascaler.spec.c; kedascaler/spec/c.py:2 imports kedascaler.spec.a)"]


def test_checker_finds_a_long_module_and_an_unplaced_one(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"kedascaler/engine/big.py": "x = 1\n" * 401, "kedascaler/collect/old.py": ""})
    found = violations(root)
    assert found["short"] == ["kedascaler/engine/big.py:401: module over 400 lines: 401 lines (split it by idea)"]
    assert found["placed"] == ["kedascaler/collect/__init__.py:1: no layer: 'collect' is not in the layer table "
                               "(tests/test_layers.py LEVELS, docs/architecture.md)",
                               "kedascaler/collect/old.py:1: no layer: 'collect' is not in the layer table "
                               "(tests/test_layers.py LEVELS, docs/architecture.md)"]
