"""Comparing two versions."""

from __future__ import annotations

from dataclasses import replace

from modelreg.registry.diff import diff_versions, flatten
from modelreg.types import Artifact, DataRef, FileInfo, GitInfo, Lineage, RunInfo, VersionInfo

_D = {n: f"sha256:{n}" + "0" * 63 for n in "123456789"}


def _version(**changes: object) -> VersionInfo:
    v = VersionInfo(
        name="resnet",
        version=1,
        created_at="2024-05-01T12:00:00+00:00",
        created_by="ana@example.com",
        description="first",
        tags={"team": "vision"},
        artifact=Artifact(
            kind="directory",
            digest=_D["1"],
            size=30,
            files=[FileInfo("model.onnx", _D["2"], 10), FileInfo("vocab.txt", _D["3"], 20)],
        ),
        lineage=Lineage(
            params={"lr": 0.01, "epochs": 10, "opt": {"name": "adam", "beta": 0.9}},
            metrics={"acc": 0.9, "loss": 0.3},
            run=RunInfo(id="r1", name="nightly"),
            git=GitInfo(commit="a" * 40, branch="main", dirty=False, remote=None),
            data=[DataRef("train.csv", _D["4"], 100)],
            data_version="v1",
            derived_from=None,
        ),
        stage="production",
        aliases=["champion"],
        manifest="f" * 64,
    )
    return replace(v, **changes)


def _lineage(v: VersionInfo, **changes: object) -> Lineage:
    return replace(v.lineage, **changes)


# --- flatten ---------------------------------------------------------------------------------


def test_flatten_nested() -> None:
    nested = {"a": 1, "opt": {"lr": 0.1, "sched": {"gamma": 0.5, "step": 3}}, "z": [1, {"k": 2}]}
    assert flatten(nested) == {
        "a": 1,
        "opt.lr": 0.1,
        "opt.sched.gamma": 0.5,
        "opt.sched.step": 3,
        "z": [1, {"k": 2}],
    }


def test_flatten_flat_and_empty() -> None:
    assert flatten({}) == {}
    assert flatten({"a": True, "b": "x"}) == {"a": True, "b": "x"}


def test_flatten_keeps_empty_tables() -> None:
    assert flatten({"a": {}, "b": {"c": {}}}) == {"a": {}, "b.c": {}}


def test_flatten_prefix() -> None:
    assert flatten({"a": {"b": 1}}, "params.") == {"params.a.b": 1}


# --- diff_versions ---------------------------------------------------------------------------


def test_identical_versions_are_the_same() -> None:
    a = _version()
    result = diff_versions(a, _version(version=2, created_at="later", stage="none", aliases=[],
                                       created_by="bob", manifest="e" * 64))
    assert result.same is True
    assert result.params == {}
    assert result.metrics == {}
    assert result.lineage == {}
    assert result.meta == {}
    assert result.files == {"added": [], "removed": [], "changed": []}
    assert result.a == "resnet@1"
    assert result.b == "resnet@2"
    assert result.to_dict()["same"] is True


def test_diff_against_itself() -> None:
    v = _version()
    assert diff_versions(v, v).same


def test_params_only_changed_keys() -> None:
    a = _version()
    b = _version(version=2, lineage=_lineage(
        a, params={"lr": 0.02, "epochs": 10, "opt": {"name": "sgd", "beta": 0.9}, "new": 1},
    ))
    result = diff_versions(a, b)
    assert result.same is False
    assert result.params == {
        "lr": {"a": 0.01, "b": 0.02},
        "new": {"a": None, "b": 1},
        "opt.name": {"a": "adam", "b": "sgd"},
    }
    assert list(result.params) == sorted(result.params)
    assert result.metrics == {}
    assert result.lineage == {}
    assert result.meta == {}
    assert result.files == {"added": [], "removed": [], "changed": []}


def test_removed_param() -> None:
    a = _version()
    b = _version(lineage=_lineage(a, params={"lr": 0.01, "opt": {"name": "adam", "beta": 0.9}}))
    assert diff_versions(a, b).params == {"epochs": {"a": 10, "b": None}}


def test_type_changes_are_reported() -> None:
    a = _version(lineage=_lineage(_version(), params={"n": 1, "flag": 1, "same": 2}))
    b = _version(lineage=_lineage(_version(), params={"n": 1.0, "flag": True, "same": 2}))
    assert diff_versions(a, b).params == {
        "flag": {"a": 1, "b": True},
        "n": {"a": 1, "b": 1.0},
    }


def test_metrics_changes() -> None:
    a = _version()
    b = _version(lineage=_lineage(a, metrics={"acc": 0.95, "loss": 0.3, "f1": 0.8}))
    assert diff_versions(a, b).metrics == {
        "acc": {"a": 0.9, "b": 0.95},
        "f1": {"a": None, "b": 0.8},
    }


def test_lineage_changes() -> None:
    a = _version()
    b = _version(lineage=_lineage(
        a,
        run=RunInfo(id="r2", name="nightly"),
        git=GitInfo(commit="b" * 40, branch="main", dirty=True, remote=None),
        data=[DataRef("train.csv", _D["5"], 100), DataRef("val.csv", _D["6"], 10)],
        derived_from="base@1",
    ))
    assert diff_versions(a, b).lineage == {
        "data[train.csv]": {"a": _D["4"], "b": _D["5"]},
        "data[val.csv]": {"a": None, "b": _D["6"]},
        "derived_from": {"a": None, "b": "base@1"},
        "git.commit": {"a": "a" * 40, "b": "b" * 40},
        "git.dirty": {"a": False, "b": True},
        "run.id": {"a": "r1", "b": "r2"},
    }


def test_lineage_git_missing_on_one_side() -> None:
    a = _version()
    b = _version(lineage=_lineage(a, git=None))
    assert diff_versions(a, b).lineage == {
        "git.branch": {"a": "main", "b": None},
        "git.commit": {"a": "a" * 40, "b": None},
        "git.dirty": {"a": False, "b": None},
    }


def test_meta_changes() -> None:
    a = _version()
    b = _version(description=None, tags={"team": "nlp", "owner": "bob"})
    assert diff_versions(a, b).meta == {
        "description": {"a": "first", "b": None},
        "tags.owner": {"a": None, "b": "bob"},
        "tags.team": {"a": "vision", "b": "nlp"},
    }


def test_file_changes() -> None:
    a = _version()
    b = _version(artifact=Artifact(
        kind="directory",
        digest=_D["9"],
        size=45,
        files=[FileInfo("config.json", _D["7"], 5), FileInfo("model.onnx", _D["8"], 40)],
    ))
    result = diff_versions(a, b)
    assert result.files == {
        "added": [{"path": "config.json", "digest": _D["7"], "size": 5}],
        "removed": [{"path": "vocab.txt", "digest": _D["3"], "size": 20}],
        "changed": [{"path": "model.onnx",
                     "a": {"digest": _D["2"], "size": 10},
                     "b": {"digest": _D["8"], "size": 40}}],
    }
    assert result.params == {}
    assert result.same is False


def test_only_a_file_change_is_not_same() -> None:
    a = _version()
    b = _version(artifact=replace(a.artifact, files=[FileInfo("model.onnx", _D["2"], 10)]))
    result = diff_versions(a, b)
    assert result.same is False
    assert result.files["removed"] == [{"path": "vocab.txt", "digest": _D["3"], "size": 20}]
    assert result.files["added"] == []
    assert result.files["changed"] == []


def test_diff_is_symmetric() -> None:
    a = _version()
    b = _version(description="second", lineage=_lineage(a, params={"lr": 1}))
    ab, ba = diff_versions(a, b), diff_versions(b, a)
    assert set(ab.params) == set(ba.params)
    for key, change in ab.params.items():
        assert ba.params[key] == {"a": change["b"], "b": change["a"]}
    assert ba.meta["description"] == {"a": "second", "b": "first"}
