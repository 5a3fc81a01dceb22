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


def _count_git_runs(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    calls: list[list[str]] = []
    real = subprocess.run

    def counting(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        calls.append(list(args))
        return real(args, **kw)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(subprocess, "run", counting)
    return calls


def test_git_is_asked_once_per_context(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _set_git_email(sandbox, "git@example.com")
    calls = _count_git_runs(monkeypatch)
    assert [resolve_actor() for _ in range(5)] == ["git@example.com"] * 5
    assert len(calls) == 1


def test_user_config_is_read_on_every_call(sandbox: Path) -> None:
    _set_git_email(sandbox, "git@example.com")
    assert resolve_actor() == "git@example.com"
    _set_user_config(sandbox, 'actor = "config@example.com"\n')
    assert resolve_actor() == "config@example.com"
    (sandbox / "user.toml").unlink()
    assert resolve_actor() == "git@example.com"


def test_new_global_git_config_gives_new_answer(sandbox: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _set_git_email(sandbox, "first@example.com")
    assert resolve_actor() == "first@example.com"
    other = sandbox / "other-gitconfig"
    other.write_text("[user]\n\temail = second@example.com\n", encoding="utf-8")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(other))
    assert resolve_actor() == "second@example.com"
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(sandbox / "gitconfig"))
    assert resolve_actor() == "first@example.com"


def test_new_home_gives_new_answer(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIT_CONFIG_GLOBAL")
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for who in ("alice", "bob"):
        home = sandbox / who
        home.mkdir()
        (home / ".gitconfig").write_text(f"[user]\n\temail = {who}@example.com\n",
                                         encoding="utf-8")
    monkeypatch.setenv("HOME", str(sandbox / "alice"))
    assert resolve_actor() == "alice@example.com"
    monkeypatch.setenv("HOME", str(sandbox / "bob"))
    assert resolve_actor() == "bob@example.com"
    monkeypatch.setenv("HOME", str(sandbox / "nobody"))
    assert resolve_actor() == "os-login"


def test_new_directory_gives_new_answer(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = sandbox / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True, capture_output=True)
    subprocess.run(["git", "-C", str(repo), "config", "user.email", "repo@example.com"],
                   check=True, capture_output=True)
    assert resolve_actor() == "os-login"
    monkeypatch.chdir(repo)
    assert resolve_actor() == "repo@example.com"
    monkeypatch.chdir(sandbox / "work")
    assert resolve_actor() == "os-login"


def test_git_config_env_values_give_new_answer(sandbox: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_actor() == "os-login"
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "user.email")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "env-config@example.com")
    assert resolve_actor() == "env-config@example.com"


def test_git_timeout_is_not_remembered(sandbox: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _set_git_email(sandbox, "git@example.com")
    real = subprocess.run
    timeouts = [1]

    def slow_once(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        if timeouts:
            timeouts.pop()
            raise subprocess.TimeoutExpired(args, 10)
        return real(args, **kw)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(subprocess, "run", slow_once)
    assert resolve_actor() == "os-login"
    assert resolve_actor() == "git@example.com"
