"""The package's map: imports point down the layer stack, never in a loop; files stay short.

Layers, bottom to top (a module may import its own layer and the ones below):

0. foundations: ``errors``, ``config``, ``io``, ``artifacts``, ``pictures``, ``fid``, ``distributed``
1. ``data``
2. ``modules`` (building blocks) and ``interpret``
3. ``models``
4. ``losses`` and ``callbacks``
5. ``iterators``
6. ``demo`` and ``compat`` (the edflow glue, loaded before edflow itself)

Every import counts, also one inside a function: a lazy import is still a
dependency.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "invproto"
LAYERS = [
    {"invproto", "errors", "config", "io", "artifacts", "pictures", "fid", "distributed"},
    {"data"},
    {"modules", "interpret"},
    {"models"},
    {"losses", "callbacks"},
    {"iterators"},
    {"demo", "compat"},
]
MAX_LINES = 350


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The invproto modules ``name`` (at ``path``) imports, anywhere in the file."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                if node.level else node.module
            # `from invproto import distributed` imports the module invproto.distributed
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t == "invproto" or t.startswith("invproto."))
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else "invproto"
    for index, members in enumerate(LAYERS):
        if part in members:
            return index
    raise AssertionError(f"{module} belongs to no layer; add its package to LAYERS (and to the docstring)")


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None (depth-first search)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_module_has_a_layer():
    for name in modules():
        layer(name)


def test_imports_only_point_down_the_layers():
    upward = [f"{source} (layer {layer(source)}) imports {target} (layer {layer(target)})"
              for source, targets in import_graph().items() for target in sorted(targets)
              if layer(target) > layer(source)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    found = cycle(import_graph())
    assert found is None, " -> ".join(found)


def test_the_checks_see_an_upward_import_and_a_cycle():
    """The graph checks can fail: on a made-up graph they find what they look for."""
    graph = {"invproto.data.a": {"invproto.models.b"}, "invproto.models.b": {"invproto.data.a"}}
    assert layer("invproto.data.a") < layer("invproto.models.b")
    assert cycle(graph) == ["invproto.data.a", "invproto.models.b", "invproto.data.a"]
    assert cycle({"invproto.data.a": {"invproto.io"}, "invproto.io": set()}) is None


def test_imports_are_resolved_to_modules(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("from invproto import distributed\nfrom . import y\nimport invproto.io\n"
                      "def f():\n    from ..models.base import Model\n")
    known = {"invproto.distributed", "invproto.data.y"}
    assert imported("invproto.data.x", source, known) == {"invproto.distributed", "invproto.data.y",
                                                          "invproto.io", "invproto.models.base"}


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_file_longer_than_the_limit(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path} has {lines} lines (limit {MAX_LINES}): split it by job"
