"""The object store: immutable blobs named by the sha256 of their raw bytes.

``objects/sha256/ab/cdef…`` holds the bytes whose sha256 is ``abcdef…``, so ``sha256sum``
verifies any object by hand. Objects are written once through the atomic write path, made
read-only (0444), and verified against their name every time they are read out.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from modelreg.errors import IntegrityError, ObjectMissing
from modelreg.storage.atomic import create_tmp, ensure_dir, fsync_dir, write_new
from modelreg.storage.hashing import CHUNK_SIZE, digest_bytes, is_object_id

__all__ = ["OBJECT_MODE", "ObjectStore"]

OBJECT_MODE = 0o444

Progress = Callable[[int], None]


class ObjectStore:
    """Content-addressed storage under one ``objects/sha256`` directory."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = root
        self.tmp_dir = tmp_dir

    def path(self, oid: str) -> Path:
        """Return where object ``oid`` lives (whether or not it exists).

        Args:
            oid: A 64-hex-digit object id.

        Returns:
            The fan-out path ``<root>/<oid[:2]>/<oid[2:]>``.

        Raises:
            IntegrityError: ``oid`` is not a well-formed id (a corrupt reference).
        """
        if not is_object_id(oid):
            raise IntegrityError(f"malformed object id {oid!r}")
        return self.root / oid[:2] / oid[2:]

    def contains(self, oid: str) -> bool:
        """Tell whether object ``oid`` is stored."""
        return self.path(oid).exists()

    def _touch(self, path: Path) -> None:
        # Re-using an existing object refreshes its mtime so that `gc`, which spares objects
        # younger than its grace period, cannot delete it before the ref naming it lands.
        with contextlib.suppress(OSError):
            os.utime(path)

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its id; a no-op (but for the mtime) if present.

        Args:
            data: The object's content.

        Returns:
            The object id.
        """
        oid = digest_bytes(data)
        path = self.path(oid)
        if path.exists():
            self._touch(path)
            return oid
        write_new(path, data, self.tmp_dir, mode=OBJECT_MODE)
        return oid

    def put_file(self, source: Path, progress: Progress | None = None) -> tuple[str, int]:
        """Copy a file into the store, hashing while copying, in constant memory.

        Args:
            source: The file to store.
            progress: Called with the byte count of each chunk copied.

        Returns:
            The object id and the size in bytes.
        """
        tmp, fd = create_tmp(self.tmp_dir, "blob")
        h = hashlib.sha256()
        size = 0
        try:
            with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
                buf = bytearray(CHUNK_SIZE)
                view = memoryview(buf)
                while True:
                    n = src.readinto(view)
                    if not n:
                        break
                    chunk = view[:n]
                    h.update(chunk)
                    dst.write(chunk)
                    size += n
                    if progress is not None:
                        progress(n)
                dst.flush()
                os.fsync(dst.fileno())
            oid = h.hexdigest()
            path = self.path(oid)
            if path.exists():
                self._touch(path)
            else:
                os.chmod(tmp, OBJECT_MODE)
                ensure_dir(path.parent)
                os.replace(tmp, path)
                fsync_dir(path.parent)
            return oid, size
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def get_bytes(self, oid: str) -> bytes:
        """Read a whole (small) object, verifying it against its id.

        Args:
            oid: The object id.

        Returns:
            The object's bytes.

        Raises:
            ObjectMissing: The object is missing (a referenced object: the store is damaged).
            IntegrityError: The bytes do not hash to ``oid``.
        """
        path = self.path(oid)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise ObjectMissing(f"object {oid} is missing ({path})", str(path)) from exc
        if digest_bytes(data) != oid:
            raise IntegrityError(
                f"object {oid} is corrupt: its content does not match its digest ({path})",
                str(path),
            )
        return data

    def copy_to(self, oid: str, dst: BinaryIO, progress: Progress | None = None) -> int:
        """Stream object ``oid`` into ``dst``, verifying the digest at the end.

        The caller must discard what was written if this raises.

        Args:
            oid: The object id.
            dst: A writable binary stream.
            progress: Called with the byte count of each chunk copied.

        Returns:
            The number of bytes copied.

        Raises:
            ObjectMissing: The object is missing.
            IntegrityError: The bytes do not hash to ``oid``.
        """
        path = self.path(oid)
        h = hashlib.sha256()
        size = 0
        try:
            src = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError as exc:
            raise ObjectMissing(f"object {oid} is missing ({path})", str(path)) from exc
        with src:
            buf = bytearray(CHUNK_SIZE)
            view = memoryview(buf)
            while True:
                n = src.readinto(view)
                if not n:
                    break
                h.update(view[:n])
                dst.write(view[:n])
                size += n
                if progress is not None:
                    progress(n)
        if h.hexdigest() != oid:
            raise IntegrityError(
                f"object {oid} is corrupt: its content does not match its digest ({path})",
                str(path),
            )
        return size

    def verify(self, oid: str) -> bool:
        """Re-hash object ``oid`` and tell whether it matches its name.

        Args:
            oid: The object id.

        Returns:
            True if present and intact.
        """
        path = self.path(oid)
        try:
            with open(path, "rb") as fh:
                h = hashlib.sha256()
                while chunk := fh.read(CHUNK_SIZE):
                    h.update(chunk)
        except FileNotFoundError:
            return False
        return h.hexdigest() == oid

    def iter_objects(self) -> Iterator[tuple[str, Path]]:
        """Yield ``(name, path)`` of every file under the object directory.

        ``name`` is the fan-out directory plus the file name, which is the object id for a
        well-formed entry; callers check it with ``is_object_id``.
        """
        if not self.root.is_dir():
            return
        for fan in sorted(self.root.iterdir()):
            if not fan.is_dir():
                yield fan.name, fan
                continue
            for entry in sorted(fan.iterdir()):
                yield fan.name + entry.name, entry

    def remove(self, oid: str) -> None:
        """Delete object ``oid`` (used only by ``gc`` for unreachable objects)."""
        path = self.path(oid)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
