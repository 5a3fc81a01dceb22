"""User-level settings: resolving the actor."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from modelreg.config import ENV_ACTOR, resolve_actor, user_config_path


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No actor from the environment, no user config, a git with no identity, a known login."""
    monkeypatch.delenv(ENV_ACTOR, raising=False)
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_CONFIG", "GIT_CONFIG_COUNT",
                "GIT_CONFIG_PARAMETERS", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(var, raising=False)
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text("", encoding="utf-8")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("LOGNAME", "os-login")
    monkeypatch.setenv("USER", "os-login")
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"],
                         capture_output=True, text=True)
    if out.returncode == 0:
        pytest.skip(f"{cwd} is inside a git repository")
    monkeypatch.setenv("MODELREG_USER_CONFIG", str(tmp_path / "user.toml"))
    return tmp_path


def _set_user_config(root: Path, text: str) -> None:
    (root / "user.toml").write_text(text, encoding="utf-8")


def _set_git_email(root: Path, email: str) -> None:
    subprocess.run(["git", "config", "--global", "user.email", email], check=True,
                   capture_output=True)
    assert f"email = {email}" in (root / "gitconfig").read_text(encoding="utf-8")


@pytest.fixture
def everything(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every source of an actor is set."""
    monkeypatch.setenv(ENV_ACTOR, "env@example.com")
    _set_user_config(sandbox, 'actor = "config@example.com"\n')
    _set_git_email(sandbox, "git@example.com")
    return sandbox


def test_autouse_fixture_actor() -> None:
    assert resolve_actor() == "tester@example.com"


def test_explicit_wins(everything: Path) -> None:
    assert resolve_actor("explicit@example.com") == "explicit@example.com"


def test_explicit_is_stripped(everything: Path) -> None:
    assert resolve_actor("  spaced@example.com \n") == "spaced@example.com"


@pytest.mark.parametrize("explicit", [None, "", "   "])
def test_env_beats_config_and_git(everything: Path, explicit: str | None) -> None:
    assert resolve_actor(explicit) == "env@example.com"


def test_env_is_stripped(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_ACTOR, "  env@example.com  ")
    assert resolve_actor() == "env@example.com"


@pytest.mark.parametrize("env", [None, "", "  "])
def test_user_config_beats_git(everything: Path, monkeypatch: pytest.MonkeyPatch,
                               env: str | None) -> None:
    if env is None:
        monkeypatch.delenv(ENV_ACTOR)
    else:
        monkeypatch.setenv(ENV_ACTOR, env)
    assert resolve_actor() == "config@example.com"


def test_user_config_value_is_stripped(sandbox: Path) -> None:
    _set_user_config(sandbox, 'actor = "  x  "\n')
    assert resolve_actor() == "x"


@pytest.mark.parametrize(
    "text",
    [
        'actor = ""\n',
        'actor = "   "\n',
        "actor = 42\n",
        "actor = [1]\n",
        'other = "x"\n',
        "this is = not [ toml\n",
        "",
    ],
)
def test_unusable_user_config_falls_back_to_git(sandbox: Path, text: str) -> None:
    _set_user_config(sandbox, text)
    _set_git_email(sandbox, "git@example.com")
    assert resolve_actor() == "git@example.com"


def test_missing_user_config_falls_back_to_git(sandbox: Path) -> None:
    assert not (sandbox / "user.toml").exists()
    _set_git_email(sandbox, "git@example.com")
    assert resolve_actor() == "git@example.com"


def test_os_login_last(sandbox: Path) -> None:
    assert resolve_actor() == "os-login"


def test_os_login_when_git_is_missing(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(sandbox / "no-such-bin"))
    assert resolve_actor() == "os-login"


def test_uid_when_no_login(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_user() -> str:
        raise KeyError("getpwuid(): uid not found")

    monkeypatch.setattr("getpass.getuser", no_user)
    assert resolve_actor() == f"uid:{os.getuid()}"


def test_user_config_path_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELREG_USER_CONFIG", str(tmp_path / "x.toml"))
    assert user_config_path() == tmp_path / "x.toml"


def test_user_config_path_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MODELREG_USER_CONFIG")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    path = user_config_path()
    assert path.name == "config.toml"
    assert path.parent.name == "modelreg"
