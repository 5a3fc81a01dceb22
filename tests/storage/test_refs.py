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
from modelreg.storage.layout import Layout, init
from modelreg.storage.objects import ObjectStore
from modelreg.storage.refs import RefStore, check_ref_name

_MP = multiprocessing.get_context(
    "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
)

A = hashlib.sha256(b"a").hexdigest()
B = hashlib.sha256(b"b").hexdigest()
C = hashlib.sha256(b"c").hexdigest()
NAME = "models/churn"


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
        refs.set_if_equals(name, None, A)
    assert _files(layout.refs) == []  # refused before any I/O


@pytest.mark.parametrize("name", ["models/churn", "HEAD", "a.b-c_d", "models/v1.2/x_y", "9"])
def test_check_ref_name_accepts(refs: RefStore, layout: Layout, name: str) -> None:
    check_ref_name(name)
    assert refs.path(name) == layout.refs / name


# -- read ----------------------------------------------------------------------------------


def test_read_missing_ref_is_none(refs: RefStore) -> None:
    assert refs.read(NAME) is None
    assert refs.read("nested/deeper/ref") is None


def test_read_under_a_file_is_none(refs: RefStore, layout: Layout) -> None:
    (layout.refs / "plain").write_text(A + "\n")
    assert refs.read("plain/child") is None


@pytest.mark.parametrize(
    "content", [b"", b"\n", b"garbage\n", A[:-1].encode() + b"\n", A.upper().encode(),
                b"\xff\xfe" * 40, (A + " " + B).encode()]
)
def test_corrupt_ref_is_an_integrity_error(refs: RefStore, content: bytes) -> None:
    path = refs.path(NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    with pytest.raises(IntegrityError) as excinfo:
        refs.read(NAME)
    err = excinfo.value
    assert err.exit_code == EXIT_INTEGRITY == 6
    assert err.path == str(path)
    assert str(path) in str(err)


def test_read_tolerates_surrounding_whitespace(refs: RefStore) -> None:
    path = refs.path(NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"  {A}\r\n".encode())
    assert refs.read(NAME) == A


# -- set_if_equals -------------------------------------------------------------------------


def test_set_if_equals_create_move_and_refuse(refs: RefStore, layout: Layout) -> None:
    path = layout.refs / "models" / "churn"
    assert refs.set_if_equals(NAME, None, A) is True
    assert path.read_bytes() == f"{A}\n".encode()
    assert refs.read(NAME) == A
    # A stale "old" value loses, and nothing changes.
    assert refs.set_if_equals(NAME, B, C) is False
    assert refs.set_if_equals(NAME, None, C) is False
    assert refs.read(NAME) == A
    assert path.read_bytes() == f"{A}\n".encode()
    # The right "old" value wins.
    assert refs.set_if_equals(NAME, A, B) is True
    assert refs.read(NAME) == B
    assert path.read_bytes() == f"{B}\n".encode()
    # No lock and no temp file is left behind.
    assert _files(layout.refs) == ["models/churn"]
    assert list(layout.tmp.iterdir()) == []


def test_set_if_equals_to_current_value_is_a_no_op(refs: RefStore, layout: Layout) -> None:
    refs.set_if_equals(NAME, None, A)
    path = refs.path(NAME)
    inode = path.stat().st_ino
    assert refs.set_if_equals(NAME, C, A) is True  # already there, whatever "old" says
    assert path.stat().st_ino == inode  # not rewritten


def test_set_if_equals_refuses_a_non_id(refs: RefStore, layout: Layout) -> None:
    with pytest.raises(ValueError, match="not an object id"):
        refs.set_if_equals(NAME, None, "not-an-id")
    assert refs.read(NAME) is None
    assert _files(layout.refs) == []


def test_set_if_equals_when_lock_is_held(refs: RefStore, layout: Layout,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    refs.set_if_equals(NAME, None, A)
    lock = layout.refs / "models" / "churn.lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                "time": time.time(), "token": "other"}))
    monkeypatch.setenv("MODELREG_LOCK_TIMEOUT", "0.1")
    with pytest.raises(LockHeld) as excinfo:
        refs.set_if_equals(NAME, A, B)
    assert excinfo.value.exit_code == EXIT_CONFLICT == 4
    assert str(lock) in str(excinfo.value)
    assert refs.read(NAME) == A
    assert lock.exists()


# -- transaction ---------------------------------------------------------------------------


def test_transaction_holds_the_lock_and_sees_current_value(refs: RefStore, layout: Layout) -> None:
    refs.set_if_equals(NAME, None, A)
    lock = layout.refs / "models" / "churn.lock"
    with refs.transaction(NAME, timeout=0) as txn:
        assert lock.exists()
        assert txn.old == A
        assert txn.name == NAME
        txn.commit(B)
        assert txn.committed == B
        assert refs.read(NAME) == B
    assert not lock.exists()
    # names() never lists lock files.
    assert list(refs.names("models")) == [NAME]


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt])
def test_transaction_releases_lock_when_body_raises(
    refs: RefStore, layout: Layout, exc_type: type[BaseException]
) -> None:
    seen: list[str | None] = []

    def body(commit: str | None) -> None:
        with refs.transaction(NAME, timeout=0) as txn:
            seen.append(txn.old)
            if commit is not None:
                txn.commit(commit)
            raise exc_type()

    with pytest.raises(exc_type):
        body(None)
    assert seen == [None]
    assert _files(layout.refs) == []
    assert refs.read(NAME) is None
    # After a failed body that had already committed, the commit stands and the lock is gone.
    with pytest.raises(exc_type):
        body(A)
    assert _files(layout.refs) == ["models/churn"]
    assert refs.read(NAME) == A


def test_transaction_commit_after_lock_takeover_is_a_conflict(
    refs: RefStore, layout: Layout
) -> None:
    refs.set_if_equals(NAME, None, A)
    lock = layout.refs / "models" / "churn.lock"
    with refs.transaction(NAME, timeout=0) as txn:
        # Our lock was judged stale and another process took it.
        lock.unlink()
        lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "time": time.time(),
                                    "token": "theirs"}))
        with pytest.raises(ConflictError) as excinfo:
            txn.commit(B)
        assert excinfo.value.exit_code == 4
        assert str(lock) in str(excinfo.value)
    assert refs.read(NAME) == A
    assert lock.exists()  # the new owner's lock is left alone
    assert json.loads(lock.read_text())["token"] == "theirs"


def test_names_lists_refs_under_a_prefix(refs: RefStore) -> None:
    assert list(refs.names("models")) == []
    assert list(refs.names("nothing")) == []
    for n in ("models/b", "models/a", "models/sub/x"):
        refs.set_if_equals(n, None, A)
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
        with refs.transaction(name, timeout=120) as txn:
            value = 0 if txn.old is None else int(objects.get_bytes(txn.old))
            txn.commit(objects.put_bytes(str(value + 1).encode()))


def test_concurrent_transactions_lose_no_update(layout: Layout, refs: RefStore) -> None:
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
    assert objects.get_bytes(head) == b"200"
    assert _PROCS * _EACH == 200
    # Every intermediate value was written exactly once: 1..200.
    values = sorted(int(objects.get_bytes(oid)) for oid, _ in objects.iter_objects())
    assert values == list(range(1, 201))
    assert _files(layout.refs) == ["models/churn"]
    assert list(layout.tmp.iterdir()) == []
