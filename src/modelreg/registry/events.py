"""The history as data: event records, a model's history and the cross-model event feed."""

from __future__ import annotations

import base64
import binascii
import json

from modelreg.errors import NotFound, UsageError
from modelreg.registry.core import Registry
from modelreg.registry.state import Commit
from modelreg.storage.hashing import format_digest
from modelreg.types import EventRecord

__all__ = ["decode_cursor", "encode_cursor", "event_record", "feed", "history"]

CURSOR_PREFIX = "c1."


def event_record(model: str, oid: str, commit: Commit) -> EventRecord:
    """Render one event as users and hooks see it.

    Args:
        model: The model's name.
        oid: The id of the commit that records the event.
        commit: That commit.

    Returns:
        The event, with ``id`` its commit's digest and ``prev`` the previous event's.
    """
    e = commit.event
    return EventRecord(
        model=model,
        seq=e.seq,
        id=format_digest(oid),
        prev=None if commit.parent is None else format_digest(commit.parent),
        time=e.time,
        actor=e.actor,
        action=e.action,
        version=e.version,
        from_stage=e.from_stage,
        to_stage=e.to_stage,
        reason=e.reason,
        details=dict(e.extra),
    )


def _walk(reg: Registry, oid: str | None, stop_seq: int = 0,
          limit: int | None = None) -> list[tuple[str, Commit]]:
    out: list[tuple[str, Commit]] = []
    while oid is not None and (limit is None or len(out) < limit):
        commit = reg.load_commit(oid)
        if commit.seq <= stop_seq:
            break
        out.append((oid, commit))
        oid = commit.parent
    return out


def history(reg: Registry, name: str, limit: int | None = None
            ) -> tuple[str, list[EventRecord]]:
    """Return a model's canonical name and its events, newest first.

    With ``limit``, only the newest ``limit`` events: the walk back along the chain stops
    there, so the cost does not grow with the model's history.
    """
    found = reg.current(name)
    if found is None:
        raise NotFound(f"model {name!r} not found")
    model = found.state.model
    return model, [event_record(model, oid, c) for oid, c in _walk(reg, found.oid, limit=limit)]


def encode_cursor(positions: dict[str, int]) -> str:
    """Encode per-model positions as an opaque cursor string."""
    raw = json.dumps(positions, sort_keys=True, separators=(",", ":")).encode()
    return CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, int]:
    """Decode a cursor made by :func:`encode_cursor`.

    Raises:
        UsageError: The cursor is not one modelreg made.
    """
    if not cursor.startswith(CURSOR_PREFIX):
        raise UsageError(f"bad cursor {cursor[:40]!r}: pass the cursor a previous run printed")
    body = cursor[len(CURSOR_PREFIX):]
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, RecursionError) as exc:
        # ValueError covers bad JSON, bad UTF-8 and over-long integers; RecursionError a
        # deeply nested document: all a cursor modelreg did not make.
        raise UsageError(f"bad cursor {cursor[:40]!r}: it does not decode") from exc
    # A cursor is an object of model keys to event counts: whole numbers, never a float
    # (1e999 is infinity), a boolean or a negative number.
    if not isinstance(data, dict) or not all(
            type(v) is int and v >= 0 for v in data.values()):
        raise UsageError(f"bad cursor {cursor[:40]!r}: it does not decode")
    return {str(k): v for k, v in data.items()}


def feed(reg: Registry, since: str | None = None) -> tuple[list[EventRecord], str]:
    """Return events across all models after ``since``, oldest first, and the new cursor.

    Reads one ref and one commit per unchanged model, and walks back only over new events.
    """
    seen = decode_cursor(since) if since else {}
    positions: dict[str, int] = {}
    events: list[EventRecord] = []
    for ref_name in reg.model_names():
        key = ref_name.split("/", 1)[1]
        body, token = reg.refs.read_versioned(ref_name)
        if body is None:
            continue
        current = reg.parse_body(ref_name, body, token)
        walked = _walk(reg, current.oid, seen.get(key, 0))
        positions[key] = current.commit.seq
        events.extend(event_record(c.model, o, c) for o, c in walked)
    events.sort(key=lambda e: (e.time, e.model, e.seq))
    return events, encode_cursor(positions)
