"""signatures/ is a pure layer: of modelreg, it imports only modelreg.errors and itself."""

from __future__ import annotations

import ast
from pathlib import Path

import modelreg.signatures

PACKAGE = Path(modelreg.signatures.__file__).parent
ML = {"onnx", "onnxruntime", "skl2onnx", "sklearn", "torch"}


def test_signatures_import_only_errors_and_themselves() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top not in ML, f"signatures/{path.name} imports {name}"
                if top == "modelreg":
                    assert name == "modelreg.errors" or name.startswith("modelreg.signatures"), \
                        f"signatures/{path.name} imports {name}"
