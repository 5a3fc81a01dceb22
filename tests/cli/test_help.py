"""Every command and argument has help text (gto's test_commands_help, in spirit)."""

from __future__ import annotations

from modelreg.cli import app
from modelreg.cli.application import root


def _commands():
    import typer.main

    return typer.main.get_command(app).commands  # type: ignore[attr-defined]


def test_every_command_has_help(cli) -> None:
    commands = _commands()
    assert {"init", "register", "list", "versions", "show", "diff", "pull", "fsck", "gc",
            "history"} <= set(commands)
    for name, cmd in commands.items():
        assert cmd.help, f"{name} has no help"
        for param in cmd.params:
            if param.name in ("help",):
                continue
            assert getattr(param, "help", None), f"{name} {param.name} has no help"
        result = cli(name, "--help")
        assert result.exit_code == 0, result.output


def test_root_help_and_version(cli) -> None:
    assert root.__doc__
    result = cli("--help")
    assert result.exit_code == 0
    assert "register" in result.stdout
    result = cli("--version")
    assert result.exit_code == 0
    assert result.stdout.startswith("modelreg ")
