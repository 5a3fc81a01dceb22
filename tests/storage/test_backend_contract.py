"""One contract, every backend: the tests of modelreg.storage.backend's protocol.

Each test runs against the file-system backend (``ObjectStore`` and ``RefStore`` on a real
directory), the memory backend and the S3 backend (against moto's S3 served single-threaded
on loopback), as dulwich runs its object-store tests on its memory and disk stores.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelreg.errors import IntegrityError, ObjectMissing
from modelreg.storage.backend import MAX_REF_BODY, Objects, Refs
from modelreg.storage.layout import init
from modelreg.storage.memory import MemoryObjects, MemoryRefs
from modelreg.storage.objects import ObjectStore
from modelreg.storage.refs import RefStore
from tests.helpers import flip_byte


@dataclass
class Backend:
    objects: Objects
    refs: Refs
    corrupt: Callable[[str], None]


def _file_backend(tmp_path: Path) -> Backend:
    layout, _ = init(tmp_path)
    objects = ObjectStore(layout.objects, layout.tmp)
    return Backend(objects, RefStore(layout.refs, layout.tmp),
                   lambda oid: flip_byte(objects.path(oid)))


def _memory_backend(tmp_path: Path) -> Backend:
    objects = MemoryObjects()

    def corrupt(oid: str) -> None:
        data = bytearray(objects.data[oid])
        data[0] ^= 0x01
        objects.data[oid] = bytes(data)

    return Backend(objects, MemoryRefs(), corrupt)


def _s3_backend(request: pytest.FixtureRequest) -> Backend:
    # A fresh bucket on the loopback S3 server (moto, single-threaded: tests/s3server.py).
    pytest.importorskip("boto3")
    from modelreg.storage.s3 import S3Location, open_s3

    url: str = request.getfixturevalue("s3_url")
    admin = request.getfixturevalue("s3_admin")
    objects, refs = open_s3(url)
    location = S3Location.parse(url)

    def corrupt(oid: str) -> None:
        key = objects.key(oid)
        data = bytearray(admin.get_object(Bucket=location.bucket, Key=key)["Body"].read())
        data[0] ^= 0x01
        admin.put_object(Bucket=location.bucket, Key=key, Body=bytes(data))

    return Backend(objects, refs, corrupt)


@pytest.fixture(params=["file", "memory", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "s3":
        return _s3_backend(request)
    make = {"file": _file_backend, "memory": _memory_backend}[request.param]
    return make(tmp_path)


A = b"a" * 64 + b"\n{}\n"
B = b"b" * 64 + b"\n{}\n"
C = b"c" * 64 + b"\n{}\n"
REF = "models/churn"
MISSING = "a" * 64


# -- objects -------------------------------------------------------------------------------

def test_put_bytes_names_objects_by_their_sha256_once(backend: Backend) -> None:
    oid = backend.objects.put_bytes(b"weights")
    assert oid == hashlib.sha256(b"weights").hexdigest()
    assert backend.objects.put_bytes(b"weights") == oid
    assert backend.objects.contains(oid)
    assert backend.objects.get_bytes(oid) == b"weights"
    assert list(backend.objects.ids()) == [oid]


def test_put_file_streams_and_reports_progress(backend: Backend, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    seen: list[int] = []
    oid, size = backend.objects.put_file(source, seen.append)
    assert (oid, size) == (hashlib.sha256(data).hexdigest(), len(data))
    assert sum(seen) == len(data)
    out = io.BytesIO()
    assert backend.objects.copy_to(oid, out) == len(data)
    assert out.getvalue() == data


@pytest.mark.parametrize("size", [64, 3 << 20])
def test_store_file_tells_whether_it_created_the_object(backend: Backend, tmp_path: Path,
                                                        size: int) -> None:
    # What `register` relies on to skip looking for an identical earlier version.
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(size))
    oid, stored, created = backend.objects.store_file(source)
    assert (stored, created) == (size, True)
    assert backend.objects.store_file(source) == (oid, size, False)
    other = tmp_path / "copy.bin"
    other.write_bytes(source.read_bytes())
    assert backend.objects.store_file(other) == (oid, size, False)


def test_gc_removal_spares_an_object_stored_again_after_its_look(backend: Backend) -> None:
    # gc dates an object, then removes it; a writer that stored it again in between may
    # name it, so the removal says so (the object is then stored again by the caller).
    import time

    looked = time.time() - 5  # S3 dates to the second
    reused = backend.objects.put_bytes(b"reused")
    backend.objects.put_bytes(b"reused")  # stored again: a re-use
    if not backend.objects.remove_unless_reused(reused, looked):
        backend.objects.put_bytes(b"reused")
    else:
        pytest.fail("an object re-used after gc's look was removed as unused")
    assert backend.objects.get_bytes(reused) == b"reused"
    old = backend.objects.put_bytes(b"old")
    assert backend.objects.remove_unless_reused(old, time.time() + 5) is True
    assert not backend.objects.contains(old)
    assert backend.objects.remove_unless_reused(MISSING, time.time()) is True


def test_missing_objects_are_reported_as_missing(backend: Backend) -> None:
    assert not backend.objects.contains(MISSING)
    assert not backend.objects.verify(MISSING)
    with pytest.raises(ObjectMissing):
        backend.objects.get_bytes(MISSING)
    with pytest.raises(ObjectMissing):
        backend.objects.copy_to(MISSING, io.BytesIO())


def test_every_read_verifies(backend: Backend) -> None:
    oid = backend.objects.put_bytes(b"the model")
    assert backend.objects.verify(oid)
    backend.corrupt(oid)
    assert not backend.objects.verify(oid)
    with pytest.raises(IntegrityError, match="corrupt"):
        backend.objects.get_bytes(oid)
    with pytest.raises(IntegrityError, match="corrupt"):
        backend.objects.copy_to(oid, io.BytesIO())


def test_remove_deletes_and_tolerates_absence(backend: Backend) -> None:
    keep = backend.objects.put_bytes(b"keep")
    drop = backend.objects.put_bytes(b"drop")
    backend.objects.remove(drop)
    backend.objects.remove(drop)
    assert sorted(backend.objects.ids()) == [keep]
    assert not backend.objects.contains(drop)


# -- refs ----------------------------------------------------------------------------------

def test_create_if_absent_then_replace_if_the_token_matches(backend: Backend) -> None:
    refs = backend.refs
    assert refs.read(REF) is None
    assert refs.read_versioned(REF) == (None, None)
    assert refs.compare_and_swap(REF, None, A) is True
    assert refs.compare_and_swap(REF, None, B) is False  # exists now
    value, token = refs.read_versioned(REF)
    assert value == A and token is not None
    assert refs.compare_and_swap(REF, token, B) is True
    assert refs.compare_and_swap(REF, token, C) is False  # stale token: changes nothing
    assert refs.read(REF) == B


def test_a_swap_back_to_an_old_value_still_needs_the_current_token(backend: Backend) -> None:
    refs = backend.refs
    refs.compare_and_swap(REF, None, A)
    _, first = refs.read_versioned(REF)
    assert refs.compare_and_swap(REF, first, B)
    _, second = refs.read_versioned(REF)
    assert refs.compare_and_swap(REF, second, C)
    assert refs.compare_and_swap(REF, second, A) is False
    assert refs.read(REF) == C


def test_delete_if_equal(backend: Backend) -> None:
    refs = backend.refs
    refs.compare_and_swap(REF, None, A)
    _, token = refs.read_versioned(REF)
    assert refs.delete_if(REF, None) is False
    refs.compare_and_swap(REF, token, B)
    assert refs.delete_if(REF, token) is False  # moved meanwhile
    _, token = refs.read_versioned(REF)
    assert refs.delete_if(REF, token) is True
    assert refs.read_versioned(REF) == (None, None)
    assert refs.delete_if(REF, token) is False
    assert refs.compare_and_swap(REF, None, C) is True  # can be created again


def test_names_lists_the_refs_under_a_prefix(backend: Backend) -> None:
    for name in ("models/b", "models/a", "models/c"):
        assert backend.refs.compare_and_swap(name, None, A)
    assert list(backend.refs.names("models")) == ["models/a", "models/b", "models/c"]
    assert list(backend.refs.names("other")) == []


def test_exactly_one_of_racing_creators_wins(backend: Backend) -> None:
    wins: list[bytes] = []
    start = threading.Barrier(8)

    def create(i: int) -> None:
        start.wait()
        value = f"writer {i}".encode()
        if backend.refs.compare_and_swap(REF, None, value):
            wins.append(value)

    threads = [threading.Thread(target=create, args=(i + 1,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert backend.refs.read(REF) == wins[0]


def test_racing_read_modify_swap_loops_lose_no_update(backend: Backend) -> None:
    # Each writer re-reads and retries on a lost swap, as a transaction re-plans: after
    # 4 writers x 10 increments the counter says 40, and the chain of values is unbroken.
    backend.refs.compare_and_swap(REF, None, backend.objects.put_bytes(b"0").encode())

    def bump() -> None:
        for _ in range(10):
            while True:
                value, token = backend.refs.read_versioned(REF)
                assert value is not None
                n = int(backend.objects.get_bytes(value.decode()))
                new = backend.objects.put_bytes(str(n + 1).encode())
                backend.objects.sync()
                if backend.refs.compare_and_swap(REF, token, new.encode()):
                    break

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = backend.refs.read(REF)
    assert final is not None and backend.objects.get_bytes(final.decode()) == b"40"


def test_a_ref_body_is_opaque_bytes_up_to_one_mib(backend: Backend) -> None:
    body = bytes(range(256)) * (MAX_REF_BODY // 256)
    assert len(body) == MAX_REF_BODY
    assert backend.refs.compare_and_swap(REF, None, body)
    assert backend.refs.read(REF) == body
    _, token = backend.refs.read_versioned(REF)
    with pytest.raises(ValueError, match="at most"):
        backend.refs.compare_and_swap(REF, token, body + b"!")
    assert backend.refs.read(REF) == body


def test_locked_is_reentrant_and_the_swap_still_decides(backend: Backend) -> None:
    with backend.refs.locked(REF):
        assert backend.refs.compare_and_swap(REF, None, A)
        with backend.refs.locked(REF):
            _, token = backend.refs.read_versioned(REF)
            assert backend.refs.compare_and_swap(REF, None, B) is False
            assert backend.refs.compare_and_swap(REF, token, B)
    assert backend.refs.read(REF) == B


def test_sync_and_stat(backend: Backend) -> None:
    oid = backend.objects.put_bytes(b"durable")
    backend.objects.sync()
    found = backend.objects.stat(oid)
    assert found is not None and found[1] == len(b"durable") and found[0] > 0
    assert backend.objects.stat("a" * 64) is None
    assert oid in backend.objects.where(oid)
