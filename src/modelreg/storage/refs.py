"""Refs: small named files holding one object id, changed only by compare-and-swap.

A ref ``refs/<name>`` contains an object id and a newline. Every change takes the lock
``refs/<name>.lock`` (O_EXCL), re-reads the ref while holding it, and replaces the file
through the atomic write path, so two writers on two hosts cannot both win.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from modelreg.errors import ConflictError, IntegrityError
from modelreg.storage.atomic import fsync_dir, write_atomic
from modelreg.storage.backend import Token
from modelreg.storage.hashing import is_object_id

if TYPE_CHECKING:  # the lock module is loaded by the first change, not by every read
    from modelreg.storage.lock import Lock

__all__ = ["RefStore", "RefTransaction", "check_ref_name"]

_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z")
# What network file systems leave in a directory: sshfs/FUSE keeps a deleted file that is
# still open as .fuse_hidden*, NFS as .nfs* (silly rename).
_DEBRIS_PREFIXES = (".fuse_hidden", ".nfs")
_DEBRIS = "left behind by a network file system (a file deleted while open); harmless"


def _stray_kind(entry: Path, *, in_refs_root: bool = False) -> str | None:
    """Say why ``entry`` is not a ref (or a ref's lock file), or None if it is one."""
    if entry.name.startswith(_DEBRIS_PREFIXES):
        return _DEBRIS
    if in_refs_root:
        return "not a directory of refs (refs/ holds only models/)"
    name = entry.name[:-len(".lock")] if entry.name.endswith(".lock") else entry.name
    try:
        check_ref_name(name)
    except ValueError:
        return "not a ref: a malformed name"
    if entry.is_symlink():
        return "not a ref: a symbolic link"
    if entry.is_dir():
        return "not a ref: a directory"
    if not entry.is_file():
        return "not a ref: not a regular file"
    return None


def check_ref_name(name: str) -> None:
    """Refuse a ref name that could escape ``refs/`` or clash with a lock file.

    Args:
        name: A ``/``-separated ref name such as ``models/churn``.

    Raises:
        ValueError: The name is malformed.
    """
    parts = name.split("/")
    for part in parts:
        if not _COMPONENT.match(part) or part.endswith(".lock") or ".." in part:
            raise ValueError(f"malformed ref name {name!r}")


class RefTransaction:
    """One compare-and-swap on one ref, made while its lock is held."""

    def __init__(self, store: RefStore, name: str, lock: Lock, old: str | None) -> None:
        self._store = store
        self.name = name
        self.lock = lock
        self.old = old
        self.committed: str | None = None

    def commit(self, new: str) -> None:
        """Point the ref at ``new``.

        Args:
            new: The new object id.

        Raises:
            ConflictError: The lock was broken as stale while this transaction held it.
        """
        if not is_object_id(new):
            raise ValueError(f"not an object id: {new!r}")
        self._check_held()
        write_atomic(self._store.path(self.name), f"{new}\n".encode(), self._store.tmp_dir)
        self.committed = new

    def delete(self) -> None:
        """Remove the ref (its lock stays held until the transaction ends).

        Raises:
            ConflictError: The lock was broken as stale while this transaction held it.
        """
        self._check_held()
        path = self._store.path(self.name)
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)
        self.committed = None

    def _check_held(self) -> None:
        if not self.lock.still_held():
            raise ConflictError(
                f"lock {self.lock.path} was taken over while this command held it; "
                "nothing was changed, run the command again"
            )


class RefStore:
    """The refs of one store."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = root
        self.tmp_dir = tmp_dir

    def path(self, name: str) -> Path:
        """Return the file of ref ``name``.

        Args:
            name: The ref name, checked by :func:`check_ref_name`.

        Returns:
            Its path under the refs directory.
        """
        check_ref_name(name)
        return self.root / name

    def read(self, name: str) -> str | None:
        """Read a ref.

        Args:
            name: The ref name.

        Returns:
            The object id it holds, or None if the ref does not exist.

        Raises:
            IntegrityError: The ref file does not hold an object id.
        """
        path = self.path(name)
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        value = raw.decode("ascii", "replace").strip()
        if not is_object_id(value):
            raise IntegrityError(f"ref {path} is corrupt: {value[:80]!r} is not an object id",
                                 str(path))
        return value

    @contextlib.contextmanager
    def transaction(self, name: str, *, timeout: float | None = None) -> Iterator[RefTransaction]:
        """Lock ref ``name``, yield its current value, and release the lock afterwards.

        Args:
            name: The ref name.
            timeout: Seconds to wait for the lock.

        Yields:
            The transaction; call ``commit(new)`` to move the ref.
        """
        from modelreg.storage.lock import acquire, lock_path_for

        # The write path creates the lock's directory (and the ref's) if it is missing.
        lock = acquire(lock_path_for(self.path(name)), self.tmp_dir, timeout=timeout)
        try:
            yield RefTransaction(self, name, lock, self.read(name))
        finally:
            lock.release()

    def set_if_equals(self, name: str, old: str | None, new: str) -> bool:
        """Move ref ``name`` from ``old`` to ``new`` unless it moved meanwhile.

        Args:
            name: The ref name.
            old: The value the caller last saw (None: the ref must not exist).
            new: The new object id.

        Returns:
            True if the ref now holds ``new``; False if it held something other than ``old``.
        """
        with self.transaction(name) as txn:
            if txn.old == new:
                return True
            if txn.old != old:
                return False
            txn.commit(new)
            return True

    def read_versioned(self, name: str) -> tuple[str | None, Token]:
        """Return the ref's value and its version token (on this backend, the value).

        A head commit id never comes back once replaced (each commit names its parent), so
        the value itself tells whether the ref moved.
        """
        value = self.read(name)
        return value, value

    def compare_and_swap(self, name: str, expected: Token, new: str) -> bool:
        """Point ref ``name`` at ``new`` if it still holds ``expected`` (None: absent).

        The comparison and the write happen under the ref's lock, so of several writers
        holding the same token exactly one wins.

        Returns:
            False, changing nothing, if the ref holds something else.
        """
        with self.transaction(name) as txn:
            if txn.old != expected:
                return False
            txn.commit(new)
            return True

    def delete_if(self, name: str, expected: Token) -> bool:
        """Delete ref ``name`` if it still holds ``expected``; False if it moved."""
        with self.transaction(name) as txn:
            if txn.old != expected or txn.old is None:
                return False
            txn.delete()
            return True

    def names(self, prefix: str) -> Iterator[str]:
        """Yield the names of refs directly under ``prefix``.

        Only regular files with well-formed names are refs: lock files, entries a network
        file system leaves behind (``.fuse_hidden*``, ``.nfs*``) and anything else that is
        not a ref are skipped here and reported by :meth:`strays`.

        Args:
            prefix: A directory of refs such as ``models``.
        """
        base = self.root / prefix
        if not base.is_dir():
            return
        for entry in sorted(base.iterdir()):
            if _stray_kind(entry) is None and not entry.name.endswith(".lock"):
                yield f"{prefix}/{entry.name}"

    def strays(self, prefix: str) -> Iterator[tuple[Path, bool, str]]:
        """Yield every entry under ``refs/`` that is neither a ref nor a ref's lock file.

        Args:
            prefix: The one directory of refs (``models``); anything else under ``refs/``
                is a stray too.

        Yields:
            The path, whether it is harmless debris a network file system leaves behind
            (``.fuse_hidden*``, ``.nfs*``: to warn about, never an error), and what it is.
        """
        if not self.root.is_dir():
            return
        for entry in sorted(self.root.iterdir()):
            if entry.name != prefix:
                kind = _stray_kind(entry, in_refs_root=True)
                yield entry, kind == _DEBRIS, kind or "not a directory of refs"
            elif entry.is_symlink() or not entry.is_dir():
                yield entry, False, "refs/models must be a directory"
        base = self.root / prefix
        if base.is_dir() and not base.is_symlink():
            for entry in sorted(base.iterdir()):
                kind = _stray_kind(entry)
                if kind is not None:
                    yield entry, kind == _DEBRIS, kind
