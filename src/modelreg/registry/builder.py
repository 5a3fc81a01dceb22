"""A working copy of one model's state, turned into chained commits by one ref update.

A ``StateBuilder`` starts from the model's head commit, lets the caller change versions,
stages and aliases, and turns each recorded event into a commit whose parent is the one
before. Nothing is written until :meth:`StateBuilder.flush`: then the new objects are stored
and the caller moves the ref from the old head to the last commit in one compare-and-swap,
so a crash or a lost race leaves state and history exactly as they were.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from modelreg.errors import NotFound
from modelreg.registry.core import Registry
from modelreg.registry.manifest import Manifest, decode_manifest
from modelreg.registry.names import Ref
from modelreg.registry.state import (
    Commit,
    Event,
    Head,
    VersionEntry,
    bucket_of,
    decode_bucket,
    decode_commit,
    encode_bucket,
    encode_commit,
    labelled,
    no_such_version,
)
from modelreg.storage.hashing import digest_bytes

__all__ = ["StateBuilder"]


class StateBuilder:
    """Pending changes to one model, recorded as events."""

    def __init__(self, reg: Registry, name: str, head_oid: str | None,
                 head: Commit | None) -> None:
        self.reg = reg
        self.name = head.model if head is not None else name
        self.base_oid = head_oid
        self.tip_oid = head_oid
        self.seq = head.seq if head is not None else 0
        self.latest: Head | None = head.latest if head is not None else None
        self.index: dict[int, str] = dict(head.index) if head is not None else {}
        self.stages: dict[str, Head] = dict(head.stages) if head is not None else {}
        self.aliases: dict[str, Head] = dict(head.aliases) if head is not None else {}
        self.events: list[Event] = []
        self.commits: list[tuple[str, Commit]] = []
        self._buckets: dict[int, dict[int, VersionEntry]] = {}
        self._dirty: set[int] = set()
        self._pending: dict[str, bytes] = {}
        # What this builder made, kept after flush so the caller can describe the result
        # without reading it back: the bytes of every object, and each index bucket as a
        # decoded copy (decoding 256 entries costs about 1 ms).
        self._written: dict[str, bytes] = {}
        self._made_buckets: dict[str, dict[int, VersionEntry]] = {}

    @property
    def exists(self) -> bool:
        """Whether the model has any version (in the base state or pending)."""
        return self.latest is not None

    def _bucket(self, number: int) -> dict[int, VersionEntry]:
        if number not in self._buckets:
            oid = self.index.get(number)
            self._buckets[number] = dict(self.reg.load_bucket(oid)) if oid else {}
        return self._buckets[number]

    def entry(self, version: int) -> VersionEntry:
        """Return a version's index entry.

        Raises:
            NotFound: The model has no such version.
        """
        found = self._bucket(bucket_of(version)).get(version)
        if found is None:
            raise no_such_version(self.name, version, self.latest.version if self.latest else 0)
        return found

    def set_entry(self, version: int, entry: VersionEntry) -> None:
        """Replace (or add) a version's index entry."""
        number = bucket_of(version)
        if entry.approvals or entry.checks or entry.meta:
            # Hold the entry as it reads back from its bucket (JSON types, sorted keys, no
            # link to the caller's dicts), so what this builder made equals what a read of
            # the stored bucket returns.
            entry = decode_bucket(encode_bucket({version: entry}), "pending index entry")[version]
        self._bucket(number)[version] = entry
        self._dirty.add(number)

    def find_fingerprint(self, fingerprint: str) -> tuple[int, VersionEntry] | None:
        """Return the oldest version whose entry has ``fingerprint``, or None."""
        return self._search(fingerprint, lambda e: e.fingerprint == fingerprint, newest=False)

    def _search(self, value: str, match: Callable[[VersionEntry], bool], *, newest: bool
                ) -> tuple[int, VersionEntry] | None:
        """Return the oldest (or newest) version whose entry ``match``es, or None.

        ``match`` must hold only for entries that contain the string ``value``. A bucket
        not yet read is searched as verified bytes for ``value`` (as canonical JSON spells
        it) and decoded only if it occurs there: decoding a full 256-entry bucket costs about
        1 ms, and at 10,000 versions a whole scan would decode 40 of them.
        """
        needle = json.dumps(value, ensure_ascii=False).encode()
        for number in sorted(set(self.index) | set(self._buckets), reverse=newest):
            if number not in self._buckets and not self.reg.decoded.may_hold(
                self.index[number], needle, decode_bucket
            ):
                continue
            for version, entry in sorted(self._bucket(number).items(), reverse=newest):
                if match(entry):
                    return version, entry
        return None

    def put(self, data: bytes) -> str:
        """Queue an object for writing at flush; return its id."""
        oid = digest_bytes(data)
        self._pending[oid] = data
        return oid

    def resolve(self, ref: Ref) -> int:
        """Resolve a parsed reference against this working state.

        Raises:
            NotFound: The model, version, stage or alias does not exist.
        """
        if self.latest is None:
            raise NotFound(f"model {ref.name!r} not found")
        if ref.version is not None:
            self.entry(ref.version)
            return ref.version
        if ref.label is None:
            return self.latest.version
        return labelled(self.name, self.stages, self.aliases, ref.label,
                        lambda: self.reg.config.stages).version

    def load_manifest(self, oid: str) -> Manifest:
        """Read a manifest, including one this builder has queued or written."""
        data = self._pending.get(oid)
        if data is not None:
            return decode_manifest(data, f"pending manifest {oid}")
        data = self._written.get(oid)
        if data is not None:
            return self.reg.decoded.remember(oid, decode_manifest, data)
        return self.reg.load_manifest(oid)

    def load_bucket(self, oid: str) -> dict[int, VersionEntry]:
        """Read an index bucket, including one this builder made (a copy the caller may change)."""
        made = self._made_buckets.get(oid)
        return dict(made) if made is not None else self.reg.load_bucket(oid)

    def head_for(self, version: int) -> Head:
        """Return a pointer to ``version`` (its manifest id)."""
        return Head(version, self.entry(version).manifest)

    def refresh_stage_head(self, stage: str) -> None:
        """Point ``stages[stage]`` at the newest version in it, or drop it if none is."""
        found = self._search(stage, lambda e: e.stage == stage, newest=True)
        if found is None:
            self.stages.pop(stage, None)
        else:
            self.stages[stage] = self.head_for(found[0])

    def record(self, *, action: str, actor: str, time: str, version: int | None = None,
               from_stage: str | None = None, to_stage: str | None = None,
               reason: str | None = None, extra: dict[str, Any] | None = None) -> Event:
        """Record an event: a new commit holding the current state, chained to the last.

        Returns:
            The event recorded.
        """
        if self.latest is None:
            raise NotFound(f"model {self.name!r} has no versions")
        for number in sorted(self._dirty):
            bucket = self._buckets[number]
            self.index[number] = oid = self.put(encode_bucket(bucket))
            # In the order decode_bucket returns (the encoding sorts versions as strings).
            self._made_buckets[oid] = dict(sorted(bucket.items(), key=lambda kv: str(kv[0])))
        self._dirty.clear()
        self.seq += 1
        event = Event(seq=self.seq, time=time, actor=actor, action=action, version=version,
                      from_stage=from_stage, to_stage=to_stage, reason=reason,
                      extra=dict(extra or {}))
        commit = Commit(model=self.name, parent=self.tip_oid, event=event, latest=self.latest,
                        index=dict(self.index), stages=dict(self.stages),
                        aliases=dict(self.aliases))
        self.tip_oid = self.put(encode_commit(commit))
        self.events.append(event)
        self.commits.append((self.tip_oid, commit))
        return event

    def flush(self) -> str | None:
        """Store every queued object; return the new tip (None if nothing was recorded)."""
        for data in self._pending.values():
            self.reg.objects.put_bytes(data)
        written, self._pending = self._pending, {}
        self._written.update(written)
        # Only now that every object is stored may the registry serve them from memory (the
        # next change's duplicate check reads the new bucket, its transaction the commit).
        for oid, bucket in self._made_buckets.items():
            if oid in written:
                self.reg.decoded.remember(oid, decode_bucket, written[oid], bucket)
        for oid, _ in self.commits:
            if oid in written:
                self.reg.decoded.remember(oid, decode_commit, written[oid])
        return self.tip_oid if self.events else None

    def signature(self) -> list[tuple[str, int | None, str | None, str | None]]:
        """The recorded transitions, to compare a plan with its re-run under the lock."""
        return [(e.action, e.version, e.from_stage, e.to_stage) for e in self.events]
