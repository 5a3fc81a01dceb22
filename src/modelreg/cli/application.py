"""The Typer application, its global options, and the one error funnel.

Every command is wrapped by :func:`command`, which turns a ``ModelregError`` into its exit
code and a one-line message on stderr, and any other exception into exit 70 ("internal
error"). ``--traceback`` (or ``MODELREG_TRACEBACK=1``) re-raises instead.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from modelreg.errors import EXIT_INTERNAL, EXIT_POLICY, ModelregError

__all__ = ["COMMAND_MODULES", "app", "command", "load_commands", "main", "state"]

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="modelreg",
    help="A model registry with no server: register, find, verify and fetch model versions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class _State:
    """Global options, set by the root callback before a command runs."""

    registry: str | None = None
    traceback: bool = False


state = _State()


def _version(value: bool) -> None:
    if value:
        from modelreg import __version__

        typer.echo(f"modelreg {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            "-R",
            help="The store: a project directory or its .modelreg (default: $MODELREG_DIR, "
            "else the nearest .modelreg above the current directory).",
        ),
    ] = None,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Show a full traceback on errors.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True,
                     help="Print the version and exit."),
    ] = False,
) -> None:
    """A model registry with no server: register, find, verify and fetch model versions."""
    state.registry = registry
    state.traceback = traceback or os.environ.get("MODELREG_TRACEBACK") == "1"


def command(fn: F) -> F:
    """Wrap a command so that errors become exit codes (the error funnel).

    Args:
        fn: The command function.

    Returns:
        The wrapped function, with the same signature for Typer.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        gc.enable()  # off during start-up (modelreg.cli.main); the work runs with it
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except ModelregError as exc:
            if state.traceback:
                raise
            sys.stderr.write(f"error: {exc.message}\n")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(130) from None
        except PermissionError as exc:
            if state.traceback:
                raise
            where = f": {exc.filename}" if exc.filename else ""
            sys.stderr.write(f"error: permission denied{where} (the file system refused; "
                             "see docs/layout.md on shared stores)\n")
            raise typer.Exit(EXIT_POLICY) from None
        except BrokenPipeError:
            # The reader of our output went away (`modelreg list | head`): not an error.
            sys.stderr.close()
            raise typer.Exit(0) from None
        except OSError as exc:
            if state.traceback:
                raise
            sys.stderr.write(f"error: I/O failure: {exc}\n")
            raise typer.Exit(EXIT_INTERNAL) from None
        except Exception as exc:
            if state.traceback:
                raise
            sys.stderr.write(
                f"internal error: {type(exc).__name__}: {exc}\n"
                "This is a bug in modelreg; run again with --traceback and report it.\n"
            )
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console-script entry point exits with it).

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    args = sys.argv[1:] if argv is None else argv
    name = _command_name(args)
    load_commands(COMMAND_MODULES.get(name or ""))
    commands, groups = app.registered_commands, app.registered_groups
    app.registered_commands, app.registered_groups = _invoked(name)
    try:
        app(args=args, prog_name="modelreg")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    finally:
        app.registered_commands, app.registered_groups = commands, groups
    return 0


# The module that defines each command (or command group). main() imports only the one it
# runs; tests/cli/test_main.py checks this table against what the modules register.
_COMMANDS = "modelreg.cli.commands"
_LIFECYCLE = "modelreg.cli.lifecycle"
_PACKAGING = "modelreg.cli.packaging"
_SIGNATURES = "modelreg.cli.signatures"
COMMAND_MODULES = {
    **dict.fromkeys(("init", "register", "list", "versions", "show", "diff", "pull", "history",
                     "fsck", "gc"), _COMMANDS),
    **dict.fromkeys(("promote", "archive", "approve", "check", "edit", "rollback", "events",
                     "alias"), _LIFECYCLE),
    **dict.fromkeys(("export", "import", "predict", "bench"), _PACKAGING),
    **dict.fromkeys(("validate", "signature", "contract"), _SIGNATURES),
}


def load_commands(module: str | None = None) -> None:
    """Register one command module's commands on :data:`app`, or all of them (None)."""
    import importlib

    for name in [module] if module else [_COMMANDS, _LIFECYCLE, _PACKAGING, _SIGNATURES]:
        importlib.import_module(name)


def _command_name(args: list[str]) -> str | None:
    """The first word of ``args`` that is not a root option (or its value)."""
    words = iter(args)
    for word in words:
        if word in ("-R", "--registry"):  # the only root option that takes a value
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _invoked(name: str | None) -> tuple[list[Any], list[Any]]:
    """The registered command (or group) called ``name``, or all of them.

    Typer turns every registered command into a click command on each start (signature
    inspection and type hints per parameter: about 30 ms for all of modelreg's). A run needs
    only the one it invokes; with no command name, or one that matches nothing, all are
    loaded and kept so that help and "No such command" read as always.
    """
    from typer.main import get_command_name

    commands = [c for c in app.registered_commands
                if (c.name or get_command_name(getattr(c.callback, "__name__", ""))) == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if not commands and not groups:
        load_commands()
        return app.registered_commands, app.registered_groups
    return commands, groups
