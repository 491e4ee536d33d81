"""The browser workbench's modules import only downward, as lint-imports holds the Python
apps to: app.js (boot, events) -> effects/ (requests, state changes) -> views/ (the DOM,
never a request) -> state.js -> the base modules. No cycles."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "workbench" / "static" / "workbench"
# `... from "./x.js"` (imports and re-exports, over several lines too) and `import "./x.js"`;
# JSDoc's `import("./x.js").Type` is a type and is not matched.
IMPORT = re.compile(r"""(?:\bfrom|^import)\s*["'](\.[^"']+)["']""", re.MULTILINE)
BASE = {"api.js", "dom.js", "markdown.js", "model.js", "schedule.js", "stream.js"}
# What a view (or state.js) may not import: the API and the socket are the effects'
# business, and schedule.js runs the page's render, which sends the requests it needs.
REQUESTS = {"api.js", "stream.js", "schedule.js"}


def layer(module: str) -> int:
    if module in BASE:
        return 0
    if module == "state.js":
        return 1
    if module.startswith("views/"):
        return 2
    if module.startswith("effects/"):
        return 3
    if module == "app.js":
        return 4
    raise AssertionError(f"{module}: not in a layer (tests/unit/test_browser_module_layers.py)")


def imports_of(path: Path) -> set[str]:
    found = set()
    for target in IMPORT.findall(path.read_text()):
        resolved = (path.parent / target).resolve()
        if resolved.is_relative_to(STATIC):  # ../vendor/ is outside
            found.add(resolved.relative_to(STATIC).as_posix())
    return found


def module_graph() -> dict[str, set[str]]:
    return {
        path.relative_to(STATIC).as_posix(): imports_of(path)
        for path in sorted(STATIC.rglob("*.js"))
        if "types" not in path.relative_to(STATIC).parts
    }


GRAPH = module_graph()


def test_the_modules_are_found():
    assert {"app.js", "state.js", "effects/tabs.js", "views/page.js"} <= set(GRAPH)
    assert "views/page.js" in GRAPH["effects/render.js"]  # multi-line imports are read too


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_a_module_imports_only_its_own_layer_or_below(module):
    upward = [target for target in GRAPH[module] if layer(target) > layer(module)]
    assert not upward, f"{module} imports {upward} from a layer above it"
    assert all(target in GRAPH for target in GRAPH[module]), GRAPH[module] - set(GRAPH)
    if module.startswith("views/") or module == "state.js":
        assert not GRAPH[module] & REQUESTS, f"{module} reaches the API: views never request"


def test_no_module_imports_itself_through_others():
    state: dict[str, str] = {}  # module -> "visiting" | "done"

    def visit(module: str, path: list[str]) -> None:
        if state.get(module) == "done":
            return
        assert state.get(module) != "visiting", "cycle: " + " -> ".join([*path, module])
        state[module] = "visiting"
        for target in sorted(GRAPH[module]):
            visit(target, [*path, module])
        state[module] = "done"

    for module in GRAPH:
        visit(module, [])
