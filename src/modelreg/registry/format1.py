"""Format 1's commits and index buckets, kept so that ``modelreg migrate`` can read them.

Format 1 (docs/layout.md, "FORMAT 1") kept a model's whole state in every commit: the
latest version, stage and alias heads (each a version and its manifest object's id), and
the version index split into buckets of 256 entries, each an object. The ref held only the
head commit's id, and objects lived under ``objects/sha256/<2 hex>/<62 hex>``. This modelreg
does not open such a store (``UnsupportedFormat``); these decoders read its objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from modelreg.errors import IntegrityError
from modelreg.registry.state import (
    ENTRY_KEYS,
    Event,
    Head,
    VersionEntry,
    canonical,
    load_doc,
)

__all__ = [
    "BUCKET_SIZE",
    "FORMAT1",
    "FORMAT1_KEYS",
    "Format1Commit",
    "bucket_of",
    "decode_bucket",
    "decode_commit",
    "encode_bucket",
    "encode_commit",
]

FORMAT1 = 1
BUCKET_SIZE = 256
FORMAT1_KEYS = {name: name for name in ENTRY_KEYS}
"""Format 1 stored each index entry's fields under their own names."""


def bucket_of(version: int) -> int:
    """Return the index bucket holding ``version`` (versions 1–256 are bucket 0)."""
    return (version - 1) // BUCKET_SIZE


@dataclass(frozen=True)
class Format1Commit:
    """The state of one model after one event, chained to the state before it."""

    model: str
    parent: str | None
    event: Event
    latest: Head
    index: dict[int, str]
    stages: dict[str, Head] = field(default_factory=dict)
    aliases: dict[str, Head] = field(default_factory=dict)

    @property
    def seq(self) -> int:
        """The sequence number of this commit's event (1 for the first)."""
        return self.event.seq

    def evolve(self, **changes: Any) -> Format1Commit:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)


def encode_commit(c: Format1Commit) -> bytes:
    """Encode a commit canonically.

    Args:
        c: The commit.

    Returns:
        Canonical JSON bytes; their sha256 is the commit id.
    """
    def head(h: Head) -> dict[str, Any]:
        return {"version": h.version, "manifest": h.manifest}

    return canonical(
        {
            "type": "commit",
            "format": FORMAT1,
            "model": c.model,
            "parent": c.parent,
            "event": c.event.to_dict(),
            "latest": head(c.latest),
            "index": {str(k): v for k, v in c.index.items()},
            "stages": {k: head(v) for k, v in c.stages.items()},
            "aliases": {k: head(v) for k, v in c.aliases.items()},
        }
    )


def decode_commit(data: bytes, where: str) -> Format1Commit:
    """Decode a commit read from the store.

    Args:
        data: The object's bytes.
        where: Its path, for messages.

    Returns:
        The commit.

    Raises:
        IntegrityError: The bytes are not a commit.
    """
    doc = load_doc(data, "commit", where, FORMAT1)
    try:
        def head(d: dict[str, Any]) -> Head:
            return Head(int(d["version"]), str(d["manifest"]))

        return Format1Commit(
            model=str(doc["model"]),
            parent=doc["parent"],
            event=Event.from_dict(doc["event"]),
            latest=head(doc["latest"]),
            index={int(k): str(v) for k, v in doc["index"].items()},
            stages={str(k): head(v) for k, v in doc.get("stages", {}).items()},
            aliases={str(k): head(v) for k, v in doc.get("aliases", {}).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{where}: malformed commit ({exc})", where) from exc


def encode_bucket(entries: dict[int, VersionEntry]) -> bytes:
    """Encode one index bucket canonically.

    Args:
        entries: Version number to entry.

    Returns:
        Canonical JSON bytes.
    """
    return canonical(
        {
            "type": "index",
            "format": FORMAT1,
            "versions": {str(v): e.to_doc(FORMAT1_KEYS) for v, e in sorted(entries.items())},
        }
    )


def decode_bucket(data: bytes, where: str) -> dict[int, VersionEntry]:
    """Decode one index bucket.

    Args:
        data: The object's bytes.
        where: Its path, for messages.

    Returns:
        Version number to entry.

    Raises:
        IntegrityError: The bytes are not an index bucket.
    """
    doc = load_doc(data, "index", where, FORMAT1)
    try:
        return {
            int(v): VersionEntry.from_doc(e, keys=FORMAT1_KEYS)
            for v, e in doc["versions"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{where}: malformed index bucket ({exc})", where) from exc
