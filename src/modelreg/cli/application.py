"""The Typer application, its global options, and the one error funnel.

Every command is wrapped by :func:`command`, the one place that decides the exit code: it
turns a ``ModelregError`` into its exit code and a one-line message on stderr, any other
exception into exit 70 ("internal error"), and the exit status a command returns (a verdict
it has already rendered: "the payload is invalid", "fsck found problems") into the process's
exit code. Commands never raise ``typer.Exit`` themselves. ``--traceback`` (or
``MODELREG_TRACEBACK=1``) re-raises errors instead.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from modelreg.cli import render
from modelreg.errors import EXIT_INTERNAL, EXIT_OK, EXIT_POLICY, ModelregError

__all__ = ["COMMAND_MODULES", "app", "command", "load_commands", "main", "state"]

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="modelreg",
    help="A model registry with no server: register, find, verify and fetch model versions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion, --show-completion; see main()
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
        from modelreg import api

        render.line(f"modelreg {api.version()}")
        raise typer.Exit(EXIT_OK)


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
    """Wrap a command so that errors and verdicts become exit codes (the error funnel).

    A command returns None (success) or the exit status of the verdict it has rendered
    (``EXIT_CHECK_FAILED`` for "the answer is no", ``EXIT_INTEGRITY`` from ``fsck``, ...);
    it raises a ``ModelregError`` for everything else.

    Args:
        fn: The command function.

    Returns:
        The wrapped function, with the same signature for Typer.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        gc.enable()  # off during start-up (modelreg.cli.main); the work runs with it
        status = _run(fn, args, kwargs)
        if status:
            raise typer.Exit(status)

    return wrapper  # type: ignore[return-value]


def _run(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """Run a command; return its exit status, or the exit code of what it raised."""
    try:
        status = fn(*args, **kwargs)
    except (typer.Exit, typer.Abort):
        raise
    except ModelregError as exc:
        if state.traceback:
            raise
        render.message(f"error: {exc.message}")
        return exc.exit_code
    except KeyboardInterrupt:
        render.message("interrupted")
        return 130
    except PermissionError as exc:
        if state.traceback:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        render.message(f"error: permission denied{where} (the file system refused; "
                       "see docs/layout.md on shared stores)")
        return EXIT_POLICY
    except BrokenPipeError:
        # The reader of our output went away (`modelreg list | head`): not an error.
        sys.stderr.close()
        return EXIT_OK
    except OSError as exc:
        if state.traceback:
            raise
        render.message(f"error: I/O failure: {exc}")
        return EXIT_INTERNAL
    except Exception as exc:
        if state.traceback:
            raise
        render.message(
            f"internal error: {type(exc).__name__}: {exc}\n"
            "This is a bug in modelreg; run again with --traceback and report it."
        )
        return EXIT_INTERNAL
    return EXIT_OK if status is None else int(status)


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
    saved = app.registered_commands, app.registered_groups, app._add_completion
    app.registered_commands, app.registered_groups = _invoked(name)
    app._add_completion = _completion_wanted(name, args)
    try:
        app(args=args, prog_name="modelreg")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else 1
    finally:
        app.registered_commands, app.registered_groups, app._add_completion = saved
    return 0


# The module that defines each command (or command group). main() imports only the one it
# runs; tests/cli/test_main.py checks this table against what the modules register.
_COMMANDS = "modelreg.cli.commands"
_LIFECYCLE = "modelreg.cli.lifecycle"
_PACKAGING = "modelreg.cli.packaging"
_SIGNATURES = "modelreg.cli.signatures"
COMMAND_MODULES = {
    **dict.fromkeys(("init", "register", "list", "versions", "show", "diff", "pull", "history",
                     "fsck", "gc", "migrate", "search", "copy"), _COMMANDS),
    **dict.fromkeys(("promote", "archive", "approve", "check", "edit", "rollback", "events",
                     "alias"), _LIFECYCLE),
    **dict.fromkeys(("export", "import", "predict", "bench", "serve", "ui"), _PACKAGING),
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


_COMPLETION_OPTIONS = ("--install-completion", "--show-completion")
_COMPLETE_VAR = "_MODELREG_COMPLETE"  # set by the completion script (Typer's _PROG_COMPLETE)


def _completion_wanted(name: str | None, args: list[str]) -> bool:
    """Whether this run needs Typer's shell-completion support.

    ``--install-completion`` and ``--show-completion`` are options of the root command, so a
    run that invokes a command cannot use them, and it skips building them (Typer inspects a
    placeholder function's signature for them on every start). Shell completion itself
    (``_MODELREG_COMPLETE`` set by the script) runs with no arguments, so it gets Typer's
    completion classes and every command; so does any run with that variable set.
    """
    return (name not in COMMAND_MODULES or any(a.startswith(_COMPLETION_OPTIONS) for a in args)
            or bool(os.environ.get(_COMPLETE_VAR)))


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
