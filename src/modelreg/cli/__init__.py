"""The ``modelreg`` command line: a thin Typer shell over :mod:`modelreg.api`."""

from __future__ import annotations

import sys
from typing import Any

from modelreg.cli.application import main as _main

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point: run the CLI and exit with its code."""
    sys.exit(_main())


def __getattr__(name: str) -> Any:
    # `from modelreg.cli import app` gives the application with every command registered;
    # the console script registers only the command it runs (modelreg.cli.application.main).
    if name == "app":
        from modelreg.cli.application import app, load_commands

        load_commands()
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
