"""Format 2 on disk: what a store holds per version, the state in the ref, leaves and gc."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelreg
from modelreg.registry import Registry
from modelreg.registry.state import LEAF_SIZE
from modelreg.storage.objects import ObjectStore
from tests.helpers import count_object_reads, run_cli

VERSIONS = 300


@pytest.fixture
def no_fsync(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # only the bytes matter here
    yield
    monkeypatch.undo()


def _register(reg: Registry, tmp_path: Path, i: int) -> None:
    f = tmp_path / "model.bin"
    f.write_bytes(b"%016d" % i)  # a 16-byte artifact, as in the measurements
    modelreg.register("m", [f], registry=reg, git=False, actor="ana@example.com",
                      params={"lr": 0.1, "i": i}, metrics={"auc": 0.9})


def _store(reg: Registry) -> ObjectStore:
    store = reg.objects
    assert isinstance(store, ObjectStore)
    return store


def test_metadata_per_version_after_gc_is_at_most_2_kib(registry: Registry, tmp_path: Path,
                                                        no_fsync: None) -> None:
    for i in range(VERSIONS):
        _register(registry, tmp_path, i)
    # Changes to old versions rewrite their leaves; gc collects the old ones.
    for v in (1, 70, 150):
        modelreg.promote(f"m@{v}", "staging", registry=registry)
    modelreg.approve("m@150", registry=registry, stage="production", actor="bob@example.com")
    assert modelreg.gc(registry=registry, grace=0).objects
    blobs = {v.digest.split(":")[1] for v in modelreg.versions("m", registry=registry)}
    store = _store(registry)
    metadata = sum(store.path(oid).stat().st_size for oid in store.ids() if oid not in blobs)
    metadata += sum(p.stat().st_size for p in registry.layout.refs.rglob("*") if p.is_file())
    per_version = metadata / VERSIONS
    assert per_version <= 2048, per_version
    # Commits (with the manifest) and leaves are all there is: 304 commits, 4 leaves.
    assert len(list(store.ids())) - len(blobs) == VERSIONS + 4 + VERSIONS // LEAF_SIZE
    assert modelreg.fsck(registry=registry).ok


def test_a_leaf_is_rewritten_when_an_old_version_changes_and_gc_collects_the_old(
        registry: Registry, tmp_path: Path, no_fsync: None) -> None:
    for i in range(LEAF_SIZE + 2):
        _register(registry, tmp_path, i)
    old = registry.require_state("m").leaves
    assert sorted(old) == [0]
    modelreg.promote("m@3", "staging", registry=registry)
    new = registry.require_state("m").leaves
    assert new[0] != old[0]
    store = _store(registry)
    assert store.contains(old[0])
    os.utime(store.path(old[0]), (1, 1))  # old enough for any grace period
    assert modelreg.gc(registry=registry).objects == [old[0]]
    assert not store.contains(old[0]) and store.contains(new[0])
    assert modelreg.show("m@staging", registry=registry).version == 3
    assert modelreg.fsck(registry=registry).ok


def test_the_state_in_the_ref_is_verified_against_its_head_commit(registry: Registry,
                                                                  tmp_path: Path) -> None:
    for i in range(3):
        _register(registry, tmp_path, i)
    root = registry.layout.root
    ref = registry.layout.refs / "models" / "m"
    body = ref.read_bytes()
    head, state = body.split(b"\n", 1)
    # A byte changed inside the state's JSON (the stage of version 2): still valid JSON.
    forged = state.replace(b'"s":"development"', b'"s":"developmenT"', 1)
    assert forged != state
    ref.write_bytes(head + b"\n" + forged)
    for args in (("show", "m@2"), ("versions", "m"), ("fsck",), ("gc",)):
        result = run_cli(*args, registry=root)
        assert result.returncode == 6, (args, result.stdout, result.stderr)
    out = run_cli("fsck", "--json", registry=root)
    problems = json.loads(out.stdout)["problems"]
    assert any("does not match the digest its head commit" in p["message"]
               and p["path"] == str(ref) for p in problems)
    ref.write_bytes(body)
    assert run_cli("fsck", registry=root).returncode == 0


@pytest.mark.parametrize("body", [b"", b"not a commit id\n{}\n", b"a" * 64])
def test_a_ref_that_is_not_a_head_and_a_state_is_an_integrity_error(
        registry: Registry, tmp_path: Path, body: bytes) -> None:
    _register(registry, tmp_path, 0)
    (registry.layout.refs / "models" / "m").write_bytes(body)
    result = run_cli("show", "m", registry=registry.layout.root)
    assert result.returncode == 6, result.stderr
    assert "refs/models/m" in result.stderr


def test_resolving_and_recent_history_read_a_bounded_number_of_objects(
        registry: Registry, tmp_path: Path, no_fsync: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(3 * LEAF_SIZE + 5):
        _register(registry, tmp_path, i)
    modelreg.promote("m@7", "staging", registry=registry)
    root = registry.layout.root
    reads = count_object_reads(monkeypatch)
    for ref, most in (("m", 2), ("m@latest", 2), ("m@staging", 3), ("m@100", 3)):
        reads.clear()
        modelreg.show(ref, registry=root)  # a fresh process's view: nothing cached
        # The head commit (to verify the state), a leaf if the version is in one, and the
        # commit that registered the version (its manifest).
        assert len(reads) <= most, (ref, reads)
    reads.clear()
    _, events = modelreg.history("m", registry=root, limit=20)
    assert len(events) == 20 and len(reads) == 20


def test_a_format_1_store_is_refused_and_names_the_migration(tmp_path: Path) -> None:
    modelreg.init(tmp_path)
    (tmp_path / ".modelreg" / "format").write_text("1\n")
    result = run_cli("list", registry=tmp_path)
    assert result.returncode == 6
    assert "`modelreg migrate`" in result.stderr


def test_the_state_is_encoded_as_canonical_json_of_its_document(registry: Registry,
                                                                tmp_path: Path,
                                                                no_fsync: None) -> None:
    """encode_state assembles the tail from cached entry texts: the bytes must be exactly
    canonical JSON of the whole document, whatever the entries hold (here: approvals,
    checks, edited tags, non-ASCII text, search records, versions 1..LEAF_SIZE+12 so that
    the tail's keys sort as strings: "10" before "9")."""
    from modelreg.registry.state import (
        STATE_FORMAT,
        THIS_COMMIT,
        Head,
        ModelState,
        _head_doc,
        canonical,
        decode_ref,
        encode_state,
    )

    def as_written() -> ModelState:
        """The current state with the head commit's own version unnamed, as the ref has it."""
        current = registry.require("m")
        s = current.state

        def head(h: Head) -> Head:
            return Head(h.version, THIS_COMMIT) if h.manifest == current.oid else h

        return ModelState(
            s.model, s.seq, head(s.latest), {k: head(v) for k, v in s.stages.items()},
            {k: head(v) for k, v in s.aliases.items()}, dict(s.leaves),
            {v: e.evolve(manifest=THIS_COMMIT) if e.manifest == current.oid else e
             for v, e in s.tail.items()})

    def document_bytes(state: ModelState) -> bytes:
        return canonical({
            "type": "state", "format": STATE_FORMAT, "model": state.model, "seq": state.seq,
            "latest": _head_doc(state.latest),
            "stages": {k: _head_doc(v) for k, v in state.stages.items()},
            "aliases": {k: _head_doc(v) for k, v in state.aliases.items()},
            "leaves": {str(k): v for k, v in state.leaves.items()},
            "tail": {str(v): e.to_doc() for v, e in state.tail.items()},
        })

    seen = 0
    for i in range(LEAF_SIZE + 12):
        _register(registry, tmp_path, i)
        if i % 9 == 3:
            modelreg.edit(f"m@{i + 1}", registry=registry, description="naïve ☃",
                          set_tags={"z": "1", "ä": "2"})
            modelreg.check(f"m@{i + 1}", "auc", passed=True, value={"b": [1, 2], "a": 0.5},
                           registry=registry)
        if i % 13 == 5:
            modelreg.promote(f"m@{i + 1}", "staging", registry=registry)
        if i % 7 == 0:
            body, _ = registry.refs.read_versioned(registry.ref_name("m"))
            assert body is not None
            _, state_bytes, _ = decode_ref(body, "m")
            state = as_written()
            assert state_bytes == document_bytes(state)
            # And what this process encodes (with its cache warm) is the same again.
            assert encode_state(state) == state_bytes
            seen += 1
    assert seen >= 10
