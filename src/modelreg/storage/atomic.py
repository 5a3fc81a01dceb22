"""The one write path: every byte under ``.modelreg/`` lands through this module.

One routine, :func:`staged`, writes every file: a temporary file with a random name in the
store's ``tmp/`` directory (the same file system as its destination) is filled, flushed
and fsynced, closed, given its final mode, and only then made visible under its final name
by :meth:`Staged.publish`, either renamed over it (*replace*) or hard-linked to it
(*create-if-absent*); the destination directory is fsynced after. A crash at any instant
therefore leaves either the old file or the new one, never a torn one, and the temporary
file is removed when the block ends, whatever ends it (KeyboardInterrupt included).

:func:`write_atomic`, :func:`write_new` and :func:`atomic_file` are that routine for whole
byte strings and for a file object. Objects (``ObjectStore``), refs, the lock files' owner
records and the files ``init`` creates all go through it; ``tests/test_write_path.py``
checks that no other module of the storage layer writes, renames, links or fsyncs.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "TMP_PREFIX",
    "Staged",
    "atomic_file",
    "create_tmp",
    "ensure_dir",
    "fsync_dir",
    "staged",
    "tmp_name",
    "write_atomic",
    "write_new",
]

TMP_PREFIX = "tmp-"


def tmp_name(tmp_dir: Path, hint: str = "") -> Path:
    """Return a fresh, unused-looking temporary path inside ``tmp_dir``.

    Args:
        tmp_dir: Directory on the same file system as the final destination.
        hint: A short readable suffix, to make leftovers recognisable.

    Returns:
        A path that does not exist yet (with overwhelming probability).
    """
    safe = "".join(c for c in hint if c.isalnum() or c in "-_.")[:40]
    return tmp_dir / f"{TMP_PREFIX}{os.getpid()}-{os.urandom(8).hex()}{'-' + safe if safe else ''}"


def ensure_dir(path: Path, *, durable: bool = True) -> None:
    """Create ``path`` (and parents) if missing, fsyncing each parent that gained an entry.

    Args:
        path: The directory that must exist.
        durable: False skips the fsyncs, for a directory that the write path creates again
            on demand if a crash loses it (``init``'s ``tmp/``, ``objects/``, ``refs/``).
    """
    if path.is_dir():
        return
    ensure_dir(path.parent, durable=durable)
    try:
        path.mkdir()
    except FileExistsError:
        return
    if durable:
        fsync_dir(path.parent)


def create_tmp(tmp_dir: Path, hint: str = "", mode: int = 0o600) -> tuple[Path, int]:
    """Create a new temporary file for writing; recreate ``tmp_dir`` if it went missing.

    This is the write path's first step; :func:`staged` is the whole of it.

    Args:
        tmp_dir: The store's temporary directory.
        hint: A readable suffix for the name.
        mode: The new file's permissions (less the umask).

    Returns:
        The path and an open file descriptor (write-only).
    """
    for _ in range(2):
        tmp = tmp_name(tmp_dir, hint)
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileNotFoundError:
            ensure_dir(tmp_dir)
    tmp = tmp_name(tmp_dir, hint)
    return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)


def fsync_dir(path: Path) -> None:
    """Fsync a directory so a rename inside it survives a crash.

    Args:
        path: The directory whose entries changed.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        # Some file systems (and some NFS servers) refuse fsync on a directory; the rename
        # is still atomic, only its durability is up to the server.
        pass
    finally:
        os.close(fd)


class Staged:
    """A new file being written in ``tmp/``, not yet visible under its final name.

    Write the content to :attr:`file`, then call :meth:`publish`. :func:`staged` creates it
    and removes the temporary file when its block ends.
    """

    def __init__(self, path: Path, file: BinaryIO, mode: int, durable: bool) -> None:
        self.path = path
        """The temporary file (a reader may open it, as ``put_file``'s hashing thread does)."""
        self.file = file
        """The temporary file, open for writing (binary, at its start)."""
        self._mode = mode
        self._durable = durable
        self._synced = False
        self._sealed = False
        self._renamed = False

    def sync(self) -> None:
        """Flush and fsync what was written (once; :meth:`publish` calls it if nobody did).

        A writer may call it early, when all its bytes are written but it still has work to
        do that does not write (``put_file`` finishing its hash), so that the two overlap.
        """
        if self._synced:
            return
        self.file.flush()
        if self._durable:
            os.fsync(self.file.fileno())
        self._synced = True

    def _seal(self) -> None:
        # Closed before it becomes visible: an NFS client sends a file's data to the server
        # on close, so another host that opens the new name sees the whole content.
        if self._sealed:
            return
        self.sync()
        self.file.close()
        os.chmod(self.path, self._mode)
        self._sealed = True

    def publish(self, dest: Path, *, replace: bool = True, exclusive: bool = False,
                sync_dir: bool = True) -> bool:
        """Make the content visible at ``dest``: fsync, close, chmod, rename or link, fsync dir.

        With ``replace=False`` the call may be repeated after it returned False, as a lock
        taker does while it waits: the temporary file stays until the block ends.

        Args:
            dest: The final path; its directory is created if missing.
            replace: True: rename over whatever is at ``dest``. False: create ``dest`` only
                if nothing is there, with ``link(2)``, so that of two writers racing for one
                path exactly one wins and the loser never overwrites the winner.
            exclusive: With ``replace=False``, raise where hard links are refused instead of
                falling back to a check and a rename (a lock must never have two takers).
            sync_dir: False leaves the directory fsync to the caller, who makes many new
                names in one directory durable with one fsync of it (objects: ``sync()``).

        Returns:
            True if ``dest`` now holds this content, False if it already existed (only with
            ``replace=False``).

        Raises:
            FileNotFoundError: The temporary file was removed meanwhile (``gc --grace 0``).
        """
        self._seal()
        ensure_dir(dest.parent)
        if replace:
            os.replace(self.path, dest)
            self._renamed = True
        elif not self._link(dest, exclusive):
            return False
        if self._durable and sync_dir:
            fsync_dir(dest.parent)
        return True

    def _link(self, dest: Path, exclusive: bool) -> bool:
        try:
            os.link(self.path, dest)
        except FileExistsError:
            return self._linked_anyway()
        except OSError as exc:
            if exc.errno in (errno.EPERM, errno.EACCES) and (
                    os.path.lexists(dest) or self._links_work()):
                # sshfs (SFTP's hardlink extension) reports a target that exists as a
                # generic failure, EPERM: an existing target means "taken", as EEXIST does.
                # Its name cache may not yet show a target another client just made, so
                # where hard links work at all (a link to a fresh name succeeds), the
                # refusal means the same. Never a lost NFS reply: the link was not made.
                return False
            if exclusive or exc.errno in (errno.ENOENT, errno.ENOTDIR):
                raise
            # Some shared file systems (SMB/CIFS, a few FUSE mounts) refuse hard links. Fall
            # back to an existence check and a rename: the window between the two is tiny,
            # and for content-addressed objects a lost race rewrites identical bytes.
            if os.path.lexists(dest):
                return False
            os.replace(self.path, dest)
            self._renamed = True
        return True

    def _links_work(self) -> bool:
        probe = self.path.with_name(self.path.name + "-probe")
        try:
            os.link(self.path, probe)
        except OSError:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(probe)
        return True

    def _linked_anyway(self) -> bool:
        # Over NFS a retransmitted LINK whose first reply was lost fails with EEXIST
        # although the link was made: the temporary file's link count tells (link(2)'s
        # own advice for lock files on NFS). Nobody else links to a temporary file.
        try:
            return os.stat(self.path).st_nlink == 2
        except FileNotFoundError:
            return False


@contextlib.contextmanager
def staged(
    tmp_dir: Path, hint: str = "", *, mode: int = 0o644, durable: bool = True
) -> Iterator[Staged]:
    """The write path: a temporary file in ``tmp_dir`` to fill and then publish.

    The temporary file is created with mode 0600 (never readable by others while it is
    incomplete) and gets ``mode`` just before it is published. When the block ends, by
    :meth:`Staged.publish` or by any exception, the temporary file is closed and removed.

    Args:
        tmp_dir: The store's ``tmp/`` (same file system as the destination); re-created if
            it went missing.
        hint: A readable suffix for the temporary name (the destination's name, ``blob``,
            ``lock``).
        mode: Permission bits of the published file, whatever the umask.
        durable: False skips both fsyncs; only for lock files, which a crash may lose.

    Yields:
        The staged file.
    """
    path, fd = create_tmp(tmp_dir, hint)
    staging: Staged | None = None
    try:
        with os.fdopen(fd, "wb") as file:
            staging = Staged(path, file, mode, durable)
            yield staging
    finally:
        if staging is None or not staging._renamed:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.contextmanager
def atomic_file(
    dest: Path, tmp_dir: Path, *, mode: int = 0o644, replace: bool = True
) -> Iterator[BinaryIO]:
    """Open a temporary file that becomes ``dest`` atomically when the block succeeds.

    Args:
        dest: The final path.
        tmp_dir: Directory for the temporary file (same file system as ``dest``).
        mode: Permission bits set before the file becomes visible at ``dest``.
        replace: If False and ``dest`` already exists when the block ends, the new content
            is discarded and ``dest`` is left alone (write-once semantics, as
            :func:`write_new`).

    Yields:
        A binary file object to write the new content to.
    """
    with staged(tmp_dir, dest.name, mode=mode) as tmp:
        yield tmp.file
        tmp.publish(dest, replace=replace)


def write_atomic(dest: Path, data: bytes, tmp_dir: Path, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``dest`` atomically, replacing any previous content.

    Args:
        dest: The final path.
        data: The complete new content.
        tmp_dir: Directory for the temporary file (same file system as ``dest``).
        mode: Permission bits of the final file.
    """
    with staged(tmp_dir, dest.name, mode=mode) as tmp:
        tmp.file.write(data)
        tmp.publish(dest)


def write_new(dest: Path, data: bytes, tmp_dir: Path, *, mode: int = 0o644,
              sync_dir: bool = True) -> bool:
    """Create ``dest`` with ``data`` only if it does not exist, atomically.

    Uses ``link`` so that of two writers racing for the same path exactly one wins and the
    loser never overwrites the winner (see :meth:`Staged.publish`).

    Args:
        dest: The final path.
        data: The complete content.
        tmp_dir: Directory for the temporary file (same file system as ``dest``).
        mode: Permission bits of the final file.
        sync_dir: False leaves the fsync of ``dest``'s directory to the caller.

    Returns:
        True if this call created ``dest``, False if it already existed.
    """
    with staged(tmp_dir, dest.name, mode=mode) as tmp:
        tmp.file.write(data)
        return tmp.publish(dest, replace=False, sync_dir=sync_dir)
