"""`modelreg search` and `modelreg.search`: the filter language, order, limit, and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import modelreg
from modelreg.errors import UsageError
from modelreg.registry.core import Registry
from modelreg.registry.search import SearchHit, parse_filter
from tests.helpers import run_cli


@pytest.fixture
def store(registry: Registry, tmp_path: Path) -> Registry:
    rows: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, str], str]] = [
        ("forecast", {"alpha": 0.5}, {"mae": 41.0}, {"team": "forecasting"}, "alice@example.com"),
        ("forecast", {"alpha": 1.0}, {"mae": 38.5}, {"team": "forecasting"}, "bob@example.com"),
        ("forecast", {"alpha": 2.0}, {"mae": 39.9}, {"team": "forecasting"}, "alice@example.com"),
        ("churn", {"depth": 4}, {"auc": 0.91}, {"team": "risk"}, "carol@example.com"),
        ("churn", {"depth": 6, "alpha": "0.5"}, {}, {"team": "risk-2"}, "alice@example.com"),
    ]
    for i, (name, params, metrics, tags, actor) in enumerate(rows):
        f = tmp_path / f"m{i}.bin"
        f.write_bytes(f"model {i}".encode())
        modelreg.register(name, [f], registry=registry, params=params, metrics=metrics,
                          tags=tags, git=False, actor=actor)
    modelreg.promote("forecast@2", "staging", registry=registry, actor="alice@example.com")
    return registry


def refs(hits: list[SearchHit]) -> list[str]:
    return [h.ref for h in hits]


def test_conditions_on_every_kind_of_key(store: Registry) -> None:
    def find(text: str, model: str | None = None) -> list[str]:
        return refs(modelreg.search(text, registry=store, model=model))

    assert find("metrics.mae < 40") == ["forecast@3", "forecast@2"]
    assert find("metrics.mae < 40 and stage = 'staging'") == ["forecast@2"]
    assert find("params.alpha = '0.5'") == ["churn@2", "forecast@1"]  # text and number alike
    assert find("params.alpha >= 1") == ["forecast@3", "forecast@2"]
    assert find("tags.team = 'risk'") == ["churn@1"]
    assert find("tags.team like 'risk%'") == ["churn@2", "churn@1"]
    assert find("tags.team ilike 'RISK-_'") == ["churn@2"]
    assert find("created_by in ('bob@example.com', 'carol@example.com')") == [
        "churn@1", "forecast@2"]
    assert find("created_at > '2000-01-01' and version = 3") == ["forecast@3"]
    assert find("name != 'forecast' and metrics.auc > 0.9") == ["churn@1"]
    assert find("") == ["churn@2", "churn@1", "forecast@3", "forecast@2", "forecast@1"]
    assert find("", model="churn") == ["churn@2", "churn@1"]


def test_order_and_limit(store: Registry) -> None:
    def find(order: str, limit: int | None = None) -> list[str]:
        return refs(modelreg.search("", registry=store, order_by=order, limit=limit))

    assert find("metrics.mae") == ["forecast@2", "forecast@3", "forecast@1", "churn@1",
                                   "churn@2"]  # versions without the key come last
    assert find("metrics.mae DESC", limit=2) == ["forecast@1", "forecast@3"]
    assert find("created_by asc", limit=1)[0] in ("forecast@1", "forecast@3", "churn@2")
    # A param held as text ('0.5') and as numbers sorts as numbers; texts sort as texts.
    assert find("params.alpha") == ["churn@2", "forecast@1", "forecast@2", "forecast@3",
                                    "churn@1"]
    assert find("tags.team desc", limit=2) == ["churn@2", "churn@1"]


@pytest.mark.parametrize(("text", "where", "what"), [
    ("metrics.mae <", 14, "expected a value"),
    ("metrics.mae ~ 3", 13, "unexpected character"),
    ("stage = 'x' or stage = 'y'", 13, "expected 'and'"),
    ("stage 'x'", 7, "expected a comparison"),
    ("version in (1, 2", 17, "the filter ended"),
    ("tags.team like 3", 16, "like takes a 'text' pattern"),
])
def test_a_malformed_filter_says_where(text: str, where: int, what: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_filter(text)
    message = str(err.value)
    assert what in message
    assert f"at position {where}" in message


def test_an_unknown_key_lists_the_keys(store: Registry) -> None:
    done = run_cli("search", "colour = 'red'", registry=store.layout.root)
    assert done.returncode == 2
    assert "unknown key 'colour'" in done.stderr
    assert "metrics.NAME" in done.stderr and "created_by" in done.stderr
    bad_order = run_cli("search", "--order-by", "mae sideways", registry=store.layout.root)
    assert bad_order.returncode == 2


def test_the_command_line(store: Registry) -> None:
    done = run_cli("search", "metrics.mae < 40", "--order-by", "metrics.mae", "--json",
                   registry=store.layout.root)
    assert done.returncode == 0, done.stderr
    hits = json.loads(done.stdout)
    assert [h["ref"] for h in hits] == ["forecast@2", "forecast@3"]
    assert hits[0]["metrics"] == {"mae": 38.5}
    assert hits[0]["stage"] == "staging"
    text = run_cli("search", "tags.team = 'nobody'", registry=store.layout.root)
    assert text.returncode == 0
    assert "no version matches" in text.stderr
    missing = run_cli("search", "", "--model", "nosuch", registry=store.layout.root)
    assert missing.returncode == 3


def test_the_index_answers_and_keeps_edits(store: Registry) -> None:
    # Metrics, params and tags come from the version index; an edit of tags is seen at once.
    modelreg.edit("forecast@1", registry=store, set_tags={"team": "platform"},
                  actor="alice@example.com")
    assert refs(modelreg.search("tags.team = 'platform'", registry=store)) == ["forecast@1"]
    assert refs(modelreg.search("tags.team = 'forecasting'", registry=store)) == [
        "forecast@3", "forecast@2"]
    state = store.require_state("forecast")
    entries = dict(store.iter_entries(state))
    assert entries[2].search == {"m": {"mae": 38.5}, "p": {"alpha": 1.0},
                                 "t": {"team": "forecasting"}}
    # The description needs the manifest, and is read from it.
    modelreg.edit("churn@1", registry=store, description="the first churn model",
                  actor="alice@example.com")
    assert refs(modelreg.search("description like '%churn%'", registry=store)) == ["churn@1"]
    assert refs(modelreg.search("", registry=store, order_by="description",
                                limit=1)) == ["churn@1"]
