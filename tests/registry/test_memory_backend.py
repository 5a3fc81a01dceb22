"""The whole registry on the memory backend: no .modelreg directory at all."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import modelreg
from modelreg.errors import ConflictError, IntegrityError, NotFound, PolicyDenied, UsageError
from modelreg.registry import Registry, transaction
from modelreg.registry.policy import StagePolicy, StoreConfig
from modelreg.storage.memory import MemoryObjects, MemoryRefs


def _file(tmp_path: Path, i: int) -> Path:
    path = tmp_path / f"model-{i}.bin"
    path.write_bytes(b"weights %d" % i)
    return path


def test_a_representative_flow_runs_on_memory_objects_and_refs(tmp_path: Path) -> None:
    reg = Registry.in_memory()
    assert isinstance(reg.objects, MemoryObjects) and isinstance(reg.refs, MemoryRefs)
    for i in range(1, 4):
        r = modelreg.register("churn", [_file(tmp_path, i)], registry=reg, actor="ana",
                              git=False, params={"i": i}, description=f"v{i}")
        assert (r.created, r.version.version) == (True, i)
    again = modelreg.register("churn", [_file(tmp_path, 2)], registry=reg, actor="ana",
                              git=False, params={"i": 2}, description="v2")
    assert (again.created, again.version.version) == (False, 2)
    assert modelreg.promote("churn@2", "staging", registry=reg, actor="ana").changed
    modelreg.approve("churn@2", registry=reg, actor="bob", stage="production")
    modelreg.check("churn@2", "latency", passed=True, value=12, registry=reg, actor="ci")
    modelreg.promote("churn@2", "production", registry=reg, actor="bob")
    modelreg.promote("churn@3", "staging", registry=reg, actor="ana")
    modelreg.promote("churn@3", "production", registry=reg, actor="bob")
    assert modelreg.show("churn@production", registry=reg).version == 3
    assert modelreg.show("churn@2", registry=reg).stage == "archived"
    back = modelreg.rollback("churn", registry=reg, actor="bob")
    assert back.version.version == 2 and back.version.stage == "production"
    modelreg.alias_set("churn", "champion", 2, registry=reg, actor="ana")
    assert modelreg.show("churn@champion", registry=reg).version == 2
    modelreg.edit("churn@1", registry=reg, actor="ana", description="first")
    assert modelreg.show("churn@1", registry=reg).description == "first"
    modelreg.alias_remove("churn", "champion", registry=reg, actor="ana")
    with pytest.raises(NotFound):
        modelreg.show("churn@champion", registry=reg)

    assert [m.name for m in modelreg.list_models(registry=reg)] == ["churn"]
    assert [v.version for v in modelreg.versions("churn", registry=reg)] == [1, 2, 3]
    name, events = modelreg.history("churn", registry=reg)
    assert name == "churn" and events[0].seq == len(events)
    assert [e.seq for e in modelreg.history("churn", registry=reg, limit=2)[1]] == [
        len(events), len(events) - 1]
    dest = tmp_path / "out"
    modelreg.pull("churn@production", dest, registry=reg)
    assert (dest / "model-2.bin").read_bytes() == b"weights 2"

    report = modelreg.fsck(registry=reg)
    assert report.ok, report.problems
    assert (report.models, report.versions, report.events) == (1, 3, len(events))
    assert modelreg.gc(registry=reg, grace=0).objects == []
    # A memory store has no directory: what needs one says so (exit 2), nothing else does.
    with pytest.raises(UsageError, match="file system"):
        _ = reg.layout


def test_gc_on_memory_collects_what_no_state_names(tmp_path: Path) -> None:
    reg = Registry.in_memory()
    for i in range(70):  # one full leaf, and a tail
        modelreg.register("m", [_file(tmp_path, i)], registry=reg, git=False, actor="a")
    old_leaf = reg.require_state("m").leaves[0]
    orphan = reg.objects.put_bytes(b"nobody names this")
    modelreg.promote("m@1", "staging", registry=reg, actor="a")  # rewrites leaf 0
    new_leaf = reg.require_state("m").leaves[0]
    assert new_leaf != old_leaf
    assert modelreg.gc(registry=reg, grace=3600).objects == []  # all young
    removed = modelreg.gc(registry=reg, grace=0).objects
    assert sorted(removed) == sorted([old_leaf, orphan])
    assert modelreg.fsck(registry=reg).ok
    assert modelreg.show("m@staging", registry=reg).version == 1


def test_memory_store_with_a_policy_enforces_it(tmp_path: Path) -> None:
    config = StoreConfig(policies={"production": StagePolicy("production", exclusive=True,
                                                             require_approvals=1)})
    reg = Registry.in_memory(config)
    modelreg.register("m", [_file(tmp_path, 0)], registry=reg, git=False, actor="a")
    modelreg.promote("m@1", "staging", registry=reg, actor="a")
    with pytest.raises(PolicyDenied):
        modelreg.promote("m@1", "production", registry=reg, actor="a")


def test_memory_store_verifies_what_it_reads(tmp_path: Path) -> None:
    reg = Registry.in_memory()
    modelreg.register("m", [_file(tmp_path, 0)], registry=reg, git=False, actor="a")
    objects = reg.objects
    assert isinstance(objects, MemoryObjects)
    head = reg.require("m").oid
    data = bytearray(objects.data[head])
    data[10] ^= 1
    objects.data[head] = bytes(data)
    fresh = Registry(objects=objects, refs=reg.refs)
    with pytest.raises(IntegrityError):
        fresh.show("m")
    assert not modelreg.fsck(registry=fresh).ok


# -- races on a backend with no lock: the compare-and-swap decides, losers re-plan --------


def test_threads_registering_at_once_land_as_consecutive_versions(tmp_path: Path) -> None:
    reg = Registry.in_memory()
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for j in range(10):
                f = tmp_path / f"t{i}-{j}.bin"
                f.write_bytes(b"thread %d model %d" % (i, j))
                modelreg.register("m", [f], registry=reg, git=False, actor="a")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [v.version for v in modelreg.versions("m", registry=reg)] == list(range(1, 81))
    report = modelreg.fsck(registry=reg)
    assert report.ok and report.events == 80


def test_racing_promotions_leave_exactly_one_production(tmp_path: Path) -> None:
    reg = Registry.in_memory()
    for i in range(6):
        modelreg.register("m", [_file(tmp_path, i)], registry=reg, git=False, actor="a")
        modelreg.promote(f"m@{i + 1}", "staging", registry=reg, actor="a")
    start = threading.Barrier(6)

    def promote(v: int) -> None:
        start.wait()
        modelreg.promote(f"m@{v}", "production", registry=reg, actor="b")

    threads = [threading.Thread(target=promote, args=(v,)) for v in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stages = [v.stage for v in modelreg.versions("m", registry=reg)]
    assert stages.count("production") == 1 and stages.count("archived") == 5
    _, events = modelreg.history("m", registry=reg)
    assert sum(e.to_stage == "production" for e in events) == 6  # every move recorded
    assert modelreg.fsck(registry=reg).ok


def test_a_race_lost_every_time_is_a_conflict_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reg = Registry.in_memory()
    modelreg.register("m", [_file(tmp_path, 0)], registry=reg, git=False, actor="a")
    before = reg.refs.read("models/m")
    tries: list[int] = []

    def always_lost(name: str, expected: object, body: bytes) -> bool:
        tries.append(1)
        return False

    monkeypatch.setattr(reg.refs, "compare_and_swap", always_lost)
    monkeypatch.setattr(transaction, "random", type("R", (), {"uniform": staticmethod(
        lambda a, b: 0.0)}))
    with pytest.raises(ConflictError) as excinfo:
        modelreg.promote("m@1", "staging", registry=reg, actor="a")
    assert excinfo.value.exit_code == 4
    assert len(tries) == transaction.MAX_ATTEMPTS
    assert reg.refs.read("models/m") == before


def test_a_state_too_large_for_a_ref_is_refused_with_nothing_changed(tmp_path: Path) -> None:
    reg = Registry.in_memory()
    modelreg.register("m", [_file(tmp_path, 0)], registry=reg, git=False, actor="a")
    before = reg.refs.read("models/m")
    with pytest.raises(UsageError, match="more than a ref holds") as excinfo:
        modelreg.check("m@1", "soak", passed=True, details="x" * (1 << 20), registry=reg,
                       actor="ci")
    assert excinfo.value.exit_code == 2
    assert reg.refs.read("models/m") == before
