"""The ``modelreg`` command line: a thin Typer shell over :mod:`modelreg.api`."""

from __future__ import annotations

import sys

import modelreg.cli.commands  # noqa: F401 - registers the commands on `app`
import modelreg.cli.lifecycle  # noqa: F401
import modelreg.cli.packaging  # noqa: F401
import modelreg.cli.signatures  # noqa: F401
from modelreg.cli.app import app
from modelreg.cli.app import main as _main

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point: run the CLI and exit with its code."""
    sys.exit(_main())
