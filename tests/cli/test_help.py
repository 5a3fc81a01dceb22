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


def _all_help(cli) -> str:
    """The help of every command and sub-command, as a user reads it."""
    import typer.main

    out = []
    for name, cmd in _commands().items():
        out.append(cli(name, "--help").stdout)
        if isinstance(cmd, typer.main.TyperGroup):
            out.extend(cli(name, sub, "--help").stdout for sub in cmd.commands)
    return "\n".join(out)


def test_placeholders_are_words_not_types(cli) -> None:
    import re

    text = _all_help(cli)
    assert "Usage: modelreg register [OPTIONS] NAME PATHS..." in text
    assert "--param K=V" in text and "--max-errors MAX_ERRORS" in text
    assert not re.findall(r"<[a-z ]+>|\{[a-z_]+\}|[a-z_]+:<", text), \
        sorted(set(re.findall(r"<[a-z ]+>|\{[a-z_]+\}", text)))


def test_reference_help_names_every_form(cli) -> None:
    text = " ".join(_all_help(cli).split())
    assert "NAME@latest, NAME@STAGE or NAME@ALIAS" in text
    assert "NAME@latest or NAME@STAGE." not in text
