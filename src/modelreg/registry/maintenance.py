"""Keeping a store healthy: ``fsck`` verifies everything, ``gc`` removes what nothing needs."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field

from modelreg.errors import IntegrityError, ModelregError, ObjectMissing
from modelreg.registry.core import Registry
from modelreg.registry.policy import StoreConfig
from modelreg.registry.state import Commit
from modelreg.results import FsckReport, GcReport, Problem
from modelreg.storage.hashing import is_object_id, parse_digest
from modelreg.storage.lock import break_lock, is_stale, read_info, stale_after_setting

__all__ = ["DEFAULT_GRACE", "fsck", "gc"]

DEFAULT_GRACE = 3600.0
"""Seconds an unreferenced object or temp file is spared by ``gc`` (a register in flight)."""


@dataclass
class _Walk:
    """What a walk over every model's history reached, and what it found wrong."""

    reachable: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    corrupt_named: set[str] = field(default_factory=set)
    models: int = 0
    versions: int = 0
    events: int = 0


def _read(reg: Registry, walk: _Walk, oid: str, context: str, corrupt: set[str]) -> bytes | None:
    """Fetch an object for the walk, recording a problem instead of raising."""
    path = str(reg.objects.path(oid))
    walk.reachable.add(oid)
    if oid in corrupt:
        walk.corrupt_named.add(oid)
        walk.problems.append(Problem(path, f"{context}: object is corrupt (digest mismatch)"))
        return None
    try:
        return reg.objects.get_bytes(oid)
    except ObjectMissing:
        walk.problems.append(Problem(path, f"{context}: object is missing"))
    except IntegrityError:
        walk.corrupt_named.add(oid)
        walk.problems.append(Problem(path, f"{context}: object is corrupt (digest mismatch)"))
    return None


def _check_manifest(reg: Registry, walk: _Walk, model: str, version: int, oid: str,
                    corrupt: set[str]) -> None:
    context = f"model {model}, version {version}: manifest"
    data = _read(reg, walk, oid, context, corrupt)
    if data is None:
        return
    try:
        m = reg.load_manifest(oid)
    except ModelregError as exc:
        walk.problems.append(Problem(str(reg.objects.path(oid)), f"{context}: {exc}"))
        return
    if m.name != model or m.version != version:
        walk.problems.append(Problem(str(reg.objects.path(oid)),
                                     f"{context} names {m.name}@{m.version}"))
    digests = [f.digest for f in m.artifact.files]
    if m.artifact.kind == "directory":
        digests.append(m.artifact.digest)
    if m.example is not None:
        digests.append(m.example.digest)
    for digest in digests:
        blob = parse_digest(digest)
        if blob is None:
            walk.problems.append(Problem(str(reg.objects.path(oid)),
                                         f"{context}: bad digest {digest!r}"))
            continue
        walk.reachable.add(blob)
        path = reg.objects.path(blob)
        if blob in corrupt:
            walk.corrupt_named.add(blob)
            walk.problems.append(Problem(
                str(path), f"model {model}, version {version}: file object is corrupt "
                "(digest mismatch)"))
        elif not path.exists():
            walk.problems.append(Problem(
                str(path), f"model {model}, version {version}: file object is missing"))


def _check_head(reg: Registry, walk: _Walk, c: Commit, buckets: dict[int, dict[int, str]],
                where: str) -> None:
    """Check the head commit's state against its index."""
    versions = {v: m for b in buckets.values() for v, m in b.items()}
    expected = set(range(1, c.latest.version + 1))
    if set(versions) != expected:
        missing = sorted(expected - set(versions))[:5]
        walk.problems.append(Problem(where, f"model {c.model}: index does not hold versions "
                                     f"1..{c.latest.version} (missing {missing})"))
    for label, h in [("latest", c.latest), *c.stages.items(), *c.aliases.items()]:
        if versions.get(h.version) not in (None, h.manifest):
            walk.problems.append(Problem(where, f"model {c.model}: {label} points at v{h.version}"
                                         " with a manifest the index does not list"))


def _check_policy(config: StoreConfig, walk: _Walk, c: Commit, held: dict[str, list[int]],
                  ref_path: str) -> None:
    """Check the model's state against the store's policy as it is configured now.

    An exclusive stage holding more than one version is a problem (the state the policy
    forbids, reached under an older configuration or by a bug); an alias named like a
    stage is a note (references resolve the stage; the alias is unreachable by name).
    """
    for stage, versions in sorted(held.items()):
        if len(versions) > 1 and stage in config.stages and config.policy(stage).exclusive:
            listed = ", ".join(f"v{v}" for v in sorted(versions))
            walk.problems.append(Problem(ref_path, (
                f"model {c.model}: stage {stage} is exclusive (holds one version at a time) "
                f"but holds {len(versions)}: {listed}; archive all but one "
                f"(`modelreg archive {c.model}@N`)")))
    stages = {s.lower(): s for s in config.stages}
    for alias, h in sorted(c.aliases.items()):
        clash = stages.get(alias.lower())
        if clash is not None:
            walk.notes.append(Problem(ref_path, (
                f"model {c.model}: alias {alias} (v{h.version}) clashes with stage {clash}, "
                f"configured after the alias was made; {c.model}@{clash} means the stage "
                f"only. Remove the alias (`modelreg alias rm {c.model} {alias}`) and set it "
                "again under another name")))


def _walk(reg: Registry, corrupt: set[str], config: StoreConfig | None = None) -> _Walk:
    walk = _Walk()
    seen_buckets: set[str] = set()
    for ref_name in reg.model_names():
        ref_path = str(reg.refs.path(ref_name))
        try:
            oid = reg.refs.read(ref_name)
        except IntegrityError as exc:
            walk.problems.append(Problem(ref_path, str(exc)))
            continue
        if oid is None:
            continue
        walk.models += 1
        key = ref_name.split("/", 1)[1]
        child: Commit | None = None
        is_head = True
        current: str | None = oid
        while current is not None:
            label = (f"model {key}, event {child.seq - 1}" if child is not None
                     else f"model {key}, head event")
            data = _read(reg, walk, current, f"{label}: commit", corrupt)
            if data is None:
                break
            try:
                c = reg.load_commit(current)
            except ModelregError as exc:
                walk.problems.append(Problem(str(reg.objects.path(current)), f"{label}: {exc}"))
                break
            walk.events += 1
            label = f"model {c.model}, event {c.seq} ({c.event.action})"
            where = str(reg.objects.path(current))
            if c.model.lower() != key:
                walk.problems.append(Problem(where, f"{label}: commit belongs to {c.model!r}, "
                                             f"found under ref {ref_path}"))
            if child is not None and c.seq != child.seq - 1:
                walk.problems.append(Problem(where, f"{label}: sequence jumps from {c.seq} to "
                                             f"{child.seq} (an event was removed)"))
            if c.parent is None and c.seq != 1:
                walk.problems.append(Problem(where, f"{label}: history starts at event {c.seq}, "
                                             "not 1 (earlier events were removed)"))
            buckets: dict[int, dict[int, str]] = {}
            held: dict[str, list[int]] = {}
            for bucket_no, bucket_oid in c.index.items():
                if bucket_oid in seen_buckets and not is_head:
                    continue
                seen_buckets.add(bucket_oid)
                if _read(reg, walk, bucket_oid, f"{label}: index bucket", corrupt) is None:
                    continue
                try:
                    entries = reg.load_bucket(bucket_oid)
                except ModelregError as exc:
                    walk.problems.append(Problem(str(reg.objects.path(bucket_oid)), str(exc)))
                    continue
                buckets[bucket_no] = {v: e.manifest for v, e in entries.items()}
                for v, e in entries.items():
                    if is_head:
                        held.setdefault(e.stage, []).append(v)
                    if e.manifest not in walk.reachable:
                        _check_manifest(reg, walk, c.model, v, e.manifest, corrupt)
            if is_head:
                walk.versions += c.latest.version
                _check_head(reg, walk, c, buckets, where)
                if config is not None:
                    _check_policy(config, walk, c, held, ref_path)
                is_head = False
            child = c
            current = c.parent
    return walk


def fsck(reg: Registry) -> FsckReport:
    """Verify every object, every ref, every model's history and every manifest.

    Args:
        reg: The registry.

    Returns:
        The report; ``ok`` is False when anything is corrupt, missing or inconsistent,
        or a model's state breaks the policy as configured (an exclusive stage holding
        more than one version).

    Raises:
        UsageError: ``config.toml`` is not a valid configuration.
    """
    reg.layout.check_format()
    config = reg.config
    reg.decoded.clear()
    problems: list[Problem] = []
    corrupt: set[str] = set()
    count = 0
    for name, path in reg.objects.iter_objects():
        if not is_object_id(name) or not path.is_file():
            problems.append(Problem(str(path), "unexpected entry in the object directory"))
            continue
        count += 1
        if not reg.objects.verify(name):
            corrupt.add(name)
    walk = _walk(reg, corrupt, config)
    problems.extend(walk.problems)
    for oid in sorted(corrupt - walk.corrupt_named):
        problems.append(Problem(str(reg.objects.path(oid)),
                                "unreferenced object is corrupt (digest mismatch)"))
    notes = list(walk.notes)
    if reg.layout.tmp.is_dir():
        notes += [Problem(str(p), "leftover temporary file (`modelreg gc` removes it)")
                  for p in sorted(reg.layout.tmp.iterdir())]
    for lock in sorted(reg.layout.refs.rglob("*.lock")):
        notes.append(Problem(str(lock), "lock file present (a command is running, or one "
                                        "crashed; `modelreg gc` removes stale locks)"))
    return FsckReport(ok=not problems, problems=problems, notes=notes, objects=count,
                      models=walk.models, versions=walk.versions, events=walk.events)


def gc(reg: Registry, *, grace: float = DEFAULT_GRACE, dry_run: bool = False) -> GcReport:
    """Remove unreferenced objects, temp files and stale locks older than ``grace`` seconds.

    Args:
        reg: The registry.
        grace: Age in seconds below which nothing is removed (protects work in flight).
        dry_run: Only report what would be removed.

    Returns:
        What was (or would be) removed.

    Raises:
        IntegrityError: The store has missing or corrupt history; run fsck first.
    """
    reg.layout.check_format()
    reg.decoded.clear()
    walk = _walk(reg, set())
    if walk.problems:
        raise IntegrityError(
            f"gc refused: the store has {len(walk.problems)} problem(s), first: "
            f"{walk.problems[0].path}: {walk.problems[0].message}. Run `modelreg fsck`."
        )
    cutoff = time.time() - grace
    objects, freed = [], 0
    for name, path in reg.objects.iter_objects():
        if not is_object_id(name) or name in walk.reachable:
            continue
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if st.st_mtime > cutoff:
            continue
        objects.append(name)
        freed += st.st_size
        if not dry_run:
            reg.objects.remove(name)
    tmp_files = []
    if reg.layout.tmp.is_dir():
        for entry in sorted(reg.layout.tmp.iterdir()):
            try:
                if entry.lstat().st_mtime > cutoff:
                    continue
            except FileNotFoundError:
                continue
            tmp_files.append(str(entry))
            if not dry_run:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
    locks = []
    for lock in sorted(reg.layout.refs.rglob("*.lock")):
        info = read_info(lock)
        if info is not None and is_stale(info, stale_after_setting()):
            locks.append(str(lock))
            if not dry_run:
                break_lock(lock, info, reg.layout.tmp)
    return GcReport(dry_run=dry_run, objects=objects, tmp_files=tmp_files, locks=locks,
                    bytes_freed=freed)
