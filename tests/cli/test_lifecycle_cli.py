"""Lifecycle commands as a CI script sees them: exit codes and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture
def staged(cli, project: Path, model_file: Path) -> Path:
    (project / ".modelreg" / "config.toml").write_text(
        '[stages.production]\nrequire_approvals = 1\nfour_eyes = true\n'
        'require_checks = ["latency"]\n')
    result = cli("register", "eta", model_file, "--no-git", "--stage", "staging", "--json")
    assert result.exit_code == 0, result.stderr
    return project


def test_promote_denied_then_allowed(cli, staged: Path, monkeypatch) -> None:
    denied = cli("promote", "eta@1", "--to", "production")
    assert denied.exit_code == 5
    assert "check 'latency' has no recorded result" in denied.stderr
    assert "needs 1 approval(s)" in denied.stderr
    ok = cli("check", "eta@1", "latency", "--pass", "--value", "12.5", "--json")
    assert ok.exit_code == 0
    checks = json.loads(ok.stdout)["events"][0]["details"]
    assert checks == {"check": "latency", "passed": True, "value": 12.5}
    assert cli("approve", "eta@1").exit_code == 5  # the registrant, under four_eyes
    monkeypatch.setenv("MODELREG_ACTOR", "eng@example.com")
    approved = json.loads(cli("approve", "eta@1", "--comment", "lgtm", "--json").stdout)
    assert approved["changed"] is True
    assert json.loads(cli("approve", "eta@1", "--json").stdout)["changed"] is False
    monkeypatch.setenv("MODELREG_ACTOR", "tester@example.com")
    done = cli("promote", "eta@1", "--to", "production", "--reason", "ship", "--json")
    assert done.exit_code == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["ref"], out["stage"], out["changed"]) == ("eta@1", "production", True)
    assert [(e["action"], e["from"], e["to"], e["reason"]) for e in out["events"]] == [
        ("promote", "staging", "production", "ship")]
    shown = json.loads(cli("show", "eta@production", "--json").stdout)
    assert shown["version"] == 1 and shown["stage"] == "production"


def test_check_needs_a_verdict_and_names_are_checked(cli, staged: Path) -> None:
    assert cli("check", "eta@1", "latency").exit_code == 2
    assert cli("check", "eta@1", "bad name", "--pass").exit_code == 2
    assert cli("check", "eta@9", "latency", "--pass").exit_code == 3
    assert cli("promote", "eta@1", "--to", "nowhere").exit_code == 3


def test_alias_commands(cli, staged: Path) -> None:
    assert cli("alias", "set", "eta", "champion", "1").exit_code == 0
    listed = json.loads(cli("alias", "list", "eta", "--json").stdout)
    assert listed == {"name": "eta", "aliases": {"champion": 1}}
    assert json.loads(cli("show", "eta@champion", "--json").stdout)["aliases"] == ["champion"]
    assert cli("alias", "set", "eta", "staging", "1").exit_code == 2
    assert cli("alias", "rm", "eta", "champion").exit_code == 0
    assert cli("alias", "rm", "eta", "champion").exit_code == 3


def test_rollback_and_events_cli(cli, project: Path, tmp_path: Path) -> None:
    for i in (1, 2):
        f = tmp_path / f"w{i}.bin"
        f.write_bytes(bytes([i]) * 10)
        assert cli("register", "eta", f, "--no-git", "--stage", "staging").exit_code == 0
        assert cli("promote", f"eta@{i}", "--to", "production").exit_code == 0
    first = json.loads(cli("events", "--json").stdout)
    assert {"events", "cursor"} == set(first)
    back = json.loads(cli("rollback", "eta", "--json").stdout)
    assert (back["version"], back["stage"]) == (1, "production")
    newer = json.loads(cli("events", "--since", first["cursor"], "--json").stdout)
    assert [(e["action"], e["version"]) for e in newer["events"]] == [
        ("archive", 2), ("rollback", 1)]
    assert cli("events", "--since", "nonsense").exit_code == 2
    assert cli("fsck").exit_code == 0
    human = cli("history", "eta")
    assert human.exit_code == 0 and "rollback" in human.stdout
