"""The object store: immutable blobs named by the sha256 of their raw bytes.

``objects/abcdef…`` (one flat directory, no fan-out) holds the bytes whose sha256 is
``abcdef…``, so ``sha256sum`` verifies any object by hand. Objects are written once through
the atomic write path (``storage.atomic.staged``: create-if-absent, read-only 0444), and
verified against their name every time they are read out. Each object file is fsynced as it
is written, but its directory entry is not: :meth:`ObjectStore.sync` fsyncs the one objects
directory once, making every object a change wrote durable before its ref moves (one fsync
per change, not one per object). Copying large files in and streaming objects out is the
work of ``storage.copying``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from modelreg.errors import IntegrityError, ObjectMissing
from modelreg.storage.atomic import fsync_dir, staged, write_new
from modelreg.storage.copying import copy_into_file, copy_stream
from modelreg.storage.hashing import Progress, digest_bytes, digest_file, is_object_id

__all__ = ["OBJECT_MODE", "ObjectStore"]

OBJECT_MODE = 0o444


class ObjectStore:
    """Content-addressed storage in one flat ``objects/`` directory."""

    def __init__(self, root: Path, tmp_dir: Path) -> None:
        self.root = root
        self.tmp_dir = tmp_dir

    def path(self, oid: str) -> Path:
        """Return where object ``oid`` lives (whether or not it exists).

        Args:
            oid: A 64-hex-digit object id.

        Returns:
            The path ``<root>/<oid>``.

        Raises:
            IntegrityError: ``oid`` is not a well-formed id (a corrupt reference).
        """
        if not is_object_id(oid):
            raise IntegrityError(f"malformed object id {oid!r}")
        return self.root / oid

    def where(self, oid: str) -> str:
        """How messages name object ``oid``: its path (as a string, built cheaply).

        Raises:
            IntegrityError: ``oid`` is not a well-formed id.
        """
        if not is_object_id(oid):
            raise IntegrityError(f"malformed object id {oid!r}")
        return f"{self.root}{os.sep}{oid}"

    def contains(self, oid: str) -> bool:
        """Tell whether object ``oid`` is stored."""
        return self.path(oid).exists()

    def _touch(self, path: Path) -> bool:
        """Refresh an existing object's mtime; False if it is gone (``gc`` removed it).

        Re-using an existing object refreshes its mtime so that ``gc``, which spares objects
        younger than its start minus the grace period, cannot delete it before the ref naming
        it lands. An object the file system will not let us touch (owned by another user of a
        shared store) counts as present; the register path heals it after its commit.
        """
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        except OSError:
            return True
        return True

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` and return its id; a no-op (but for the mtime) if present.

        Args:
            data: The object's content.

        Returns:
            The object id.
        """
        oid = digest_bytes(data)
        path = self.path(oid)
        # An object seen present may be removed by a concurrent gc before its mtime is
        # refreshed: then it is written again, so it is there when the caller's ref lands.
        while not (path.exists() and self._touch(path)):
            if write_new(path, data, self.tmp_dir, mode=OBJECT_MODE, sync_dir=False):
                break
        return oid

    def put_file(self, source: Path, progress: Progress | None = None) -> tuple[str, int]:
        """Store a file (see :meth:`store_file`); return its id and size."""
        oid, size, _ = self.store_file(source, progress)
        return oid, size

    def store_file(self, source: Path, progress: Progress | None = None
                   ) -> tuple[str, int, bool]:
        """Copy a file into the store, hashing while copying, in constant memory.

        The id is the sha256 of the bytes that landed in the temporary object file, whatever
        happens to ``source`` meanwhile: a file that grows, shrinks or is rewritten during
        the copy is stored as the bytes that were read, under their own digest, and the size
        returned is the size stored. Files of ``KERNEL_COPY_MIN`` bytes and more are copied
        by the kernel and hashed by a second thread (see
        :func:`modelreg.storage.copying.copy_into_file`). The object is published
        create-if-absent; if it is already there, its mtime is refreshed instead.

        Args:
            source: The file to store.
            progress: Called with the byte count of each chunk copied; the counts add up to
                the size returned.

        Returns:
            The object id, the size in bytes, and whether this call created the object.
        """
        # The temporary file first: it is removed even if the source fails to open.
        created = False
        with staged(self.tmp_dir, "blob", mode=OBJECT_MODE) as tmp, open(source, "rb") as src:
            oid, size = copy_into_file(src, tmp.file, tmp.path, progress, sync=tmp.sync)
            path = self.path(oid)
            # As in put_bytes: publish unless a copy is there whose mtime could be refreshed.
            while not (path.exists() and self._touch(path)):
                if tmp.publish(path, replace=False, sync_dir=False):
                    created = True
                    break
        return oid, size, created

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
        path = self.where(oid)  # a walk reads thousands: no Path object for each
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError as exc:
            raise ObjectMissing(f"object {oid} is missing ({path})", path) from exc
        if digest_bytes(data) != oid:
            raise IntegrityError(
                f"object {oid} is corrupt: its content does not match its digest ({path})",
                path,
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
        try:
            src = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError as exc:
            raise ObjectMissing(f"object {oid} is missing ({path})", str(path)) from exc
        with src:
            digest, size = copy_stream(src, dst, progress)
        if digest != oid:
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
            digest, _ = digest_file(path)
        except FileNotFoundError:
            return False
        return digest == oid

    def sync(self) -> None:
        """Make every object put so far durable: one fsync of the objects directory.

        Each object file was fsynced as it was written; only its name in the directory was
        not. The registry calls this once before the ref that names the objects moves.
        """
        fsync_dir(self.root)

    def stat(self, oid: str) -> tuple[float, int] | None:
        """Return object ``oid``'s mtime (when it was last stored or re-used) and size.

        Returns:
            None if the object is not stored.
        """
        try:
            st = self.path(oid).stat()
        except FileNotFoundError:
            return None
        return st.st_mtime, st.st_size

    def iter_objects(self) -> Iterator[tuple[str, Path]]:
        """Yield ``(name, path)`` of every entry in the object directory.

        ``name`` is the entry's name, which is the object id for a well-formed entry;
        callers check it with ``is_object_id`` (a directory, such as a fan-out directory of
        format 1, is not an object).
        """
        if not self.root.is_dir():
            return
        for entry in sorted(self.root.iterdir()):
            yield entry.name, entry

    def scan(self) -> list[tuple[str, bool]]:
        """List the object directory in one pass.

        Returns:
            Each entry's name, sorted, and whether it is a regular file (told by the
            directory listing itself, with no ``stat`` per entry where the file system
            says).
        """
        try:
            with os.scandir(self.root) as it:
                found = [(e.name, e.is_file(follow_symlinks=False)) for e in it]
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(found)

    def ids(self) -> Iterator[str]:
        """Yield the id of every well-formed object file (fsck reports the rest)."""
        for name, regular in self.scan():
            if regular and is_object_id(name):
                yield name

    def remove(self, oid: str) -> None:
        """Delete object ``oid`` (used only by ``gc`` for unreachable objects)."""
        path = self.path(oid)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    def remove_unless_reused(self, oid: str, since: float) -> bool:
        """Delete object ``oid`` unless its mtime (refreshed on re-use) is after ``since``.

        ``gc`` on a directory store quarantines by rename instead (``registry.maintenance``);
        this is the protocol's form, for callers that hold only an :class:`Objects`.
        """
        path = self.path(oid)
        try:
            if path.stat().st_mtime > since:
                return False
        except FileNotFoundError:
            return True
        self.remove(oid)
        return True
