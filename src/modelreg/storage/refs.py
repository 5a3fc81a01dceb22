"""Refs: small named files holding a byte body, changed only by compare-and-swap.

A ref ``refs/<name>`` holds an opaque body of at most ``MAX_REF_BODY`` bytes (the registry
keeps a model's head commit id and current state there). Its version token is the sha256 of
the body: callers never put back a body a ref held before, so an unchanged token means an
unchanged ref. Every change takes the lock ``refs/<name>.lock`` (``O_EXCL``, see
``storage.lock``), compares the token while holding it, and replaces the file through the
atomic write path (temporary file fsynced, renamed, directory fsynced), so two writers on two
hosts cannot both win. :meth:`RefStore.locked` holds that lock around a whole change, so
that writers of one store queue instead of re-planning after a lost swap.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from modelreg.errors import ConflictError, IntegrityError
from modelreg.storage.atomic import fsync_dir, write_atomic
from modelreg.storage.backend import MAX_REF_BODY, Token
from modelreg.storage.hashing import digest_bytes

if TYPE_CHECKING:  # the lock module is loaded by the first change, not by every read
    from modelreg.storage.lock import Lock

__all__ = ["RefStore", "check_ref_name"]

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


class RefStore:
    """The refs of one store."""

    queues = True
    """Writers of one ref queue on its lock file."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = root
        self.tmp_dir = tmp_dir
        self._held = threading.local()

    def path(self, name: str) -> Path:
        """Return the file of ref ``name``.

        Args:
            name: The ref name, checked by :func:`check_ref_name`.

        Returns:
            Its path under the refs directory.
        """
        check_ref_name(name)
        return self.root / name

    def where(self, name: str) -> str:
        """How messages name ref ``name``: its path."""
        return str(self.path(name))

    def read(self, name: str) -> bytes | None:
        """Read a ref.

        Args:
            name: The ref name.

        Returns:
            The body it holds, or None if the ref does not exist.

        Raises:
            IntegrityError: The ref file is larger than a ref may be.
        """
        path = self.path(name)
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_REF_BODY + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except IsADirectoryError as exc:
            raise IntegrityError(f"ref {path} is a directory, not a ref", str(path)) from exc
        if len(raw) > MAX_REF_BODY:
            raise IntegrityError(f"ref {path} is corrupt: larger than {MAX_REF_BODY} bytes",
                                 str(path))
        return raw

    def read_versioned(self, name: str) -> tuple[bytes | None, Token]:
        """Return the ref's body and its version token (the sha256 of the body)."""
        body = self.read(name)
        return body, None if body is None else digest_bytes(body)

    def _holding(self) -> dict[str, Lock]:
        held: dict[str, Lock] | None = getattr(self._held, "locks", None)
        if held is None:
            held = self._held.locks = {}
        return held

    @contextlib.contextmanager
    def locked(self, name: str, *, timeout: float | None = None) -> Iterator[None]:
        """Hold ref ``name``'s lock for a whole change (re-entrant for this thread).

        Swaps made by this thread inside the block use the lock already held; other
        writers wait for it (up to ``timeout``, default ``MODELREG_LOCK_TIMEOUT``).

        Raises:
            ConflictError: The lock stayed held too long (exit 4).
        """
        held = self._holding()
        if name in held:
            yield
            return
        from modelreg.storage.lock import acquire, lock_path_for

        # The write path creates the lock's directory (and the ref's) if it is missing.
        lock = acquire(lock_path_for(self.path(name)), self.tmp_dir, timeout=timeout)
        held[name] = lock
        try:
            yield
        finally:
            del held[name]
            lock.release()

    def _check_held(self, name: str) -> None:
        lock = self._holding()[name]
        if not lock.still_held():
            raise ConflictError(
                f"lock {lock.path} was taken over while this command held it; "
                "nothing was changed, run the command again"
            )

    def compare_and_swap(self, name: str, expected: Token, body: bytes) -> bool:
        """Give ref ``name`` the body ``body`` if its token is still ``expected``.

        ``expected=None`` creates the ref only if it does not exist. The comparison and
        the write happen under the ref's lock, so of several writers holding the same
        token exactly one wins.

        Returns:
            False, changing nothing, if the ref holds something else.

        Raises:
            ConflictError: The lock stayed held too long, or was taken over as stale
                while this writer held it.
            ValueError: ``body`` is larger than ``MAX_REF_BODY``.
        """
        if len(body) > MAX_REF_BODY:
            raise ValueError(f"a ref body is at most {MAX_REF_BODY} bytes, not {len(body)}")
        with self.locked(name):
            if self.read_versioned(name)[1] != expected:
                return False
            self._check_held(name)
            write_atomic(self.path(name), body, self.tmp_dir)
            return True

    def delete_if(self, name: str, expected: Token) -> bool:
        """Delete ref ``name`` if its token is still ``expected``; False if it moved.

        Raises:
            ConflictError: As for :meth:`compare_and_swap`.
        """
        with self.locked(name):
            if expected is None or self.read_versioned(name)[1] != expected:
                return False
            self._check_held(name)
            path = self.path(name)
            path.unlink(missing_ok=True)
            fsync_dir(path.parent)
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
