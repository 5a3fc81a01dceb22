"""The ``modelreg`` command line: a thin Typer shell over :mod:`modelreg.api`."""

from __future__ import annotations

import gc
import sys
from typing import Any

from modelreg.cli.application import main as _main

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point: run the CLI and exit with its code.

    Start-up only builds long-lived objects (modules, classes, the click command), so the
    cyclic garbage collector is off until the command itself runs (the error funnel turns
    it back on); at exit, everything is frozen so that the interpreter's final collection
    does not traverse it all once more. Together about 13 ms of a 90 ms ``show``
    (docs/performance.md); files are closed and atexit handlers run as usual.
    """
    gc.disable()
    code = _main()
    gc.freeze()
    sys.exit(code)


def __getattr__(name: str) -> Any:
    # `from modelreg.cli import app` gives the application with every command registered;
    # the console script registers only the command it runs (modelreg.cli.application.main).
    if name == "app":
        from modelreg.cli.application import app, load_commands

        load_commands()
        globals()["app"] = app
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
