"""Actors are one person however their name is spelled: normalised, compared and recorded so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import modelreg
from modelreg.config import actor_key, normalize_actor, resolve_actor
from modelreg.errors import PolicyDenied, UsageError
from modelreg.registry import Registry, operations, registering
from tests.helpers import run_cli, snapshot

FOUR_EYES = """
[stages.production]
require_approvals = 1
four_eyes = true
"""


def configure(reg: Registry, text: str) -> Registry:
    reg.layout.config_file.write_text(text)
    return Registry.open(reg.layout.root)


def model(tmp_path: Path, i: int) -> Path:
    f = tmp_path / f"m{i}.bin"
    f.write_bytes(f"weights {i}".encode())
    return f


@pytest.mark.parametrize(("raw", "key"), [
    ("alice@example.com", "alice@example.com"),
    ("Alice@Example.COM", "alice@example.com"),
    ("  alice@example.com \n", "alice@example.com"),
    ("\uff21lice@example.com", "alice@example.com"),       # fullwidth A (NFKC)
    ("Alice\u00a0 Smith", "alice smith"),                 # no-break space, runs of spaces
    ("STRASSE", "strasse"),
    ("Straße", "strasse"),                                # case folding, not lower()
])
def test_normalised_form(raw: str, key: str) -> None:
    assert normalize_actor(raw) == key
    assert actor_key(raw) == key


@pytest.mark.parametrize("raw", [
    "alice@example.com\u200b",     # zero-width space (Cf)
    "ali\u200dce",                 # zero-width joiner
    "alice\u202e",                 # right-to-left override
    "a\x1b[2Jb",                   # escape (Cc)
    "al\nice",                     # a line break inside
    "alice\u2028x",                # line separator (Zl)
    "ali\u3164ce",                 # Hangul filler (renders as nothing)
    "alice\ufe0f",                 # variation selector
    "\u200b",
])
def test_invisible_characters_are_refused(raw: str) -> None:
    with pytest.raises(UsageError, match="control and invisible characters are refused"):
        normalize_actor(raw, "$MODELREG_ACTOR")
    assert "\u200b" not in actor_key(raw)


def test_resolve_actor_normalises_every_source(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    monkeypatch.setenv("MODELREG_ACTOR", " Env@Example.com ")
    assert resolve_actor() == "env@example.com"
    assert resolve_actor("Explicit@Example.com") == "explicit@example.com"
    monkeypatch.delenv("MODELREG_ACTOR")
    user = tmp_path / "user.toml"
    user.write_text('actor = "Config@Example.com\\u200b"\n', encoding="utf-8")
    monkeypatch.setenv("MODELREG_USER_CONFIG", str(user))
    with pytest.raises(UsageError, match=r"from actor in .*user\.toml: it holds U\+200B"):
        resolve_actor()


def test_four_eyes_is_not_passed_by_spelling(registry: Registry, tmp_path: Path) -> None:
    """The reproduction: registered as alice, approved as Alice, promoted."""
    configure(registry, FOUR_EYES)
    store = registry.layout.root
    alice = {"MODELREG_ACTOR": "alice@example.com"}
    assert run_cli("register", "eta", model(tmp_path, 1), "--no-git", "--stage", "staging",
                   registry=store, env=alice).returncode == 0
    before = snapshot(store)
    out = run_cli("approve", "eta@1", registry=store,
                  env={"MODELREG_ACTOR": "Alice@Example.com"})
    assert out.returncode == 5, out.stderr
    assert "alice@example.com registered eta@1 and cannot approve it" in out.stderr
    out = run_cli("approve", "eta@1", registry=store,
                  env={"MODELREG_ACTOR": "alice@example.com\u200b"})
    assert out.returncode == 2, out.stderr
    assert "U+200B (ZERO WIDTH SPACE)" in out.stderr
    assert "\u200b" not in out.stderr
    assert snapshot(store) == before
    out = run_cli("promote", "eta@1", "--to", "production", registry=store,
                  env={"MODELREG_ACTOR": "ALICE@example.com"})
    assert out.returncode == 5
    assert "needs 1 approval(s) for production, has 0" in out.stderr
    assert snapshot(store) == before


def test_the_normalised_form_is_recorded(registry: Registry, tmp_path: Path) -> None:
    store = registry.layout.root
    out = run_cli("register", "eta", model(tmp_path, 1), "--no-git", "--json", registry=store,
                  env={"MODELREG_ACTOR": " Alice@Example.COM "})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["created_by"] == "alice@example.com"
    run_cli("approve", "eta@1", registry=store, env={"MODELREG_ACTOR": "B\uff4fb"})
    history = json.loads(run_cli("history", "eta", "--json", registry=store).stdout)
    assert sorted(e["actor"] for e in history["events"]) == ["alice@example.com", "bob"]


def test_one_persons_approvals_count_once(registry: Registry, tmp_path: Path) -> None:
    reg = configure(registry, "[stages.production]\nrequire_approvals = 2\n")
    modelreg.register("eta", [model(tmp_path, 1)], registry=reg, git=False, stage="staging",
                      actor="sci@example.com")
    assert modelreg.approve("eta@1", registry=reg, actor="bob@example.com").changed
    again = modelreg.approve("eta@1", registry=reg, actor="BOB@Example.com")
    assert not again.changed
    # A record of an older version, stored as spelled: the same person still counts once.
    old = operations.approve(reg, "eta@1", actor="Bob@EXAMPLE.com ")
    assert not old.changed
    with pytest.raises(PolicyDenied, match="needs 2 approval"):
        modelreg.promote("eta@1", "production", registry=reg, actor="sci@example.com")


def test_unnormalised_records_are_compared_normalised(registry: Registry,
                                                      tmp_path: Path) -> None:
    """Records written before actors were normalised hold names as they were spelled."""
    reg = configure(registry, FOUR_EYES)
    registering.register(reg, "eta", [model(tmp_path, 1)], actor="Alice@Example.com\u200b",
                         stage="staging")
    with pytest.raises(PolicyDenied, match="cannot approve"):
        modelreg.approve("eta@1", registry=reg, actor="alice@example.com")
    operations.approve(reg, "eta@1", actor="Carol@Example.COM")   # an old, un-normalised record
    with pytest.raises(PolicyDenied, match="approvals by carol@example.com do not count"):
        modelreg.promote("eta@1", "production", registry=reg, actor="carol@example.com")


def test_allowed_actors_and_groups_compare_normalised(registry: Registry,
                                                      tmp_path: Path) -> None:
    reg = configure(registry, """
[stages.staging]
allowed_actors = ["CI@Example.com", "group:release"]

[groups]
release = ["Rel\u00e9ase@Example.com"]
""")
    assert reg.config.policy("staging").allowed_actors == ("ci@example.com", "group:release")
    modelreg.register("eta", [model(tmp_path, 1)], registry=reg, git=False, actor="sci")
    modelreg.register("eta", [model(tmp_path, 2)], registry=reg, git=False, actor="sci")
    assert modelreg.promote("eta@1", "staging", registry=reg,
                            actor="ci@example.com").changed
    # "e" + combining acute is NFKC-equal to "é"
    assert modelreg.promote("eta@2", "staging", registry=reg,
                            actor="RELE\u0301ASE@example.com").changed
    with pytest.raises(PolicyDenied, match="mallory may not move versions into staging"):
        modelreg.register("eta", [model(tmp_path, 3)], registry=reg, git=False,
                          actor="Mallory", stage="staging")


@pytest.mark.parametrize(("text", "key"), [
    ('[stages.production]\nallowed_actors = ["ci\\u200b@example.com"]\n',
     "stages.production.allowed_actors"),
    ('[groups]\nrelease = ["a\\u0007"]\n', "groups.release"),
])
def test_invisible_characters_in_config_are_refused(registry: Registry, tmp_path: Path,
                                                    text: str, key: str) -> None:
    modelreg.register("eta", [model(tmp_path, 1)], registry=registry, git=False, actor="a")
    configure(registry, text)
    out = run_cli("promote", "eta@1", "--to", "staging", registry=registry.layout.root)
    assert out.returncode == 2, out.stderr
    assert key in out.stderr
    assert "control and invisible characters are refused" in out.stderr
