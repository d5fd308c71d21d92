"""The house rules. Imports flow one way: cli -> api / ui (peers that never import each other) -> service ->
ingest / evals / training -> rag; an import against the flow fails here wherever it sits (a function's own imports
count), and no two modules import each other, directly or round a loop. No function outside benchmarks is longer
than 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BELOW_SERVICE = {"rag", "ingest", "training", "evals"}
MAY_IMPORT: dict[str, set[str]] = {
    "rag": set(),
    "ingest": {"rag"},
    "training": {"rag", "ingest"},
    "evals": {"rag", "ingest", "training"},
    "service": BELOW_SERVICE,
    "api": BELOW_SERVICE | {"service"},
    "ui": BELOW_SERVICE | {"service"},
    "cli": BELOW_SERVICE | {"service", "api", "ui"},
}


def imported_packages(path: Path) -> set[str]:
    """The project's top-level packages a module imports, absolute imports only (relative ones stay inside)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(MAY_IMPORT)


def test_imports_flow_one_way() -> None:
    wrong = [
        f"{path.relative_to(ROOT)} imports {other}"
        for package, allowed in MAY_IMPORT.items()
        for path in sorted((ROOT / package).rglob("*.py"))
        for other in sorted(imported_packages(path) - allowed - {package})
    ]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_an_import_against_the_flow(tmp_path: Path) -> None:
    module = tmp_path / "late.py"
    module.write_text(
        "def f():\n    from ui.app import ChatApp\n    import api.routes\n    from . import x\n"
    )
    assert imported_packages(module) == {"ui", "api"}


MAX_FUNCTION_LINES = 60


def test_no_function_is_longer_than_a_screen() -> None:
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for package in MAY_IMPORT
        for path in sorted((ROOT / package).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, "\n".join(long)


def module_graph() -> dict[str, set[str]]:
    """Each project module and the project modules it imports (anywhere in it)."""
    files = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): path
        for package in MAY_IMPORT
        for path in (ROOT / package).rglob("*.py")
    }
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        named: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                named |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                named |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        graph[name] = (named & set(files)) - {name}
    return graph


def loop_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path of imports from start back to itself, if there is one."""
    trail: list[str] = []
    seen: set[str] = set()

    def walk(module: str) -> bool:
        trail.append(module)
        for imported in sorted(graph[module]):
            if imported == start:
                return True
            if imported not in seen:
                seen.add(imported)
                if walk(imported):
                    return True
        trail.pop()
        return False

    return [*trail, start] if walk(start) else None


def test_no_import_cycles() -> None:
    graph = module_graph()
    loops = [" -> ".join(loop) for module in sorted(graph) if (loop := loop_through(graph, module))]
    assert not loops, "\n".join(loops)


def test_the_cycle_check_finds_a_loop() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert loop_through(graph, "a") == ["a", "b", "c", "a"] and loop_through(graph, "d") is None
