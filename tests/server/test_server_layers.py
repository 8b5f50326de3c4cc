"""The server's modules import one way, and the core only through its public API.

Read from the source (every import, also those inside functions and ``TYPE_CHECKING``
blocks), so that the layering drawn in the package docstring and in docs/architecture.md
cannot drift from the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import agentengine
import agentengine_server

PACKAGE = Path(agentengine_server.__file__).parent

#: The layers, bottom first: a module imports only modules of lower layers, or of its own
#: layer without a cycle. Every module of the package is in exactly one.
LAYERS: list[set[str]] = [
    {
        "errors",
        "settings",
        "auth",
        "inputs",
        "requests",
        "metrics",
        "memory",
        "openapi",
        "direct_send",
    },
    {"runs", "streaming", "state"},
    {"http_routes", "sse", "websocket", "page", "dev_mode"},
    {"app"},
    {"uvicorn_runner", "cli", "plugin", "__init__"},
]

#: Core modules the server may import besides ``agentengine`` itself: ``lazy`` for the
#: package's lazy exports and ``logging`` for ``agentengine serve``'s log setup (the core
#: exports neither name from ``agentengine``) and ``ids`` for the one id scheme (a light leaf
#: module, allowed by the import-linter contract) and ``telemetry`` for trace context (a
#: light module importing OpenTelemetry only once an application did).
CORE_MODULES = {
    "agentengine",
    "agentengine.ids",
    "agentengine.lazy",
    "agentengine.log",
    "agentengine.telemetry",
}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in the file; names empty for ``import module``."""
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            assert node.level == 0, f"{path.name}: relative import of {node.module}"
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def _graph() -> dict[str, dict[str, list[str]]]:
    """Each server module's imports: {module: {imported module: names}}."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        edges: dict[str, list[str]] = {}
        for module, names in _imports(path):
            if module == "agentengine" or module.startswith(("agentengine.", "agentengine_")):
                edges.setdefault(module, []).extend(names)
        graph[path.stem] = edges
    return graph


def _layer(module: str) -> int:
    return next(n for n, layer in enumerate(LAYERS) if module in layer)


def test_every_module_has_a_layer() -> None:
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    placed = set().union(*LAYERS)
    assert modules == placed


def test_imports_run_one_way_without_cycles() -> None:
    graph = _graph()
    deps: dict[str, set[str]] = {}
    upward: list[str] = []
    for module, edges in graph.items():
        deps[module] = set()
        for target in edges:
            if not target.startswith("agentengine_server"):
                continue
            name = target.removeprefix("agentengine_server").removeprefix(".") or "__init__"
            deps[module].add(name)
            if _layer(name) > _layer(module):
                upward.append(f"{module} -> {name}")
    assert upward == []

    # No cycle, within a layer either (depth-first search for a back edge).
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(deps[module]):
            assert state.get(target) != "open", f"import cycle: {' -> '.join([*path, target])}"
            if target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(deps):
        if module not in state:
            visit(module, [module])


def test_no_underscore_name_crosses_a_module_boundary() -> None:
    crossing = [
        f"{module}: {target}.{name}"
        for module, edges in _graph().items()
        for target, names in edges.items()
        for name in names
        if name.startswith("_")
    ]
    assert crossing == []


def test_the_core_is_used_only_through_its_public_api() -> None:
    public = set(agentengine.__all__)
    wrong = []
    for module, edges in _graph().items():
        for target, names in edges.items():
            if target.startswith("agentengine_server"):
                continue
            if target not in CORE_MODULES:
                wrong.append(f"{module}: {target}")
            elif target == "agentengine":
                wrong.extend(f"{module}: agentengine.{n}" for n in names if n not in public)
    assert wrong == []
