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
from modelreg.storage.tree import check_user_path, hash_path
from modelreg.types import DataRef, GitInfo, Lineage

__all__ = [
    "capture_git",
    "check_key",
    "check_lineage",
    "check_tags",
    "check_text",
    "check_toml_value",
    "data_ref",
    "MAX_DEPTH",
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


MAX_DEPTH = 32
"""How deeply arrays and tables may nest in a params or metrics value (a manifest is read
back by recursive parsers, and no hyperparameter needs more)."""


def check_key(key: str, what: str) -> str:
    """Refuse a tag, param or metric key that ``K=V`` options refuse.

    Args:
        key: The key.
        what: What it is (``tag``), for the message.

    Returns:
        The key.

    Raises:
        UsageError: The key is not letters, digits, ``_``, ``.``, ``-`` and ``/``, starting
            with a letter, digit or ``_``.
    """
    if not isinstance(key, str) or not _KEY.match(key):
        raise UsageError(f"bad {what} key {key!r}: use letters, digits, '_', '.', '-' or '/', "
                         "starting with a letter, digit or '_'")
    return key


def check_text(text: str, where: str) -> str:
    """Refuse text that cannot be written as UTF-8 (bytes from the command line that are not).

    Args:
        text: The text.
        where: What it is, for the message.

    Returns:
        The text.

    Raises:
        UsageError: The text holds surrogate escapes of bytes that are not UTF-8.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(f"{where} holds bytes that are not valid UTF-8; manifests and the "
                         "history record UTF-8 text only") from exc
    return text


def check_tags(tags: dict[str, str]) -> None:
    """Refuse tags that ``--tag K=V`` would refuse (a bad key, a value that is not text).

    Raises:
        UsageError: A key is malformed or a value is not a string.
    """
    for key, value in tags.items():
        check_key(key, "tag")
        if not isinstance(value, str):
            raise UsageError(f"tag {key!r} must be text, not {type(value).__name__}")
        check_text(value, f"tag {key!r}")


def check_lineage(lineage: Lineage) -> None:
    """Refuse lineage that the command line could not have given.

    Params and metrics must be storable (:func:`check_toml_value`); the run, git, data and
    derivation fields must be of the types the command line gives them.

    Raises:
        UsageError: A field is of the wrong type or holds a value that cannot be stored.
    """
    check_toml_value(lineage.params, "params")
    check_toml_value(lineage.metrics, "metrics")
    texts = {"run.id": lineage.run.id, "run.name": lineage.run.name,
             "data_version": lineage.data_version, "derived_from": lineage.derived_from}
    if lineage.git is not None:
        texts.update({"git.commit": lineage.git.commit, "git.branch": lineage.git.branch,
                      "git.remote": lineage.git.remote})
        if not isinstance(lineage.git.dirty, bool):
            raise UsageError("lineage git.dirty must be true or false")
    for where, value in texts.items():
        if value is not None and not isinstance(value, str):
            raise UsageError(f"lineage {where} must be text, not {type(value).__name__}")
        if value is not None:
            check_text(value, f"lineage {where}")
    for ref in lineage.data:
        if not (isinstance(ref.path, str) and isinstance(ref.digest, str)
                and type(ref.size) is int and ref.size >= 0):
            raise UsageError(f"lineage data entry {ref.path!r} has a field of the wrong type")


def check_toml_value(value: Any, where: str, depth: int = 0) -> None:
    """Refuse values a TOML manifest cannot hold (null, non-finite floats, odd types).

    Args:
        value: A params value, possibly nested.
        where: Its location, for the message.
        depth: How deeply ``value`` is nested already (callers leave it at 0).

    Raises:
        UsageError: The value cannot be stored.
    """
    if depth > MAX_DEPTH:
        raise UsageError(f"{where} nests arrays or tables more than {MAX_DEPTH} deep")
    if value is None:
        raise UsageError(f"{where} is null; manifests are TOML, which has no null")
    if isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{where} is {value}; only finite numbers can be stored")
    if isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, dict):
        for k, v in value.items():
            check_text(str(k), f"{where} key")
            check_toml_value(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_toml_value(v, f"{where}[{i}]", depth + 1)
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
        except ValueError as exc:  # a decode error, or an integer of over 4300 digits
            errors.append(f"{fmt}: {exc}")
        except RecursionError:
            errors.append(f"{fmt}: arrays or tables nested too deeply")
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

    Raises:
        UsageError: The path's name cannot be recorded (not UTF-8, a backslash).
    """
    text = check_user_path(path, "data path")
    digest, size, _ = hash_path(path)
    return DataRef(path=text, digest=format_digest(digest), size=size)
