"""labkit's modules form no import cycle, take no private name from one another, and match
docs/architecture.md (its layers and its module table).

Imports inside functions count: deferring one hides a cycle from the interpreter, not from the
design. The check is ``../shared/tools/import_graph.py`` (outside the repository); this module
implements the same rules over labkit's AST, so the test also runs where that tool is absent.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "labkit"
SHARED_TOOL = REPO.parent / "shared" / "tools" / "import_graph.py"


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _target(module: str, path: Path, node: ast.ImportFrom) -> str | None:
    if not node.level:
        return node.module
    base = module.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path) -> tuple[dict[str, set[str]], list[str]]:
    """Module → the package modules it imports (anywhere in it), and ``"a imports b._name"`` for each
    private name one module takes from another."""
    mods = _modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                target = _target(module, path, node)
                if not target or not target.startswith(root.name):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    dep = sub if sub in mods else target
                    if dep in mods and dep != module:
                        graph[module].add(dep)
                    if (alias.name.startswith("_") and not alias.name.startswith("__") and sub not in mods
                            and target != module):
                        private.append(f"{module} imports {target}.{alias.name}")
            elif isinstance(node, ast.Import):
                graph[module].update(a.name for a in node.names if a.name in mods and a.name != module)
    # A package's __init__ re-exporting its own submodules is not a dependency cycle.
    for module, path in mods.items():
        if path.name == "__init__.py":
            graph[module] = {d for d in graph[module] if not d.startswith(module + ".")}
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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


def test_no_import_cycles() -> None:
    graph, _ = import_graph(PACKAGE)
    assert [" <-> ".join(c) for c in cycles(graph)] == []


def test_no_private_imports_across_modules() -> None:
    _, private = import_graph(PACKAGE)
    assert private == []


def test_checker_sees_cycles_and_private_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import A\n")
    (pkg / "a.py").write_text("A = 1\ndef f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from ..a import A\nfrom pkg.c import _hidden\n")
    (pkg / "c.py").write_text("_hidden = 1\n")
    graph, private = import_graph(pkg)
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]
    assert private == ["pkg.sub.b imports pkg.c._hidden"]


def test_shared_import_graph_tool_agrees() -> None:
    if not SHARED_TOOL.is_file():  # outside this checkout: the tests above make the same check
        return
    result = subprocess.run([sys.executable, str(SHARED_TOOL), "labkit"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- docs/architecture.md is kept true ----------------------------------------------------------

DOC = REPO / "docs" / "architecture.md"


def _doc_layers() -> list[set[str]]:
    line = next(line for line in DOC.read_text().splitlines() if line.startswith("errors ─►"))
    return [{name.strip() for name in layer.split(",")} for layer in line.split("─►")]


def _doc_table_names() -> list[str]:
    rows = [line.split("|")[1] for line in DOC.read_text().splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([^`]+)`", row)]


def _top(module: str) -> str:
    """The top-level module under labkit; "" for what the layers leave out (the package itself,
    ``__main__``, and the sample application built into the lab's image)."""
    top = module.split(".")[1] if "." in module else ""
    return "" if top in ("__main__", "samples") else top


def test_imports_follow_the_documented_layers() -> None:
    layers = _doc_layers()
    graph, _ = import_graph(PACKAGE)

    def layer(module: str) -> int:
        return next(i for i, names in enumerate(layers) if _top(module) in names)

    upward = [f"{m} imports {d}" for m, deps in graph.items() if _top(m)
              for d in deps if _top(d) and layer(d) > layer(m)]
    assert upward == []
    assert set().union(*layers) >= {_top(m) for m in graph if _top(m)}


def test_the_module_table_names_every_module_and_only_real_ones() -> None:
    named = _doc_table_names()
    missing = [n for n in named if not (PACKAGE / n).is_dir() and not (PACKAGE / f"{n}.py").is_file()]
    assert missing == []
    covered = {n.rstrip("/") for n in named}
    files = [p.relative_to(PACKAGE).with_suffix("") for p in PACKAGE.rglob("*.py") if "samples" not in p.parts]
    unnamed = [str(f) for f in files if f.name not in ("__init__", "__main__")
               and not any(str(f) == c or str(f).startswith(c + "/") for c in covered)]
    assert unnamed == []
