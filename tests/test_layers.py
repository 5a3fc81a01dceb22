"""Imports go downward only, and heavy libraries stay out of fast commands."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "modelreg"
HEAVY = {"onnx", "onnxruntime", "numpy", "jsonschema", "sklearn", "skl2onnx", "torch"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("package", "forbidden"), [
    ("storage", {"modelreg.registry", "modelreg.api", "modelreg.cli", "typer", "rich",
                 *HEAVY}),
    ("registry", {"modelreg.api", "modelreg.cli", "typer", "rich", *HEAVY}),
])
def test_layers_import_downward(package: str, forbidden: set[str]) -> None:
    for path in (SRC / package).rglob("*.py"):
        bad = {n for n in imports_of(path) if n.split(".")[0] in forbidden
               or any(n == f or n.startswith(f + ".") for f in forbidden)}
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


def test_only_packaging_imports_ml_libraries() -> None:
    ml = {"onnx", "onnxruntime", "skl2onnx", "sklearn", "torch"}
    for path in SRC.rglob("*.py"):
        if path.relative_to(SRC).parts[0] == "packaging":
            continue
        bad = {n for n in imports_of(path) if n.split(".")[0] in ml}
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
