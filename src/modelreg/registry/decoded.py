"""Objects read, verified and decoded once per process, kept in memory.

Objects never change, so what one process has read, verified against its digest and decoded
can be served again from memory: a register searches every index leaf for a duplicate, a
history walk reads each commit once, and a change describes its result from what it wrote.
The cache is keyed by object id *and* decoder, because one object may be wanted in more than
one form (a leaf as verified bytes to search, and decoded). It also keeps the model states
read from refs (keyed by head commit and state digest), so a loop of changes does not decode
again the state its last change wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from modelreg.registry.state import ModelState, decode_state
from modelreg.storage.backend import Objects

__all__ = ["CACHE_LIMIT", "DecodedObjects", "verified_bytes"]

CACHE_LIMIT = 4096
T = TypeVar("T")
Decoder = Callable[[bytes, str], T]


def verified_bytes(data: bytes, where: str) -> bytes:
    """The "decoder" under which the cache keeps an object's verified raw bytes."""
    return data


class DecodedObjects:
    """The decoded forms of objects of one store that this process has read or written."""

    def __init__(self, objects: Objects) -> None:
        self._objects = objects
        self._cache: dict[tuple[str, Any], Any] = {}

    def _keep(self, key: tuple[str, Any], value: Any) -> None:
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = value

    def get(self, oid: str, decode: Decoder[T]) -> T:
        """Return object ``oid`` decoded by ``decode``, reading and verifying it once.

        Raises:
            ObjectMissing: The object is not stored.
            IntegrityError: Its bytes do not match its id, or ``decode`` refuses them.
        """
        key = (oid, decode)
        if key not in self._cache:
            self._keep(key, decode(self._objects.get_bytes(oid), self._objects.where(oid)))
        return self._cache[key]  # type: ignore[no-any-return]

    def remember(self, oid: str, decode: Decoder[T], data: bytes,
                 decoded: T | None = None) -> T:
        """Keep the decoded form of an object this process has just stored.

        Later loads of ``oid`` are served from memory, as if it had been read back.

        Args:
            oid: The object's id; the object must already be stored, with ``data`` as its
                content.
            decode: The decoder it is loaded with.
            data: Its bytes.
            decoded: ``decode(data)`` if the caller holds it already (a bucket it encoded);
                it must equal what ``decode`` returns, key order included.

        Returns:
            The decoded form.
        """
        key = (oid, decode)
        if key not in self._cache:
            self._keep(key, decode(data, self._objects.where(oid)) if decoded is None
                       else decoded)
        return self._cache[key]  # type: ignore[no-any-return]

    def may_hold(self, oid: str, needle: bytes, decode: Decoder[Any]) -> bool:
        """Tell whether object ``oid`` may contain ``needle`` (bytes as it stores them).

        Its verified bytes are searched (read and verified once per process and kept, so a
        loop of registers searches memory), and it is decoded only if they contain
        ``needle``. An object held decoded but not as bytes may: the caller looks through it.
        """
        if (oid, verified_bytes) not in self._cache and (oid, decode) in self._cache:
            return True
        data = self.get(oid, verified_bytes)
        if needle not in data:
            return False
        self.remember(oid, decode, data)
        return True

    def state(self, head: str, digest: str, data: bytes, where: str) -> ModelState:
        """Return a ref's state ``data``, decoded once per process.

        ``digest`` is the sha256 of ``data``, ``head`` the ref's head commit. A state is not
        an object, but its digest is a content address all the same (the head commit
        records it), and what a ``null`` manifest id means depends on the head: the two
        together name one decoded state.

        Raises:
            IntegrityError: The bytes are not a state.
        """
        key = (f"{head}:{digest}", decode_state)
        if key not in self._cache:
            self._keep(key, decode_state(data, where, head))
        return self._cache[key]  # type: ignore[no-any-return]

    def remember_state(self, head: str, digest: str, state: ModelState) -> None:
        """Keep the state a change has just put in a ref (head ``head``, digest ``digest``).

        ``state`` must equal what :meth:`state` would decode, the order of every mapping
        included (canonical JSON's: keys sorted as strings).
        """
        self._keep((f"{head}:{digest}", decode_state), state)

    def clear(self) -> None:
        """Forget everything (fsck does, so that it reads every byte from disk)."""
        self._cache.clear()

    def items(self) -> Iterator[tuple[tuple[str, Any], Any]]:
        """Every ``((oid, decoder), decoded)`` kept now."""
        return iter(list(self._cache.items()))

    def __contains__(self, key: object) -> bool:
        return key in self._cache

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(list(self._cache))

    def __len__(self) -> int:
        return len(self._cache)
