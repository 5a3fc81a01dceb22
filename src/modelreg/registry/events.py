"""The history as data: event records, the cross-model event feed, and hook delivery."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from typing import TYPE_CHECKING, Any

from modelreg.errors import ModelregError, NotFound, PolicyDenied, UsageError
from modelreg.registry.builder import StateBuilder
from modelreg.registry.policy import StoreConfig
from modelreg.registry.state import Commit
from modelreg.storage.hashing import format_digest

if TYPE_CHECKING:
    from modelreg.registry.core import Registry
    from modelreg.registry.hooks import HookResult

__all__ = ["decode_cursor", "encode_cursor", "event_record", "feed", "history", "run_hooks"]

CURSOR_PREFIX = "c1."


def event_record(model: str, oid: str, commit: Commit) -> dict[str, Any]:
    """Render one event as users and hooks see it.

    Args:
        model: The model's name.
        oid: The id of the commit that records the event.
        commit: That commit.

    Returns:
        ``model``, ``seq``, ``id``, ``prev`` (the previous event's digest), ``time``,
        ``actor``, ``action``, ``version``, ``from``, ``to``, ``reason`` and ``details``.
    """
    e = commit.event
    return {
        "model": model,
        "seq": e.seq,
        "id": format_digest(oid),
        "prev": None if commit.parent is None else format_digest(commit.parent),
        "time": e.time,
        "actor": e.actor,
        "action": e.action,
        "version": e.version,
        "from": e.from_stage,
        "to": e.to_stage,
        "reason": e.reason,
        "details": dict(e.extra),
    }


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
            ) -> tuple[str, list[dict[str, Any]]]:
    """Return a model's canonical name and its events, newest first.

    With ``limit``, only the newest ``limit`` events: the walk back along the chain stops
    there, so the cost does not grow with the model's history.
    """
    found = reg.head(name)
    if found is None:
        raise NotFound(f"model {name!r} not found")
    model = found[1].model
    return model, [event_record(model, oid, c) for oid, c in _walk(reg, found[0], limit=limit)]


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
        return {str(k): int(v) for k, v in data.items()}
    except (binascii.Error, ValueError, AttributeError, TypeError) as exc:
        raise UsageError(f"bad cursor {cursor[:40]!r}: it does not decode") from exc


def feed(reg: Registry, since: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """Return events across all models after ``since``, oldest first, and the new cursor.

    Reads one ref and one commit per unchanged model, and walks back only over new events.
    """
    seen = decode_cursor(since) if since else {}
    positions: dict[str, int] = {}
    events: list[dict[str, Any]] = []
    for ref_name in reg.model_names():
        key = ref_name.split("/", 1)[1]
        oid = reg.refs.read(ref_name)
        if oid is None:
            continue
        walked = _walk(reg, oid, seen.get(key, 0))
        head = walked[0][1] if walked else reg.load_commit(oid)
        positions[key] = head.seq
        events.extend(event_record(c.model, o, c) for o, c in walked)
    events.sort(key=lambda e: (e["time"], e["model"], e["seq"]))
    return events, encode_cursor(positions)


def run_hooks(reg: Registry, config: StoreConfig, b: StateBuilder,
              when: str) -> list[HookResult]:
    """Deliver the builder's events to the matching hooks.

    A failing ``pre`` hook raises ``PolicyDenied`` (the change is vetoed). ``post`` results
    are returned; the outcome of each URL delivery is also recorded in the model's history
    as a ``hook`` event.
    """
    if not config.hooks:
        return []
    from modelreg.registry.hooks import run_hook  # loaded only by a store that has hooks

    results: list[HookResult] = []
    url_results: list[tuple[dict[str, Any], HookResult]] = []
    for oid, commit in b.commits:
        record = event_record(b.name, oid, commit)
        stage = commit.event.to_stage or commit.event.extra.get("stage")
        for hook in config.hooks:
            if hook.when != when or not hook.matches(commit.event.action, b.name, stage):
                continue
            result = run_hook(hook, record, reg.layout.root)
            if when == "pre" and not result.ok:
                raise PolicyDenied(
                    f"pre- hook {hook.target} vetoed {commit.event.action} of "
                    f"{b.name}@{commit.event.version}: {result.detail}"
                )
            results.append(result)
            if hook.url is not None:
                url_results.append((record, result))
    if when == "post" and url_results:
        _record_deliveries(reg, b.name, url_results)
    return results


def _record_deliveries(reg: Registry, name: str,
                       deliveries: list[tuple[dict[str, Any], HookResult]]) -> None:
    from modelreg.registry.core import now_iso

    def plan(b: StateBuilder) -> None:
        for record, result in deliveries:
            b.record(action="hook", actor="modelreg", time=now_iso(), version=record["version"],
                     reason=result.detail,
                     extra={"event": record["id"], "url": result.target, "ok": result.ok,
                            "status": result.status, "attempts": result.attempts})

    # The transition itself is committed; failing to log its delivery must not undo it.
    with contextlib.suppress(ModelregError):
        reg.mutate(name, plan)
