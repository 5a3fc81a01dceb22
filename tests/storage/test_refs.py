"""Refs and compare-and-swap: storage/refs.py (house rule 3)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import socket
import time
from pathlib import Path

import pytest

from modelreg.errors import EXIT_CONFLICT, EXIT_INTEGRITY, ConflictError, IntegrityError, LockHeld
from modelreg.storage.backend import MAX_REF_BODY
from modelreg.storage.layout import Layout, init
from modelreg.storage.objects import ObjectStore
from modelreg.storage.refs import RefStore, check_ref_name

_MP = multiprocessing.get_context(
    "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
)

A = hashlib.sha256(b"a").hexdigest().encode() + b"\n{}\n"
B = hashlib.sha256(b"b").hexdigest().encode() + b"\n{}\n"
C = hashlib.sha256(b"c").hexdigest().encode() + b"\n{}\n"
NAME = "models/churn"


def _token(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return init(tmp_path / "project")[0]


@pytest.fixture
def refs(layout: Layout) -> RefStore:
    return RefStore(layout.refs, layout.tmp)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "/abs",
        "",
        "x.lock",
        "models/x.lock",
        ".hidden",
        "models/.hidden",
        "a/../b",
        "a/./b",
        "a//b",
        "models/",
        "a..b",
        "-dash",
        "sp ace",
        "back\\slash",
        "nul\x00",
        "new\nline",
        "churn\n",
        "models/churn\n",
    ],
)
def test_check_ref_name_rejects(refs: RefStore, layout: Layout, name: str) -> None:
    with pytest.raises(ValueError, match="malformed ref name"):
        check_ref_name(name)
    with pytest.raises(ValueError, match="malformed ref name"):
        refs.path(name)
    with pytest.raises(ValueError, match="malformed ref name"):
        refs.compare_and_swap(name, None, A)
    assert _files(layout.refs) == []  # refused before any I/O


@pytest.mark.parametrize("name", ["models/churn", "HEAD", "a.b-c_d", "models/v1.2/x_y", "9"])
def test_check_ref_name_accepts(refs: RefStore, layout: Layout, name: str) -> None:
    check_ref_name(name)
    assert refs.path(name) == layout.refs / name


# -- read ----------------------------------------------------------------------------------


def test_read_missing_ref_is_none(refs: RefStore) -> None:
    assert refs.read(NAME) is None
    assert refs.read("nested/deeper/ref") is None
    assert refs.read_versioned(NAME) == (None, None)


def test_read_under_a_file_is_none(refs: RefStore, layout: Layout) -> None:
    (layout.refs / "plain").write_bytes(A)
    assert refs.read("plain/child") is None


def test_a_ref_larger_than_a_ref_may_be_is_an_integrity_error(refs: RefStore) -> None:
    path = refs.path(NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * (MAX_REF_BODY + 1))
    with pytest.raises(IntegrityError) as excinfo:
        refs.read(NAME)
    assert excinfo.value.exit_code == EXIT_INTEGRITY == 6
    assert str(path) in str(excinfo.value)


def test_the_token_is_the_sha256_of_the_body(refs: RefStore) -> None:
    assert refs.compare_and_swap(NAME, None, A)
    assert refs.read_versioned(NAME) == (A, hashlib.sha256(A).hexdigest())


# -- compare_and_swap ----------------------------------------------------------------------


def test_compare_and_swap_create_move_and_refuse(refs: RefStore, layout: Layout) -> None:
    path = layout.refs / "models" / "churn"
    assert refs.compare_and_swap(NAME, None, A) is True
    assert path.read_bytes() == A
    _, token = refs.read_versioned(NAME)
    # A stale token loses, and nothing changes.
    assert refs.compare_and_swap(NAME, _token(B), C) is False
    assert refs.compare_and_swap(NAME, None, C) is False
    assert path.read_bytes() == A
    # The right token wins.
    assert refs.compare_and_swap(NAME, token, B) is True
    assert path.read_bytes() == B
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)
    # No lock and no temp file is left behind.
    assert _files(layout.refs) == ["models/churn"]
    assert list(layout.tmp.iterdir()) == []


def test_compare_and_swap_when_lock_is_held(refs: RefStore, layout: Layout,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    refs.compare_and_swap(NAME, None, A)
    lock = layout.refs / "models" / "churn.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "time": time.time(), "token": "other"}))
    monkeypatch.setenv("MODELREG_LOCK_TIMEOUT", "0.1")
    with pytest.raises(LockHeld) as excinfo:
        refs.compare_and_swap(NAME, _token(A), B)
    assert excinfo.value.exit_code == EXIT_CONFLICT == 4
    assert str(lock) in str(excinfo.value)
    assert refs.read(NAME) == A
    assert lock.exists()


# -- locked --------------------------------------------------------------------------------


def test_locked_holds_the_lock_for_the_whole_change(refs: RefStore, layout: Layout) -> None:
    refs.compare_and_swap(NAME, None, A)
    lock = layout.refs / "models" / "churn.lock"
    with refs.locked(NAME, timeout=0):
        assert lock.exists()
        assert refs.compare_and_swap(NAME, _token(A), B)  # under the lock already held
        assert lock.exists()
        assert refs.read(NAME) == B
    assert not lock.exists()
    # names() never lists lock files.
    assert list(refs.names("models")) == [NAME]


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_locked_releases_the_lock_when_the_body_raises(
    refs: RefStore, layout: Layout, exc_type: type[BaseException]
) -> None:
    def change() -> None:
        with refs.locked(NAME, timeout=0):
            assert refs.compare_and_swap(NAME, None, A)
            raise exc_type()

    with pytest.raises(exc_type):
        change()
    # The swap made stands; the lock is gone.
    assert _files(layout.refs) == ["models/churn"]
    assert refs.read(NAME) == A


def test_swap_after_lock_takeover_is_a_conflict(refs: RefStore, layout: Layout) -> None:
    refs.compare_and_swap(NAME, None, A)
    lock = layout.refs / "models" / "churn.lock"
    with refs.locked(NAME, timeout=0):
        # Our lock was judged stale and another process took it.
        lock.unlink()
        lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "time": time.time(),
                                    "token": "theirs"}))
        with pytest.raises(ConflictError) as excinfo:
            refs.compare_and_swap(NAME, _token(A), B)
        assert excinfo.value.exit_code == 4
        assert str(lock) in str(excinfo.value)
    assert refs.read(NAME) == A
    assert lock.exists()  # the new owner's lock is left alone
    assert json.loads(lock.read_text())["token"] == "theirs"


def test_names_lists_refs_under_a_prefix(refs: RefStore) -> None:
    assert list(refs.names("models")) == []
    assert list(refs.names("nothing")) == []
    for n in ("models/b", "models/a", "models/sub/x"):
        refs.compare_and_swap(n, None, A)
    assert list(refs.names("models")) == ["models/a", "models/b"]


# -- compare-and-swap under contention, with real processes -------------------------------

_PROCS = 8
_EACH = 25


def _bump(project: str, name: str, n: int, start) -> None:  # type: ignore[no-untyped-def]
    layout = Layout(Path(project))
    refs = RefStore(layout.refs, layout.tmp)
    objects = ObjectStore(layout.objects, layout.tmp)
    start.wait()
    for _ in range(n):
        with refs.locked(name, timeout=120):
            old, token = refs.read_versioned(name)
            value = 0 if old is None else int(objects.get_bytes(old.decode()))
            new = objects.put_bytes(str(value + 1).encode())
            objects.sync()
            assert refs.compare_and_swap(name, token, new.encode())


def test_concurrent_locked_swaps_lose_no_update(layout: Layout, refs: RefStore) -> None:
    start = _MP.Event()
    procs = [
        _MP.Process(target=_bump, args=(str(layout.root), NAME, _EACH, start))
        for _ in range(_PROCS)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * _PROCS
    objects = ObjectStore(layout.objects, layout.tmp)
    head = refs.read(NAME)
    assert head is not None
    assert objects.get_bytes(head.decode()) == b"200"
    assert _PROCS * _EACH == 200
    # Every intermediate value was written exactly once: 1..200.
    values = sorted(int(objects.get_bytes(oid)) for oid, _ in objects.iter_objects())
    assert values == list(range(1, 201))
    assert _files(layout.refs) == ["models/churn"]
    assert list(layout.tmp.iterdir()) == []
