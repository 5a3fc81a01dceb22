"""A model's state and history: commits (one per event) and version-index buckets.

Each model has one ref, ``refs/models/<key>``, naming its head *commit*. A commit records one
event (who did what, when, why), the id of its parent commit (so the history is a hash chain),
and the whole current state: the latest version, the newest version in each stage, the
aliases, and the version index. The index is split into buckets of 256 versions, each an
object, so registering a version rewrites one bucket, and resolving ``NAME@latest`` or a
stage reads the ref and the commit only. Moving the ref commits state and history together.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from modelreg.errors import IntegrityError, NotFound, UsageError
from modelreg.types import Approval, CheckRecord

__all__ = [
    "BUCKET_SIZE",
    "STATE_FORMAT",
    "Commit",
    "Event",
    "Head",
    "VersionEntry",
    "bucket_of",
    "decode_bucket",
    "decode_commit",
    "encode_bucket",
    "encode_commit",
    "labelled",
    "no_such_version",
    "now_iso",
]

STATE_FORMAT = 1
BUCKET_SIZE = 256


def bucket_of(version: int) -> int:
    """Return the index bucket holding ``version`` (versions 1–256 are bucket 0)."""
    return (version - 1) // BUCKET_SIZE


def now_iso() -> str:
    """Return the current UTC time in ISO 8601 with microseconds (the time of an event)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def no_such_version(model: str, version: int, latest: int) -> NotFound:
    """The error for a version number the model does not have (raise it)."""
    return NotFound(f"{model} has no version {version} (latest is {latest})")


def labelled(model: str, stages: dict[str, Head], aliases: dict[str, Head], label: str,
             configured: Callable[[], Collection[str]] | None = None) -> Head:
    """Return the version in stage ``label``, else the one alias ``label`` names.

    Stages come first, configured ones included even when empty: an alias made before a
    stage of its name was added to ``config.toml`` does not answer for the stage.

    Args:
        model: The model's name, for messages.
        stages: The stage heads.
        aliases: The alias heads.
        label: The stage or alias.
        configured: Gives the configured stage names; asked only when ``label`` is an
            alias and no stage of that name holds a version.

    Raises:
        NotFound: No stage holds a version of that name and no alias has it.
    """
    if label in stages:
        return stages[label]
    if label in aliases:
        names = {s.lower(): s for s in (configured() if configured is not None else ())}
        stage = names.get(label.lower())
        if stage is None:
            return aliases[label]
        raise NotFound(f"no version of {model} is in stage {stage}; its alias {label!r}, made "
                       "before the stage was configured, does not answer for the stage (remove "
                       f"it with `modelreg alias rm {model} {label}` and set another name)")
    raise NotFound(f"{model} has no version in stage or alias {label!r}")


def _canonical(doc: dict[str, Any]) -> bytes:
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Command-line text with bytes that are not UTF-8 reaches Python as surrogate
        # escapes; the history is UTF-8, so such a reason, actor or name is refused before
        # anything is committed.
        raise UsageError("a reason, actor, name or other text given holds bytes that are not "
                         "valid UTF-8; the history records UTF-8 text only") from exc


@dataclass(frozen=True)
class Head:
    """A pointer from the commit straight to one version's manifest."""

    version: int
    manifest: str


@dataclass(frozen=True)
class Event:
    """One recorded change: the unit of history."""

    seq: int
    time: str
    actor: str
    action: str
    version: int | None = None
    from_stage: str | None = None
    to_stage: str | None = None
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the event as stored (``from``/``to`` keys)."""
        doc: dict[str, Any] = {
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "version": self.version,
            "from": self.from_stage,
            "to": self.to_stage,
            "reason": self.reason,
        }
        if self.extra:
            doc["extra"] = self.extra
        return doc

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Event:
        """Build an event from its stored form."""
        return cls(
            seq=int(doc["seq"]),
            time=str(doc["time"]),
            actor=str(doc["actor"]),
            action=str(doc["action"]),
            version=None if doc.get("version") is None else int(doc["version"]),
            from_stage=doc.get("from"),
            to_stage=doc.get("to"),
            reason=doc.get("reason"),
            extra=dict(doc.get("extra", {})),
        )


@dataclass(frozen=True)
class VersionEntry:
    """A version's line in its index bucket: enough for ``versions`` without manifests."""

    manifest: str
    fingerprint: str
    created_at: str
    created_by: str
    stage: str
    digest: str
    size: int
    approvals: tuple[Approval, ...] = ()
    checks: dict[str, CheckRecord] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def evolve(self, **changes: Any) -> VersionEntry:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)


@dataclass(frozen=True)
class Commit:
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

    def evolve(self, **changes: Any) -> Commit:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)


def encode_commit(c: Commit) -> bytes:
    """Encode a commit canonically.

    Args:
        c: The commit.

    Returns:
        Canonical JSON bytes; their sha256 is the commit id.
    """
    def head(h: Head) -> dict[str, Any]:
        return {"version": h.version, "manifest": h.manifest}

    return _canonical(
        {
            "type": "commit",
            "format": STATE_FORMAT,
            "model": c.model,
            "parent": c.parent,
            "event": c.event.to_dict(),
            "latest": head(c.latest),
            "index": {str(k): v for k, v in c.index.items()},
            "stages": {k: head(v) for k, v in c.stages.items()},
            "aliases": {k: head(v) for k, v in c.aliases.items()},
        }
    )


def _load(data: bytes, kind: str, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, too deep, huge ints
        raise IntegrityError(f"{where}: not a readable {kind} ({exc})", where) from exc
    if not isinstance(doc, dict) or doc.get("type") != kind:
        raise IntegrityError(f"{where}: expected a {kind} object", where)
    if doc.get("format") != STATE_FORMAT:
        raise IntegrityError(f"{where}: {kind} format {doc.get('format')!r} is unknown", where)
    return doc


def decode_commit(data: bytes, where: str) -> Commit:
    """Decode a commit read from the store.

    Args:
        data: The object's bytes.
        where: Its path, for messages.

    Returns:
        The commit.

    Raises:
        IntegrityError: The bytes are not a commit.
    """
    doc = _load(data, "commit", where)
    try:
        def head(d: dict[str, Any]) -> Head:
            return Head(int(d["version"]), str(d["manifest"]))

        return Commit(
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
    def row(e: VersionEntry) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "manifest": e.manifest,
            "fingerprint": e.fingerprint,
            "created_at": e.created_at,
            "created_by": e.created_by,
            "stage": e.stage,
            "digest": e.digest,
            "size": e.size,
        }
        if e.approvals:
            doc["approvals"] = [a.to_dict() for a in e.approvals]
        if e.checks:
            doc["checks"] = {k: c.to_dict() for k, c in e.checks.items()}
        if e.meta:
            doc["meta"] = e.meta
        return doc

    return _canonical(
        {
            "type": "index",
            "format": STATE_FORMAT,
            "versions": {str(v): row(e) for v, e in sorted(entries.items())},
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
    doc = _load(data, "index", where)
    try:
        return {
            int(v): VersionEntry(
                manifest=str(e["manifest"]),
                fingerprint=str(e["fingerprint"]),
                created_at=str(e["created_at"]),
                created_by=str(e["created_by"]),
                stage=str(e["stage"]),
                digest=str(e["digest"]),
                size=int(e["size"]),
                approvals=tuple(Approval.from_dict(a) for a in e.get("approvals", [])),
                checks={str(k): CheckRecord.from_dict(c)
                        for k, c in e.get("checks", {}).items()},
                meta=dict(e.get("meta", {})),
            )
            for v, e in doc["versions"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{where}: malformed index bucket ({exc})", where) from exc
