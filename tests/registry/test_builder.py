"""StateBuilder: what a change writes (files, fsyncs), and what the registry keeps in memory."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

import modelreg
from modelreg.errors import IntegrityError, NotFound
from modelreg.registry import Registry
from modelreg.registry.core import manifest_of
from modelreg.registry.state import LEAF_SIZE, decode_commit, decode_leaf, decode_state
from modelreg.storage.objects import OBJECT_MODE, ObjectStore
from tests.helpers import count_object_reads

_needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(),
                                 reason="needs /proc to name descriptors")


def _register(reg: Registry, tmp_path: Path, i: int, **kw: Any) -> modelreg.RegisterResult:
    f = tmp_path / "files" / f"m{i}.bin"
    f.parent.mkdir(exist_ok=True)
    f.write_bytes(b"model %d" % i)
    return modelreg.register("m", [f], registry=reg, git=False, params={"i": i}, **kw)


def _assert_cache_is_what_disk_says(reg: Registry) -> int:
    """Every decoded object the registry keeps equals a fresh decode of the file (repr,
    so the order of every mapping counts too); a kept model state that its ref holds now
    equals the state a fresh registry decodes from the ref."""
    fresh = Registry.open(reg.layout.root)
    heads = {}
    for ref_name in fresh.model_names():
        body, token = fresh.refs.read_versioned(ref_name)
        if body is not None:
            current = fresh.parse_body(ref_name, body, token)
            heads[current.oid] = current
    for (oid, decode), value in reg.decoded.items():
        if decode is decode_state:
            head = oid.partition(":")[0]
            if head in heads:
                assert repr(value) == repr(heads.pop(head).state), oid
            continue
        path = reg.objects.path(oid)  # type: ignore[attr-defined]
        assert path.stat().st_mode & 0o777 == OBJECT_MODE
        assert repr(value) == repr(decode(fresh.objects.get_bytes(oid), str(path))), oid
    assert not heads or not reg.decoded, f"the current state is not kept: {list(heads)}"
    return len(reg.decoded)


def test_cache_holds_what_was_written_and_equals_a_fresh_decode(registry: Registry,
                                                               tmp_path: Path) -> None:
    steps = [
        *(lambda i=i: _register(registry, tmp_path, i, metrics={"z": 1.5, "a": i},
                                tags={"b": "x", "a": "y"}) for i in range(4)),
        lambda: modelreg.promote("m@2", "staging", registry=registry),
        lambda: modelreg.approve("m@2", registry=registry, stage="production", comment="c",
                                 actor="other@example.com"),
        lambda: modelreg.check("m@2", "auc", passed=True, value={"b": (1, 2), "a": 0.5},
                               registry=registry),
        lambda: modelreg.edit("m@3", registry=registry, description="x",
                              set_tags={"b": "1", "a": "2"}),
        lambda: modelreg.alias_set("m", "zz", 2, registry=registry),
        lambda: modelreg.alias_set("m", "champ", 3, registry=registry),
        lambda: _register(registry, tmp_path, 9, stage="staging"),
        lambda: modelreg.promote("m@5", "production", registry=registry,
                                 actor="other@example.com"),
    ]
    for step in steps:
        step()
        # After every change the state it put in the ref is kept, and equals a fresh read.
        _assert_cache_is_what_disk_says(registry)
    head = registry.require("m")
    kinds = {decode for _oid, decode in registry.decoded}
    assert {decode_commit, manifest_of} <= kinds
    assert (head.oid, decode_commit) in registry.decoded
    assert _assert_cache_is_what_disk_says(registry) > 10
    fresh = Registry.open(registry.layout.root)
    for v in range(1, 6):
        assert repr(registry.show(f"m@{v}")) == repr(fresh.show(f"m@{v}"))
    assert repr(registry.versions("m")) == repr(fresh.versions("m"))
    assert repr(modelreg.history("m", registry=registry)) == repr(
        modelreg.history("m", registry=fresh))


def test_cache_across_leaf_boundaries(registry: Registry, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # only the bytes matter here
    for i in range(2 * LEAF_SIZE + 3):
        _register(registry, tmp_path, i)
    state = registry.require_state("m")
    assert sorted(state.leaves) == [0, 1]
    assert sorted(state.tail) == [2 * LEAF_SIZE + 1, 2 * LEAF_SIZE + 2, 2 * LEAF_SIZE + 3]
    assert (state.leaves[1], decode_leaf) in registry.decoded
    _assert_cache_is_what_disk_says(registry)
    fresh = Registry.open(registry.layout.root)
    assert repr(registry.versions("m")) == repr(fresh.versions("m"))
    for v in (1, 10, 100, LEAF_SIZE, LEAF_SIZE + 1, 2 * LEAF_SIZE + 3):
        assert repr(registry.show(f"m@{v}")) == repr(fresh.show(f"m@{v}"))


def test_next_register_reads_nothing_back(registry: Registry, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # The commit (with its manifest) a register wrote is not read from disk again: neither
    # for its own result nor for the next register's duplicate check.
    _register(registry, tmp_path, 0)
    reads = count_object_reads(monkeypatch)
    for i in range(1, 4):
        r = _register(registry, tmp_path, i)
        assert r.created and r.version.version == i + 1
    assert reads == []


def _fail_fsync_of(monkeypatch: pytest.MonkeyPatch, marker: bytes) -> list[str]:
    """Make the fsync of the temp file holding ``marker`` fail with EIO (as a disk would)."""
    real = os.fsync
    failed: list[str] = []

    def eio(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if Path(name).is_file() and marker in Path(name).read_bytes():
            failed.append(name)
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", eio)
    return failed


@_needs_proc
@pytest.mark.parametrize("marker", [b'"type":"commit"', b"model 1"])
def test_failed_write_leaves_no_cache_entry_and_no_ref_move(registry: Registry,
                                                            tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            marker: bytes) -> None:
    _register(registry, tmp_path, 0)
    before = dict(registry.decoded.items())
    ref = registry.layout.refs / "models" / "m"
    old_ref = ref.read_bytes()
    failed = _fail_fsync_of(monkeypatch, marker)
    with pytest.raises(OSError, match="Input/output"):
        _register(registry, tmp_path, 1)
    assert len(failed) == 1
    assert ref.read_bytes() == old_ref
    assert dict(registry.decoded.items()) == before
    assert not list(registry.layout.refs.rglob("*.lock"))
    assert list(registry.layout.tmp.iterdir()) == []
    monkeypatch.undo()
    assert Registry.open(registry.layout.root).versions("m")[-1].version == 1
    assert modelreg.fsck(registry=registry).ok
    r = _register(registry, tmp_path, 1)
    assert r.version.version == 2
    _assert_cache_is_what_disk_says(registry)


def test_objects_named_by_the_commit_are_stored_read_only(registry: Registry,
                                                          tmp_path: Path) -> None:
    r = _register(registry, tmp_path, 0, stage="staging")
    head = registry.require("m")
    store = registry.objects
    assert isinstance(store, ObjectStore)
    # The promotion's commit, then the register's, which holds the manifest.
    named = [head.oid]
    register = decode_commit(store.path(head.oid).read_bytes(), head.oid).parent
    assert register is not None and head.state.latest.manifest == register
    named.append(register)
    commit = decode_commit(store.path(register).read_bytes(), register)
    assert commit.manifest is not None and commit.event.action == "register"
    text = commit.manifest.encode()
    assert r.version.manifest == "sha256:" + hashlib.sha256(text).hexdigest()
    for oid in named:
        path = store.path(oid)
        assert path.parent == store.root  # one flat directory
        assert hashlib.sha256(path.read_bytes()).hexdigest() == oid
        assert path.stat().st_mode & 0o777 == OBJECT_MODE
        assert path.stat().st_nlink == 1
    assert list(registry.layout.tmp.iterdir()) == []


def _trace(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Log every fsync (by path), link and replace from now on."""
    log: list[tuple[str, str]] = []
    real_fsync, real_link, real_replace = os.fsync, os.link, os.replace

    def fsync(fd: int) -> None:
        real_fsync(fd)
        log.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))

    def link(src: str, dst: str) -> None:
        real_link(src, dst)
        log.append(("link", str(dst)))

    def replace(src: str, dst: str) -> None:
        real_replace(src, dst)
        log.append(("replace", str(dst)))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(os, "replace", replace)
    return log


@_needs_proc
def test_ref_moves_after_every_object_is_durable(registry: Registry, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _register(registry, tmp_path, 0)
    log = _trace(monkeypatch)
    _register(registry, tmp_path, 1)
    monkeypatch.undo()
    ref = str(registry.layout.refs / "models" / "m")
    moved = log.index(("replace", ref))
    head = registry.require("m")
    objects = str(registry.layout.objects)
    path = str(Path(objects) / head.oid)  # the commit, holding the manifest
    assert log.index(("link", path)) < moved
    # The objects directory was fsynced after the link, before the ref moved.
    assert ("fsync", objects) in log[log.index(("link", path)):moved]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@_needs_proc
def test_a_small_register_creates_three_files_and_makes_five_fsyncs(
        registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The budget of format 2: the blob, the commit (holding the manifest) and the ref; one
    # fsync for each of the two objects, one for the objects directory, two for the ref
    # (its temporary file, then its directory). Every version is durable when it returns.
    root = registry.layout.root
    for i in range(3):
        _register(registry, tmp_path, i)
    for i in range(3, 3 + LEAF_SIZE):
        before = _files(root)
        log = _trace(monkeypatch)
        r = _register(registry, tmp_path, i)
        monkeypatch.undo()
        fsyncs = [e for e in log if e[0] == "fsync"]
        new = _files(root) - before
        assert r.created
        if r.version.version % LEAF_SIZE == 1 and r.version.version > 1:
            # The group the version before completed is written as a leaf by this one.
            assert (len(new), len(fsyncs)) == (3, 6), (new, fsyncs)
        else:
            assert (len(new), len(fsyncs)) == (2, 5), (new, fsyncs)
    # The very first register creates the ref as well: blob, commit, ref.
    other = tmp_path / "o.bin"
    other.write_bytes(b"other")
    before = _files(root)
    modelreg.register("other", [other], registry=registry, git=False)
    assert len(_files(root) - before) == 3


# -- searches over the whole history read only the buckets they need ------------------------


@pytest.fixture(scope="module")
def _long_history_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with model "m" at 2 * LEAF_SIZE + 3 versions, made once and copied per test."""
    tmp_path = tmp_path_factory.mktemp("long-history")
    registry, _ = Registry.init(tmp_path / "project")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(os, "fsync", lambda fd: None)  # only the bytes matter here
        # What the autouse _isolated_env sets, which a module fixture runs before.
        m.delenv("MODELREG_DIR", raising=False)
        m.delenv("MODELREG_TRACEBACK", raising=False)
        m.setenv("MODELREG_ACTOR", "tester@example.com")
        m.setenv("MODELREG_USER_CONFIG", str(tmp_path / "no-user-config.toml"))
        for i in range(2 * LEAF_SIZE + 3):
            _register(registry, tmp_path, i)
    return registry.layout.root


@pytest.fixture
def long_history(_long_history_store: Path, tmp_path: Path) -> Registry:
    """Model "m" with 2 * LEAF_SIZE + 3 versions: two index leaves and a tail of three."""
    project = tmp_path / "project"
    shutil.copytree(_long_history_store.parent, project, symlinks=True)
    return Registry.open(project / _long_history_store.name)


def _decoded_leaves(reg: Registry) -> set[str]:
    return {oid for oid, decode in reg.decoded if decode is decode_leaf}


def test_duplicate_in_an_old_leaf_is_found_without_decoding_the_others(
    long_history: Registry, tmp_path: Path
) -> None:
    first = long_history.require_state("m").leaves[0]
    fresh = Registry.open(long_history.layout.root)
    again = _register(fresh, tmp_path, 4)  # the same bytes and params as version 5
    assert (again.created, again.version.version) == (False, 5)
    assert _decoded_leaves(fresh) == {first}
    # A new version goes into the tail, in the ref: no leaf is decoded.
    fresh = Registry.open(long_history.layout.root)
    new = _register(fresh, tmp_path, 10_000)
    assert (new.created, new.version.version) == (True, 2 * LEAF_SIZE + 4)
    assert _decoded_leaves(fresh) == set()


def test_duplicate_check_still_verifies_every_leaf(long_history: Registry,
                                                   tmp_path: Path) -> None:
    store = long_history.objects
    assert isinstance(store, ObjectStore)
    path = store.path(long_history.require_state("m").leaves[0])
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"n":', b'"n": ', 1))
    # Bytes stored already (version 8's) under new params: every leaf is looked through,
    # and a leaf read is verified.
    f = tmp_path / "again.bin"
    f.write_bytes(b"model 7")
    with pytest.raises(IntegrityError):
        modelreg.register("m", [f], registry=Registry.open(long_history.layout.root),
                          git=False, params={"i": -1})


def test_stage_head_falls_back_to_a_version_in_an_older_leaf(long_history: Registry) -> None:
    root = long_history.layout.root
    newest = LEAF_SIZE + 2
    for v in (3, 7, newest):
        modelreg.promote(f"m@{v}", "staging", registry=root)
    assert modelreg.show("m@staging", registry=root).version == newest
    modelreg.promote(f"m@{newest}", "production", registry=Registry.open(root))
    assert modelreg.show("m@staging", registry=root).version == 7
    modelreg.archive("m@7", registry=Registry.open(root))
    assert modelreg.show("m@staging", registry=root).version == 3
    modelreg.archive("m@3", registry=Registry.open(root))
    with pytest.raises(NotFound):
        modelreg.show("m@staging", registry=root)
    assert modelreg.show("m@production", registry=root).version == newest


def test_a_loop_of_registers_reads_each_full_leaf_once(long_history: Registry,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # New bytes cannot belong to an earlier version: such a register reads no leaf. Bytes
    # stored already send the duplicate check through the leaves, searched as bytes; a
    # process that registers again searches the bytes it kept instead of reading again.
    reg = Registry.open(long_history.layout.root)
    reads = count_object_reads(monkeypatch)
    assert _register(reg, tmp_path, 20_000).created
    first = reg.require_state("m").leaves[0]
    assert reads.count(first) == 0
    f = tmp_path / "again.bin"
    f.write_bytes(b"model 7")  # version 8's bytes, other params: not a duplicate
    assert modelreg.register("m", [f], registry=reg, git=False, params={"i": -1}).created
    assert reads.count(first) == 1
    for i in range(20_001, 20_004):
        assert _register(reg, tmp_path, i).created
    assert reads.count(first) == 1
    assert first not in _decoded_leaves(reg)
    again = _register(reg, tmp_path, 4)  # a duplicate of version 5, in the first leaf
    assert (again.created, again.version.version) == (False, 5)
    assert reads.count(first) == 1


def test_a_duplicate_committed_while_the_bytes_were_stored_is_found(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # This register stores its file anew, so it looks only at versions committed since it
    # read the model; an identical register that commits in between is one of those.
    for i in range(3):
        _register(registry, tmp_path, i)
    other = Registry.open(registry.layout.root)
    store_file = type(registry.objects).store_file
    raced = []

    def store_then_race(self: Any, source: Path, progress: Any = None) -> tuple[str, int, bool]:
        stored = store_file(self, source, progress)
        if self is registry.objects and not raced:
            raced.append(_register(other, tmp_path, 99))  # the same bytes and params
        return stored

    monkeypatch.setattr(type(registry.objects), "store_file", store_then_race)
    mine = _register(registry, tmp_path, 99)
    assert raced and raced[0].created and raced[0].version.version == 4
    assert (mine.created, mine.version.version) == (False, 4)
    assert [v.version for v in modelreg.versions("m", registry=registry.layout.root)] == [
        1, 2, 3, 4]
