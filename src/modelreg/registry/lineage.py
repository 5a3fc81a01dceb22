"""Capturing lineage: typed ``K=V`` values, params files, git state and data digests."""

from __future__ import annotations

import json
import math
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from modelreg.errors import NotFound, UsageError
from modelreg.storage.hashing import format_digest
from modelreg.storage.tree import hash_path
from modelreg.types import DataRef, GitInfo

__all__ = [
    "capture_git",
    "check_toml_value",
    "data_ref",
    "load_params_file",
    "parse_assignments",
    "parse_value",
    "strip_credentials",
]

_INT = re.compile(r"^[+-]?[0-9]+\Z")
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]*\Z")


def parse_value(text: str) -> Any:
    """Type a command-line value: integers, finite floats and booleans; else a string.

    Args:
        text: The text after ``=``.

    Returns:
        An int, float, bool or str (text with surrounding blanks or ``_`` digit separators
        stays text, so what is stored is what was typed).
    """
    if text != text.strip() or "_" in text:
        return text
    if _INT.match(text):
        return int(text)
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def parse_assignments(items: list[str], what: str, *, numeric: bool = False) -> dict[str, Any]:
    """Parse repeated ``K=V`` options into a typed dict.

    Args:
        items: The raw option values.
        what: The option's name, for messages (``--param``).
        numeric: Refuse values that are not numbers or booleans (for metrics).

    Returns:
        Keys to typed values; a repeated key keeps the last value.

    Raises:
        UsageError: An item has no ``=``, a bad key, or a non-numeric metric.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise UsageError(f"{what} {item!r}: expected KEY=VALUE with a key of letters, "
                             "digits, '_', '.', '-' or '/'")
        value = parse_value(raw)
        if numeric and isinstance(value, str):
            raise UsageError(f"{what} {item!r}: {raw!r} is not a number or boolean")
        out[key] = value
    return out


def check_toml_value(value: Any, where: str) -> None:
    """Refuse values a TOML manifest cannot hold (null, non-finite floats, odd types).

    Args:
        value: A params value, possibly nested.
        where: Its location, for the message.

    Raises:
        UsageError: The value cannot be stored.
    """
    if value is None:
        raise UsageError(f"{where} is null; manifests are TOML, which has no null")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{where} is {value}; only finite numbers can be stored")
    if isinstance(value, dict):
        for k, v in value.items():
            check_toml_value(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_toml_value(v, f"{where}[{i}]")
    elif not isinstance(value, str | int | float | bool):
        raise UsageError(f"{where} has unsupported type {type(value).__name__}")


def load_params_file(path: Path) -> dict[str, Any]:
    """Read hyperparameters from a JSON or TOML file (chosen by extension, else sniffed).

    Args:
        path: The file.

    Returns:
        Its top-level table.

    Raises:
        NotFound: The file does not exist.
        UsageError: It is not a JSON object or TOML table, or holds unstorable values.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise NotFound(f"params file {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read params file {path}: {exc}") from exc
    data: Any
    errors: list[str] = []
    order = ("toml", "json") if path.suffix.lower() == ".toml" else ("json", "toml")
    for fmt in order:
        try:
            data = json.loads(text) if fmt == "json" else tomllib.loads(text)
            break
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
            errors.append(f"{fmt}: {exc}")
    else:
        raise UsageError(f"params file {path} is neither JSON nor TOML ({'; '.join(errors)})")
    if not isinstance(data, dict):
        raise UsageError(f"params file {path} must hold an object/table at the top level")
    check_toml_value(data, f"params file {path}")
    return data


def strip_credentials(url: str) -> str:
    """Drop a user name and password from a remote URL, so tokens never reach a manifest.

    Args:
        url: A git remote URL.

    Returns:
        The URL without ``user:password@``.
    """
    parts = urlsplit(url)
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return url


def _git(cwd: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def capture_git(cwd: Path) -> GitInfo | None:
    """Describe the git repository containing ``cwd``; None outside a repository.

    Args:
        cwd: Where to look.

    Returns:
        Commit, branch (None when detached), dirty flag (tracked changes only), and the
        ``origin`` remote (else the first remote) without credentials.
    """
    # Two git processes, not six: `status --porcelain=v2 --branch` (a format made for
    # scripts) gives the commit, the branch and the tracked changes at once, and fails
    # outside a work tree; `remote -v` gives every remote's URL as git rewrites it.
    status = _git(cwd, "status", "--porcelain=v2", "--branch", "--untracked-files=no")
    if status is None:
        return None
    commit = branch = None
    dirty = False
    for line in status.splitlines():
        if line.startswith("# branch.oid "):
            oid = line.removeprefix("# branch.oid ")
            commit = None if oid == "(initial)" else oid
        elif line.startswith("# branch.head "):
            head = line.removeprefix("# branch.head ")
            branch = None if head == "(detached)" else head
        elif line and not line.startswith("#"):
            dirty = True
    remotes: dict[str, str] = {}
    for line in (_git(cwd, "remote", "-v") or "").splitlines():
        name, _, rest = line.partition("\t")
        if rest.endswith(" (fetch)"):
            remotes.setdefault(name, rest.removesuffix(" (fetch)"))
    remote = remotes.get("origin") or next(iter(remotes.values()), None)
    return GitInfo(
        commit=commit,
        branch=branch,
        dirty=dirty,
        remote=strip_credentials(remote) if remote else None,
    )


def data_ref(path: Path) -> DataRef:
    """Digest a training data file or directory.

    Args:
        path: The file or directory.

    Returns:
        Its path as given, ``sha256:`` digest (a tree digest for a directory) and size.
    """
    digest, size, _ = hash_path(path)
    return DataRef(path=str(path), digest=format_digest(digest), size=size)
