"""What lifecycle commands say and refuse as a new user meets them (real processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelreg.registry import Registry
from tests.helpers import run_cli, snapshot


def model(tmp_path: Path, i: int) -> Path:
    f = tmp_path / f"m{i}.bin"
    f.write_bytes(f"weights {i}".encode())
    return f


@pytest.fixture
def store(registry: Registry, tmp_path: Path) -> Path:
    """eta@1 in production, eta@2 registered."""
    root = registry.layout.root
    for i in (1, 2):
        assert run_cli("register", "eta", model(tmp_path, i), "--no-git",
                       registry=root).returncode == 0
    assert run_cli("promote", "eta@1", "--to", "staging", registry=root).returncode == 0
    assert run_cli("promote", "eta@1", "--to", "production", registry=root).returncode == 0
    return root


@pytest.mark.parametrize("flags", [["--pass", "--fail"], ["--fail", "--pass"], []])
def test_check_needs_exactly_one_verdict(store: Path, flags: list[str]) -> None:
    before = snapshot(store)
    out = run_cli("check", "eta@1", "latency", *flags, registry=store)
    assert out.returncode == 2, out.stderr
    assert "say --pass or --fail" in out.stderr
    if flags:
        assert "not both" in out.stderr
    assert snapshot(store) == before


@pytest.mark.parametrize("flag", ["--pass", "--fail"])
def test_check_records_the_verdict_given(store: Path, flag: str) -> None:
    out = run_cli("check", "eta@1", "latency", flag, registry=store)
    assert out.returncode == 0, out.stderr
    shown = json.loads(run_cli("show", "eta@1", "--json", registry=store).stdout)
    assert shown["checks"]["latency"]["passed"] is (flag == "--pass")


def test_edit_refuses_setting_and_removing_one_tag(store: Path) -> None:
    before = snapshot(store)
    out = run_cli("edit", "eta@1", "--tag", "team=ml", "--untag", "team", registry=store)
    assert out.returncode == 2
    assert "tag 'team' is both set and removed" in out.stderr
    assert snapshot(store) == before


@pytest.mark.parametrize(("args", "says"), [
    (["rollback", "eta@2"], "rollback takes a model name, not a version: 'eta@2' names one. "
                            "rollback puts back the version that held production"),
    (["alias", "set", "eta@2", "champion", "2"], "alias set takes a model name"),
    (["alias", "rm", "eta@1", "champion"], "alias rm takes a model name"),
    (["alias", "list", "eta@1"], "alias list takes a model name"),
])
def test_model_name_commands_say_so_when_given_a_reference(store: Path, args: list[str],
                                                           says: str) -> None:
    before = snapshot(store)
    out = run_cli(*args, registry=store)
    assert out.returncode == 2, out.stderr
    assert says in out.stderr
    assert "bad model name" not in out.stderr
    assert snapshot(store) == before


def test_refused_register_stage_names_no_version(store: Path, tmp_path: Path) -> None:
    (store / "config.toml").write_text('[stages.production]\nrequire_checks = ["latency"]\n')
    before = snapshot(store)
    out = run_cli("register", "eta", model(tmp_path, 3), "--no-git", "--stage", "staging",
                  registry=store)
    assert out.returncode == 0
    out = run_cli("register", "eta", model(tmp_path, 4), "--no-git", "--stage", "production",
                  registry=store)
    assert out.returncode == 5
    assert "eta@4" not in out.stderr
    assert ("eta was not registered: cannot move the new version of eta from development to "
            "production: the transition is not allowed") in out.stderr
    shown = json.loads(run_cli("versions", "eta", "--json", registry=store).stdout)
    assert len(shown["versions"]) == 3
    assert snapshot(store) != before  # v3 only


def test_rollback_restores_the_holder_an_archive_removed(store: Path) -> None:
    out = run_cli("archive", "eta@production", registry=store)
    assert out.returncode == 0
    assert json.loads(run_cli("show", "eta@1", "--json", registry=store).stdout)[
        "stage"] == "archived"
    out = run_cli("rollback", "eta", registry=store)
    assert out.returncode == 0, out.stderr
    assert "eta@1 is back in production" in out.stdout
    assert "v1: archived -> production (rollback of production: restore v1, which left it " \
           "(archive) at" in out.stdout
    events = json.loads(run_cli("history", "eta", "--json", registry=store).stdout)["events"]
    last = max(events, key=lambda e: e["seq"])
    assert (last["action"], last["version"], last["from"], last["to"]) == (
        "rollback", 1, "archived", "production")
    assert last["details"]["restored"]["action"] == "archive"
    # production is occupied again: the next rollback is the ordinary one, and finds no
    # earlier holder.
    out = run_cli("rollback", "eta", registry=store)
    assert out.returncode == 3
    assert "no version of eta held production before v1" in out.stderr
    assert run_cli("fsck", registry=store).returncode == 0


def test_rollback_of_a_stage_never_held(registry: Registry, tmp_path: Path) -> None:
    root = registry.layout.root
    run_cli("register", "eta", model(tmp_path, 1), "--no-git", registry=root)
    out = run_cli("rollback", "eta", registry=root)
    assert out.returncode == 3
    assert "no version of eta is in production or ever left it" in out.stderr
