"""The memory backend: objects and refs in a process's memory (tests, scratch work).

It keeps the whole contract of :mod:`modelreg.storage.backend`: objects are verified on
every read (their bytes are kept as given, so a test can damage one and see it caught), and
refs change only by compare-and-swap on a token that changes with every write, under one
lock, so threads racing for a ref behave as processes racing on a real store do.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from modelreg.errors import IntegrityError, ObjectMissing
from modelreg.storage.backend import Token
from modelreg.storage.hashing import Progress, digest_bytes, is_object_id

__all__ = ["MemoryObjects", "MemoryRefs"]

_CHUNK = 1 << 20


class MemoryObjects:
    """Content-addressed objects in a dict."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        """The stored bytes by id (tests may damage an entry to see it caught)."""
        self._lock = threading.Lock()

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` unless present; return its id."""
        oid = digest_bytes(data)
        with self._lock:
            self.data.setdefault(oid, bytes(data))
        return oid

    def put_file(self, source: Path, progress: Progress | None = None) -> tuple[str, int]:
        """Read a file in chunks (reporting progress) and store it; return its id and size."""
        chunks = []
        with open(source, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                chunks.append(chunk)
                if progress is not None:
                    progress(len(chunk))
        data = b"".join(chunks)
        return self.put_bytes(data), len(data)

    def get_bytes(self, oid: str) -> bytes:
        """Return an object's bytes, verified.

        Raises:
            ObjectMissing: No such object.
            IntegrityError: Its bytes do not hash to ``oid``.
        """
        if not is_object_id(oid):
            raise IntegrityError(f"malformed object id {oid!r}")
        with self._lock:
            data = self.data.get(oid)
        if data is None:
            raise ObjectMissing(f"object {oid} is missing (memory store)", self.where(oid))
        if digest_bytes(data) != oid:
            raise IntegrityError(f"object {oid} is corrupt: its content does not match its "
                                 "digest (memory store)", self.where(oid))
        return data

    def copy_to(self, oid: str, dst: BinaryIO, progress: Progress | None = None) -> int:
        """Write a verified object to ``dst``; return its size."""
        data = self.get_bytes(oid)
        for start in range(0, len(data), _CHUNK):
            dst.write(data[start:start + _CHUNK])
            if progress is not None:
                progress(min(_CHUNK, len(data) - start))
        return len(data)

    def contains(self, oid: str) -> bool:
        """Tell whether the object is stored."""
        with self._lock:
            return oid in self.data

    def verify(self, oid: str) -> bool:
        """Re-hash the object; False if missing or corrupt."""
        with self._lock:
            data = self.data.get(oid)
        return data is not None and digest_bytes(data) == oid

    def ids(self) -> Iterator[str]:
        """Yield every stored id, sorted."""
        with self._lock:
            return iter(sorted(self.data))

    def remove(self, oid: str) -> None:
        """Delete an object; no error if absent."""
        with self._lock:
            self.data.pop(oid, None)

    @staticmethod
    def where(oid: str) -> str:
        """How messages name an object of this store."""
        return f"memory:objects/{oid}"


class MemoryRefs:
    """Refs in a dict, each with a token that changes on every write."""

    def __init__(self) -> None:
        self._refs: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count(1)

    def read(self, name: str) -> str | None:
        """Return the object id ref ``name`` holds, or None."""
        return self.read_versioned(name)[0]

    def read_versioned(self, name: str) -> tuple[str | None, Token]:
        """Return the ref's value and token (both None if it does not exist)."""
        with self._lock:
            found = self._refs.get(name)
        return (None, None) if found is None else found

    def compare_and_swap(self, name: str, expected: Token, new: str) -> bool:
        """Point ``name`` at ``new`` if its token is still ``expected`` (None: absent)."""
        if not is_object_id(new):
            raise ValueError(f"not an object id: {new!r}")
        with self._lock:
            found = self._refs.get(name)
            if (None if found is None else found[1]) != expected:
                return False
            self._refs[name] = (new, f"m{next(self._counter)}")
            return True

    def delete_if(self, name: str, expected: Token) -> bool:
        """Delete ``name`` if its token is still ``expected``; False if it moved."""
        with self._lock:
            found = self._refs.get(name)
            if found is None or found[1] != expected:
                return False
            del self._refs[name]
            return True

    def names(self, prefix: str) -> Iterator[str]:
        """Yield the names of refs directly under ``prefix``, sorted."""
        start = prefix.rstrip("/") + "/"
        with self._lock:
            found = sorted(n for n in self._refs
                           if n.startswith(start) and "/" not in n[len(start):])
        return iter(found)
