"""The backend protocol: what the registry needs from the place its bytes live.

Two small interfaces, in the manner of dulwich's object store and refs container:

- :class:`Objects`, content-addressed and write-once: put an object if absent (bytes, or a
  file streamed in constant memory, the digest computed as it lands), get it back verified,
  test and list ids, delete (``gc`` only).
- :class:`Refs`, small named pointers to object ids, changed only by compare-and-swap on a
  *version token*: create if absent, replace if the token still matches, delete if it still
  matches. A lost race returns False and changes nothing; the caller re-reads and re-plans.

The contract is written so that object storage with conditional writes can implement it
with no lock objects: ``If-None-Match: *`` creates, ``If-Match: <ETag>`` replaces, and the
ETag is the token. The file-system backend (``ObjectStore``, ``RefStore``: a local disk or a
shared mount) takes a short ``O_EXCL`` lock around each swap, and its token is the ref's
value (a head commit id never comes back once replaced: each commit names its parent). The
memory backend (:mod:`modelreg.storage.memory`) serves tests and scratch work. One contract
suite, ``tests/storage/test_backend_contract.py``, runs against every backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from modelreg.storage.hashing import Progress

__all__ = ["Objects", "Refs", "Token"]

Token = str | None
"""A ref's version as its backend tells it; None for a ref that does not exist."""


class Objects(Protocol):
    """Content-addressed, write-once objects named by the sha256 of their bytes."""

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` unless present; return its id (the sha256 hex of ``data``)."""

    def put_file(self, source: Path, progress: Progress | None = None) -> tuple[str, int]:
        """Stream a file in, hashing as it lands; return its id and size."""

    def get_bytes(self, oid: str) -> bytes:
        """Return a (small) object's bytes, verified.

        Raises:
            ObjectMissing: No such object.
            IntegrityError: Its bytes do not hash to ``oid``.
        """

    def copy_to(self, oid: str, dst: BinaryIO, progress: Progress | None = None) -> int:
        """Stream an object out, verifying its digest at the end; return its size.

        Raises:
            ObjectMissing: No such object.
            IntegrityError: Its bytes do not hash to ``oid`` (discard what was written).
        """

    def contains(self, oid: str) -> bool:
        """Tell whether the object is stored."""

    def verify(self, oid: str) -> bool:
        """Re-hash the object; False if it is missing or corrupt."""

    def ids(self) -> Iterator[str]:
        """Yield the id of every stored object."""

    def remove(self, oid: str) -> None:
        """Delete an object (``gc`` only, for objects nothing reaches); no error if absent."""


class Refs(Protocol):
    """Named pointers to object ids, changed only by compare-and-swap."""

    def read(self, name: str) -> str | None:
        """Return the object id ref ``name`` holds, or None if it does not exist."""

    def read_versioned(self, name: str) -> tuple[str | None, Token]:
        """Return the ref's value and its version token (both None if it does not exist)."""

    def compare_and_swap(self, name: str, expected: Token, new: str) -> bool:
        """Point ref ``name`` at ``new`` if its token is still ``expected``.

        ``expected=None`` creates the ref only if it does not exist. Of several writers
        holding the same token, exactly one wins.

        Returns:
            False, changing nothing, if the ref moved (or exists, or was deleted) meanwhile.
        """

    def delete_if(self, name: str, expected: Token) -> bool:
        """Delete ref ``name`` if its token is still ``expected``; False if it moved."""

    def names(self, prefix: str) -> Iterator[str]:
        """Yield the names of the refs directly under ``prefix`` (such as ``models``)."""
