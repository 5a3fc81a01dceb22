"""User-level settings: who the actor is, and which stores of other users are trusted.

The user config file lives where platformdirs says (``modelreg/config.toml`` under the user
config directory) and may set ``actor = "name@example.com"``, ``safe_stores`` (stores owned
by someone else whose hooks may run and that may be changed: paths, or ``"*"``) and
``trusted_groups`` (group names or ids: a store owned by one of them counts as one's own).
Nothing here touches a store.
"""

from __future__ import annotations

import functools
import os
import tomllib
from pathlib import Path

__all__ = ["ENV_ACTOR", "SAFE_STORES_KEY", "TRUSTED_GROUPS_KEY", "resolve_actor",
           "store_listed_as_safe", "trusted_groups", "user_config_path"]

ENV_ACTOR = "MODELREG_ACTOR"
ENV_USER_CONFIG = "MODELREG_USER_CONFIG"
SAFE_STORES_KEY = "safe_stores"
TRUSTED_GROUPS_KEY = "trusted_groups"


def user_config_path() -> Path:
    """Return the user config file (``$MODELREG_USER_CONFIG`` overrides the platform default)."""
    override = os.environ.get(ENV_USER_CONFIG)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_dir("modelreg")) / "config.toml"


def _user_config() -> dict[str, object]:
    path = user_config_path()
    try:
        # Only a regular file is read (a symlink to /dev/zero or a FIFO would hang every
        # command); one that does not parse (bad UTF-8, too deep, not TOML) is ignored.
        if not path.is_file() or path.stat().st_size > 1 << 20:
            return {}
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, ValueError, RecursionError):
        return {}


def _string_list(key: str) -> list[str]:
    value = _user_config().get(key, [])
    if isinstance(value, str):
        value = [value]
    return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []


def store_listed_as_safe(store: Path) -> bool:
    """Tell whether the user config's ``safe_stores`` lists ``store`` (or holds ``"*"``).

    An entry may name the ``.modelreg`` directory or the project directory holding it; both
    are compared after resolving symlinks.

    Args:
        store: The ``.modelreg`` directory.

    Returns:
        True when the user trusts this store.
    """
    target = store.resolve()
    for entry in _string_list(SAFE_STORES_KEY):
        if entry == "*":
            return True
        path = Path(entry).expanduser().resolve()
        if target in (path, path / ".modelreg"):
            return True
    return False


def trusted_groups() -> list[str]:
    """The group names or numeric ids of ``trusted_groups`` in the user config."""
    return _string_list(TRUSTED_GROUPS_KEY)


def _from_user_config() -> str | None:
    actor = _user_config().get("actor")
    return actor.strip() or None if isinstance(actor, str) else None


# What decides the answer of `git config user.email` besides the config files' contents:
# the directory it runs in (repository discovery), which git runs, and the environment
# variables that choose the files (HOME, XDG_CONFIG_HOME, GIT_CONFIG_GLOBAL/SYSTEM/NOSYSTEM,
# GIT_DIR, ...) or add values (GIT_CONFIG_COUNT/KEY_n/VALUE_n, GIT_CONFIG_PARAMETERS).
_GIT_ENV = ("HOME", "XDG_CONFIG_HOME", "PATH")


def _git_context() -> tuple[str, tuple[tuple[str, str], ...]]:
    env = tuple(sorted((k, v) for k, v in os.environ.items()
                       if k.startswith("GIT_") or k in _GIT_ENV))
    return os.getcwd(), env


@functools.lru_cache(maxsize=16)
def _git_email(cwd: str, env: tuple[tuple[str, str], ...]) -> str | None:
    # Cached per process on its context (``env`` is part of the key only: git inherits
    # os.environ, which it was taken from). A subprocess costs about 2 ms, which a loop of
    # registers would otherwise pay per version. A timeout raises and so is not cached.
    import subprocess

    try:
        out = subprocess.run(["git", "config", "user.email"], capture_output=True, text=True,
                             timeout=10, cwd=cwd)
    except OSError:
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _from_git() -> str | None:
    import subprocess

    try:
        return _git_email(*_git_context())
    except subprocess.SubprocessError:
        return None


def resolve_actor(explicit: str | None = None) -> str:
    """Say who is acting: explicit, else ``$MODELREG_ACTOR``, user config, git, OS login.

    Args:
        explicit: An actor given by the caller.

    Returns:
        A non-empty actor name.
    """
    for candidate in (explicit, os.environ.get(ENV_ACTOR)):
        if candidate and candidate.strip():
            return candidate.strip()
    found = _from_user_config() or _from_git()
    if found:
        return found
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"
