"""Keeping a store healthy: ``fsck`` verifies everything, ``gc`` removes what nothing needs."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from modelreg.errors import IntegrityError, ModelregError, ObjectMissing
from modelreg.registry.core import MODELS_PREFIX, Registry
from modelreg.registry.policy import StoreConfig
from modelreg.registry.state import Commit
from modelreg.results import FsckReport, GcReport, Problem
from modelreg.storage.hashing import is_object_id, parse_digest
from modelreg.storage.lock import break_lock, is_stale, read_info, stale_after_setting

__all__ = ["DEFAULT_GRACE", "fsck", "gc"]

DEFAULT_GRACE = 3600.0
"""Seconds an unreferenced object or temp file is spared by ``gc`` (a register in flight)."""
QUARANTINE_PREFIX = "gc-quarantine-"
"""Names the directory in ``tmp/`` where gc holds objects between its two walks."""


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
    debris: list[Problem] = []
    for path, harmless, what in reg.refs.strays(MODELS_PREFIX):
        (debris if harmless else problems).append(Problem(str(path), what))
    for oid in sorted(corrupt - walk.corrupt_named):
        problems.append(Problem(str(reg.objects.path(oid)),
                                "unreferenced object is corrupt (digest mismatch)"))
    notes = list(walk.notes)
    if reg.layout.tmp.is_dir():
        notes += [Problem(str(p), "leftover temporary file (`modelreg gc` removes it)")
                  for p in sorted(reg.layout.tmp.iterdir())]
    notes.extend(debris)
    for lock in sorted(reg.layout.refs.rglob("*.lock")):
        notes.append(Problem(str(lock), "lock file present (a command is running, or one "
                                        "crashed; `modelreg gc` removes stale locks)"))
    return FsckReport(ok=not problems, problems=problems, notes=notes, objects=count,
                      models=walk.models, versions=walk.versions, events=walk.events)


def _reachable(reg: Registry) -> set[str]:
    """Every object reachable from a ref now; refuse to go on if the store has problems."""
    reg.decoded.clear()
    strays = [(path, what) for path, harmless, what in reg.refs.strays(MODELS_PREFIX)
              if not harmless]
    if strays:
        path, what = strays[0]
        raise IntegrityError(
            f"gc refused: {path} is {what.removeprefix('not a ref: ')}, not a ref; a model "
            "whose ref is unreadable would lose its objects. Move it out of refs/ and run "
            "`modelreg fsck`.", str(path))
    walk = _walk(reg, set())
    if walk.problems:
        raise IntegrityError(
            f"gc refused: the store has {len(walk.problems)} problem(s), first: "
            f"{walk.problems[0].path}: {walk.problems[0].message}. Run `modelreg fsck`."
        )
    return walk.reachable


def _remove(reg: Registry, candidates: list[tuple[str, int]],
            cutoff: float) -> tuple[list[str], int]:
    """Delete unreachable objects without ever deleting one a change committed meanwhile.

    The candidates are first moved into a quarantine directory in ``tmp/`` (a rename: a
    writer that re-uses one of them afterwards finds it gone and writes it again). One that
    was re-used just before it moved (its mtime is now past the cutoff), or that a ref
    reaches after all (a second walk, made after every candidate moved), is moved back; the
    rest are deleted with the quarantine.
    """
    quarantine = reg.layout.tmp / f"{QUARANTINE_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
    quarantine.mkdir(parents=True)
    moved: dict[str, tuple[Path, int]] = {}
    try:
        for name, size in candidates:
            held = quarantine / name
            try:
                os.rename(reg.objects.path(name), held)
            except FileNotFoundError:
                continue
            if held.stat().st_mtime > cutoff:
                _put_back(reg, name, held)
                continue
            moved[name] = (held, size)
        reachable = _reachable(reg) if moved else set()
        for name in sorted(reachable & moved.keys()):
            _put_back(reg, name, moved.pop(name)[0])
    except BaseException:
        for name, (held, _) in moved.items():
            _put_back(reg, name, held)
        raise
    finally:
        if not any(quarantine.iterdir()):
            quarantine.rmdir()
    shutil.rmtree(quarantine, ignore_errors=True)
    # A writer that re-used a candidate after the second walk stored it again: it was not
    # removed from the store, and is not reported as removed.
    gone = {name: size for name, (_, size) in moved.items() if not reg.objects.contains(name)}
    return sorted(gone), sum(gone.values())


def _put_back(reg: Registry, name: str, held: Path) -> None:
    """Return a quarantined object to the store (unless a writer stored it again)."""
    dest = reg.objects.path(name)
    with contextlib.suppress(FileExistsError):
        os.link(held, dest)
    held.unlink(missing_ok=True)


def _restore_quarantines(reg: Registry) -> None:
    """Put back what an interrupted gc left in quarantine (a later walk decides again)."""
    if not reg.layout.tmp.is_dir():
        return
    for quarantine in sorted(reg.layout.tmp.glob(f"{QUARANTINE_PREFIX}*")):
        pid = quarantine.name.removeprefix(QUARANTINE_PREFIX).partition("-")[0]
        if pid.isdigit() and _alive(int(pid)):
            continue  # another gc's, in flight
        for held in sorted(quarantine.iterdir()):
            if is_object_id(held.name):
                reg.objects.path(held.name).parent.mkdir(parents=True, exist_ok=True)
                _put_back(reg, held.name, held)
        shutil.rmtree(quarantine, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    # The cutoff is taken before anything is read: an object written or re-used (its mtime
    # refreshed) after this instant is younger than the cutoff and is never a candidate,
    # however long the walk takes or however long gc is paused.
    cutoff = time.time() - grace
    _restore_quarantines(reg)
    reachable = _reachable(reg)
    candidates: list[tuple[str, int]] = []
    for name, path in reg.objects.iter_objects():
        if not is_object_id(name) or name in reachable:
            continue
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if st.st_mtime <= cutoff:
            candidates.append((name, st.st_size))
    if dry_run:
        objects = [name for name, _ in candidates]
        freed = sum(size for _, size in candidates)
    else:
        objects, freed = _remove(reg, candidates, cutoff)
    tmp_files = []
    if reg.layout.tmp.is_dir():
        for entry in sorted(reg.layout.tmp.iterdir()):
            if entry.name.startswith(QUARANTINE_PREFIX):
                continue  # an interrupted gc's: restored above, or another gc's in flight
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
