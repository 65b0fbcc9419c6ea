"""The layers of the repository, checked over the source with ``ast`` (static: nothing is
imported, so a module that is never loaded by the other tests is checked all the same).

- the engine (``polyjobs/*.py``, ``polyjobs/testing/``) and the backends know nothing of the
  command line, the board, or the Polymarket application;
- the Polymarket processors and domain reach job storage only through the engine, never a
  backend; the domain never imports the command line or the processors;
- the board reaches backends only through the engine, as the command line does.

Type-only imports (under ``TYPE_CHECKING``) count: a layer that names another's types
depends on it. The engine does not even name the application: no module path of it in a
string (a plugin list), none of its setting names (it declares them itself, through a hook).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CLI = "polyjobs.cli"
BOARD = "polyjobs.board"
PROCESSORS = "polyjobs.processors"
POLYMARKET = "polyjobs.polymarket"
BACKENDS = "polyjobs.backends"
APPLICATION = (PROCESSORS, POLYMARKET)

#: (layer, its source files, the packages it must not import)
RULES = [
    ("engine", ["polyjobs/*.py", "polyjobs/testing/*.py"], (CLI, BOARD, *APPLICATION)),
    ("backends", ["backends/**/*.py"], (CLI, BOARD, *APPLICATION)),
    ("processors", ["processors/*.py"], (BACKENDS, BOARD)),
    ("polymarket", ["polymarket/*.py"], (BACKENDS, BOARD, CLI, PROCESSORS)),
    ("board", ["board/**/*.py"], (BACKENDS, CLI, *APPLICATION)),
]


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports: import statements (at any depth, type-only ones too)
    and ``importlib.import_module("constant")`` calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:  # "from polyjobs import cli" imports polyjobs.cli
                yield node.lineno, f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if name == "import_module" and isinstance(first, ast.Constant):
                if isinstance(first.value, str):
                    yield node.lineno, first.value


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def sources(patterns: list[str]) -> list[Path]:
    found = {path for pattern in patterns for path in ROOT.glob(pattern)}
    return sorted(path for path in found if not any(p.is_symlink() for p in path.parents))


@pytest.mark.parametrize(("layer", "patterns", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_layer_imports_none_of_the_forbidden_packages(
    layer: str, patterns: list[str], forbidden: tuple[str, ...]
) -> None:
    files = sources(patterns)
    assert len(files) >= 3, f"no source files found for the {layer} layer: {patterns}"
    crossings = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for line, module in imported_modules(path)
        if any(within(module, package) for package in forbidden)
    ]
    assert crossings == [], f"the {layer} layer crosses its boundary:\n" + "\n".join(crossings)


#: What only the Polymarket application may know: its packages and its environment variables.
APPLICATION_WORDS = (CLI, PROCESSORS, POLYMARKET, "BULLMQ_", "MONGODB_URI", "DISCORD_WEBHOOK")


def test_the_engine_names_no_application_in_its_code() -> None:
    files = sources(["polyjobs/*.py", "polyjobs/testing/*.py"])
    assert len(files) >= 10
    named = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]!r}"
        for path in files
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if any(word in node.value for word in APPLICATION_WORDS)
    ]
    assert named == [], "the engine names its application:\n" + "\n".join(named)


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The rules above are only as good as ``imported_modules``: it must see plain, from-,
    nested, type-only and ``import_module`` imports."""
    path = tmp_path / "sample.py"
    path.write_text(
        "from __future__ import annotations\n"
        "import importlib\n"
        "from typing import TYPE_CHECKING\n"
        "from polyjobs import cli\n"
        "if TYPE_CHECKING:\n"
        "    from polyjobs.board.app import make_app\n"
        "def f():\n"
        "    import polyjobs.processors.queues\n"
        "    return importlib.import_module('polyjobs.polymarket.store')\n",
        encoding="utf-8",
    )
    seen = [module for _, module in imported_modules(path)]
    for package in (CLI, BOARD, PROCESSORS, POLYMARKET):
        assert [m for m in seen if within(m, package)], package
    assert not [m for m in seen if within(m, BACKENDS)]


def test_the_engine_modules_import_each_other_without_a_cycle() -> None:
    """No cycle among ``polyjobs/*.py``, type-only imports included (a cycle makes a module's
    meaning depend on import order, and hides which layer is below which)."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "polyjobs").glob("*.py")):
        name = f"polyjobs.{path.stem}"
        graph[name] = {
            ".".join(module.split(".")[:2])
            for _, module in imported_modules(path)
            if module.startswith("polyjobs.")
        } - {name}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep, [*path, dep])):
                return found
        state[node] = 2
        return None

    for start in graph:
        if start not in state:
            cycle = visit(start, [start])
            assert cycle is None, " -> ".join(cycle)
