"""The backend protocol: what the registry needs from the place its bytes live.

Two small interfaces, in the manner of dulwich's object store and refs container:

- :class:`Objects`, content-addressed and write-once: put an object if absent (bytes, or a
  file streamed in constant memory, the digest computed as it lands), get it back verified,
  test and list ids, ``sync`` (make every object put so far durable, before a ref names
  them), delete (``gc`` only).
- :class:`Refs`, small named documents (an opaque byte body of at most
  :data:`MAX_REF_BODY` bytes), changed only by compare-and-swap on a *version token*:
  create if absent, replace if the token still matches, delete if it still matches. A lost
  race returns False and changes nothing; the caller re-reads and re-plans. Callers never
  put back a body a ref held before (the registry's bodies begin with a new commit id), so
  a token may name the content, as an S3 ETag does.

The contract is written so that object storage with conditional writes can implement it
with no lock objects: ``If-None-Match: *`` creates, ``If-Match: <ETag>`` replaces, and the
ETag is the token. The file-system backend (``ObjectStore``, ``RefStore``: a local disk or a
shared mount) takes a short ``O_EXCL`` lock inside each swap, and its token is the sha256
of the body. It also offers :meth:`Refs.locked`, a lock around a whole read-plan-swap that
turns races between writers of one store into waits (no-op on other backends). The memory
backend (:mod:`modelreg.storage.memory`) serves tests and scratch work. One contract suite,
``tests/storage/test_backend_contract.py``, runs against every backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Protocol

from modelreg.storage.hashing import Progress

__all__ = ["MAX_REF_BODY", "Objects", "Refs", "Token"]

Token = str | None
"""A ref's version as its backend tells it; None for a ref that does not exist."""

MAX_REF_BODY = 1 << 20
"""The largest body a ref may hold, in bytes."""


class Objects(Protocol):
    """Content-addressed, write-once objects named by the sha256 of their bytes."""

    def put_bytes(self, data: bytes) -> str:
        """Store ``data`` unless present; return its id (the sha256 hex of ``data``)."""

    def put_file(self, source: Path, progress: Progress | None = None) -> tuple[str, int]:
        """Stream a file in, hashing as it lands; return its id and size."""

    def store_file(self, source: Path, progress: Progress | None = None
                   ) -> tuple[str, int, bool]:
        """As :meth:`put_file`, and tell whether this call stored the object anew.

        The third value is True only if the object was absent and this call created it:
        no version committed before the call can name it (``register`` then skips looking
        for an identical earlier version among those).
        """

    def sync(self) -> None:
        """Make every object put so far durable (before a ref that names them moves)."""

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

    def stat(self, oid: str) -> tuple[float, int] | None:
        """Return when the object was last stored or re-used (epoch seconds) and its size.

        ``gc`` spares objects younger than its grace period. None if it is not stored.
        """

    def ids(self) -> Iterator[str]:
        """Yield the id of every stored object."""

    def remove(self, oid: str) -> None:
        """Delete an object (``gc`` only, for objects nothing reaches); no error if absent."""

    def remove_unless_reused(self, oid: str, since: float) -> bool:
        """Delete an object for ``gc``, unless a writer stored it again after ``since``.

        ``gc`` looked at the object's date before (:meth:`stat`); a writer may have stored it
        again (re-used it) between that look and this call, and may go on to name it.

        Returns:
            True if it was deleted; False if it was stored again after ``since``. The object
            may be gone then all the same (a backend that can only tell after deleting, as
            S3 does): the caller stores it again.
        """

    def where(self, oid: str) -> str:
        """How messages name the object (a path, a URL)."""


class Refs(Protocol):
    """Named byte documents, changed only by compare-and-swap."""

    queues: bool
    """True if :meth:`locked` makes writers wait for each other (the file system); a
    change then reads the ref it will swap under the lock, never before it."""

    def read(self, name: str) -> bytes | None:
        """Return the body ref ``name`` holds, or None if it does not exist."""

    def read_versioned(self, name: str) -> tuple[bytes | None, Token]:
        """Return the ref's body and its version token (both None if it does not exist)."""

    def compare_and_swap(self, name: str, expected: Token, body: bytes) -> bool:
        """Give ref ``name`` the body ``body`` if its token is still ``expected``.

        ``expected=None`` creates the ref only if it does not exist. Of several writers
        holding the same token exactly one wins. ``body`` is at most :data:`MAX_REF_BODY`
        bytes and never one the ref held before.

        Returns:
            False, changing nothing, if the ref moved (or exists, or was deleted) meanwhile.
        """

    def delete_if(self, name: str, expected: Token) -> bool:
        """Delete ref ``name`` if its token is still ``expected``; False if it moved."""

    def names(self, prefix: str) -> Iterator[str]:
        """Yield the names of the refs directly under ``prefix`` (such as ``models``)."""

    def locked(self, name: str) -> AbstractContextManager[None]:
        """Hold ref ``name`` against other writers of this backend for a whole change.

        A backend whose writers queue cheaply (the file system's lock file) makes racing
        writers wait instead of re-planning; one with no locks (memory, object storage)
        returns a context that does nothing. Either way the change still ends in
        :meth:`compare_and_swap`, which alone decides.
        """

    def where(self, name: str) -> str:
        """How messages name the ref (a path, a URL)."""
