"""The memory backend: objects and refs in a process's memory (tests, scratch work).

It keeps the whole contract of :mod:`modelreg.storage.backend`: objects are verified on
every read (their bytes are kept as given, so a test can damage one and see it caught), and
refs change only by compare-and-swap on a token that changes with every write, under one
lock, so threads racing for a ref behave as processes racing on a real store do.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from modelreg.errors import IntegrityError, ObjectMissing
from modelreg.storage.backend import MAX_REF_BODY, Token
from modelreg.storage.hashing import Progress, digest_bytes, is_object_id

__all__ = ["MemoryObjects", "MemoryRefs"]

_CHUNK = 1 << 20


class MemoryObjects:
    """Content-addressed objects in a dict."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        """The stored bytes by id (tests may damage an entry to see it caught)."""
        self.times: dict[str, float] = {}
        """When each object was last stored or re-used (tests may age one)."""
        self._lock = threading.Lock()

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` unless present; return its id."""
        return self._store(data)[0]

    def _store(self, data: bytes) -> tuple[str, bool]:
        """Store ``data`` unless present (dating it either way); its id, and if it was new."""
        oid = digest_bytes(data)
        with self._lock:
            created = oid not in self.data
            self.data.setdefault(oid, bytes(data))
            self.times[oid] = time.time()
        return oid, created

    def sync(self) -> None:
        """Nothing to make durable in memory."""

    def stat(self, oid: str) -> tuple[float, int] | None:
        """Return when the object was last stored or re-used and its size (None: absent)."""
        with self._lock:
            data = self.data.get(oid)
            return None if data is None else (self.times.get(oid, 0.0), len(data))

    def put_file(self, source: Path, progress: Progress | None = None) -> tuple[str, int]:
        """Read a file in chunks (reporting progress) and store it; return its id and size."""
        oid, size, _ = self.store_file(source, progress)
        return oid, size

    def store_file(self, source: Path, progress: Progress | None = None
                   ) -> tuple[str, int, bool]:
        """As :meth:`put_file`, and tell whether the object was stored anew."""
        chunks = []
        with open(source, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                chunks.append(chunk)
                if progress is not None:
                    progress(len(chunk))
        data = b"".join(chunks)
        oid, created = self._store(data)
        return oid, len(data), created

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
            self.times.pop(oid, None)

    def remove_unless_reused(self, oid: str, since: float) -> bool:
        """Delete an object unless it was stored (or re-used) after ``since``."""
        with self._lock:
            if self.times.get(oid, 0.0) > since:
                return False
            self.data.pop(oid, None)
            self.times.pop(oid, None)
            return True

    @staticmethod
    def where(oid: str) -> str:
        """How messages name an object of this store."""
        return f"memory:objects/{oid}"


class MemoryRefs:
    """Refs in a dict, each with a token that changes on every write."""

    queues = False
    """No lock: memory writers race, and the compare-and-swap decides."""

    def __init__(self) -> None:
        self._refs: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        self._counter = itertools.count(1)

    def read(self, name: str) -> bytes | None:
        """Return the body ref ``name`` holds, or None."""
        return self.read_versioned(name)[0]

    def read_versioned(self, name: str) -> tuple[bytes | None, Token]:
        """Return the ref's body and token (both None if it does not exist)."""
        with self._lock:
            found = self._refs.get(name)
        return (None, None) if found is None else found

    def compare_and_swap(self, name: str, expected: Token, body: bytes) -> bool:
        """Give ``name`` the body ``body`` if its token is still ``expected`` (None: absent)."""
        if not isinstance(body, bytes) or len(body) > MAX_REF_BODY:
            raise ValueError(f"a ref body is bytes, at most {MAX_REF_BODY} of them")
        with self._lock:
            found = self._refs.get(name)
            if (None if found is None else found[1]) != expected:
                return False
            self._refs[name] = (body, f"m{next(self._counter)}")
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

    def locked(self, name: str) -> contextlib.AbstractContextManager[None]:
        """No lock: memory writers race, and the compare-and-swap decides."""
        return contextlib.nullcontext()

    @staticmethod
    def where(name: str) -> str:
        """How messages name a ref of this store."""
        return f"memory:refs/{name}"
