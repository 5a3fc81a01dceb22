"""Artifact trees: the files of a registered path, with relative paths, sizes and digests.

A directory is described by a *tree*: the sorted list of its regular files. Its digest is the
sha256 of the tree's canonical JSON encoding, which is stored as an object so that the digest
names real bytes. Symlinks are followed only when they point inside the directory; anything
that would leave it (or is not a regular file) is refused.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelreg.errors import IntegrityError, NotFound, UsageError
from modelreg.storage.hashing import digest_bytes, digest_file

__all__ = [
    "FileEntry",
    "SourceFile",
    "check_relpath",
    "check_user_path",
    "collect",
    "encode_tree",
    "hash_path",
]


@dataclass(frozen=True)
class FileEntry:
    """One file of an artifact: where it goes, what it hashes to, how big it is."""

    path: str
    digest: str
    size: int


@dataclass(frozen=True)
class SourceFile:
    """A file found on disk, to be stored under ``relpath``."""

    relpath: str
    source: Path


def check_relpath(relpath: str) -> str:
    """Refuse a stored path that could escape the directory it is written into.

    Args:
        relpath: A ``/``-separated relative path.

    Returns:
        The same path.

    Raises:
        IntegrityError: The path is absolute, empty, or has ``.``/``..`` components.
    """
    parts = relpath.split("/")
    if (
        not relpath
        or relpath.startswith("/")
        or "\\" in relpath
        or "\x00" in relpath
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise IntegrityError(f"unsafe path {relpath!r} in artifact tree")
    return relpath


def check_user_path(path: str | Path, what: str = "path") -> str:
    """Refuse a path a user gave whose name the store cannot record.

    Manifests, trees and events are UTF-8 text, and stored paths use ``/`` alone as the
    separator, so a name with bytes that are not UTF-8 (which Python carries as surrogate
    escapes) or with a backslash is the user's to rename, refused before anything is stored.

    Args:
        path: The path as given (or a stored name built from it).
        what: What it is, for the message (``file``, ``example``, ``data path``).

    Returns:
        The path as text.

    Raises:
        UsageError: The name is not valid UTF-8, or holds a backslash or a NUL.
    """
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Show the bytes as they are on disk (f\xff.bin), not Python's surrogate escape.
        shown = repr(os.fsencode(text))[2:-1]
        raise UsageError(f"{what} '{shown}' has a name that is not valid UTF-8; rename it"
                         ) from exc
    if "\\" in text or "\x00" in text:
        raise UsageError(f"{what} {text!r} has a backslash or NUL in its name, which the store "
                         "cannot record (it separates paths with '/' only); rename it")
    return text


def _walk_dir(root: Path, prefix: str) -> list[SourceFile]:
    real_root = root.resolve()
    found: list[SourceFile] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            if (here / d).is_symlink():
                raise UsageError(
                    f"{here / d} is a symlink to a directory; copy it or register its target"
                )
        dirnames.sort()
        for name in sorted(filenames):
            path = here / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(real_root):
                    raise UsageError(
                        f"{path} is a symlink pointing outside {root} (to {target}); refused"
                    )
            try:
                mode = path.stat().st_mode
            except FileNotFoundError as exc:
                raise UsageError(f"{path} is a dangling symlink") from exc
            if not stat.S_ISREG(mode):
                raise UsageError(f"{path} is not a regular file")
            found.append(SourceFile(f"{prefix}{rel}", path))
    return found


def _base_name(path: Path) -> str:
    """Return the name a path is stored under (a symlink keeps its own name)."""
    return path.name if path.name not in ("", ".", "..") else path.resolve().name


def collect(paths: Iterable[Path]) -> tuple[str, list[SourceFile]]:
    """List the files to register from the paths a user gave.

    One file gives a ``file`` artifact holding that file under its base name. One directory
    gives a ``directory`` artifact of the files below it, with paths relative to it. Several
    paths give a ``directory`` artifact with each file or directory under its base name.

    Args:
        paths: What the user named on the command line.

    Returns:
        The artifact kind (``file`` or ``directory``) and its files, sorted by path.

    Raises:
        NotFound: A path does not exist.
        UsageError: A path is unsafe, special, empty, or two paths collide.
    """
    paths = list(paths)
    if not paths:
        raise UsageError("give at least one file or directory to register")
    files: list[SourceFile] = []
    bases = [_base_name(p) for p in paths]
    if len(paths) > 1 and len(set(bases)) != len(bases):
        twice = sorted({b for b in bases if bases.count(b) > 1})
        raise UsageError(f"two paths have the same name {twice[0]!r}; register them from one "
                         "directory instead")
    for path in paths:
        if not path.exists():
            raise NotFound(f"{path} does not exist")
        if path.is_dir():
            prefix = "" if len(paths) == 1 else f"{_base_name(path)}/"
            files.extend(_walk_dir(path, prefix))
        elif path.is_file():
            files.append(SourceFile(_base_name(path), path))
        else:
            raise UsageError(f"{path} is not a regular file or directory")
    if not files:
        raise UsageError(f"nothing to register: {', '.join(map(str, paths))} holds no files")
    files.sort(key=lambda f: f.relpath)
    names = {f.relpath for f in files}
    for f in files:
        parts = f.relpath.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in names:
                raise UsageError(f"{'/'.join(parts[:i])!r} would be both a file and a directory")
    if len(names) != len(files):
        raise UsageError("two paths would be stored under the same name")
    for f in files:
        # Checked as the user's input first (exit 2), then as a stored path.
        check_user_path(f.relpath, "file")
        check_relpath(f.relpath)
        PurePosixPath(f.relpath)
    kind = "file" if len(paths) == 1 and paths[0].is_file() else "directory"
    return kind, files


def encode_tree(entries: Iterable[FileEntry]) -> bytes:
    """Encode a tree canonically (sorted by path, compact JSON, trailing newline).

    Args:
        entries: The files.

    Returns:
        The bytes whose sha256 is the tree's digest.
    """
    rows = sorted(entries, key=lambda e: e.path)
    doc = {
        "files": [{"digest": e.digest, "path": e.path, "size": e.size} for e in rows],
        "type": "tree",
    }
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()


def hash_path(
    path: Path, progress: Callable[[int], None] | None = None
) -> tuple[str, int, list[FileEntry]]:
    """Digest a file or directory without storing it (for ``--data``).

    Args:
        path: A file or directory.
        progress: Called with the byte count of each chunk hashed.

    Returns:
        The digest (the file's sha256, or the tree digest), the total size, and the entries.
    """
    _, files = collect([path])
    entries = []
    for f in files:
        digest, size = digest_file(f.source, progress)
        entries.append(FileEntry(f.relpath, digest, size))
    total = sum(e.size for e in entries)
    if path.is_file():
        return entries[0].digest, total, entries
    return digest_bytes(encode_tree(entries)), total, entries
