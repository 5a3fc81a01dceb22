"""``modelreg migrate``: a format-1 store turned into format 2, in place.

Format 1 kept every object under ``objects/sha256/<2 hex>/<62 hex>``, the whole state of a
model in each commit, and a bare commit id in each ref (:mod:`modelreg.registry.format1`
reads it). Migration builds the format-2 store beside it, then switches with one atomic
step, so a kill at any instant leaves a store that opens as format 1 or as format 2:

1. Every format-1 ref is locked (an older modelreg writing meanwhile waits).
2. Each model's history is replayed, oldest event first, into format-2 commits: the same
   events (sequence, time, actor, action, version, stages, reason, details), each register
   commit holding its version's manifest text (so manifest digests do not change), with the
   index and heads each format-1 commit recorded. The artifacts, trees, samples and other
   objects the versions name are copied into the flat ``objects/`` directory, each
   verified against its id. The new refs are written to ``refs.v2/``. Nothing a format-1
   reader uses is touched.
3. The ``format`` file is replaced by one that says 2 (a rename): the switch. From here the
   store opens as format 2; while ``refs.v2/`` exists, readers take the refs from there.
4. ``refs/`` is moved aside, ``refs.v2/`` becomes ``refs/``, and the format-1 refs and
   objects are removed. ``migrate`` run again finishes these steps after an interruption.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelreg.errors import IntegrityError, UnsupportedFormat
from modelreg.registry.builder import StateBuilder
from modelreg.registry.core import MODELS_PREFIX, Registry
from modelreg.registry.format1 import FORMAT1, Format1Commit, decode_bucket, decode_commit
from modelreg.registry.state import THIS_COMMIT, Head, VersionEntry
from modelreg.storage.hashing import digest_bytes, is_object_id
from modelreg.storage.layout import (
    FORMAT1_OBJECTS,
    FORMAT_VERSION,
    PENDING_REFS,
    Layout,
    finish_ref_switch,
    read_format,
    remove_pending_refs,
    write_format,
)
from modelreg.storage.lock import Lock, acquire, lock_path_for
from modelreg.storage.objects import ObjectStore
from modelreg.storage.refs import RefStore

__all__ = ["MigrateReport", "migrate"]


@dataclass
class MigrateReport:
    """What ``migrate`` did."""

    store: str
    status: str
    """``migrated``, ``finished`` (an interrupted migration completed) or ``current``."""
    models: int = 0
    versions: int = 0
    events: int = 0
    objects: int = 0
    names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (docs/cli.md, migrate)."""
        return {"store": self.store, "status": self.status, "models": self.models,
                "versions": self.versions, "events": self.events, "objects": self.objects,
                "names": self.names}


class _Format1:
    """Read-only access to a format-1 store's objects and refs, every object verified."""

    def __init__(self, layout: Layout) -> None:
        self.root = layout.root / FORMAT1_OBJECTS
        self.refs = layout.root / "refs" / "models"

    def path(self, oid: str) -> Path:
        return self.root / oid[:2] / oid[2:]

    def read(self, oid: str) -> bytes:
        path = self.path(oid)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise IntegrityError(f"format-1 object {oid} is missing ({path}); nothing was "
                                 "migrated", str(path)) from exc
        if digest_bytes(data) != oid:
            raise IntegrityError(f"format-1 object {path} does not match its id; nothing was "
                                 "migrated", str(path))
        return data

    def ids(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for shard in sorted(self.root.iterdir()):
            if len(shard.name) != 2 or not shard.is_dir():
                continue
            for rest in sorted(shard.iterdir()):
                oid = shard.name + rest.name
                if is_object_id(oid) and rest.is_file():
                    yield oid

    def model_refs(self) -> list[tuple[str, str]]:
        found = []
        if self.refs.is_dir():
            for path in sorted(self.refs.iterdir()):
                if path.name.endswith(".lock") or not path.is_file():
                    continue
                oid = path.read_text(encoding="ascii", errors="replace").strip()
                if not is_object_id(oid):
                    raise IntegrityError(f"format-1 ref {path} does not hold a commit id; "
                                         "nothing was migrated", str(path))
                found.append((path.name, oid))
        return found


def _replay(f1: _Format1, reg: Registry, key: str, head: str,
            metadata: set[str]) -> tuple[StateBuilder, int]:
    """Rebuild one model's history as format-2 commits (nothing written yet)."""
    chain: list[Format1Commit] = []
    oid: str | None = head
    while oid is not None:
        metadata.add(oid)
        commit = decode_commit(f1.read(oid), str(f1.path(oid)))
        chain.append(commit)
        oid = commit.parent
    chain.reverse()
    b = StateBuilder(reg, chain[0].model, None)
    made: dict[str, str] = {}  # format-1 manifest id -> the format-2 commit holding it
    buckets: dict[int, dict[int, VersionEntry]] = {}
    previous: Format1Commit | None = None
    for commit in chain:
        new = previous is None or commit.latest.version != previous.latest.version
        new_manifest = commit.latest.manifest if new else None

        def mapped(manifest: str, new_manifest: str | None = new_manifest) -> str:
            return THIS_COMMIT if manifest == new_manifest else made[manifest]

        for number, bucket_oid in sorted(commit.index.items()):
            if previous is not None and previous.index.get(number) == bucket_oid:
                continue
            metadata.add(bucket_oid)
            entries = decode_bucket(f1.read(bucket_oid), str(f1.path(bucket_oid)))
            before = buckets.get(number, {})
            for version, entry in sorted(entries.items()):
                if before.get(version) != entry:
                    b.set_entry(version, entry.evolve(manifest=mapped(entry.manifest)))
            buckets[number] = entries

        def head_of(h: Head) -> Head:
            return Head(h.version, mapped(h.manifest))

        b.latest = head_of(commit.latest)
        b.stages = {k: head_of(h) for k, h in commit.stages.items()}
        b.aliases = {k: head_of(h) for k, h in commit.aliases.items()}
        text = None
        if new_manifest is not None:
            metadata.add(new_manifest)
            text = f1.read(new_manifest).decode("utf-8")
        e = commit.event
        b.record(action=e.action, actor=e.actor, time=e.time, version=e.version,
                 from_stage=e.from_stage, to_stage=e.to_stage, reason=e.reason,
                 extra=e.extra, manifest=text)
        if new_manifest is not None and b.tip_oid is not None:
            made[new_manifest] = b.tip_oid
        previous = commit
    return b, chain[-1].latest.version


def _lock_all(layout: Layout, f1: _Format1, keys: list[str]) -> list[Lock]:
    held: list[Lock] = []
    try:
        for key in keys:
            held.append(acquire(lock_path_for(f1.refs / key), layout.tmp))
    except BaseException:
        for lock in held:
            lock.release()
        raise
    return held


def migrate(layout: Layout) -> MigrateReport:
    """Turn the format-1 store at ``layout`` into format 2 (or finish an interrupted run).

    Raises:
        NotARegistry: There is no store there.
        UnsupportedFormat: The store is of a format this modelreg does not know.
        IntegrityError: A format-1 object is missing or corrupt (nothing is migrated).
        LockHeld: A format-1 writer kept a model's lock for too long.
    """
    fmt = read_format(layout)
    report = MigrateReport(str(layout.root), "current")
    if fmt == FORMAT_VERSION:
        if finish_ref_switch(layout):
            report.status = "finished"
        return report
    if fmt != FORMAT1:
        raise UnsupportedFormat(f"{layout.root} has format version {fmt}; migrate turns "
                                "format 1 into format 2 only", str(layout.format_file))
    f1 = _Format1(layout)
    refs = f1.model_refs()
    locks = _lock_all(layout, f1, [key for key, _ in refs])
    try:
        # Heads are read again under the locks: what an older writer committed meanwhile.
        refs = f1.model_refs()
        pending = layout.root / PENDING_REFS
        remove_pending_refs(layout)  # a run killed before the switch left it: rebuilt whole
        objects = ObjectStore(layout.objects, layout.tmp)
        reg = Registry(objects=objects, refs=RefStore(pending, layout.tmp))
        metadata: set[str] = set()
        built = []
        for key, head in refs:
            builder, versions = _replay(f1, reg, key, head, metadata)
            built.append(builder)
            report.versions += versions
            report.events += len(builder.events)
            report.names.append(builder.name)
        for oid in f1.ids():
            if oid in metadata:
                continue
            got, _ = objects.put_file(f1.path(oid))
            if got != oid:
                raise IntegrityError(f"format-1 object {f1.path(oid)} does not match its id; "
                                     "the store was not switched", str(f1.path(oid)))
            report.objects += 1
        for builder in built:
            builder.flush()
            if not reg.refs.compare_and_swap(f"{MODELS_PREFIX}/{builder.name.lower()}", None,
                                             builder.ref_body()):
                raise IntegrityError(f"two format-1 models map to {builder.name.lower()}")
        objects.sync()
        # The new store is checked whole before it replaces the old: every version's files
        # present and verified, every chain whole (a format-1 store missing an artifact is
        # reported, not carried over).
        from modelreg.registry.maintenance import check_models

        problems = check_models(reg)
        if problems:
            found = "; ".join(f"{p.path}: {p.message}" for p in problems[:5])
            raise IntegrityError(f"the format-1 store has problems, so it was not switched "
                                 f"to format 2: {found}", str(layout.root))
        write_format(layout, FORMAT_VERSION)  # the switch
    finally:
        for lock in locks:
            with contextlib.suppress(OSError):
                lock.release()
    finish_ref_switch(layout)
    report.models = len(built)
    report.status = "migrated"
    return report
