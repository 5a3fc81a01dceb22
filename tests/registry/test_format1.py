"""Format 1's commits and version-index buckets (kept for migration): encoding, decoding."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.errors import EXIT_INTEGRITY, IntegrityError
from modelreg.registry.format1 import (
    BUCKET_SIZE,
    FORMAT1,
    bucket_of,
    decode_bucket,
    decode_commit,
    encode_bucket,
    encode_commit,
)
from modelreg.registry.format1 import Format1Commit as Commit
from modelreg.registry.state import Event, Head, VersionEntry

_FAST = settings(derandomize=True, database=None, deadline=None)

_M1 = "1" * 64
_M2 = "2" * 64
_M3 = "3" * 64


def _commit() -> Commit:
    return Commit(
        model="resnet",
        parent="f" * 64,
        event=Event(
            seq=4,
            time="2024-05-01T12:00:00.000001+00:00",
            actor="ana@example.com",
            action="promote",
            version=2,
            from_stage="staging",
            to_stage="production",
            reason='passed "eval" — ünïcödé\nsecond line',
            extra={"ticket": "ML-7", "n": 3, "nested": {"ok": True}},
        ),
        latest=Head(3, _M3),
        index={0: "a" * 64, 1: "b" * 64},
        stages={"production": Head(2, _M2), "staging": Head(3, _M3)},
        aliases={"champion": Head(1, _M1)},
    )


def _entry(n: int) -> VersionEntry:
    return VersionEntry(
        manifest=str(n) * 64,
        fingerprint="e" * 64,
        created_at="2024-05-01T12:00:00+00:00",
        created_by="ana@example.com",
        stage="none",
        digest="sha256:" + "d" * 64,
        size=n * 1000,
    )


# --- bucket_of -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "bucket"),
    [(1, 0), (2, 0), (255, 0), (256, 0), (257, 1), (512, 1), (513, 2), (256 * 10 + 1, 10)],
)
def test_bucket_of(version: int, bucket: int) -> None:
    assert bucket_of(version) == bucket


def test_bucket_size() -> None:
    assert BUCKET_SIZE == 256


@_FAST
@given(st.integers(min_value=1, max_value=10**9))
def test_bucket_of_property(version: int) -> None:
    b = bucket_of(version)
    assert b * BUCKET_SIZE < version <= (b + 1) * BUCKET_SIZE


# --- commits ---------------------------------------------------------------------------------


def test_commit_round_trip() -> None:
    c = _commit()
    data = encode_commit(c)
    decoded = decode_commit(data, "obj")
    assert decoded == c
    assert encode_commit(decoded) == data
    assert decoded.seq == 4


def test_first_commit_round_trip() -> None:
    c = Commit(
        model="m",
        parent=None,
        event=Event(seq=1, time="t", actor="a", action="register", version=1),
        latest=Head(1, _M1),
        index={0: "a" * 64},
    )
    decoded = decode_commit(encode_commit(c), "obj")
    assert decoded == c
    assert decoded.parent is None
    assert decoded.stages == {}
    assert decoded.aliases == {}
    assert decoded.event.extra == {}
    assert decoded.event.from_stage is None


def test_commit_encoding_is_canonical() -> None:
    a = _commit()
    b = a.evolve(
        stages=dict(reversed(list(a.stages.items()))),
        index=dict(reversed(list(a.index.items()))),
    )
    assert a == b
    data = encode_commit(a)
    assert encode_commit(b) == data
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1
    doc = json.loads(data)
    assert doc["type"] == "commit"
    assert doc["format"] == FORMAT1
    assert doc["event"]["from"] == "staging"
    assert doc["event"]["to"] == "production"
    assert "ünïcödé".encode() in data  # UTF-8, not \\u escapes


def test_commit_evolve() -> None:
    c = _commit()
    d = c.evolve(parent="0" * 64)
    assert d.parent == "0" * 64
    assert d.event == c.event
    assert c.parent == "f" * 64


def test_event_dict_round_trip() -> None:
    e = _commit().event
    assert Event.from_dict(e.to_dict()) == e
    assert "extra" not in Event(seq=1, time="t", actor="a", action="x").to_dict()


_opt = st.none() | st.text(max_size=10)
_head = st.builds(Head, st.integers(1, 10**6), st.text(max_size=10))
_events = st.builds(
    Event,
    seq=st.integers(1, 10**9),
    time=st.text(max_size=10),
    actor=st.text(max_size=10),
    action=st.text(max_size=10),
    version=st.none() | st.integers(1, 10**6),
    from_stage=_opt,
    to_stage=_opt,
    reason=_opt,
    extra=st.dictionaries(st.text(max_size=5), st.text(max_size=5) | st.integers(), max_size=3),
)
_commits = st.builds(
    Commit,
    model=st.text(max_size=10),
    parent=_opt,
    event=_events,
    latest=_head,
    index=st.dictionaries(st.integers(0, 1000), st.text(max_size=10), max_size=4),
    stages=st.dictionaries(st.text(max_size=8), _head, max_size=3),
    aliases=st.dictionaries(st.text(max_size=8), _head, max_size=3),
)


@_FAST
@given(_commits)
def test_commit_round_trip_property(c: Commit) -> None:
    data = encode_commit(c)
    assert decode_commit(data, "obj") == c
    assert encode_commit(decode_commit(data, "obj")) == data


# --- buckets ---------------------------------------------------------------------------------


def test_bucket_round_trip() -> None:
    entries = {1: _entry(1), 2: _entry(2), 256: _entry(7)}
    data = encode_bucket(entries)
    assert decode_bucket(data, "obj") == entries
    assert json.loads(data)["type"] == "index"


def test_empty_bucket_round_trip() -> None:
    assert decode_bucket(encode_bucket({}), "obj") == {}


def test_bucket_encoding_is_canonical() -> None:
    a = {1: _entry(1), 2: _entry(2), 3: _entry(3)}
    b = {3: _entry(3), 1: _entry(1), 2: _entry(2)}
    assert encode_bucket(a) == encode_bucket(b)


# --- decoding errors -------------------------------------------------------------------------


def _retyped(data: bytes, **changes: object) -> bytes:
    doc = json.loads(data)
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    "changes",
    [{"type": "index"}, {"type": "tree"}, {"type": None}, {"format": 2}, {"format": None},
     {"format": "1"}, {"format": 0}],
)
def test_decode_commit_wrong_type_or_format(changes: dict) -> None:
    with pytest.raises(IntegrityError) as info:
        decode_commit(_retyped(encode_commit(_commit()), **changes), "objects/ab/cd")
    assert info.value.exit_code == EXIT_INTEGRITY == 6
    assert info.value.path == "objects/ab/cd"


@pytest.mark.parametrize(
    "changes",
    [{"type": "commit"}, {"type": "Index"}, {"format": 2}, {"format": None}],
)
def test_decode_bucket_wrong_type_or_format(changes: dict) -> None:
    with pytest.raises(IntegrityError) as info:
        decode_bucket(_retyped(encode_bucket({1: _entry(1)}), **changes), "where")
    assert info.value.exit_code == 6


def test_commit_is_not_a_bucket_and_back() -> None:
    with pytest.raises(IntegrityError, match="expected a index"):
        decode_bucket(encode_commit(_commit()), "where")
    with pytest.raises(IntegrityError, match="expected a commit"):
        decode_commit(encode_bucket({1: _entry(1)}), "where")


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b"\xff\xfe\x00garbage", b"[]", b"null", b"42", b'"commit"',
     b'{"type": "commit"}'],
)
@pytest.mark.parametrize("decode", [decode_commit, decode_bucket])
def test_decode_garbage(data: bytes, decode) -> None:
    with pytest.raises(IntegrityError) as info:
        decode(data, "where")
    assert info.value.exit_code == 6


@pytest.mark.parametrize(
    "changes",
    [
        {"event": "x"},
        {"event": {"seq": 1}},
        {"latest": None},
        {"latest": {"version": "three", "manifest": "m"}},
        {"index": {"zero": "x"}},
        {"index": []},
        {"stages": {"production": {"version": 1}}},
    ],
)
def test_decode_malformed_commit(changes: dict) -> None:
    with pytest.raises(IntegrityError, match="malformed commit"):
        decode_commit(_retyped(encode_commit(_commit()), **changes), "where")


def test_decode_malformed_commit_missing_key() -> None:
    doc = json.loads(encode_commit(_commit()))
    del doc["model"]
    with pytest.raises(IntegrityError, match="malformed commit"):
        decode_commit(json.dumps(doc).encode(), "where")


@pytest.mark.parametrize(
    "versions",
    [{"one": {}}, {"1": {"manifest": "m"}}, {"1": "x"}, [1], None],
)
def test_decode_malformed_bucket(versions: object) -> None:
    data = json.dumps({"type": "index", "format": FORMAT1, "versions": versions}).encode()
    with pytest.raises(IntegrityError, match="malformed index bucket"):
        decode_bucket(data, "where")
