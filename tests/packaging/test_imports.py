"""The packaging modules import in the order packaging/__init__.py draws, and import cheaply."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import modelreg.packaging

PACKAGE = Path(modelreg.packaging.__file__).parent
HEAVY = ("onnx", "onnxruntime", "numpy", "jsonschema", "sklearn", "skl2onnx", "torch")


def documented_order() -> list[str]:
    """The module names of the list in the package docstring, lowest first."""
    doc = modelreg.packaging.__doc__ or ""
    return re.findall(r"^    ([a-z_]+) {2,}", doc, flags=re.MULTILINE)


def sibling_imports(path: Path) -> set[str]:
    """Every packaging module ``path`` imports: at the top, in functions, under TYPE_CHECKING."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["modelreg", "packaging"] and len(parts) > 2 \
                    and (PACKAGE / f"{parts[2]}.py").is_file():
                found.add(parts[2])
    return found


def test_the_docstring_lists_every_module_once() -> None:
    order = documented_order()
    modules = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert sorted(order) == modules


def test_each_module_imports_only_modules_listed_above_it() -> None:
    order = documented_order()
    for i, name in enumerate(order):
        later = sibling_imports(PACKAGE / f"{name}.py") - set(order[:i])
        assert not later, f"packaging/{name}.py imports {sorted(later)}, not listed above it"


def test_init_imports_nothing() -> None:
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


def test_importing_every_module_loads_no_heavy_library() -> None:
    modules = ", ".join(f"modelreg.packaging.{name}" for name in documented_order())
    code = (f"import sys, {modules}; print(sorted(m for m in sys.modules "
            f"if m.split('.')[0] in {HEAVY!r}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == "[]"
