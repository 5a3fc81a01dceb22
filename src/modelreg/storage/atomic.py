"""The one write path: every byte under ``.modelreg/`` lands through this module.

A write goes to a temporary file with a random name in the store's ``tmp/`` directory (the
same file system as its destination), is flushed and fsynced, gets its final mode, and only
then is renamed into place; the destination directory is fsynced after the rename. A crash
at any instant therefore leaves either the old file or the new one, never a torn one, and the
temporary file is removed on any exception, KeyboardInterrupt included.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "TMP_PREFIX",
    "atomic_file",
    "create_tmp",
    "ensure_dir",
    "fsync_dir",
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


def ensure_dir(path: Path) -> None:
    """Create ``path`` (and parents) if missing, fsyncing each parent that gained an entry.

    Args:
        path: The directory that must exist.
    """
    if path.is_dir():
        return
    ensure_dir(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return
    fsync_dir(path.parent)


def create_tmp(tmp_dir: Path, hint: str = "", mode: int = 0o600) -> tuple[Path, int]:
    """Create a new temporary file for writing; recreate ``tmp_dir`` if it went missing.

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


@contextlib.contextmanager
def atomic_file(
    dest: Path, tmp_dir: Path, *, mode: int = 0o644, replace: bool = True
) -> Iterator[BinaryIO]:
    """Open a temporary file that replaces ``dest`` atomically when the block succeeds.

    Args:
        dest: The final path.
        tmp_dir: Directory for the temporary file (same file system as ``dest``).
        mode: Permission bits set before the file becomes visible at ``dest``.
        replace: If False and ``dest`` already exists when the block ends, the new content
            is discarded and ``dest`` is left alone (write-once semantics).

    Yields:
        A binary file object to write the new content to.
    """
    tmp, fd = create_tmp(tmp_dir, dest.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        ensure_dir(dest.parent)
        if not replace and dest.exists():
            tmp.unlink()
            return
        os.replace(tmp, dest)
        fsync_dir(dest.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_atomic(dest: Path, data: bytes, tmp_dir: Path, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``dest`` atomically, replacing any previous content.

    Args:
        dest: The final path.
        data: The complete new content.
        tmp_dir: Directory for the temporary file (same file system as ``dest``).
        mode: Permission bits of the final file.
    """
    with atomic_file(dest, tmp_dir, mode=mode) as fh:
        fh.write(data)


def write_new(dest: Path, data: bytes, tmp_dir: Path, *, mode: int = 0o644) -> bool:
    """Create ``dest`` with ``data`` only if it does not exist, atomically.

    Uses ``link`` so that of two writers racing for the same path exactly one wins and the
    loser never overwrites the winner.

    Args:
        dest: The final path.
        data: The complete content.
        tmp_dir: Directory for the temporary file (same file system as ``dest``).
        mode: Permission bits of the final file.

    Returns:
        True if this call created ``dest``, False if it already existed.
    """
    tmp, fd = create_tmp(tmp_dir, dest.name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        ensure_dir(dest.parent)
        try:
            os.link(tmp, dest)
        except FileExistsError:
            return False
        except OSError:
            # Some shared file systems (SMB/CIFS, a few FUSE mounts) refuse hard links. Fall
            # back to an existence check and a rename: the window between the two is tiny,
            # and for content-addressed objects a lost race rewrites identical bytes.
            if dest.exists():
                return False
            os.replace(tmp, dest)
        fsync_dir(dest.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
