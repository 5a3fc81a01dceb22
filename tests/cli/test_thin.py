"""The command line is a thin shell over the API (issue 11).

Every module under ``src/modelreg/cli/`` is parsed with ``ast``; it may import from modelreg
only the API, its own modules, the errors (the funnel maps them to exit codes) and the record
modules the API returns, type-only imports included. Output goes through ``cli/render.py``
(no ``print``, no ``echo``, no writes to ``sys.stdout``/``sys.stderr`` elsewhere), and only
``cli/application.py`` (the error funnel) ends a run with ``typer.Exit`` or ``sys.exit``
(``cli/__init__.py``'s console entry exits with what it returns).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "src" / "modelreg" / "cli"
ALLOWED = ("modelreg.api", "modelreg.cli", "modelreg.errors", "modelreg.types",
           "modelreg.results")
EXITS = {"application.py"}
ENTRY = {"application.py", "__init__.py"}
WRITERS = {"render.py"}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    return ""


def modelreg_imports(tree: ast.AST, package: str = "modelreg.cli") -> Iterator[str]:
    """Every modelreg module a tree imports (``from modelreg import x`` counts as modelreg.x).

    Dotted module names in string constants count too (``importlib.import_module``).
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "modelreg")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.split(".")[0] != "modelreg":
                continue
            if module == "modelreg" or not node.module:
                yield from (f"{module}.{a.name}" for a in node.names)
            else:
                yield module
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and node.value.startswith("modelreg.") and node.value.replace(".", "").replace(
                  "_", "").isalnum()):
            yield node.value


def problems(source: str, filename: str) -> list[str]:
    """What makes one module of the CLI more than a thin shell."""
    tree = ast.parse(source)
    found = [f"imports {name}" for name in modelreg_imports(tree)
             if not any(name == a or name.startswith(a + ".") for a in ALLOWED)]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in ("print", "echo", "typer.echo", "click.echo", "secho", "typer.secho"):
                found.append(f"line {node.lineno}: calls {name}()")
            elif name in ("sys.stdout.write", "sys.stderr.write") and filename not in WRITERS:
                found.append(f"line {node.lineno}: calls {name}() outside render.py")
            elif name in ("sys.exit", "exit", "quit") and filename not in ENTRY:
                found.append(f"line {node.lineno}: calls {name}()")
        elif isinstance(node, ast.Raise) and node.exc is not None and filename not in EXITS:
            name = _dotted(node.exc)
            if name.split(".")[-1] in ("Exit", "Abort", "SystemExit"):
                found.append(f"line {node.lineno}: raises {name}")
    return found


MODULES = sorted(CLI.rglob("*.py"))


def test_the_cli_modules_are_all_checked() -> None:
    names = {p.name for p in MODULES}
    assert {"__init__.py", "application.py", "commands.py", "lifecycle.py", "options.py",
            "packaging.py", "render.py", "signatures.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_cli_module_is_a_thin_shell_over_the_api(path: Path) -> None:
    assert problems(path.read_text(), path.name) == []


@pytest.mark.parametrize(("source", "fragment"), [
    ("from modelreg.storage.layout import project_dir", "imports modelreg.storage.layout"),
    ("import modelreg.registry.lineage", "imports modelreg.registry.lineage"),
    ("from modelreg import contract", "imports modelreg.contract"),
    ("from modelreg import __version__", "imports modelreg.__version__"),
    ("from .. import onnxio", "imports modelreg.onnxio"),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
     "    from modelreg.signatures.compat import Change", "imports modelreg.signatures.compat"),
    ("import importlib\nimportlib.import_module('modelreg.storage.atomic')",
     "imports modelreg.storage.atomic"),
    ("print('x')", "calls print()"),
    ("import typer\ntyper.echo('x')", "calls typer.echo()"),
    ("import sys\nsys.stdout.write('x')", "calls sys.stdout.write()"),
    ("import typer\nraise typer.Exit(1)", "raises typer.Exit"),
    ("import sys\nsys.exit(1)", "calls sys.exit()"),
])
def test_the_check_catches_a_back_door(source: str, fragment: str) -> None:
    found = problems(source, "commands.py")
    assert any(fragment in p for p in found), found


def test_the_check_allows_what_the_cli_may_use() -> None:
    source = ("from modelreg import api\nfrom modelreg.cli import render\n"
              "from modelreg.cli.options import JsonOpt\nfrom modelreg.errors import UsageError\n"
              "from modelreg.types import VersionInfo\nfrom typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n    from modelreg.results import ChangeResult\n"
              "from . import render as r\nrender.line('x')\n")
    assert problems(source, "commands.py") == []
