"""Options, arguments and argument parsers shared by the command modules.

Each command module takes its common options (``--json``, a version reference, ``--reason``)
and its argument parsers (``K=V`` values, durations, payload files) from here, never from
another command module. The rules for ``K=V`` values are the library's (:mod:`modelreg.api`),
so scripts parse them the same way.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import typer
import typer.core

from modelreg import api
from modelreg.errors import NotFound, UsageError

__all__ = [
    "REFERENCE_FORMS",
    "AliasArg",
    "JsonOpt",
    "ModelArg",
    "ReasonOpt",
    "RefArg",
    "metrics_from",
    "open_payload",
    "params_from",
    "parse_duration",
    "read_payload",
    "tags_from",
    "value_from",
]

REFERENCE_FORMS = "NAME, NAME@N, NAME@vN, NAME@latest, NAME@STAGE or NAME@ALIAS"
"""Every form a version reference takes, as each help text that mentions references says."""


def _argument_metavar(self: typer.core.TyperArgument, ctx: Any, *,
                      usage: bool = False) -> str:
    """An argument's placeholder as users expect it: ``NAME``, ``[PATH]``, ``PATHS...``.

    Typer's own prints ``{name}`` in usage lines and ``name:<str>`` elsewhere.
    """
    var = self.metavar or (self.name or "").upper()
    if self.nargs != 1 and not var.endswith("..."):
        var += "..."
    return f"[{var}]" if usage and not self.required else var


def _option_metavar(self: typer.core.TyperOption, ctx: Any) -> str:
    """An option's placeholder: its ``metavar``, the choices of a choice, else its name.

    Typer's own prints the type (``<str>``, ``<int range>``), which says nothing of what
    to give.
    """
    if self.metavar is not None:
        return self.metavar
    choices = getattr(self.type, "choices", None)
    if choices:
        return "[" + "|".join(map(str, choices)) + "]"
    var = (self.name or "").upper()
    return var + "..." if self.nargs != 1 else var


# Placeholders are drawn by these two methods for every command (options.py is imported by
# each command module before Typer builds its command).
typer.core.TyperArgument.make_metavar = _argument_metavar  # type: ignore[method-assign]
typer.core.TyperOption.make_metavar = _option_metavar  # type: ignore[method-assign]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout for scripts.")]
RefArg = Annotated[str, typer.Argument(help=f"The version: {REFERENCE_FORMS}.",
                                       metavar="REF", show_default=False)]
ReasonOpt = Annotated[str | None, typer.Option("--reason", "-r", help="Why (recorded).")]
ModelArg = Annotated[str, typer.Argument(help="Model name.", metavar="NAME", show_default=False)]
AliasArg = Annotated[str, typer.Argument(help="Alias name, e.g. champion.", metavar="ALIAS",
                                         show_default=False)]


def tags_from(items: list[str] | None) -> dict[str, str]:
    """Parse repeated ``--tag K=V`` options (values stay text)."""
    return api.parse_tags(items or [], "--tag")


def params_from(items: list[str] | None, params_file: Path | None) -> dict[str, Any]:
    """Hyperparameters: ``--params-file``, then each ``--param K=V`` over it."""
    params = api.load_params_file(params_file) if params_file else {}
    params.update(api.parse_assignments(items or [], "--param"))
    return params


def metrics_from(items: list[str] | None) -> dict[str, Any]:
    """Parse repeated ``--metric K=V`` options (numbers and booleans only)."""
    return api.parse_assignments(items or [], "--metric", numeric=True)


def value_from(text: str | None) -> Any:
    """Type an option value as ``K=V`` values are typed (None stays None)."""
    return None if text is None else api.parse_value(text)


def read_payload(path: str) -> tuple[bytes, str | None]:
    """Read a payload argument: a file, or ``-`` for stdin.

    Returns:
        The bytes and the file name (None for stdin), which tells the payload's format.

    Raises:
        NotFound: The file does not exist.
    """
    if path == "-":
        return sys.stdin.buffer.read(), None
    p = Path(path)
    try:
        return p.read_bytes(), p.name
    except FileNotFoundError as exc:
        raise NotFound(f"{p} does not exist") from exc


@contextlib.contextmanager
def open_payload(path: str) -> Iterator[tuple[BinaryIO, str | None]]:
    """Open a payload argument for streaming: a file, or ``-`` for stdin.

    Yields:
        The binary stream and the file name (None for stdin), which tells the format.

    Raises:
        NotFound: The file does not exist.
        UsageError: The path is a directory.
    """
    if path == "-":
        yield sys.stdin.buffer, None
        return
    p = Path(path)
    try:
        fh = open(p, "rb")  # noqa: SIM115 - closed below, after the caller is done
    except FileNotFoundError as exc:
        raise NotFound(f"{p} does not exist") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"{p} is a directory, not a payload file") from exc
    with fh:
        yield fh, p.name


_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhd]?)\Z")


def parse_duration(text: str) -> float:
    """Parse ``90``, ``90s``, ``15m``, ``1h`` or ``2d`` into seconds.

    Args:
        text: The duration.

    Returns:
        Seconds.

    Raises:
        UsageError: The text is not a duration.
    """
    match = _DURATION.match(text.strip())
    if not match:
        raise UsageError(f"bad duration {text!r}: use e.g. 30s, 15m, 1h, 2d")
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return float(match.group(1)) * factor
