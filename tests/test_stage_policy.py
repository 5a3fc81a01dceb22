"""The policy of the initial and archive stages, fsck against the policy, aliases vs stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import modelreg
from modelreg.errors import NotFound, UsageError
from modelreg.registry import Registry
from tests.helpers import run_cli, snapshot


def configure(reg: Registry, text: str) -> Registry:
    reg.layout.config_file.write_text(text)
    return Registry.open(reg.layout.root)


def model(tmp_path: Path, i: int) -> Path:
    f = tmp_path / f"m{i}.bin"
    f.write_bytes(f"weights {i}".encode())
    return f


GATED_INITIAL = """
[lifecycle]
stages = ["production", "development", "staging", "archived"]

[stages.production]
require_approvals = 2
allowed_actors = ["ci@example.com"]
"""


def test_a_gated_initial_stage_is_refused(registry: Registry, tmp_path: Path) -> None:
    """The reproduction: register put versions straight into production."""
    configure(registry, GATED_INITIAL)
    store = registry.layout.root
    before = snapshot(store)
    for i in (1, 2):
        out = run_cli("register", "m", model(tmp_path, i), "--no-git", registry=store,
                      env={"MODELREG_ACTOR": "mallory"})
        assert out.returncode == 2, out.stderr
        assert "lifecycle.stages (its first stage, 'production', is the initial one)" in out.stderr
        assert "stages.production.require_approvals = 2" in out.stderr
        assert 'stages.production.allowed_actors = ["ci@example.com"]' in out.stderr
    assert snapshot(store) == before
    assert run_cli("fsck", registry=store).returncode == 2


@pytest.mark.parametrize(("text", "fragments"), [
    ('[lifecycle]\ninitial = "staging"\n[stages.staging]\nrequire_checks = ["lint"]\n',
     ["lifecycle.initial = 'staging'", 'stages.staging.require_checks = ["lint"]']),
    ('[lifecycle]\ninitial = "staging"\n[stages.staging]\nfour_eyes = true\n',
     ["lifecycle.initial = 'staging'", "stages.staging.four_eyes = true"]),
    ('[lifecycle]\ninitial = "production"\n',
     ["lifecycle.initial = 'production'",
      "stages.production.exclusive = true (the default for production)"]),
    ('[stages.archived]\nallowed_actors = ["ops"]\n',
     ["lifecycle.archive (not set: the archive stage is 'archived'",
      'stages.archived.allowed_actors = ["ops"]']),
    ('[lifecycle]\narchive = "staging"\n[stages.staging]\nexclusive = true\n',
     ["lifecycle.archive = 'staging'", "stages.staging.exclusive = true"]),
    ('[lifecycle]\nstages = ["development", "production"]\n',
     ["the archive stage is 'production', the last stage",
      "stages.production.check_signature = true (the default for production)"]),
    ('[stages.archived]\ncheck_signature = true\n', ["stages.archived.check_signature"]),
    ('[stages.development]\nrequire_approvals = 1\n', ["stages.development.require_approvals"]),
])
def test_gated_initial_or_archive_stages_are_refused(registry: Registry, text: str,
                                                     fragments: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        configure(registry, text).config  # noqa: B018
    for fragment in fragments:
        assert fragment in info.value.message
    assert str(registry.layout.config_file) in info.value.message


def test_ungated_initial_and_archive_stages_are_accepted(registry: Registry) -> None:
    reg = configure(registry, """
[lifecycle]
stages = ["dev", "qa", "prod", "retired"]

[stages.dev]
exclusive = false
require_approvals = 0

[stages.prod]
exclusive = true
require_approvals = 1
""")
    assert (reg.config.initial, reg.config.archive) == ("dev", "retired")


def test_fsck_reports_an_exclusive_stage_holding_two(registry: Registry,
                                                     tmp_path: Path) -> None:
    """A stage made exclusive after it came to hold two versions."""
    reg = configure(registry, "[stages.production]\nexclusive = false\n")
    for i in (1, 2):
        modelreg.register("m", [model(tmp_path, i)], registry=reg, git=False, actor="a",
                          stage="staging")
        modelreg.promote(f"m@{i}", "production", registry=reg, actor="a")
    store = reg.layout.root
    assert run_cli("fsck", registry=store).returncode == 0
    configure(reg, "")
    out = run_cli("fsck", "--json", registry=store)
    assert out.returncode == 6, out.stderr
    problems = json.loads(out.stdout)["problems"]
    assert [p["path"] for p in problems] == [str(reg.refs.path("models/m"))]
    assert "stage production is exclusive" in problems[0]["message"]
    assert "holds 2: v1, v2" in problems[0]["message"]
    # Archiving one puts things right.
    assert run_cli("archive", "m@1", registry=store).returncode == 0
    assert run_cli("fsck", registry=store).returncode == 0


def test_a_stage_configured_after_an_alias_of_its_name_wins(registry: Registry,
                                                            tmp_path: Path) -> None:
    for i in (1, 2):
        modelreg.register("m", [model(tmp_path, i)], registry=registry, git=False, actor="a")
    modelreg.alias_set("m", "canary", 1, registry=registry, actor="a")
    assert modelreg.show("m@canary", registry=registry).version == 1
    reg = configure(registry, '[lifecycle]\nstages = ["development", "canary", "staging", '
                              '"production", "archived"]\n'
                                        '[transitions]\ndevelopment = ["canary", "archived"]\n')
    store = reg.layout.root
    # The empty stage is not answered by the alias.
    out = run_cli("show", "m@canary", registry=store)
    assert out.returncode == 3
    assert "no version of m is in stage canary; its alias 'canary'" in out.stderr
    assert "modelreg alias rm m canary" in out.stderr
    with pytest.raises(NotFound):
        modelreg.promote("m@canary", "staging", registry=reg, actor="a")
    # fsck flags the clash (a note: the store is sound).
    out = run_cli("fsck", "--json", registry=store)
    assert out.returncode == 0
    notes = json.loads(out.stdout)["notes"]
    assert any("alias canary (v1) clashes with stage canary" in n["message"] for n in notes)
    # Once a version is in the stage, the stage answers.
    modelreg.promote("m@2", "canary", registry=reg, actor="a")
    assert modelreg.show("m@canary", registry=reg).version == 2
    # The alias can still be removed, after which fsck has nothing to say.
    assert run_cli("alias", "rm", "m", "canary", registry=store).returncode == 0
    out = run_cli("fsck", "--json", registry=store)
    assert json.loads(out.stdout)["notes"] == []
