"""Stages, policy, approvals, checks, rollback, aliases and the event feed (library API)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import modelreg
from modelreg.errors import NotFound, PolicyDenied, UsageError
from modelreg.registry import Registry
from tests.helpers import snapshot

POLICY = """
[stages.production]
exclusive = true
require_approvals = 1
four_eyes = true
require_checks = ["latency", "integration"]

[groups]
ml-eng = ["sci@example.com", "eng@example.com"]
"""


def configure(reg: Registry, text: str) -> Registry:
    reg.layout.config_file.write_text(text)
    return Registry.open(reg.layout.root)


def new_version(reg: Registry, tmp_path: Path, i: int, actor: str = "sci@example.com",
                **kw) -> int:
    f = tmp_path / f"m{i}.bin"
    f.write_bytes(f"weights {i}".encode())
    return modelreg.register("eta", [f], registry=reg, git=False, actor=actor,
                             params={"i": i}, **kw).version.version


def gate(reg: Registry, ref: str) -> None:
    modelreg.check(ref, "latency", passed=True, value=12.5, registry=reg, actor="ci@example.com")
    modelreg.check(ref, "integration", passed=True, registry=reg, actor="ci@example.com")
    modelreg.approve(ref, registry=reg, actor="eng@example.com", comment="lgtm")


def test_full_handshake(registry: Registry, tmp_path: Path) -> None:
    reg = configure(registry, POLICY)
    v4 = new_version(reg, tmp_path, 4)
    assert modelreg.show("eta", registry=reg).stage == "development"
    staged = modelreg.promote("eta@1", "staging", registry=reg, actor="sci@example.com",
                              reason="ready for CI")
    assert (staged.changed, staged.version.stage) == (True, "staging")
    gate(reg, "eta@1")
    done = modelreg.promote("eta@staging", "production", registry=reg, actor="sci@example.com",
                            reason="ship it")
    assert done.version.stage == "production"
    assert modelreg.show("eta@production", registry=reg).version == v4

    v5 = new_version(reg, tmp_path, 5)
    modelreg.promote(f"eta@{v5}", "staging", registry=reg, actor="sci@example.com")
    gate(reg, f"eta@{v5}")
    swap = modelreg.promote(f"eta@{v5}", "production", registry=reg, actor="sci@example.com")
    assert [(e.action, e.version, e.from_stage, e.to_stage) for e in swap.events] == [
        ("archive", v4, "production", "archived"), ("promote", v5, "staging", "production")]
    assert modelreg.show(f"eta@{v4}", registry=reg).stage == "archived"
    assert modelreg.show("eta@production", registry=reg).version == v5

    back = modelreg.rollback("eta", registry=reg, actor="eng@example.com", reason="p95 regressed")
    assert back.version.version == v4
    assert modelreg.show("eta@production", registry=reg).version == v4
    assert modelreg.show(f"eta@{v5}", registry=reg).stage == "archived"

    _, events = modelreg.history("eta", registry=reg)
    steps = [(e.action, e.version, e.actor) for e in reversed(events)]
    assert steps == [
        ("register", 1, "sci@example.com"), ("promote", 1, "sci@example.com"),
        ("check", 1, "ci@example.com"), ("check", 1, "ci@example.com"),
        ("approve", 1, "eng@example.com"), ("promote", 1, "sci@example.com"),
        ("register", 2, "sci@example.com"), ("promote", 2, "sci@example.com"),
        ("check", 2, "ci@example.com"), ("check", 2, "ci@example.com"),
        ("approve", 2, "eng@example.com"), ("archive", 1, "sci@example.com"),
        ("promote", 2, "sci@example.com"), ("archive", 2, "eng@example.com"),
        ("rollback", 1, "eng@example.com"),
    ]
    reasons = {e.seq: e.reason for e in events}
    assert reasons[6] == "ship it"
    assert reasons[15] == "p95 regressed"
    assert all(e.prev is not None for e in events[:-1]) and events[-1].prev is None
    assert modelreg.fsck(registry=reg).ok


def test_denied_promotions_change_nothing(registry: Registry, tmp_path: Path) -> None:
    reg = configure(registry, POLICY)
    new_version(reg, tmp_path, 1)
    modelreg.promote("eta@1", "staging", registry=reg, actor="sci@example.com")
    store = reg.layout.root
    before = snapshot(store / "refs")
    with pytest.raises(PolicyDenied) as exc:
        modelreg.promote("eta@1", "production", registry=reg, actor="sci@example.com")
    assert exc.value.exit_code == 5
    assert "check 'latency' has no recorded result" in exc.value.message
    assert "needs 1 approval(s)" in exc.value.message
    assert snapshot(store / "refs") == before

    modelreg.check("eta@1", "latency", passed=True, registry=reg, actor="ci@example.com")
    modelreg.check("eta@1", "integration", passed=False, value=3, registry=reg,
                   actor="ci@example.com")
    with pytest.raises(PolicyDenied, match="check 'integration' failed"):
        modelreg.promote("eta@1", "production", registry=reg, actor="sci@example.com")

    # Four eyes: the registrant may not approve, and the promoter's approval does not count.
    with pytest.raises(PolicyDenied, match="four_eyes"):
        modelreg.approve("eta@1", registry=reg, actor="sci@example.com")
    modelreg.check("eta@1", "integration", passed=True, registry=reg, actor="ci@example.com")
    modelreg.approve("eta@1", registry=reg, actor="eng@example.com")
    before = snapshot(store / "refs")
    with pytest.raises(PolicyDenied, match="do not count under four_eyes"):
        modelreg.promote("eta@1", "production", registry=reg, actor="eng@example.com")
    assert snapshot(store / "refs") == before
    assert modelreg.show("eta@1", registry=reg).stage == "staging"
    ok = modelreg.promote("eta@1", "production", registry=reg, actor="sci@example.com")
    assert ok.version.stage == "production"


def test_transition_rules(registry: Registry, tmp_path: Path) -> None:
    new_version(registry, tmp_path, 1)
    with pytest.raises(PolicyDenied, match="may go to staging, archived"):
        modelreg.promote("eta@1", "production", registry=registry, actor="a")
    with pytest.raises(NotFound, match="no stage 'qa'"):
        modelreg.promote("eta@1", "qa", registry=registry, actor="a")
    archived = modelreg.archive("eta@1", registry=registry, actor="a")
    assert archived.version.stage == "archived"
    again = modelreg.archive("eta@1", registry=registry, actor="a")
    assert again.changed is False and again.events == []
    with pytest.raises(PolicyDenied):
        modelreg.promote("eta@1", "development", registry=registry, actor="a")
    assert modelreg.promote("eta@1", "staging", registry=registry, actor="a").changed


def test_allowed_actors_and_groups(registry: Registry, tmp_path: Path) -> None:
    reg = configure(registry, """
[stages.staging]
allowed_actors = ["group:ml-eng", "bot@example.com"]
[groups]
ml-eng = ["eng@example.com"]
""")
    new_version(reg, tmp_path, 1)
    with pytest.raises(PolicyDenied, match="intruder@example.com may not move"):
        modelreg.promote("eta@1", "staging", registry=reg, actor="intruder@example.com")
    assert modelreg.promote("eta@1", "staging", registry=reg, actor="eng@example.com").changed
    modelreg.promote("eta@1", "development", registry=reg, actor="x")
    assert modelreg.promote("eta@1", "staging", registry=reg, actor="bot@example.com").changed


def test_custom_stages_and_transitions(registry: Registry, tmp_path: Path) -> None:
    reg = configure(registry, """
[lifecycle]
stages = ["dev", "qa", "prod", "retired"]
initial = "dev"
archive = "retired"

[transitions]
dev = ["qa"]
qa = ["prod", "dev"]

[stages.prod]
exclusive = true
""")
    new_version(reg, tmp_path, 1)
    assert modelreg.show("eta", registry=reg).stage == "dev"
    modelreg.promote("eta@1", "qa", registry=reg, actor="a")
    modelreg.promote("eta@1", "prod", registry=reg, actor="a")
    new_version(reg, tmp_path, 2)
    modelreg.promote("eta@2", "qa", registry=reg, actor="a")
    modelreg.promote("eta@2", "prod", registry=reg, actor="a")
    assert modelreg.show("eta@1", registry=reg).stage == "retired"
    # A stage not listed under [transitions] may still go to the archive stage; one that is
    # listed may go only where its list says.
    assert modelreg.archive("eta@2", registry=reg, actor="a").version.stage == "retired"
    new_version(reg, tmp_path, 3)
    with pytest.raises(PolicyDenied, match="may go to qa"):
        modelreg.archive("eta@3", registry=reg, actor="a")


def test_register_with_stage_is_one_step(registry: Registry, tmp_path: Path) -> None:
    v = new_version(registry, tmp_path, 1, stage="staging", reason="fast track")
    info = modelreg.show(f"eta@{v}", registry=registry)
    assert info.stage == "staging"
    _, events = modelreg.history("eta", registry=registry)
    assert [(e.action, e.to_stage) for e in events] == [("promote", "staging"),
                                                        ("register", "development")]
    before = snapshot(registry.layout.root / "refs")
    with pytest.raises(PolicyDenied):
        new_version(registry, tmp_path, 2, stage="production")
    assert snapshot(registry.layout.root / "refs") == before
    assert modelreg.show("eta", registry=registry).version == 1


def test_stage_and_alias_resolution(registry: Registry, tmp_path: Path) -> None:
    for i in range(1, 4):
        new_version(registry, tmp_path, i)
    for v in (1, 2):
        modelreg.promote(f"eta@{v}", "staging", registry=registry, actor="a")
    assert modelreg.show("eta@staging", registry=registry).version == 2
    assert modelreg.show("eta@development", registry=registry).version == 3
    modelreg.promote("eta@2", "development", registry=registry, actor="a")
    assert modelreg.show("eta@staging", registry=registry).version == 1
    modelreg.archive("eta@1", registry=registry, actor="a")
    with pytest.raises(NotFound, match="staging"):
        modelreg.show("eta@staging", registry=registry)

    result = modelreg.alias_set("eta", "champion", 2, registry=registry, actor="a")
    assert result.version.aliases == ["champion"]
    assert modelreg.show("eta@champion", registry=registry).version == 2
    moved = modelreg.alias_set("eta", "champion", 3, registry=registry, actor="a")
    assert moved.events[0].details["previous"] == 2
    assert modelreg.alias_list("eta", registry=registry) == ("eta", {"champion": 3})
    assert [r.aliases for r in modelreg.versions("eta", registry=registry)] == [
        [], [], ["champion"]]
    modelreg.alias_remove("eta", "champion", registry=registry, actor="a")
    with pytest.raises(NotFound):
        modelreg.show("eta@champion", registry=registry)
    with pytest.raises(NotFound):
        modelreg.alias_remove("eta", "champion", registry=registry, actor="a")
    for bad in ("production", "latest", "v3", "3", "a/b", ""):
        with pytest.raises(UsageError):
            modelreg.alias_set("eta", bad, 1, registry=registry, actor="a")
    with pytest.raises(NotFound):
        modelreg.alias_set("eta", "canary", 9, registry=registry, actor="a")


def test_rollback_needs_a_previous_holder(registry: Registry, tmp_path: Path) -> None:
    new_version(registry, tmp_path, 1)
    with pytest.raises(NotFound, match="no version of eta is in production"):
        modelreg.rollback("eta", registry=registry, actor="a")
    modelreg.promote("eta@1", "staging", registry=registry, actor="a")
    modelreg.promote("eta@1", "production", registry=registry, actor="a")
    with pytest.raises(NotFound, match="held production before"):
        modelreg.rollback("eta", registry=registry, actor="a")


def test_events_feed_and_cursor(registry: Registry, tmp_path: Path) -> None:
    events, cursor = modelreg.events(registry=registry)
    assert events == []
    new_version(registry, tmp_path, 1)
    f = tmp_path / "other.bin"
    f.write_bytes(b"other")
    modelreg.register("other", [f], registry=registry, git=False, actor="b")
    events, cursor = modelreg.events(cursor, registry=registry)
    assert [(e.model, e.action) for e in events] == [("eta", "register"),
                                                          ("other", "register")]
    for key in ("model", "version", "action", "from", "to", "actor", "time", "reason"):
        assert key in events[0].to_dict()
    events, cursor2 = modelreg.events(cursor, registry=registry)
    assert events == []
    modelreg.promote("eta@1", "staging", registry=registry, actor="a", reason="go")
    events, _ = modelreg.events(cursor2, registry=registry)
    assert [(e.model, e.version, e.from_stage, e.to_stage, e.reason) for e in events] == [
        ("eta", 1, "development", "staging", "go")]
    with pytest.raises(UsageError):
        modelreg.events("garbage", registry=registry)


def test_bad_config_is_a_usage_error(registry: Registry, tmp_path: Path) -> None:
    new_version(registry, tmp_path, 1)
    for text, fragment in [
        ("[stages.production]\nrequire_approvals = -1\n", "require_approvals"),
        ("[stages.production]\nallowed_actors = ['group:nobody']\n", "undefined"),
        ("[transitions]\ndevelopment = ['nowhere']\n", "unknown stage"),
        ("[[hooks]]\non = ['promote']\n", "exactly one of command or url"),
        ("[[hooks]]\non = ['explode']\ncommand = 'true'\n", "unknown action"),
        ("not toml [", "not valid TOML"),
    ]:
        reg = configure(registry, text)
        with pytest.raises(UsageError, match=fragment):
            modelreg.promote("eta@1", "staging", registry=reg, actor="a")


def test_edit_description_and_tags_is_recorded(registry: Registry, tmp_path: Path) -> None:
    new_version(registry, tmp_path, 1, description="first", tags={"team": "ml"})
    result = modelreg.edit("eta@1", registry=registry, actor="ed", description="better",
                           set_tags={"owner": "ana"}, remove_tags=["team"])
    assert result.changed
    info = modelreg.show("eta@1", registry=registry)
    assert (info.description, info.tags) == ("better", {"owner": "ana"})
    assert result.events[0].details == {
        "description": {"from": "first", "to": "better"},
        "tags": {"from": {"team": "ml"}, "to": {"owner": "ana"}}}
    assert not modelreg.edit("eta@1", registry=registry, actor="ed", description="better").changed
    with pytest.raises(NotFound):
        modelreg.edit("eta@1", registry=registry, actor="ed", remove_tags=["team"])
    # The manifest (immutable) keeps what was registered.
    # It rides in the register commit; its own digest is the version's manifest digest.
    manifest = registry.manifest_text(registry.resolve("eta@1")[2])
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == info.manifest
    assert 'description = "first"' in manifest.decode()
    assert modelreg.fsck(registry=registry).ok


def test_review_fixes(registry: Registry, tmp_path: Path) -> None:
    # An input example is kept by gc and checked by fsck.
    sample = tmp_path / "s.csv"
    sample.write_text("x,y\n1,2\n")
    f = tmp_path / "m.bin"
    f.write_bytes(b"m")
    v = modelreg.register("ex", [f], registry=registry, git=False, sample=sample).version
    assert v.example is not None
    modelreg.gc(registry=registry, grace=0)
    oid = v.example.digest.split(":")[1]
    assert registry.objects.contains(oid)
    registry.objects.remove(oid)
    report = modelreg.fsck(registry=registry)
    assert not report.ok
    assert any(p.path == str(registry.objects.path(oid)) for p in report.problems)


def test_rollback_only_on_exclusive_stages(registry: Registry, tmp_path: Path) -> None:
    new_version(registry, tmp_path, 1, stage="staging")
    with pytest.raises(UsageError, match="not exclusive"):
        modelreg.rollback("eta", registry=registry, stage="staging", actor="a")


def test_register_stage_rerun_finishes_the_move(registry: Registry, tmp_path: Path) -> None:
    new_version(registry, tmp_path, 1)
    again = modelreg.register("eta", [tmp_path / "m1.bin"], registry=registry, git=False,
                              actor="sci@example.com", params={"i": 1}, stage="staging")
    assert (again.created, again.version.version, again.version.stage) == (False, 1, "staging")
    assert [e.action for e in again.events] == ["promote"]


@pytest.mark.parametrize(("text", "fragment"), [
    ("colour = 1\n", "unknown keys"),
    ("[lifecycle]\nstage = ['a']\n", "unknown keys"),
    ("[[hooks]]\non = ['promote']\ncommand = 'true'\nstage = ['staging']\n", "unknown keys"),
    ("[[hooks]]\non = ['promote']\ncommand = 5\n", "non-empty string"),
    ("[[hooks]]\non = ['promote']\nurl = 'http://x'\nsecret_env = 5\n", "non-empty string"),
    ("[[hooks]]\non = ['promote']\ncommand = 'true'\ntimeout = true\n", "timeout"),
    ("[lifecycle]\nstages = ['dev', 'latest']\n", "bad stage name"),
    ("[lifecycle]\nstages = ['dev', 'Dev']\n", "twice"),
    ("lifecycle = 3\n", "must be a table"),
])
def test_config_mistakes_are_usage_errors(registry: Registry, tmp_path: Path, text: str,
                                          fragment: str) -> None:
    new_version(registry, tmp_path, 1)
    reg = configure(registry, text)
    with pytest.raises(UsageError, match=fragment):
        modelreg.promote("eta@1", "staging", registry=reg, actor="a")


def test_stage_table_must_be_a_table(registry: Registry, tmp_path: Path) -> None:
    new_version(registry, tmp_path, 1)
    reg = configure(registry, "[stages]\nproduction = 3\n")
    with pytest.raises(UsageError, match="must be a table"):
        modelreg.promote("eta@1", "staging", registry=reg, actor="a")
