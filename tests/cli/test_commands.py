"""The CLI as a user sees it: exit codes, JSON on stdout, messages on stderr."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import flip_byte, run_cli, snapshot


def register(cli, *args: str | Path) -> dict:
    result = cli("register", *args, "--no-git", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_init_creates_store_and_is_idempotent(cli, tmp_path: Path) -> None:
    result = cli("init", tmp_path, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"path": str(tmp_path / ".modelreg"), "created": True}
    assert (tmp_path / ".modelreg" / "format").read_text() == "2\n"
    again = cli("init", tmp_path, "--json")
    assert json.loads(again.stdout)["created"] is False


def test_unknown_format_is_refused_with_exit_6(cli, project: Path) -> None:
    (project / ".modelreg" / "format").chmod(0o644)
    (project / ".modelreg" / "format").write_text("99\n")
    result = cli("list")
    assert result.exit_code == 6
    assert "format version 99" in result.stderr
    assert "Traceback" not in result.output


def test_missing_store_is_exit_3(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("list")
    assert result.exit_code == 3
    assert "modelreg init" in result.stderr


def test_register_show_json_fields(cli, project: Path, model_file: Path,
                                   tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a\n1\n")
    params = tmp_path / "params.toml"
    params.write_text('lr = 0.1\n[optimizer]\nname = "adam"\n')
    out = register(cli, "eta", model_file, "--param", "depth=4", "--param", "lr=0.2",
                   "--params-file", params, "--metric", "mae=3.5", "--metric", "ok=true",
                   "--tag", "team=ml", "--description", "baseline", "--run-id", "r-1",
                   "--run-name", "nightly", "--data", data, "--data-version", "v9")
    assert out["created"] is True
    shown = json.loads(cli("show", "eta@1", "--json").stdout)
    assert [(e["action"], e["version"], e["to"]) for e in out.pop("events")] == [
        ("register", 1, "development")]
    assert out.pop("hooks") == []
    del out["created"]
    assert shown == out
    digest = hashlib.sha256(model_file.read_bytes()).hexdigest()
    assert shown["name"] == "eta"
    assert shown["version"] == 1
    assert shown["ref"] == "eta@1"
    assert shown["created_by"] == "tester@example.com"
    assert shown["created_at"].startswith("20")
    assert shown["description"] == "baseline"
    assert shown["tags"] == {"team": "ml"}
    assert shown["artifact"]["digest"] == f"sha256:{digest}"
    assert shown["artifact"]["size"] == model_file.stat().st_size
    assert shown["artifact"]["files"] == [
        {"path": "model.bin", "digest": f"sha256:{digest}", "size": model_file.stat().st_size}
    ]
    lin = shown["lineage"]
    assert lin["params"] == {"depth": 4, "lr": 0.2, "optimizer": {"name": "adam"}}
    assert lin["metrics"] == {"mae": 3.5, "ok": True}
    assert lin["run"] == {"id": "r-1", "name": "nightly"}
    assert lin["git"] is None
    assert lin["data"] == [{"path": str(data), "size": data.stat().st_size,
                            "digest": "sha256:" + hashlib.sha256(b"a\n1\n").hexdigest()}]
    assert lin["data_version"] == "v9"
    assert lin["derived_from"] is None
    assert shown["stage"] == "development"


def test_show_json_inside_git_repo(cli, project: Path, tmp_path: Path) -> None:
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=T"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    (project / "train.py").write_text("x = 1\n")
    subprocess.run([*git, "add", "train.py"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "c"], cwd=project, check=True)
    data = project / "data.csv"
    data.write_bytes(b"d,e\n1,2\n")
    model = project / "m.bin"
    model.write_bytes(b"weights")
    result = cli("register", "m", model, "--data", data, "--json")
    assert result.exit_code == 0, result.stderr
    shown = json.loads(cli("show", "m", "--json").stdout)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert shown["lineage"]["git"]["commit"] == head
    assert shown["lineage"]["git"]["dirty"] is False
    assert shown["lineage"]["data"][0]["digest"] == (
        "sha256:" + hashlib.sha256(b"d,e\n1,2\n").hexdigest())


def test_repeat_register_returns_same_version(cli, project: Path, model_file: Path) -> None:
    first = register(cli, "m", model_file, "--param", "a=1")
    second = register(cli, "m", model_file, "--param", "a=1")
    assert (second["version"], second["created"]) == (1, False)
    forced = register(cli, "m", model_file, "--param", "a=1", "--force")
    assert (forced["version"], forced["created"]) == (2, True)
    assert first["artifact"] == forced["artifact"]


@pytest.mark.parametrize("name", ["../x", "/abs", "", "a/b", "bad name"])
def test_bad_name_exit_2_nothing_written(cli, project: Path, model_file: Path,
                                         name: str) -> None:
    before = snapshot(project / ".modelreg")
    result = cli("register", name, model_file, "--no-git")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert snapshot(project / ".modelreg") == before


@pytest.mark.parametrize(("args", "fragment"), [
    (["--param", "novalue"], "KEY=VALUE"),
    (["--metric", "auc=high"], "not a number"),
])
def test_bad_options_exit_2(cli, project: Path, model_file: Path, args: list[str],
                            fragment: str) -> None:
    result = cli("register", "m", model_file, "--no-git", *args)
    assert result.exit_code == 2
    assert fragment in result.stderr


def test_missing_path_exit_3(cli, project: Path) -> None:
    result = cli("register", "m", project / "nope.bin", "--no-git")
    assert result.exit_code == 3
    assert "does not exist" in result.stderr


def test_list_and_versions_json(cli, project: Path, model_file: Path) -> None:
    register(cli, "b-model", model_file)
    register(cli, "a-model", model_file)
    register(cli, "a-model", model_file, "--param", "x=1")
    models = json.loads(cli("list", "--json").stdout)["models"]
    assert [(m["name"], m["versions"], m["latest"]) for m in models] == [
        ("a-model", 2, 2), ("b-model", 1, 1)]
    rows = json.loads(cli("versions", "a-model", "--json").stdout)["versions"]
    assert [(r["version"], r["ref"], r["stage"]) for r in rows] == [
        (1, "a-model@1", "development"), (2, "a-model@2", "development")]
    human = cli("list")
    assert human.exit_code == 0 and "a-model" in human.stdout


def test_not_found_is_exit_3(cli, project: Path, model_file: Path) -> None:
    register(cli, "m", model_file)
    assert cli("show", "nope").exit_code == 3
    assert cli("show", "m@7").exit_code == 3
    assert cli("show", "m@staging").exit_code == 3
    assert cli("versions", "nope").exit_code == 3
    assert cli("show", "m@").exit_code == 2


def test_diff_json(cli, project: Path, tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"1")
    register(cli, "m", f, "--param", "lr=0.1", "--metric", "mae=2")
    f.write_bytes(b"2")
    register(cli, "m", f, "--param", "lr=0.2", "--metric", "mae=1")
    out = json.loads(cli("diff", "m@1", "m@2", "--json").stdout)
    assert out["params"] == {"lr": {"a": 0.1, "b": 0.2}}
    assert out["metrics"] == {"mae": {"a": 2, "b": 1}}
    assert [c["path"] for c in out["files"]["changed"]] == ["w.bin"]
    assert out["same"] is False
    human = cli("diff", "m@1", "m@2")
    assert "lr: 0.1 -> 0.2" in human.stdout


def test_flipped_byte_makes_fsck_and_pull_exit_6(cli, project: Path, model_file: Path,
                                                 tmp_path: Path) -> None:
    out = register(cli, "m", model_file)
    assert cli("fsck").exit_code == 0
    oid = out["artifact"]["digest"].split(":")[1]
    obj = project / ".modelreg" / "objects" / oid
    flip_byte(obj, 100)
    result = cli("fsck")
    assert result.exit_code == 6
    assert str(obj) in result.stdout
    assert "corrupt" in result.stdout
    dest = tmp_path / "pulled"
    pulled = cli("pull", "m", dest)
    assert pulled.exit_code == 6
    assert oid in pulled.stderr
    assert not dest.exists()
    report = json.loads(cli("fsck", "--json").stdout)
    assert report["ok"] is False
    assert any(p["path"] == str(obj) for p in report["problems"])


def test_tampered_commit_is_reported_with_model_and_event(cli, project: Path,
                                                          model_file: Path) -> None:
    register(cli, "m", model_file)
    register(cli, "m", model_file, "--param", "a=2")
    store = project / ".modelreg"
    head = (store / "refs" / "models" / "m").read_text().split("\n", 1)[0]  # the head commit
    parent = json.loads((store / "objects" / head).read_text())["parent"]
    flip_byte(store / "objects" / parent, 40)
    result = cli("fsck")
    assert result.exit_code == 6
    assert "model m, event 1" in result.stdout


def test_pull_cli(cli, project: Path, model_file: Path, tmp_path: Path) -> None:
    register(cli, "m", model_file)
    dest = tmp_path / "deploy"
    out = json.loads(cli("pull", "m@latest", dest, "--json").stdout)
    assert out["written"] == 1 and out["ref"] == "m@1"
    assert (dest / "model.bin").read_bytes() == model_file.read_bytes()
    (dest / "model.bin").write_bytes(b"changed")
    assert cli("pull", "m", dest).exit_code == 4
    assert cli("pull", "m", dest, "--force").exit_code == 0


def test_history_json(cli, project: Path, model_file: Path) -> None:
    register(cli, "m", model_file)
    register(cli, "m", model_file, "--param", "a=1")
    events = json.loads(cli("history", "m", "--json").stdout)["events"]
    assert [(e["seq"], e["action"], e["version"], e["actor"]) for e in events] == [
        (2, "register", 2, "tester@example.com"), (1, "register", 1, "tester@example.com")]


def test_history_limit_reads_only_the_newest_events(cli, project: Path,
                                                    model_file: Path) -> None:
    for i in range(4):
        register(cli, "m", model_file, "--param", f"a={i}")
    full = json.loads(cli("history", "m", "--json").stdout)["events"]
    newest = json.loads(cli("history", "m", "-n", "2", "--json").stdout)
    assert newest == {"name": "m", "events": full[:2]}
    assert newest["events"][-1]["prev"] == full[2]["id"]  # there is more before it
    assert json.loads(cli("history", "m", "--limit", "9", "--json").stdout)["events"] == full
    text = cli("history", "m", "-n", "1")
    assert text.exit_code == 0 and "register" in text.stdout and text.stdout.count("\n") == 3
    # The oldest commit is not read at all: damaged, it fails the full history only.
    oldest = full[-1]["id"].split(":", 1)[1]
    path = project / ".modelreg" / "objects" / oldest
    path.chmod(0o644)
    path.write_bytes(b"{}")
    assert cli("history", "m", "-n", "3", "--json").exit_code == 0
    assert cli("history", "m", "--json").exit_code == 6
    for bad in ("0", "-1", "x"):
        result = cli("history", "m", "-n", bad)
        assert result.exit_code == 2, bad
        assert "Traceback" not in result.output


def test_history_limit_from_python(project: Path, model_file: Path) -> None:
    import modelreg

    for i in range(3):
        modelreg.register("m", [model_file], registry=project, git=False, params={"i": i})
    name, events = modelreg.history("m", registry=project, limit=1)
    assert (name, [e.seq for e in events]) == ("m", [3])
    from modelreg.errors import UsageError

    with pytest.raises(UsageError):
        modelreg.history("m", registry=project, limit=0)


def test_gc_dry_run_then_real(cli, project: Path, model_file: Path) -> None:
    register(cli, "m", model_file)
    store = project / ".modelreg"
    orphan = b"orphan bytes"
    oid = hashlib.sha256(orphan).hexdigest()
    from modelreg.registry import Registry

    Registry.open(store).objects.put_bytes(orphan)
    (store / "tmp" / "tmp-leftover").write_bytes(b"x")
    young = json.loads(cli("gc", "--json").stdout)
    assert young["objects"] == []
    dry = json.loads(cli("gc", "--grace", "0s", "--dry-run", "--json").stdout)
    assert dry["objects"] == [oid] and dry["dry_run"] is True
    assert (store / "objects" / oid).exists()
    real = json.loads(cli("gc", "--grace", "0", "--json").stdout)
    assert real["objects"] == [oid]
    assert not (store / "objects" / oid).exists()
    assert list((store / "tmp").iterdir()) == []
    assert cli("fsck").exit_code == 0
    assert cli("show", "m").exit_code == 0
    assert cli("gc", "--grace", "soon").exit_code == 2


def test_registry_option_and_env(cli, registry, model_file: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = registry.layout.root
    result = cli("--registry", store.parent, "register", "m", model_file, "--no-git")
    assert result.exit_code == 0, result.stderr
    assert cli("-R", store, "show", "m").exit_code == 0
    monkeypatch.setenv("MODELREG_DIR", str(store))
    assert cli("show", "m").exit_code == 0


def test_internal_error_is_exit_70_without_traceback(cli, project: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from modelreg import api

    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(api, "list_models", boom)
    result = cli("list")
    assert result.exit_code == 70
    assert "internal error" in result.stderr and "Traceback" not in result.output
    with pytest.raises(RuntimeError):
        cli.runner.invoke(__import__("modelreg.cli", fromlist=["app"]).app,
                          ["--traceback", "list"], catch_exceptions=False)


def test_console_script_and_module_entry(tmp_path: Path) -> None:
    result = run_cli("init", tmp_path)
    assert result.returncode == 0, result.stderr
    bad = run_cli("show", "x", registry=tmp_path)
    assert bad.returncode == 3
    assert bad.stdout == ""
    assert "not found" in bad.stderr


def test_init_of_a_modelreg_path_is_that_store_not_one_inside_it(cli, tmp_path: Path) -> None:
    store = tmp_path / "proj" / ".modelreg"
    result = cli("init", store, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"path": str(store), "created": True}
    assert not (store / ".modelreg").exists()
    assert json.loads(cli("init", store.parent, "--json").stdout)["created"] is False
    assert cli("-R", store.parent, "init", store).exit_code == 0  # the same place, twice


@pytest.mark.parametrize("suffix", ["", ".modelreg"])
def test_init_creates_the_store_named_by_registry_option(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    # `modelreg -R PATH init` makes the store at PATH (a project directory or its .modelreg),
    # as every other command would look for it, not in the current directory.
    monkeypatch.chdir(tmp_path)
    project = tmp_path / "shared" / "models"
    result = cli("-R", project / suffix if suffix else project, "init", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"path": str(project / ".modelreg"), "created": True}
    assert not (tmp_path / ".modelreg").exists()
    listed = cli("-R", project, "list", "--json")
    assert listed.exit_code == 0 and json.loads(listed.stdout) == {"models": []}
    # Naming the same place twice is fine; naming two places is a usage error.
    assert cli("-R", project, "init", project).exit_code == 0
    clash = cli("-R", project, "init", tmp_path / "elsewhere")
    assert clash.exit_code == 2
    assert "two places" in clash.stderr
    assert not (tmp_path / "elsewhere").exists()
