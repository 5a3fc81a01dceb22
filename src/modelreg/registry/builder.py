"""A working copy of one model's state, turned into chained commits by one ref update.

A ``StateBuilder`` starts from the model's current state (its ref), lets the caller change
versions, stages and aliases, and turns each recorded event into a commit whose parent is
the one before and which records the digest of the state it produced. Nothing is written
until :meth:`StateBuilder.flush`: then the new commits and index leaves are stored and made
durable, and the caller gives the ref its new body (:meth:`StateBuilder.ref_body`) in one
compare-and-swap, so a crash or a lost race leaves state and history exactly as they were.

A state never names the commit that produced it (that commit records the state's digest):
a version registered by a commit is written with no manifest id (``null``) in that
commit's state, and gets the commit's id in every later one; readers fill it in from the
ref's head. So an index group completed by a register becomes a leaf one event later.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from modelreg.errors import NotFound
from modelreg.registry.core import Current, Registry, manifest_of
from modelreg.registry.decoded import verified_bytes
from modelreg.registry.manifest import Manifest
from modelreg.registry.names import Ref
from modelreg.registry.state import (
    LEAF_SIZE,
    THIS_COMMIT,
    Commit,
    Event,
    Head,
    ModelState,
    VersionEntry,
    canonical,
    decode_commit,
    decode_leaf,
    encode_commit,
    encode_leaf,
    encode_ref,
    encode_state,
    group_of,
    labelled,
    no_such_version,
)
from modelreg.storage.hashing import digest_bytes

__all__ = ["StateBuilder"]


class StateBuilder:
    """Pending changes to one model, recorded as events."""

    def __init__(self, reg: Registry, name: str, current: Current | None) -> None:
        self.reg = reg
        state = None if current is None else current.state
        self.name = state.model if state is not None else name
        self.base_oid = None if current is None else current.oid
        self.tip_oid = self.base_oid
        self.seq = state.seq if state is not None else 0
        self.latest: Head | None = state.latest if state is not None else None
        self.stages: dict[str, Head] = dict(state.stages) if state is not None else {}
        self.aliases: dict[str, Head] = dict(state.aliases) if state is not None else {}
        self.leaves: dict[int, str] = dict(state.leaves) if state is not None else {}
        self.events: list[Event] = []
        self.commits: list[tuple[str, Commit]] = []
        self.state: ModelState | None = state
        """The state the last recorded event produced (the base state before any)."""
        self._state_bytes: bytes | None = None
        base_tail = dict(state.tail) if state is not None else {}
        self._tail_groups = {group_of(v) for v in base_tail}
        self._groups: dict[int, dict[int, VersionEntry]] = {}
        for v, e in base_tail.items():
            self._groups.setdefault(group_of(v), {})[v] = e
        self._dirty: set[int] = set()
        self._pending: dict[str, bytes] = {}
        self._leaf_bytes: dict[int, tuple[str, bytes]] = {}
        # What this builder made, kept after flush so the caller can describe the result
        # without reading it back: the bytes of every object, and each leaf decoded.
        self._written: dict[str, bytes] = {}
        self._made_leaves: dict[str, dict[int, VersionEntry]] = {}
        self._manifests: dict[str, tuple[Manifest, str]] = {}

    @property
    def exists(self) -> bool:
        """Whether the model has any version (in the base state or pending)."""
        return self.latest is not None

    def _group(self, number: int) -> dict[int, VersionEntry]:
        if number not in self._groups:
            oid = self.leaves.get(number)
            self._groups[number] = self.reg.load_leaf(oid) if oid else {}
        return self._groups[number]

    def entry(self, version: int) -> VersionEntry:
        """Return a version's index entry.

        Raises:
            NotFound: The model has no such version.
        """
        found = self._group(group_of(version)).get(version) if version >= 1 else None
        if found is None:
            raise no_such_version(self.name, version, self.latest.version if self.latest else 0)
        return found

    def set_entry(self, version: int, entry: VersionEntry) -> None:
        """Replace (or add) a version's index entry."""
        number = group_of(version)
        if entry.approvals or entry.checks or entry.meta:
            # Hold the entry as it reads back from a leaf (JSON types, sorted keys, no link
            # to the caller's dicts), so what this builder made equals what a read returns.
            entry = decode_leaf(encode_leaf({version: entry}), "pending index entry")[version]
        elif entry.search is not None:  # the same for a new version's search record
            entry = entry.evolve(search=json.loads(canonical(entry.search)))
        self._group(number)[version] = entry
        if number not in self.leaves:
            self._tail_groups.add(number)
        self._dirty.add(number)

    def find_fingerprint(self, fingerprint: str, *, after: int = 0
                         ) -> tuple[int, VersionEntry] | None:
        """Return the oldest version whose entry has ``fingerprint``, or None.

        Args:
            fingerprint: What to look for.
            after: Look only at versions newer than this one (their groups' leaves): the
                caller knows no version up to it can match.
        """
        return self._search(fingerprint, lambda e: e.fingerprint == fingerprint, newest=False,
                            after=after)

    def _search(self, value: str, match: Callable[[VersionEntry], bool], *, newest: bool,
                after: int = 0) -> tuple[int, VersionEntry] | None:
        """Return the oldest (or newest) version whose entry ``match``es, or None.

        ``match`` must hold only for entries that contain the string ``value``. A leaf not
        yet read is searched as verified bytes for ``value`` (as canonical JSON spells it)
        and decoded only if it occurs there: at 10,000 versions a scan meets 156 leaves.
        Only versions newer than ``after`` are looked at (and only their groups read).
        """
        needle = json.dumps(value, ensure_ascii=False).encode()  # as a leaf spells it
        first = group_of(after + 1)
        for number in sorted(set(self.leaves) | set(self._groups), reverse=newest):
            if number < first:
                continue
            if number not in self._groups and not self.reg.decoded.may_hold(
                self.leaves[number], needle, decode_leaf
            ):
                continue
            for version, entry in sorted(self._group(number).items(), reverse=newest):
                if version > after and match(entry):
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
        """Read a manifest (``oid``: its register commit), one this builder made included."""
        data = self._pending.get(oid)
        if data is not None:
            return manifest_of(data, f"pending commit {oid}")[0]
        data = self._written.get(oid)
        if data is not None:
            return self.reg.decoded.remember(oid, manifest_of, data)[0]
        return self.reg.load_manifest(oid)

    def load_leaf(self, oid: str) -> dict[int, VersionEntry]:
        """Read an index leaf, one this builder made included (a copy the caller may change)."""
        made = self._made_leaves.get(oid)
        return dict(made) if made is not None else self.reg.load_leaf(oid)

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

    def _fold(self) -> dict[int, VersionEntry]:
        """Write changed full groups as leaves; return the entries that stay in the tail."""
        for number in sorted(self._tail_groups):
            group = self._group(number)
            if len(group) == LEAF_SIZE and all(e.manifest != THIS_COMMIT
                                               for e in group.values()):
                self._tail_groups.discard(number)
                self._dirty.add(number)
        for number in sorted(self._dirty - self._tail_groups):
            group = self._groups[number]
            data = encode_leaf(group)
            oid = digest_bytes(data)
            self.leaves[number] = oid
            self._leaf_bytes[number] = (oid, data)
            self._made_leaves[oid] = dict(sorted(group.items(), key=lambda kv: str(kv[0])))
        self._dirty.clear()
        return self._tail_view()

    def _fill(self, oid: str) -> None:
        """Give the version(s) the commit ``oid`` registered their manifest id."""
        def fill(h: Head) -> Head:
            return Head(h.version, oid) if h.manifest == THIS_COMMIT else h

        if self.latest is not None:
            self.latest = fill(self.latest)
        self.stages = {k: fill(h) for k, h in self.stages.items()}
        self.aliases = {k: fill(h) for k, h in self.aliases.items()}
        for number in self._tail_groups:
            group = self._group(number)
            for v, e in group.items():
                if e.manifest == THIS_COMMIT:
                    group[v] = e.evolve(manifest=oid)

    def record(self, *, action: str, actor: str, time: str, version: int | None = None,
               from_stage: str | None = None, to_stage: str | None = None,
               reason: str | None = None, extra: dict[str, Any] | None = None,
               manifest: str | None = None, decoded: Manifest | None = None) -> Event:
        """Record an event: a new commit chained to the last, with the state it produced.

        Args:
            action: What happened (``register``, ``promote``, ...).
            actor: Who did it.
            time: When (ISO 8601).
            version: The version it concerns.
            from_stage: The stage the version left.
            to_stage: The stage it entered.
            reason: Why.
            extra: More fields.
            manifest: On a ``register`` event, the new version's manifest (TOML text); its
                entry and heads name :data:`THIS_COMMIT` until this call gives them the
                commit's id.
            decoded: That manifest as ``decode_manifest`` returns it, if the caller holds
                it (:func:`~modelreg.registry.manifest.decoded_form`): kept once the commit
                is stored, so describing the new version parses nothing.

        Returns:
            The event recorded.

        Raises:
            NotFound: The model has no versions.
        """
        if self.latest is None:
            raise NotFound(f"model {self.name!r} has no versions")
        tail = self._fold()
        self.seq += 1
        event = Event(seq=self.seq, time=time, actor=actor, action=action, version=version,
                      from_stage=from_stage, to_stage=to_stage, reason=reason,
                      extra=dict(extra or {}))
        state = ModelState(model=self.name, seq=self.seq, latest=self.latest,
                           stages=dict(self.stages), aliases=dict(self.aliases),
                           leaves=dict(self.leaves), tail=tail)
        data = encode_state(state)
        commit = Commit(model=self.name, parent=self.tip_oid, event=event,
                        state=digest_bytes(data), manifest=manifest)
        self.tip_oid = self.put(encode_commit(commit))
        if manifest is not None and decoded is not None:
            self._manifests[self.tip_oid] = (decoded, digest_bytes(manifest.encode("utf-8")))
        self._state_bytes = data
        self.events.append(event)
        self.commits.append((self.tip_oid, commit))
        self._fill(self.tip_oid)
        self.state = ModelState(model=self.name, seq=self.seq, latest=self.latest,
                                stages=dict(self.stages), aliases=dict(self.aliases),
                                leaves=dict(self.leaves), tail=self._tail_view())
        return event

    def _tail_view(self) -> dict[int, VersionEntry]:
        return {v: e for n in self._tail_groups for v, e in self._group(n).items()}

    def flush(self) -> str | None:
        """Store every queued object and make them durable; return the new tip.

        Returns:
            The new head commit's id, or None if nothing was recorded.
        """
        if not self.events:
            return None
        for oid, data in self._leaf_bytes.values():
            self._pending[oid] = data
        for data in self._pending.values():
            self.reg.objects.put_bytes(data)
        self.reg.objects.sync()
        written, self._pending = self._pending, {}
        self._written.update(written)
        # Only now that every object is stored may the registry serve them from memory (the
        # next change's duplicate check reads the new leaves, its transaction the commit).
        for oid, leaf in self._made_leaves.items():
            if oid in written:
                self.reg.decoded.remember(oid, decode_leaf, written[oid], leaf)
                # Its bytes too: a duplicate search looks for a needle in them before it
                # walks the decoded entries.
                self.reg.decoded.remember(oid, verified_bytes, written[oid])
        for oid, _ in self.commits:
            if oid in written:
                self.reg.decoded.remember(oid, decode_commit, written[oid])
                if oid in self._manifests:
                    self.reg.decoded.remember(oid, manifest_of, written[oid],
                                              self._manifests[oid])
        return self.tip_oid

    def committed(self) -> None:
        """Say the ref now holds :meth:`ref_body`: the registry keeps the state it decodes to.

        The next change of this model in this process then starts from memory instead of
        decoding the state again. The state is kept with every mapping in the order a
        decoded one has (canonical JSON's: keys sorted as strings), so the two are equal
        in every way.
        """
        if self.state is None or self.tip_oid is None or not self.commits:
            return
        s = self.state

        def by_text(d: dict[Any, Any]) -> dict[Any, Any]:
            return dict(sorted(d.items(), key=lambda kv: str(kv[0])))

        self.reg.decoded.remember_state(self.tip_oid, self.commits[-1][1].state, ModelState(
            model=s.model, seq=s.seq, latest=s.latest, stages=by_text(s.stages),
            aliases=by_text(s.aliases), leaves=by_text(s.leaves), tail=by_text(s.tail)))

    def ref_body(self) -> bytes:
        """The ref's new body: the new head commit and the state it produced."""
        if self.tip_oid is None or self._state_bytes is None:
            raise ValueError("nothing was recorded")
        return encode_ref(self.tip_oid, self._state_bytes)

    def signature(self) -> list[tuple[str, int | None, str | None, str | None]]:
        """The recorded transitions, to compare a plan with its re-run on a newer state."""
        return [(e.action, e.version, e.from_stage, e.to_stage) for e in self.events]
