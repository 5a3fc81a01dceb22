"""The console entry point builds only the command it runs, and answers as the full app does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import modelreg
from modelreg.cli import app
from modelreg.cli.application import COMMAND_MODULES, main


@pytest.fixture
def store(registry, model_file: Path) -> str:
    modelreg.register("m", [model_file], registry=registry, git=False, description="[/] x")
    modelreg.alias_set("m", "champion", 1, registry=registry)
    return str(registry.layout.root)


def _all_names() -> tuple[list[object], list[object]]:
    return list(app.registered_commands), list(app.registered_groups)


@pytest.mark.parametrize("args", [
    ["show", "m@1", "--json"],
    ["--traceback", "show", "m@champion", "--json"],
    ["alias", "list", "m", "--json"],
    ["versions", "m", "--json"],
])
def test_main_matches_the_full_app(cli, store: str, capsys, args: list[str]) -> None:
    before = _all_names()
    code = main(["-R", store, *args])
    out = capsys.readouterr().out
    assert code == 0
    full = cli("-R", store, *args)
    assert full.exit_code == 0
    assert json.loads(out) == json.loads(full.stdout)
    assert _all_names() == before, "main() must leave the app's commands as they were"


def test_main_help_lists_every_command(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("init", "register", "show", "promote", "alias", "signature", "contract",
                 "export", "predict"):
        assert name in out


def test_main_unknown_command_is_a_usage_error(capsys) -> None:
    assert main(["shw", "m"]) == 2
    err = capsys.readouterr().err
    assert "No such command 'shw'" in err


def test_registry_value_named_like_a_command_is_not_the_command(tmp_path: Path, capsys,
                                                                 monkeypatch) -> None:
    # `-R show` names a directory called "show"; the command is what follows it.
    modelreg.Registry.init(tmp_path / "show")
    monkeypatch.chdir(tmp_path)
    assert main(["-R", "show", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"models": []}


def test_human_output_is_plain_text(store: str, capsys) -> None:
    assert main(["-R", store, "show", "m@1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["version", "m@1"]
    assert "description  [/] x" in out  # printed as stored, not read as markup
    assert "aliases: champion" in out
    assert "\x1b" not in out  # not a terminal: no escapes


def test_control_characters_in_values_are_escaped(registry, model_file: Path, capsys) -> None:
    modelreg.register("m", [model_file], registry=registry, git=False,
                      description="bell\x07 and \x1b[31mred")
    assert main(["-R", str(registry.layout.root), "show", "m"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "bell\\x07 and \\x1b[31mred" in out


def test_command_table_names_each_command_s_module() -> None:
    from typer.main import get_command_name

    found = {c.name or get_command_name(c.callback.__name__): c.callback.__module__
             for c in app.registered_commands}
    found |= {g.name: g.typer_instance.registered_commands[0].callback.__module__
              for g in app.registered_groups}
    assert found == COMMAND_MODULES


PROBE = """
import json, sys
from modelreg.cli.application import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules
                if m.split('.')[0] in ('rich', 'hashlib', '_hashlib')
                or m.startswith('modelreg.cli.'))
sys.stderr.write('LOADED=' + json.dumps(loaded))
sys.exit(code)
"""


@pytest.mark.parametrize("args", [["show", "m"], ["list"], ["versions", "m"], ["history", "m"]])
def test_a_command_loads_only_its_own_module_no_rich_no_openssl(store: str,
                                                                args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE, "-R", store, *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stderr.rsplit("LOADED=", 1)[1])
    assert loaded == ["modelreg.cli.application", "modelreg.cli.commands",
                      "modelreg.cli.options", "modelreg.cli.render"]


GC_PROBE = """
import gc, sys
import modelreg.api
real = modelreg.api.show
def show(*a, **k):
    sys.stderr.write('GC_DURING_COMMAND=%s\\n' % gc.isenabled())
    return real(*a, **k)
modelreg.api.show = show
from modelreg.cli import main
main()
"""


def test_console_entry_collects_garbage_while_the_command_runs(store: str) -> None:
    # Start-up runs with the collector off; the command's own work must not.
    result = subprocess.run([sys.executable, "-c", GC_PROBE, "-R", store, "show", "m", "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "GC_DURING_COMMAND=True" in result.stderr
    assert json.loads(result.stdout)["ref"] == "m@1"
