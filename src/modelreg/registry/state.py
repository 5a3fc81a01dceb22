"""A model's state and history in format 2: commits, the state document and index leaves.

Each model has one ref, ``refs/models/<key>``, whose body is the model's head commit id on
its first line and, after it, the model's current *state*: canonical JSON naming the latest
version, the version in each stage, the aliases, and the version index. The index holds one
:class:`VersionEntry` per version, in groups of :data:`LEAF_SIZE`: each complete group is a
*leaf* object (rewritten only when one of its versions changes); the newest, incomplete
group is the state's ``tail``, inline. A *commit* records one event (who did what, when,
why), its parent commit's id (so the history is a hash chain), the sha256 of the state it
produced, and, for a ``register`` event, the registered version's manifest (TOML text).
Old states are not kept, only their digests in the commits; readers check the state in the
ref against its head commit's digest. docs/layout.md describes the format and its reasons.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from modelreg.errors import IntegrityError, NotFound, UsageError
from modelreg.storage.hashing import digest_bytes, is_object_id
from modelreg.types import Approval, CheckRecord

__all__ = [
    "ENTRY_KEYS",
    "LEAF_SIZE",
    "STATE_FORMAT",
    "THIS_COMMIT",
    "Commit",
    "Event",
    "Head",
    "ModelState",
    "VersionEntry",
    "canonical",
    "decode_commit",
    "decode_leaf",
    "decode_ref",
    "decode_state",
    "encode_commit",
    "encode_leaf",
    "encode_ref",
    "encode_state",
    "group_of",
    "labelled",
    "load_doc",
    "no_such_version",
    "now_iso",
]

STATE_FORMAT = 2
LEAF_SIZE = 64
THIS_COMMIT = ""
"""The manifest id of a version registered by the commit whose state is being written.

A state never names the commit that produced it (that commit records the state's digest),
so such a version's id is stored as ``null``; readers take it from the ref's head."""


def group_of(version: int) -> int:
    """Return the index group holding ``version`` (versions 1–64 are group 0)."""
    return (version - 1) // LEAF_SIZE


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


def canonical(doc: dict[str, Any]) -> bytes:
    """Encode ``doc`` as canonical JSON: sorted keys, no spaces, UTF-8, a final newline.

    Raises:
        UsageError: A string holds text that is not valid UTF-8.
    """
    return _utf8(_json(doc) + "\n")


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _utf8(text: str) -> bytes:
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
    """A pointer to one version: its number and its manifest id.

    In format 2 a version's manifest id is the id of the commit that registered it (the
    commit holds the manifest).
    """

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


ENTRY_KEYS = {
    "manifest": "c", "fingerprint": "f", "created_at": "t", "created_by": "by", "stage": "s",
    "digest": "d", "size": "n", "approvals": "ap", "checks": "ck", "meta": "m",
    "search": "q",
}
"""The key each field of an index entry is stored under (short: an index holds thousands)."""


@dataclass(frozen=True)
class VersionEntry:
    """A version's line in the index: enough for ``versions`` without manifests.

    ``manifest`` is the version's manifest id: the id of the commit that registered it.
    """

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
    search: dict[str, Any] | None = None
    """What ``search`` reads of the manifest, kept in the index: ``{"m": metrics, "p":
    params, "t": tags}`` as registered (edited tags are in ``meta``). None for a version
    registered before the index kept it (a migrated store): search reads its manifest."""

    def evolve(self, **changes: Any) -> VersionEntry:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)

    def to_doc(self, keys: dict[str, str] | None = None) -> dict[str, Any]:
        """Return the entry as stored (by default with :data:`ENTRY_KEYS`: short keys)."""
        k = keys or ENTRY_KEYS
        doc: dict[str, Any] = {
            k["manifest"]: None if self.manifest == THIS_COMMIT else self.manifest,
            k["fingerprint"]: self.fingerprint,
            k["created_at"]: self.created_at,
            k["created_by"]: self.created_by,
            k["stage"]: self.stage,
            k["digest"]: self.digest,
            k["size"]: self.size,
        }
        if self.approvals:
            doc[k["approvals"]] = [a.to_dict() for a in self.approvals]
        if self.checks:
            doc[k["checks"]] = {name: c.to_dict() for name, c in self.checks.items()}
        if self.meta:
            doc[k["meta"]] = self.meta
        if self.search is not None:
            doc[k["search"]] = self.search
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any], this: str | None = None,
                 keys: dict[str, str] | None = None) -> VersionEntry:
        """Build an entry from its stored form.

        Args:
            doc: The stored entry.
            this: The manifest id a ``null`` one stands for (the ref's head commit).
            keys: The field names it is stored under (default :data:`ENTRY_KEYS`).
        """
        k = keys or ENTRY_KEYS
        return cls(
            manifest=_manifest_id(doc[k["manifest"]], this),
            fingerprint=str(doc[k["fingerprint"]]),
            created_at=str(doc[k["created_at"]]),
            created_by=str(doc[k["created_by"]]),
            stage=str(doc[k["stage"]]),
            digest=str(doc[k["digest"]]),
            size=int(doc[k["size"]]),
            approvals=tuple(Approval.from_dict(a) for a in doc.get(k["approvals"], [])),
            checks={str(name): CheckRecord.from_dict(c)
                    for name, c in doc.get(k["checks"], {}).items()},
            meta=dict(doc.get(k["meta"], {})),
            search=_search_doc(doc.get(k["search"])),
        )


def _search_doc(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(isinstance(value.get(k, {}), dict)
                                              for k in ("m", "p", "t")):
        raise ValueError(f"bad search record {value!r}")
    return dict(value)


def _manifest_id(value: Any, this: str | None) -> str:
    if value is None and this is not None:
        return this
    if not isinstance(value, str) or not is_object_id(value):
        raise ValueError(f"bad manifest id {value!r}")
    return value


@dataclass(frozen=True)
class Commit:
    """One event of one model, chained to the commit before it.

    ``state`` is the sha256 of the state document the event produced; ``manifest`` the
    registered version's manifest (TOML text) on a ``register`` commit, else None.
    """

    model: str
    parent: str | None
    event: Event
    state: str
    manifest: str | None = None

    @property
    def seq(self) -> int:
        """The sequence number of this commit's event (1 for the first)."""
        return self.event.seq


@dataclass(frozen=True)
class ModelState:
    """A model's current state: the part of its ref after the head commit id."""

    model: str
    seq: int
    latest: Head
    stages: dict[str, Head] = field(default_factory=dict)
    aliases: dict[str, Head] = field(default_factory=dict)
    leaves: dict[int, str] = field(default_factory=dict)
    tail: dict[int, VersionEntry] = field(default_factory=dict)


def load_doc(data: bytes, kind: str, where: str, fmt: int = STATE_FORMAT) -> dict[str, Any]:
    """Parse a JSON object of ``type`` ``kind`` and format ``fmt``.

    Raises:
        IntegrityError: The bytes are not such an object.
    """
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, too deep, huge ints
        raise IntegrityError(f"{where}: not a readable {kind} ({exc})", where) from exc
    if not isinstance(doc, dict) or doc.get("type") != kind:
        raise IntegrityError(f"{where}: expected a {kind} object", where)
    if doc.get("format") != fmt:
        raise IntegrityError(f"{where}: {kind} format {doc.get('format')!r} is unknown", where)
    return doc


def _head_doc(h: Head) -> dict[str, Any]:
    return {"v": h.version, "c": None if h.manifest == THIS_COMMIT else h.manifest}


def _head(d: dict[str, Any], this: str) -> Head:
    return Head(int(d["v"]), _manifest_id(d["c"], this))


def encode_commit(c: Commit) -> bytes:
    """Encode a commit canonically; the sha256 of the bytes is the commit id."""
    doc: dict[str, Any] = {
        "type": "commit",
        "format": STATE_FORMAT,
        "model": c.model,
        "parent": c.parent,
        "event": c.event.to_dict(),
        "state": c.state,
    }
    if c.manifest is not None:
        doc["manifest"] = c.manifest
    return canonical(doc)


def decode_commit(data: bytes, where: str) -> Commit:
    """Decode a commit read from the store.

    Raises:
        IntegrityError: The bytes are not a commit.
    """
    doc = load_doc(data, "commit", where)
    try:
        manifest = doc.get("manifest")
        commit = Commit(
            model=str(doc["model"]),
            parent=doc["parent"],
            event=Event.from_dict(doc["event"]),
            state=str(doc["state"]),
            manifest=None if manifest is None else str(manifest),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{where}: malformed commit ({exc})", where) from exc
    if not is_object_id(commit.state) or not (commit.parent is None
                                              or is_object_id(commit.parent)):
        raise IntegrityError(f"{where}: malformed commit (bad parent or state digest)", where)
    return commit


# Each tail entry's canonical JSON, kept by the entry object's identity (with the object, so
# the id cannot be reused while it is kept): a register re-encodes a state whose tail holds
# up to 63 entries it encoded before. Entries are never changed in place.
_ENTRY_TEXT: dict[int, tuple[VersionEntry, str]] = {}
_ENTRY_TEXT_LIMIT = 4096


def _entry_text(e: VersionEntry) -> str:
    kept = _ENTRY_TEXT.get(id(e))
    if kept is not None and kept[0] is e:
        return kept[1]
    text = _json(e.to_doc())
    if len(_ENTRY_TEXT) >= _ENTRY_TEXT_LIMIT:
        _ENTRY_TEXT.clear()
    _ENTRY_TEXT[id(e)] = (e, text)
    return text


def encode_state(s: ModelState) -> bytes:
    """Encode a state canonically; its sha256 is what the commit that made it records.

    The bytes are exactly :func:`canonical` of the state's document; the tail is assembled
    from each entry's canonical text (cached per entry), in the order canonical JSON sorts
    its keys: as strings.
    """
    doc: dict[str, Any] = {
        "type": "state",
        "format": STATE_FORMAT,
        "model": s.model,
        "seq": s.seq,
        "latest": _head_doc(s.latest),
        "stages": {k: _head_doc(v) for k, v in s.stages.items()},
        "aliases": {k: _head_doc(v) for k, v in s.aliases.items()},
        "leaves": {str(k): v for k, v in s.leaves.items()},
    }
    parts = {k: _json(v) for k, v in doc.items()}
    tail = sorted((str(v), e) for v, e in s.tail.items())
    parts["tail"] = "{" + ",".join(f"{_json(v)}:{_entry_text(e)}" for v, e in tail) + "}"
    return _utf8("{" + ",".join(f"{_json(k)}:{parts[k]}" for k in sorted(parts)) + "}\n")


def decode_state(data: bytes, where: str, head: str) -> ModelState:
    """Decode a state document.

    Args:
        data: Its bytes.
        where: Where it was read, for messages.
        head: The id of the commit that produced it (what a ``null`` manifest id means).

    Raises:
        IntegrityError: The bytes are not a state.
    """
    doc = load_doc(data, "state", where)
    try:
        state = ModelState(
            model=str(doc["model"]),
            seq=int(doc["seq"]),
            latest=_head(doc["latest"], head),
            stages={str(k): _head(v, head) for k, v in doc["stages"].items()},
            aliases={str(k): _head(v, head) for k, v in doc["aliases"].items()},
            leaves={int(k): str(v) for k, v in doc["leaves"].items()},
            tail={int(v): VersionEntry.from_doc(e, head) for v, e in doc["tail"].items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{where}: malformed state ({exc})", where) from exc
    if not all(is_object_id(oid) for oid in state.leaves.values()):
        raise IntegrityError(f"{where}: malformed state (a leaf id is not an object id)", where)
    return state


def encode_leaf(entries: dict[int, VersionEntry]) -> bytes:
    """Encode one full group of index entries (a leaf object) canonically."""
    return canonical(
        {
            "type": "leaf",
            "format": STATE_FORMAT,
            "versions": {str(v): e.to_doc() for v, e in sorted(entries.items())},
        }
    )


def decode_leaf(data: bytes, where: str) -> dict[int, VersionEntry]:
    """Decode a leaf object into version number → entry.

    Raises:
        IntegrityError: The bytes are not a leaf.
    """
    doc = load_doc(data, "leaf", where)
    try:
        return {int(v): VersionEntry.from_doc(e) for v, e in doc["versions"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{where}: malformed index leaf ({exc})", where) from exc


def encode_ref(head: str, state: bytes) -> bytes:
    """The body of a model's ref: the head commit id on one line, then the state."""
    return f"{head}\n".encode() + state


def decode_ref(body: bytes, where: str) -> tuple[str, bytes, str]:
    """Split a ref body into the head commit id, the state bytes and the state's digest.

    Raises:
        IntegrityError: The body is not a head id and a state.
    """
    head, sep, state = body.partition(b"\n")
    text = head.decode("ascii", "replace")
    if not sep or not is_object_id(text) or not state:
        raise IntegrityError(f"ref {where} is corrupt: it does not begin with a commit id "
                             f"line followed by the model's state ({text[:80]!r})", where)
    return text, state, digest_bytes(state)
