"""Shell completion: Typer's --install-completion and --show-completion, and the completions.

The scripts call ``modelreg`` with ``_MODELREG_COMPLETE`` set and the words typed so far in
other variables (COMP_WORDS for bash, _TYPER_COMPLETE_ARGS for zsh and fish). Shell
detection is switched off here (``_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION``), so the
two options take the shell's name.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import modelreg
from modelreg.cli import app
from modelreg.cli.application import main

NO_DETECTION = "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"


@pytest.fixture(autouse=True)
def _no_shell_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NO_DETECTION, "1")
    for var in ("_MODELREG_COMPLETE", "COMP_WORDS", "COMP_CWORD", "_TYPER_COMPLETE_ARGS"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(("shell", "fragments"), [
    ("bash", ["complete -o default -F _modelreg_completion modelreg",
              "_MODELREG_COMPLETE=complete_bash"]),
    ("zsh", ["#compdef modelreg", "_MODELREG_COMPLETE=complete_zsh"]),
    ("fish", ["complete --command modelreg", "_MODELREG_COMPLETE=complete_fish"]),
])
def test_show_completion_prints_the_script(capsys, shell: str, fragments: list[str]) -> None:
    assert main(["--show-completion", shell]) == 0
    out = capsys.readouterr().out
    for fragment in fragments:
        assert fragment in out


def test_show_completion_through_the_full_app(cli) -> None:
    result = cli("--show-completion", "bash")
    assert result.exit_code == 0, result.output
    assert "_MODELREG_COMPLETE=complete_bash" in result.stdout


def test_install_completion_writes_the_script_under_home(tmp_path: Path, capsys,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["--install-completion", "bash"]) == 0
    script = tmp_path / ".bash_completions" / "modelreg.sh"
    assert "_MODELREG_COMPLETE=complete_bash" in script.read_text()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()
    assert "bash completion installed in" in capsys.readouterr().out


def test_root_help_lists_the_completion_options(capsys) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--install-completion" in out and "--show-completion" in out


def _complete_bash(monkeypatch: pytest.MonkeyPatch, capsys, words: str) -> list[str]:
    monkeypatch.setenv("_MODELREG_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", words)
    monkeypatch.setenv("COMP_CWORD", str(len(words.split(" ")) - 1))
    assert main([]) == 0
    return capsys.readouterr().out.split()


def test_bash_completes_commands_groups_and_options(monkeypatch: pytest.MonkeyPatch,
                                                    capsys) -> None:
    assert _complete_bash(monkeypatch, capsys, "modelreg sh") == ["show"]
    assert set(_complete_bash(monkeypatch, capsys, "modelreg ")) >= {
        "init", "register", "show", "promote", "alias", "signature", "contract", "predict"}
    assert _complete_bash(monkeypatch, capsys, "modelreg alias ") == ["set", "rm", "list"]
    assert "--json" in _complete_bash(monkeypatch, capsys, "modelreg show m --")
    assert _complete_bash(monkeypatch, capsys, "modelreg -R /somewhere promote m --t") == [
        "--to"]


def test_zsh_completes_with_help_texts(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("_MODELREG_COMPLETE", "complete_zsh")
    monkeypatch.setenv("_TYPER_COMPLETE_ARGS", "modelreg sig")
    assert main([]) == 0
    out = capsys.readouterr().out
    assert '"signature":"Show, infer and compare model signatures."' in out


def test_a_command_run_does_not_build_the_completion_options(
    registry, model_file: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The options belong to the root command; `show` must not pay for building them.
    import typer.main

    def refuse() -> None:
        raise AssertionError("completion options built for a command run")

    modelreg.register("m", [model_file], registry=registry, git=False)
    monkeypatch.setattr(typer.main, "get_install_completion_arguments", refuse)
    assert main(["-R", str(registry.layout.root), "show", "m", "--json"]) == 0
    assert '"ref": "m@1"' in capsys.readouterr().out
    assert app._add_completion, "main() must leave the full app's completion on"


def test_completion_from_the_console_script(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "_MODELREG_COMPLETE": "complete_bash",
           "COMP_WORDS": "modelreg signature d", "COMP_CWORD": "2"}
    result = subprocess.run([sys.executable, "-m", "modelreg"], env=env, capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["diff"]
