"""User-level settings: who the actor is, and which stores of other users are trusted.

The user config file lives where platformdirs says (``modelreg/config.toml`` under the user
config directory) and may set ``actor = "name@example.com"``, ``safe_stores`` (stores owned
by someone else whose hooks may run and that may be changed: paths, or ``"*"``) and
``trusted_groups`` (group names or ids: a store owned by one of them counts as one's own).
Nothing here touches a store.

Actors are compared and recorded in one normalised form (:func:`normalize_actor`): Unicode
NFKC, case-folded, runs of white space made one space, surrounding white space stripped.
``Alice@Example.com`` and ``alice@example.com`` are the same person, so four-eyes and
``allowed_actors`` cannot be passed by spelling a name differently; names holding control or
invisible characters are refused, since two of them can look the same and differ.
"""

from __future__ import annotations

import functools
import os
import re
import stat
import tomllib
import unicodedata
from pathlib import Path

from modelreg.errors import UsageError

__all__ = ["ENV_ACTOR", "SAFE_STORES_KEY", "TRUSTED_GROUPS_KEY", "actor_key", "normalize_actor",
           "resolve_actor", "store_listed_as_safe", "trusted_groups", "user_config_path"]

ENV_ACTOR = "MODELREG_ACTOR"
ENV_USER_CONFIG = "MODELREG_USER_CONFIG"
SAFE_STORES_KEY = "safe_stores"
TRUSTED_GROUPS_KEY = "trusted_groups"


def user_config_path() -> Path:
    """Return the user config file (``$MODELREG_USER_CONFIG`` overrides the platform default)."""
    override = os.environ.get(ENV_USER_CONFIG)
    if override:
        return Path(override)
    return _platform_config_file(os.environ.get("HOME"), os.environ.get("XDG_CONFIG_HOME"),
                                 os.environ.get("APPDATA"))


@functools.lru_cache(maxsize=8)
def _platform_config_file(home: str | None, xdg: str | None, appdata: str | None) -> Path:
    # Cached on the variables platformdirs reads (the arguments are only the cache's key):
    # a loop of registers asks for the path several times per version.
    import platformdirs

    return Path(platformdirs.user_config_dir("modelreg")) / "config.toml"


# Characters refused in an actor name: control (Cc), format (Cf: zero-width space and
# joiners, bidirectional controls, soft hyphen, tag characters), surrogates (Cs), private
# use (Co) and unassigned (Cn) code points, line and paragraph separators (Zl, Zp); and
# characters of other categories that render as nothing (fillers, blank Braille, variation
# selectors, the combining grapheme joiner). Any of them lets two names that look the
# same differ.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_INVISIBLE = frozenset({
    0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180E, 0x180F, 0x2800,
    0x3164, 0xFFA0, *range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0),
})
_SPACES = re.compile(r"\s+")


def _refused(ch: str) -> bool:
    return ord(ch) in _INVISIBLE or unicodedata.category(ch) in _REFUSED_CATEGORIES


def _fold(text: str) -> str:
    # NFKC, then case folding, then NFKC again: folding can leave a string that is not
    # normalised (the pair is Unicode's NFKC_Casefold, less the ignorable characters).
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    return _SPACES.sub(" ", folded).strip()


def actor_key(name: str) -> str:
    """Return the form in which ``name`` is compared with other actors; never raises.

    For names already stored (records of older versions were not normalised): refused
    characters are dropped rather than refused, so a stored ``alice`` followed by a zero-width
    space is the same person as ``alice``.

    Args:
        name: An actor name, as given or as stored.

    Returns:
        The normalised name (may be empty).
    """
    return _fold("".join(ch for ch in unicodedata.normalize("NFKC", name) if not _refused(ch)))


@functools.lru_cache(maxsize=64)
def normalize_actor(name: str, source: str = "the actor name") -> str:
    """Check an actor name and return its normalised form (the one recorded).

    Args:
        name: The name as given.
        source: Where it came from, for the message (``$MODELREG_ACTOR``, ...).

    Returns:
        The name NFKC-normalised, case-folded, with white space runs made one space and
        surrounding white space stripped.

    Raises:
        UsageError: The name holds a control or invisible character, or nothing else.
    """
    stripped = name.strip()
    for ch in unicodedata.normalize("NFKC", stripped):
        if _refused(ch):
            label = unicodedata.name(ch, "a control character")
            raise UsageError(f"bad actor name {stripped!r} from {source}: it holds "
                             f"U+{ord(ch):04X} ({label}); control and invisible characters "
                             "are refused in actor names")
    key = actor_key(stripped)
    if not key:
        raise UsageError(f"bad actor name {stripped!r} from {source}: it is empty")
    return key


_parsed: dict[tuple[str, int, int, int, int], dict[str, object]] = {}


def _user_config() -> dict[str, object]:
    """The user config's settings (empty when it is absent, not a regular file or bad).

    Parsed once per version of the file: the result is kept under the file's identity
    (path, inode, size, modification and change times), so an edit is seen by the next
    call and a loop of registers does not parse it again for every version. Callers read
    the dictionary and must not change it.
    """
    path = user_config_path()
    try:
        st = path.stat()
        # Only a regular file is read (a symlink to /dev/zero or a FIFO would hang every
        # command); one that does not parse (bad UTF-8, too deep, not TOML) is ignored.
        if not stat.S_ISREG(st.st_mode) or st.st_size > 1 << 20:
            return {}
        key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if key not in _parsed:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
            _parsed.clear()
            _parsed[key] = doc
        return _parsed[key]
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
_GIT_ENV_BYTES = tuple(k.encode() for k in _GIT_ENV)


def _git_context() -> tuple[str, tuple[tuple[str, str], ...]]:
    # The names first, then the values of the few that matter (decoding every value of a
    # large environment costs more than the rest of the lookup).
    if os.supports_bytes_environ:  # POSIX: the raw names, without decoding each
        names = sorted(os.fsdecode(k) for k in os.environb
                       if k.startswith(b"GIT_") or k in _GIT_ENV_BYTES)
    else:
        names = sorted(k for k in os.environ if k.startswith("GIT_") or k in _GIT_ENV)
    return os.getcwd(), tuple((k, os.environ[k]) for k in names)


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
        The actor's normalised name (:func:`normalize_actor`), never empty.

    Raises:
        UsageError: The name found holds a control or invisible character.
    """
    candidates = ((explicit, "the actor given"), (os.environ.get(ENV_ACTOR), f"${ENV_ACTOR}"))
    for candidate, source in candidates:
        if candidate and candidate.strip():
            return normalize_actor(candidate, source)
    found = _from_user_config()
    if found:
        return normalize_actor(found, f"actor in {user_config_path()}")
    found = _from_git()
    if found:
        return normalize_actor(found, "git config user.email")
    import getpass

    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"
    return normalize_actor(login, "the OS login name")
