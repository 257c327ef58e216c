"""Imports flow one way: each module imports only from its own layer or the layers below, and no
two modules import each other (directly or round a loop). Read from the package's source with
``ast``: every import counts, inside functions too, except ``if TYPE_CHECKING:`` blocks.

The order (docs/DEVELOPING.md): errors / config → audio → features → nn → checkpoints (the on-disk format)
→ models → data → train → pretrain / downstream → inference / hear / export → integrations → bench / demo → cli.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ssamba"
LAYERS = [
    ("ssamba.errors", "ssamba.config"),
    ("ssamba.audio",),
    ("ssamba.features",),
    ("ssamba.nn",),
    ("ssamba.checkpoints",),
    ("ssamba.models",),
    ("ssamba.data",),
    ("ssamba.train",),
    ("ssamba.pretrain", "ssamba.downstream"),
    ("ssamba.inference", "ssamba.hear", "ssamba.export"),
    ("ssamba.integrations",),   # transformers / datasets adapters: above the core, which never imports them
    ("ssamba.bench", "ssamba.demo"),
    ("ssamba.cli", "ssamba.__main__"),
]


def layer_of(module: str) -> int:
    """Index in LAYERS of the longest prefix that names ``module`` (the top package: above all)."""
    for rank, names in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return rank
    if module == "ssamba":
        return len(LAYERS)
    raise AssertionError(f"{module}: not placed in a layer; add its package to LAYERS and docs/DEVELOPING.md")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, modules: set[str]):
    """Modules of the package that the code in ``tree`` imports (a ``from pkg import sub`` of a
    submodule counts as importing the submodule)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from _imports(child, modules)
            continue
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "ssamba")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "ssamba":
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            yield from subs if len(subs) == len(node.names) else subs + [node.module]
        yield from _imports(node, modules)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    return {name: set(_imports(ast.parse(path.read_text()), set(files))) - {name} for name, path in files.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_imports_one_way_without_cycles():
    graph = import_graph()
    assert len(graph) > 50
    assert upward_imports(graph) == []
    assert cycles(graph) == []
    inside = [m for m, targets in graph.items() if "ssamba" in targets and m not in ("ssamba.__main__",)]
    assert inside == [], "import the module that defines a name, not the top-level package"


def test_the_checker_catches_an_upward_import_and_a_cycle(tmp_path):
    """A fake package where nn imports train, and two data modules import each other."""
    root = tmp_path / "ssamba"
    for name, text in {
        "__init__.py": "", "errors.py": "",
        "nn/__init__.py": "", "nn/scan.py": "def f():\n    from ssamba.train.loop import fit\n",
        "train/__init__.py": "", "train/loop.py": "from ssamba import errors\n",
        "data/__init__.py": "", "data/a.py": "import ssamba.data.b\n", "data/b.py": "from ssamba.data import a\n",
        "data/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ssamba.data import a\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    graph = import_graph(root)
    assert graph["ssamba.train.loop"] == {"ssamba.errors"}
    assert upward_imports(graph) == [("ssamba.nn.scan", "ssamba.train.loop")]
    assert cycles(graph) == [["ssamba.data.a", "ssamba.data.b"]]
    assert graph["ssamba.data.c"] == set()   # annotations only


@pytest.mark.parametrize("module,rank", [("ssamba.nn.scan", 3), ("ssamba.models", 5),
                                         ("ssamba.integrations.hf_datasets", 10), ("ssamba.cli.embed", 12)])
def test_layer_of(module, rank):
    assert layer_of(module) == rank
