"""The registry through the library API: register, resolve, show, versions, pull, diff."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

import modelreg
from modelreg.errors import ConflictError, IntegrityError, NotFound, UsageError
from modelreg.registry import Registry
from tests.helpers import flip_byte, snapshot


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_register_file_reports_digest_and_lineage(registry: Registry, model_file: Path,
                                                  tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    result = modelreg.register(
        "churn", [model_file], registry=registry, params={"C": 1.0, "penalty": "l2"},
        metrics={"auc": 0.91}, tags={"team": "growth"}, description="first",
        run_id="r1", run_name="nightly", data=[data], data_version="2026-11", git=False,
    )
    v = result.version
    assert result.created
    assert (v.name, v.version, v.ref) == ("churn", 1, "churn@1")
    assert v.artifact.kind == "file"
    assert v.artifact.digest == f"sha256:{sha256(model_file)}"
    assert v.artifact.size == model_file.stat().st_size
    assert [f.path for f in v.artifact.files] == ["model.bin"]
    assert v.lineage.params == {"C": 1.0, "penalty": "l2"}
    assert v.lineage.metrics == {"auc": 0.91}
    assert (v.lineage.run.id, v.lineage.run.name) == ("r1", "nightly")
    assert v.lineage.data[0].digest == f"sha256:{sha256(data)}"
    assert v.lineage.data[0].size == data.stat().st_size
    assert v.lineage.data_version == "2026-11"
    assert v.lineage.git is None
    assert v.created_by == "tester@example.com"
    assert v.stage == "development"
    assert modelreg.show("churn", registry=registry) == v


def test_versions_count_up_and_refs_resolve(registry: Registry, model_file: Path) -> None:
    for i in range(3):
        modelreg.register("m", [model_file], registry=registry, params={"i": i}, git=False)
    assert [r.version for r in modelreg.versions("m", registry=registry)] == [1, 2, 3]
    assert modelreg.show("m@2", registry=registry).lineage.params == {"i": 1}
    assert modelreg.show("m@v2", registry=registry).version == 2
    assert modelreg.show("m@latest", registry=registry).version == 3
    assert modelreg.show("M@1", registry=registry).name == "m"
    with pytest.raises(NotFound, match="no version 9"):
        modelreg.show("m@9", registry=registry)
    with pytest.raises(NotFound):
        modelreg.show("other", registry=registry)


def test_identical_register_returns_existing_version(registry: Registry,
                                                     model_file: Path) -> None:
    first = modelreg.register("m", [model_file], registry=registry, params={"a": 1}, git=False)
    again = modelreg.register("m", [model_file], registry=registry, params={"a": 1}, git=False)
    assert not again.created
    assert again.version.version == 1
    changed = modelreg.register("m", [model_file], registry=registry, params={"a": 2}, git=False)
    assert changed.version.version == 2
    back = modelreg.register("m", [model_file], registry=registry, params={"a": 1}, git=False)
    assert (back.created, back.version.version) == (False, 1)
    forced = modelreg.register("m", [model_file], registry=registry, params={"a": 1},
                               git=False, force=True)
    assert (forced.created, forced.version.version) == (True, 3)
    assert first.version.artifact == forced.version.artifact


def test_same_file_under_two_names_is_stored_once(registry: Registry, model_file: Path) -> None:
    a = modelreg.register("a", [model_file], registry=registry, git=False)
    b = modelreg.register("b", [model_file], registry=registry, git=False)
    assert a.version.artifact.digest == b.version.artifact.digest
    hex_digest = sha256(model_file)
    matches = [p for p in registry.layout.objects.rglob("*") if p.is_file()
               and p.name == hex_digest]
    assert len(matches) == 1
    assert matches[0].stat().st_mode & 0o777 == 0o444
    assert hashlib.sha256(matches[0].read_bytes()).hexdigest() == hex_digest


def test_directory_artifact_and_pull(registry: Registry, tmp_path: Path) -> None:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "weights.bin").write_bytes(os.urandom(3000))
    (src / "sub" / "config.json").write_text('{"k": 1}')
    v = modelreg.register("d", [src], registry=registry, git=False).version
    assert v.artifact.kind == "directory"
    assert [f.path for f in v.artifact.files] == ["sub/config.json", "weights.bin"]
    dest = tmp_path / "out"
    result = modelreg.pull("d@1", dest, registry=registry)
    assert result.written == 2
    assert (dest / "weights.bin").read_bytes() == (src / "weights.bin").read_bytes()
    assert (dest / "sub" / "config.json").read_text() == '{"k": 1}'
    assert sorted(p.name for p in dest.iterdir()) == ["sub", "weights.bin"]
    again = modelreg.pull("d@1", dest, registry=registry)
    assert (again.written, again.unchanged) == (0, 2)


def test_pull_refuses_to_clobber_without_force(registry: Registry, model_file: Path,
                                               tmp_path: Path) -> None:
    modelreg.register("m", [model_file], registry=registry, git=False)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "model.bin").write_bytes(b"mine")
    with pytest.raises(ConflictError, match="--force"):
        modelreg.pull("m", dest, registry=registry)
    assert (dest / "model.bin").read_bytes() == b"mine"
    modelreg.pull("m", dest, registry=registry, force=True)
    assert (dest / "model.bin").read_bytes() == model_file.read_bytes()


def test_pull_of_corrupt_object_leaves_nothing(registry: Registry, tmp_path: Path) -> None:
    src = tmp_path / "model"
    src.mkdir()
    (src / "a.bin").write_bytes(b"a" * 5000)
    (src / "b.bin").write_bytes(b"b" * 5000)
    v = modelreg.register("d", [src], registry=registry, git=False).version
    oid = v.artifact.files[1].digest.split(":")[1]
    flip_byte(registry.objects.path(oid), 10)
    dest = tmp_path / "fresh"
    with pytest.raises(IntegrityError, match=oid):
        modelreg.pull("d", dest, registry=registry)
    assert not dest.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(IntegrityError):
        modelreg.pull("d", existing, registry=registry)
    assert list(existing.iterdir()) == []


@pytest.mark.parametrize("name", ["../x", "/abs", "", "a/b", "x" * 129, ".hidden", "m.lock"])
def test_bad_names_write_nothing(registry: Registry, model_file: Path, name: str) -> None:
    before = snapshot(registry.layout.root)
    with pytest.raises(UsageError):
        modelreg.register(name, [model_file], registry=registry, git=False)
    assert snapshot(registry.layout.root) == before


def test_symlink_out_of_directory_is_refused(registry: Registry, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    src = tmp_path / "model"
    src.mkdir()
    (src / "w.bin").write_bytes(b"w")
    (src / "leak").symlink_to(outside)
    before = snapshot(registry.layout.root)
    with pytest.raises(UsageError, match="outside"):
        modelreg.register("m", [src], registry=registry, git=False)
    assert snapshot(registry.layout.root) == before


def test_names_are_unique_ignoring_case(registry: Registry, model_file: Path) -> None:
    modelreg.register("Churn", [model_file], registry=registry, git=False)
    with pytest.raises(ConflictError, match="'Churn'"):
        modelreg.register("churn", [model_file], registry=registry, git=False, force=True)
    assert [m.name for m in modelreg.list_models(registry=registry)] == ["Churn"]


def test_diff_reports_params_metrics_and_files(registry: Registry, tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"one")
    modelreg.register("m", [f], registry=registry, params={"lr": 0.1, "depth": 3},
                      metrics={"mae": 2.0}, git=False)
    f.write_bytes(b"two")
    modelreg.register("m", [f], registry=registry, params={"lr": 0.05, "depth": 3},
                      metrics={"mae": 1.5}, git=False)
    d = modelreg.diff("m@1", "m@2", registry=registry)
    assert d.params == {"lr": {"a": 0.1, "b": 0.05}}
    assert d.metrics == {"mae": {"a": 2.0, "b": 1.5}}
    assert [c["path"] for c in d.files["changed"]] == ["w.bin"]
    assert not d.same
    assert modelreg.diff("m@1", "m@1", registry=registry).same


def test_git_lineage_matches_rev_parse(registry: Registry, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=T"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / "train.py").write_text("print('train')\n")
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    subprocess.run([*git, "remote", "add", "origin", "https://user:tok@example.com/r.git"],
                   cwd=repo, check=True)
    data = repo / "data.csv"
    data.write_text("x\n1\n")
    model = repo / "model.bin"
    model.write_bytes(b"m")
    monkeypatch.chdir(repo)
    v = modelreg.register("m", [model], registry=registry, data=[data]).version
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert v.lineage.git is not None
    assert v.lineage.git.commit == head
    assert v.lineage.git.branch == "main"
    assert v.lineage.git.dirty is False
    assert v.lineage.git.remote == "https://example.com/r.git"
    assert v.lineage.data[0].digest == "sha256:" + sha256(data)
    shown = json.loads(json.dumps(modelreg.show("m", registry=registry).to_dict()))
    assert shown["lineage"]["git"]["commit"] == head


def test_blob_removed_during_register_is_stored_again(registry: Registry,
                                                      model_file: Path) -> None:
    from modelreg.registry.registering import heal_blobs
    from modelreg.storage.tree import collect

    v = modelreg.register("m", [model_file], registry=registry, git=False).version
    oid = v.artifact.digest.split(":")[1]
    registry.objects.remove(oid)  # as a concurrent gc with an old mtime could
    _, sources = collect([model_file])
    heal_blobs(registry, v.artifact, sources)
    assert registry.objects.verify(oid)
    assert modelreg.fsck(registry=registry).ok


def _fresh_show(registry: Registry, ref: str) -> modelreg.VersionInfo:
    """``show`` through a second Registry on the same store: every byte read from disk."""
    return Registry.open(registry.layout.root).show(ref)


def test_register_result_equals_a_fresh_read(registry: Registry, tmp_path: Path) -> None:
    # The result is built from what the change wrote, without reading it back: it must be
    # exactly what a reader of the store gets (same values, types and key order: repr).
    f = tmp_path / "m.bin"
    for i in range(3):
        f.write_bytes(b"m%d" % i)
        params = {"z": i, "a": {"y": [1, 2.5], "b": "x"}, "lr": 0.1}
        r = modelreg.register("m", [f], registry=registry, params=params,
                              metrics={"b": 0.5, "a": 1}, tags={"t2": "x", "t1": "y"},
                              description="d", git=False)
        params["z"] = 99  # the caller's dict is not the result's
        assert r.created
        assert repr(r.version) == repr(_fresh_show(registry, f"m@{i + 1}"))
        assert r.version.lineage.params["z"] == i


def test_duplicate_register_result_equals_a_fresh_read(registry: Registry,
                                                       model_file: Path) -> None:
    modelreg.register("m", [model_file], registry=registry, git=False)
    again = modelreg.register("m", [model_file], registry=registry, git=False)
    assert not again.created and again.events == []
    assert repr(again.version) == repr(_fresh_show(registry, "m@1"))


def test_register_with_stage_result_equals_a_fresh_read(registry: Registry,
                                                        tmp_path: Path) -> None:
    f = tmp_path / "m.bin"
    f.write_bytes(b"one")
    r = modelreg.register("m", [f], registry=registry, stage="staging", git=False)
    assert (r.created, r.version.stage) == (True, "staging")
    assert [e.action for e in r.events] == ["register", "promote"]
    assert repr(r.version) == repr(_fresh_show(registry, "m@1"))
    # A rerun of an identical register --stage finishes a move that did not happen.
    f.write_bytes(b"two")
    modelreg.register("m", [f], registry=registry, git=False)
    again = modelreg.register("m", [f], registry=registry, stage="staging", git=False)
    assert (again.created, again.version.version, again.version.stage) == (False, 2, "staging")
    assert [e.action for e in again.events] == ["promote"]
    assert repr(again.version) == repr(_fresh_show(registry, "m@2"))
    assert _fresh_show(registry, "m@1").stage == "staging"


def test_lifecycle_results_equal_a_fresh_read(registry: Registry, model_file: Path) -> None:
    modelreg.register("m", [model_file], registry=registry, git=False)
    value = {"z": (1, 2), "a": 0.5}
    changes = [
        lambda: modelreg.promote("m@1", "staging", registry=registry, actor="a@example.com"),
        lambda: modelreg.approve("m@1", registry=registry, stage="production", comment="ok",
                                 actor="b@example.com"),
        lambda: modelreg.check("m@1", "auc", passed=True, value=value, details="fine",
                               registry=registry),
        lambda: modelreg.edit("m@1", registry=registry, description="new",
                              set_tags={"k2": "v", "k1": "w"}),
        lambda: modelreg.alias_set("m", "champion", 1, registry=registry),
        lambda: modelreg.promote("m@1", "production", registry=registry),
    ]
    for change in changes:
        r = change()
        assert r.changed
        assert repr(r.version) == repr(_fresh_show(registry, "m@1"))
    value["a"] = 9.0  # the caller's value is not the recorded one
    v = modelreg.show("m@1", registry=registry)
    assert v.checks["auc"].value == {"a": 0.5, "z": [1, 2]}
    assert (v.stage, v.aliases, v.description) == ("production", ["champion"], "new")
