"""Keeping a store healthy: ``fsck`` verifies everything, ``gc`` removes what nothing needs.

Both walk every model once (:mod:`modelreg.registry.walk`): its ref (head commit id and
state), every commit of its chain back to the first (each register commit's manifest, and
the blobs the manifest names), and the index leaves the state names. Old states are not
stored, so nothing else is reachable: a leaf rewritten by a later change is garbage once no
ref's state names it. Both work on any backend through the ``Objects``/``Refs`` protocol;
what only a directory has (``tmp/``, lock files, the quarantine that makes ``gc`` safe
against concurrent writers) is used where the store is one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from modelreg.errors import IntegrityError, ObjectMissing
from modelreg.registry.core import MODELS_PREFIX, Registry
from modelreg.registry.walk import file_stores, walk_store
from modelreg.results import FsckReport, GcReport, Problem
from modelreg.storage.hashing import is_object_id
from modelreg.storage.lock import break_lock, is_stale, read_info, stale_after_setting
from modelreg.storage.objects import ObjectStore

__all__ = ["DEFAULT_GRACE", "check_models", "fsck", "gc"]

DEFAULT_GRACE = 3600.0
"""Seconds an unreferenced object or temp file is spared by ``gc`` (a register in flight)."""
QUARANTINE_PREFIX = "gc-quarantine-"
"""Names the directory in ``tmp/`` where gc holds objects between its two walks."""




def check_models(reg: Registry) -> list[Problem]:
    """Walk every model's ref, chain, index and manifests, and the objects they name.

    What ``fsck`` reports about the models, without its look at the directory (``migrate``
    checks the store it built before switching to it).
    """
    reg.decoded.clear()
    return list(walk_store(reg, reg.config).problems)


def fsck(reg: Registry) -> FsckReport:
    """Verify every object, every ref, every model's history and every manifest.

    Each object is hashed once: commits and leaves as the walk reads them, the rest
    (file objects, and anything nothing names) after it.

    Args:
        reg: The registry.

    Returns:
        The report; ``ok`` is False when anything is corrupt, missing or inconsistent,
        or a model's state breaks the policy as configured (an exclusive stage holding
        more than one version).

    Raises:
        UsageError: ``config.toml`` is not a valid configuration.
    """
    if reg.fs_layout is not None:
        reg.layout.check_format()
    config = reg.config
    reg.decoded.clear()
    fs = file_stores(reg)
    listing = fs[0].scan() if fs is not None else [(oid, True) for oid in reg.objects.ids()]
    problems: list[Problem] = []
    ids: list[str] = []
    for name, regular in listing:
        if regular and is_object_id(name):
            ids.append(name)
        else:
            problems.append(Problem(reg.where(name) if is_object_id(name) else
                                    str(fs[0].root / name) if fs is not None else name,
                                    "unexpected entry in the object directory"))
    walk = walk_store(reg, config, set(ids))
    problems[:0] = walk.problems
    count = 0
    for name in ids:
        count += 1
        if name in walk.verified or reg.objects.verify(name):
            continue
        context = walk.blobs.get(name)
        if context is not None:
            problems.append(Problem(reg.where(name),
                                    f"{context}: file object is corrupt (digest mismatch)"))
        elif name not in walk.corrupt_named:
            problems.append(Problem(reg.where(name),
                                    "unreferenced object is corrupt (digest mismatch)"))
    notes = list(walk.notes)
    if fs is not None:
        layout = reg.layout
        debris: list[Problem] = []
        for stray, harmless, what in fs[1].strays(MODELS_PREFIX):
            (debris if harmless else problems).append(Problem(str(stray), what))
        if layout.tmp.is_dir():
            notes += [Problem(str(p), "leftover temporary file (`modelreg gc` removes it)")
                      for p in sorted(layout.tmp.iterdir())]
        notes.extend(debris)
        for lock in sorted(layout.refs.rglob("*.lock")):
            notes.append(Problem(str(lock), "lock file present (a command is running, or one "
                                            "crashed; `modelreg gc` removes stale locks)"))
    return FsckReport(ok=not problems, problems=problems, notes=notes, objects=count,
                      models=walk.models, versions=walk.versions, events=walk.events)


def _reachable(reg: Registry) -> set[str]:
    """Every object reachable from a ref now; refuse to go on if the store has problems."""
    reg.decoded.clear()
    fs = file_stores(reg)
    strays = [] if fs is None else [(path, what) for path, harmless, what
                                    in fs[1].strays(MODELS_PREFIX) if not harmless]
    if strays:
        path, what = strays[0]
        raise IntegrityError(
            f"gc refused: {path} is {what.removeprefix('not a ref: ')}, not a ref; a model "
            "whose ref is unreadable would lose its objects. Move it out of refs/ and run "
            "`modelreg fsck`.", str(path))
    walk = walk_store(reg)
    if walk.problems:
        raise IntegrityError(
            f"gc refused: the store has {len(walk.problems)} problem(s), first: "
            f"{walk.problems[0].path}: {walk.problems[0].message}. Run `modelreg fsck`."
        )
    return walk.reachable


def _remove(reg: Registry, store: ObjectStore, candidates: list[tuple[str, int]],
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
                os.rename(store.path(name), held)
            except FileNotFoundError:
                continue
            if held.stat().st_mtime > cutoff:
                _put_back(store, name, held)
                continue
            moved[name] = (held, size)
        reachable = _reachable(reg) if moved else set()
        for name in sorted(reachable & moved.keys()):
            _put_back(store, name, moved.pop(name)[0])
    except BaseException:
        for name, (held, _) in moved.items():
            _put_back(store, name, held)
        raise
    finally:
        if not any(quarantine.iterdir()):
            quarantine.rmdir()
    shutil.rmtree(quarantine, ignore_errors=True)
    # A writer that re-used a candidate after the second walk stored it again: it was not
    # removed from the store, and is not reported as removed.
    gone = {name: size for name, (_, size) in moved.items() if not store.contains(name)}
    return sorted(gone), sum(gone.values())


def _remove_by_protocol(reg: Registry, candidates: list[tuple[str, int]],
                        cutoff: float) -> tuple[list[str], int]:
    """Delete unreachable objects of a store with no directory (``Objects.remove``).

    With no rename to quarantine by, each candidate still old is first copied out, verified,
    to a local spool and then removed. An object that a writer re-used while it was being
    removed (``Objects.remove_unless_reused``: S3's re-use mark, memory's date) is stored
    again at once; once
    every candidate is gone, a second walk is made and each one a ref now reaches is stored
    again too. A writer that re-uses a candidate after its removal finds it missing and
    stores it itself. So however long gc pauses between its look at an object and its
    deletion, no ref is left naming a missing object; the cost is reading what it removes.
    """
    removed: dict[str, tuple[Path | None, int]] = {}
    with tempfile.TemporaryDirectory(prefix="modelreg-gc-") as spool:
        try:
            for name, size in candidates:
                found = reg.objects.stat(name)
                if found is None or found[0] > cutoff:
                    continue
                spooled = Path(spool) / name
                held: Path | None = spooled
                try:
                    with open(spooled, "wb") as fh:
                        reg.objects.copy_to(name, fh)
                except ObjectMissing:
                    continue
                except IntegrityError:
                    held = None  # corrupt: there is nothing worth storing again
                if not reg.objects.remove_unless_reused(name, cutoff):
                    _store_again(reg, held)
                    continue
                removed[name] = (held, size)
            while removed:  # a walk again after each put-back: what it names is reached too
                reg.decoded.clear()
                back = walk_store(reg).reachable & removed.keys()
                if not back:
                    break
                for name in sorted(back):
                    _store_again(reg, removed.pop(name)[0])
        except BaseException:
            for held, _ in removed.values():
                _store_again(reg, held)
            raise
    # A writer that re-used a candidate after its removal stored it again: it was not
    # removed from the store, and is not reported as removed.
    gone = {name: size for name, (_, size) in removed.items() if not reg.objects.contains(name)}
    return sorted(gone), sum(gone.values())


def _store_again(reg: Registry, held: Path | None) -> None:
    """Store a removed object again from its spooled copy (None: it was corrupt)."""
    if held is not None:
        reg.objects.put_file(held)


def _put_back(store: ObjectStore, name: str, held: Path) -> None:
    """Return a quarantined object to the store (unless a writer stored it again)."""
    with contextlib.suppress(FileExistsError):
        os.link(held, store.path(name))
    held.unlink(missing_ok=True)


def _restore_quarantines(reg: Registry, store: ObjectStore) -> None:
    """Put back what an interrupted gc left in quarantine (a later walk decides again)."""
    if not reg.layout.tmp.is_dir():
        return
    for quarantine in sorted(reg.layout.tmp.glob(f"{QUARANTINE_PREFIX}*")):
        pid = quarantine.name.removeprefix(QUARANTINE_PREFIX).partition("-")[0]
        if pid.isdigit() and _alive(int(pid)):
            continue  # another gc's, in flight
        for held in sorted(quarantine.iterdir()):
            if is_object_id(held.name):
                store.root.mkdir(parents=True, exist_ok=True)
                _put_back(store, held.name, held)
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

    Reachable objects are those a walk from every ref reaches: the index leaves its state
    names, every commit of its chain, and the files, trees and examples their manifests
    name. Entries of the object directory that are not objects (a fan-out directory of
    format 1) are left alone.

    Args:
        reg: The registry.
        grace: Age in seconds below which nothing is removed (protects work in flight).
        dry_run: Only report what would be removed.

    Returns:
        What was (or would be) removed.

    Raises:
        IntegrityError: The store has missing or corrupt history; run fsck first.
    """
    fs = file_stores(reg)
    if fs is not None:
        reg.layout.check_format()
    # The cutoff is taken before anything is read: an object written or re-used (its mtime
    # refreshed) after this instant is younger than the cutoff and is never a candidate,
    # however long the walk takes or however long gc is paused.
    cutoff = time.time() - grace
    if fs is not None:
        _restore_quarantines(reg, fs[0])
    reachable = _reachable(reg)
    candidates: list[tuple[str, int]] = []
    for name in reg.objects.ids():
        if name in reachable:
            continue
        found = reg.objects.stat(name)
        if found is not None and found[0] <= cutoff:
            candidates.append((name, found[1]))
    if dry_run:
        objects = [name for name, _ in candidates]
        freed = sum(size for _, size in candidates)
    elif fs is not None:
        objects, freed = _remove(reg, fs[0], candidates, cutoff)
    else:
        objects, freed = _remove_by_protocol(reg, candidates, cutoff)
    tmp_files: list[str] = []
    locks: list[str] = []
    if fs is not None:
        tmp_files, locks = _sweep(reg, cutoff, dry_run)
    return GcReport(dry_run=dry_run, objects=objects, tmp_files=tmp_files, locks=locks,
                    bytes_freed=freed)


def _sweep(reg: Registry, cutoff: float, dry_run: bool) -> tuple[list[str], list[str]]:
    """Remove old temporary files and stale locks of a directory store."""
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
        if info is not None and is_stale(info, stale_after_setting()) and (
                dry_run or break_lock(lock, info, reg.layout.tmp)):
            locks.append(str(lock))
    return tmp_files, locks
