"""Imports go downward only, and heavy libraries stay out of fast commands."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "modelreg"
HEAVY = {"onnx", "onnxruntime", "numpy", "jsonschema", "sklearn", "skl2onnx", "torch",
         "starlette", "uvicorn", "prometheus_client", "anyio", "boto3", "botocore",
         "jinja2"}
S3_CLIENT = {"boto3", "botocore"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


# The layers, lowest first (docs/architecture.md). A module may import modules of its own
# layer or of a lower one, never of a higher one; and no import cycle may exist anywhere.
LAYERS: list[tuple[str, ...]] = [
    ("modelreg.errors", "modelreg.config", "modelreg.version"),
    ("modelreg.storage",),
    ("modelreg.signatures",),
    ("modelreg.types", "modelreg.results"),
    ("modelreg.registry",),
    ("modelreg.packaging",),
    ("modelreg.api", "modelreg"),
    ("modelreg.cli",),
    ("modelreg.__main__",),
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Every module of the package at ``root`` and the package modules it imports.

    Every import counts: at the top, inside functions, under TYPE_CHECKING, relative ones.
    ``from package import name`` counts as importing ``package.name`` when that is a module.
    """
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in modules else target)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def layer_of(module: str) -> int:
    best = (-1, -1)  # (length of the matching prefix, layer)
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best[0]:
                best = (len(prefix), rank)
    if best[1] < 0:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and the architecture")
    return best[1]


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} imports {b} (a higher layer)" for a, deps in graph.items()
                  for b in deps if layer_of(b) > layer_of(a))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_each_layer_imports_only_layers_below_it() -> None:
    assert layer_violations(import_graph(SRC)) == []


def test_no_import_cycle_anywhere() -> None:
    assert cycles(import_graph(SRC)) == []


def test_the_checks_catch_a_back_import(tmp_path: Path) -> None:
    root = tmp_path / "modelreg"
    for rel, text in {
        "__init__.py": "", "errors.py": "",
        "storage/__init__.py": "", "storage/refs.py": "from modelreg.errors import X\n",
        "registry/__init__.py": "", "registry/core.py": "from modelreg.storage import refs\n",
        "registry/builder.py": "from . import core\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    assert layer_violations(import_graph(root)) == []
    assert cycles(import_graph(root)) == []
    # A lazy back-import inside a function, from storage up to the registry.
    (root / "storage/refs.py").write_text("def f():\n    from modelreg.registry import core\n")
    assert layer_violations(import_graph(root)) == [
        "modelreg.storage.refs imports modelreg.registry.core (a higher layer)"]
    # A cycle inside one layer, made by a type-only import.
    (root / "registry/core.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    from modelreg.registry.builder import B\n")
    assert cycles(import_graph(root)) == [["modelreg.registry.builder", "modelreg.registry.core"]]


def test_only_the_lower_layers_stay_free_of_the_cli_and_heavy_libraries() -> None:
    forbidden = {"typer", "rich", *HEAVY}
    for package in ("storage", "signatures", "registry"):
        for path in (SRC / package).rglob("*.py"):
            bad = {n for n in imports_of(path) if n.split(".")[0] in forbidden}
            if package == "signatures":
                bad -= {"jsonschema", "numpy"}  # loaded lazily: JSON Schema checks, npy payloads
            if path == SRC / "storage" / "s3.py":
                # the S3 backend, loaded only when an s3:// store is opened
                bad = {n for n in bad if n.split(".")[0] not in S3_CLIENT}
            assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def _module_level_imports(path: Path) -> set[str]:
    """What a module imports when it is imported: its top level, outside TYPE_CHECKING."""
    names: set[str] = set()
    todo = list(ast.parse(path.read_text()).body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update([node.module, *(f"{node.module}.{a.name}" for a in node.names)])
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            todo.extend([*node.body, *node.orelse])
        elif isinstance(node, ast.Try):
            todo.extend([*node.body, *node.orelse, *node.finalbody,
                         *(n for h in node.handlers for n in h.body)])
    return names


def test_boto3_stays_in_the_s3_backend_and_it_loads_only_when_asked_for() -> None:
    s3 = SRC / "storage" / "s3.py"
    assert {n.split(".")[0] for n in _module_level_imports(s3)} & S3_CLIENT == set()
    for path in SRC.rglob("*.py"):
        if path == s3:
            continue
        rel = path.relative_to(SRC)
        bad = {n for n in imports_of(path) if n.split(".")[0] in S3_CLIENT}
        assert not bad, f"{rel} imports {sorted(bad)}: only storage/s3.py may"
        assert "modelreg.storage.s3" not in _module_level_imports(path), (
            f"{rel} imports storage/s3.py when it is imported; open it lazily")


def test_only_packaging_imports_ml_libraries() -> None:
    ml = {"onnx", "onnxruntime", "skl2onnx", "sklearn", "torch"}
    for path in SRC.rglob("*.py"):
        if path.relative_to(SRC).parts[0] == "packaging":
            continue
        bad = {n for n in imports_of(path) if n.split(".")[0] in ml}
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_only_serving_imports_the_web_stack() -> None:
    web = {"starlette", "uvicorn", "prometheus_client", "anyio"}
    for path in SRC.rglob("*.py"):
        if path.relative_to(SRC).as_posix() in ("packaging/serving.py", "packaging/ui.py"):
            continue
        bad = {n for n in imports_of(path) if n.split(".")[0] in web}
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


PROBE = f"""
import sys
from modelreg.cli.application import main
code = main(sys.argv[1:])
import json
heavy = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY)!r})
sys.stderr.write('\\nHEAVY=' + json.dumps(heavy) + '\\n')
sys.exit(code)
"""


@pytest.mark.parametrize("args", [["--help"], ["list"], ["show", "m"], ["show", "m", "--json"],
                                  ["versions", "m"], ["history", "m", "--json"]])
def test_fast_commands_do_not_import_heavy_libraries(registry, model_file: Path,
                                                     args: list[str]) -> None:
    import modelreg

    modelreg.register("m", [model_file], registry=registry, git=False)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, "-R", str(registry.layout.root), *args],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    heavy = json.loads(result.stderr.rsplit("HEAVY=", 1)[1])
    assert heavy == []
