"""One walk over every model of a store: what ``fsck`` checks and ``gc`` keeps.

For each model it reads the ref (head commit id and state), checks the state against the
digest its head commit records, follows every commit of the chain back to the first (each
register commit's manifest, and the file objects the manifest names), and reads the index
leaves the state names. Old states are not stored, so nothing else is reachable. It records
problems instead of raising, so ``fsck`` can report them all and ``gc`` can refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelreg.errors import IntegrityError, ModelregError, ObjectMissing
from modelreg.registry.core import Registry
from modelreg.registry.manifest import Outline, decode_manifest, outline
from modelreg.registry.policy import StoreConfig
from modelreg.registry.state import (
    LEAF_SIZE,
    ModelState,
    VersionEntry,
    decode_commit,
    decode_leaf,
    decode_ref,
    decode_state,
    group_of,
)
from modelreg.results import Problem
from modelreg.storage.hashing import parse_digest
from modelreg.storage.objects import ObjectStore
from modelreg.storage.refs import RefStore

__all__ = ["Walk", "file_stores", "walk_store"]


@dataclass
class Walk:
    """What a walk over every model's history reached, and what it found wrong."""

    reachable: set[str] = field(default_factory=set)
    verified: set[str] = field(default_factory=set)
    """Objects the walk read whole and found intact (fsck does not hash them again)."""
    blobs: dict[str, str] = field(default_factory=dict)
    """Each file object a manifest names, with the first version naming it."""
    present: set[str] | None = None
    """The ids in the store, if the caller listed them (else each is looked up)."""
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)
    corrupt_named: set[str] = field(default_factory=set)
    models: int = 0
    versions: int = 0
    events: int = 0


def _read(reg: Registry, walk: Walk, oid: str, context: str) -> bytes | None:
    """Fetch (and verify) an object for the walk, recording a problem instead of raising."""
    walk.reachable.add(oid)
    try:
        data = reg.objects.get_bytes(oid)
    except ObjectMissing:
        walk.problems.append(Problem(reg.where(oid), f"{context}: object is missing"))
    except IntegrityError:
        walk.corrupt_named.add(oid)
        walk.problems.append(Problem(reg.where(oid),
                                     f"{context}: object is corrupt (digest mismatch)"))
    else:
        walk.verified.add(oid)
        return data
    return None


def _check_manifest(reg: Registry, walk: Walk, model: str, version: int, oid: str,
                    text: str) -> None:
    """Check a register commit's manifest and note the file objects it names."""
    where = reg.where(oid)
    context = f"model {model}, version {version}: manifest"
    data = text.encode("utf-8")
    found = outline(data)
    if found is None:  # not in the shape modelreg writes: parse it whole
        try:
            m = decode_manifest(data, where)
        except ModelregError as exc:
            walk.problems.append(Problem(where, f"{context}: {exc}"))
            return
        digests = [f.digest for f in m.artifact.files]
        if m.artifact.kind == "directory":
            digests.append(m.artifact.digest)
        if m.example is not None:
            digests.append(m.example.digest)
        found = Outline(m.name, m.version, digests)
    if found.name != model or found.version != version:
        walk.problems.append(Problem(where, f"{context} names {found.name}@{found.version}"))
    for digest in found.objects:
        blob = parse_digest(digest)
        if blob is None:
            walk.problems.append(Problem(where, f"{context}: bad digest {digest!r}"))
            continue
        walk.reachable.add(blob)
        if blob in walk.blobs:
            continue
        walk.blobs[blob] = f"model {model}, version {version}"
        if not (blob in walk.present if walk.present is not None
                else reg.objects.contains(blob)):
            walk.problems.append(Problem(
                reg.where(blob), f"model {model}, version {version}: file object is missing"))


def _check_state(walk: Walk, state: ModelState, entries: dict[int, VersionEntry],
                 registered: dict[int, str] | None, where: str) -> None:
    """Check the state's index against itself and against the chain's register commits."""
    model = state.model
    expected = set(range(1, state.latest.version + 1))
    if set(entries) != expected:
        missing = sorted(expected - set(entries))[:5]
        extra = sorted(set(entries) - expected)[:5]
        walk.problems.append(Problem(where, f"model {model}: index does not hold versions "
                                     f"1..{state.latest.version} (missing {missing}, "
                                     f"beyond {extra})"))
    if registered is not None:
        if set(registered) != expected:
            walk.problems.append(Problem(where, f"model {model}: the history registers "
                                         f"{len(registered)} versions, the state says "
                                         f"{state.latest.version}"))
        for v, e in sorted(entries.items()):
            if registered.get(v, e.manifest) != e.manifest:
                walk.problems.append(Problem(where, (
                    f"model {model}: the index entry of v{v} names commit {e.manifest}, "
                    f"not {registered[v]}, which registered it")))
    for label, h in [("latest", state.latest), *state.stages.items(), *state.aliases.items()]:
        found = entries.get(h.version)
        if found is not None and found.manifest != h.manifest:
            walk.problems.append(Problem(where, f"model {model}: {label} points at "
                                         f"v{h.version} with a manifest the index does not "
                                         "list"))


def _check_policy(config: StoreConfig, walk: Walk, state: ModelState,
                  held: dict[str, list[int]], ref_path: str) -> None:
    """Check the model's state against the store's policy as it is configured now.

    An exclusive stage holding more than one version is a problem (the state the policy
    forbids, reached under an older configuration or by a bug); an alias named like a
    stage is a note (references resolve the stage; the alias is unreachable by name).
    """
    for stage, versions in sorted(held.items()):
        if len(versions) > 1 and stage in config.stages and config.policy(stage).exclusive:
            listed = ", ".join(f"v{v}" for v in sorted(versions))
            walk.problems.append(Problem(ref_path, (
                f"model {state.model}: stage {stage} is exclusive (holds one version at a time) "
                f"but holds {len(versions)}: {listed}; archive all but one "
                f"(`modelreg archive {state.model}@N`)")))
    stages = {s.lower(): s for s in config.stages}
    for alias, h in sorted(state.aliases.items()):
        clash = stages.get(alias.lower())
        if clash is not None:
            walk.notes.append(Problem(ref_path, (
                f"model {state.model}: alias {alias} (v{h.version}) clashes with stage {clash}, "
                f"configured after the alias was made; {state.model}@{clash} means the stage "
                f"only. Remove the alias (`modelreg alias rm {state.model} {alias}`) and set it "
                "again under another name")))


def walk_store(reg: Registry, config: StoreConfig | None = None,
          present: set[str] | None = None) -> Walk:
    """Walk every model of the store.

    Args:
        reg: The registry.
        config: The policy to check each model's state against (``fsck``), or None.
        present: The ids the store holds, if the caller listed them (else each file object
            a manifest names is looked up).

    Returns:
        What the walk reached, verified and found wrong.
    """
    walk = Walk(present=present)
    for ref_name in reg.model_names():
        ref_path = reg.refs.where(ref_name)
        try:
            body, _ = reg.refs.read_versioned(ref_name)
            if body is None:
                continue
            head, state_bytes, digest = decode_ref(body, ref_path)
        except IntegrityError as exc:
            walk.problems.append(Problem(ref_path, str(exc)))
            continue
        walk.models += 1
        key = ref_name.split("/", 1)[1]
        registered: dict[int, str] = {}
        complete = True
        head_state: str | None = None
        child_seq: int | None = None
        current: str | None = head
        while current is not None:
            label = (f"model {key}, event {child_seq - 1}" if child_seq is not None
                     else f"model {key}, head event")
            data = _read(reg, walk, current, f"{label}: commit")
            where = reg.where(current)
            try:
                c = None if data is None else decode_commit(data, where)
            except ModelregError as exc:
                walk.problems.append(Problem(where, f"{label}: {exc}"))
                c = None
            if c is None:
                complete = False
                break
            walk.events += 1
            label = f"model {c.model}, event {c.seq} ({c.event.action})"
            if head_state is None:
                head_state = c.state
            if c.model.lower() != key:
                walk.problems.append(Problem(where, f"{label}: commit belongs to {c.model!r}, "
                                             f"found under ref {ref_path}"))
            if child_seq is not None and c.seq != child_seq - 1:
                walk.problems.append(Problem(where, f"{label}: sequence jumps from {c.seq} to "
                                             f"{child_seq} (an event was removed)"))
            if c.parent is None and c.seq != 1:
                walk.problems.append(Problem(where, f"{label}: history starts at event {c.seq}, "
                                             "not 1 (earlier events were removed)"))
            if c.manifest is not None:
                version = c.event.version
                if c.event.action != "register" or version is None or version in registered:
                    walk.problems.append(Problem(where, f"{label}: holds a manifest but does "
                                                 "not register a new version"))
                else:
                    registered[version] = current
                    _check_manifest(reg, walk, c.model, version, current, c.manifest)
            child_seq = c.seq
            current = c.parent
        if head_state is None:
            continue
        if head_state != digest:
            walk.problems.append(Problem(ref_path, (
                f"model {key}: the state in the ref does not match the digest its head "
                f"commit {head} records (the ref was edited or damaged)")))
            continue
        try:
            state = decode_state(state_bytes, ref_path, head)
        except IntegrityError as exc:
            walk.problems.append(Problem(ref_path, str(exc)))
            continue
        walk.versions += state.latest.version
        entries = dict(state.tail)
        for number, leaf in sorted(state.leaves.items()):
            data = _read(reg, walk, leaf, f"model {key}: index leaf {number}")
            if data is None:
                continue
            try:
                got = decode_leaf(data, reg.where(leaf))
            except ModelregError as exc:
                walk.problems.append(Problem(reg.where(leaf), str(exc)))
                continue
            if len(got) != LEAF_SIZE or any(group_of(v) != number for v in got):
                walk.problems.append(Problem(reg.where(leaf), (
                    f"model {key}: index leaf {number} does not hold exactly versions "
                    f"{number * LEAF_SIZE + 1}..{(number + 1) * LEAF_SIZE}")))
            entries.update(got)
        _check_state(walk, state, entries, registered if complete else None, ref_path)
        if config is not None:
            held: dict[str, list[int]] = {}
            for v, e in entries.items():
                held.setdefault(e.stage, []).append(v)
            _check_policy(config, walk, state, held, ref_path)
    return walk


def file_stores(reg: Registry) -> tuple[ObjectStore, RefStore] | None:
    """The file-system object and ref stores of a directory store, else None."""
    if isinstance(reg.objects, ObjectStore) and isinstance(reg.refs, RefStore):
        return reg.objects, reg.refs
    return None


