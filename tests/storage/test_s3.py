"""The S3 backend against a real S3 implementation: moto's, over loopback HTTP.

The behaviours of the backend contract (tests/storage/test_backend_contract.py), adapted to
version 2 of the protocol (a ref holds an opaque body and its token is an ETag), and what
only object storage has: keys, multipart uploads, a missing bucket, refused credentials,
5xx answers and lost answers, an endpoint that ignores conditional writes. Nothing of boto3
or botocore is mocked: faults come from a WSGI layer in front of moto (tests/s3server.py).
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelreg.errors import (
    EXIT_CONFLICT,
    EXIT_NOT_FOUND,
    EXIT_POLICY,
    EXIT_USAGE,
    ConflictError,
    IntegrityError,
    NotFound,
    ObjectMissing,
    PolicyDenied,
    UsageError,
)
from tests.storage.conftest import MP

pytest.importorskip("boto3")
pytest.importorskip("moto")

from modelreg.storage import s3  # noqa: E402  (after the skips: it needs boto3)
from modelreg.storage.s3 import S3Location, S3Objects, S3Refs, open_s3  # noqa: E402
from tests.s3server import Faults, LoopbackServer, moto_app  # noqa: E402

REF = "models/churn"


def _split(url: str) -> tuple[str, str]:
    loc = S3Location.parse(url)
    return loc.bucket, loc.prefix


@pytest.fixture
def store(s3_url: str) -> tuple[S3Objects, S3Refs]:
    return open_s3(s3_url)


@pytest.fixture
def faults(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Faults]:
    """A misbehaving endpoint in front of the same moto state; AWS_ENDPOINT_URL points at it.

    Buckets are made through the plain endpoint first (``s3_url`` depends on ``aws_env``).
    """
    layer = Faults(moto_app())
    server = LoopbackServer(layer)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    yield layer
    server.close()


# -- the location --------------------------------------------------------------------------

@pytest.mark.parametrize(("url", "bucket", "prefix"), [
    ("s3://models", "models", ""),
    ("s3://models/", "models", ""),
    ("s3://my.bucket-1/team/registry/", "my.bucket-1", "team/registry"),
    ("s3://abc/a_b/c.d/e-f", "abc", "a_b/c.d/e-f"),
])
def test_locations_parse(url: str, bucket: str, prefix: str) -> None:
    loc = S3Location.parse(url)
    assert (loc.bucket, loc.prefix) == (bucket, prefix)
    assert loc.key("objects", "x") == "/".join(p for p in (prefix, "objects", "x") if p)
    assert str(loc) == url.rstrip("/")


@pytest.mark.parametrize("url", [
    "models", "s3:/models", "http://models/x", "s3://", "s3://ab", "s3://Models/x",
    "s3://-models", "s3://models-/x", "s3://a..b", "s3://192.168.1.1", "s3://models//x",
    "s3://models/a/../b", "s3://models/./b", "s3://models/a b", "s3://models/a\\b",
    "s3://models/é",
])
def test_malformed_locations_are_usage_errors(url: str) -> None:
    with pytest.raises(UsageError, match="S3") as caught:
        open_s3(url)
    assert caught.value.exit_code == EXIT_USAGE


# -- objects -------------------------------------------------------------------------------

def test_put_bytes_names_objects_by_their_sha256_once(
        s3_admin: Any, s3_url: str, store: tuple[S3Objects, S3Refs]) -> None:
    objects, _ = store
    oid = objects.put_bytes(b"weights")
    assert oid == hashlib.sha256(b"weights").hexdigest()
    assert objects.put_bytes(b"weights") == oid  # already there: the 412 is not an error
    assert objects.contains(oid)
    assert objects.get_bytes(oid) == b"weights"
    assert list(objects.ids()) == [oid]
    bucket, prefix = _split(s3_url)
    keys = [o["Key"] for o in s3_admin.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == [f"{prefix}/objects/{oid}", f"{prefix}/reused/{oid}"]  # stored, re-used


def _put_random_file(objects: S3Objects, source: Path, size: int,
                     seen: list[int]) -> tuple[bytes, str]:
    """Store ``size`` random bytes from ``source``; check the id, size and progress."""
    data = os.urandom(size)
    source.write_bytes(data)
    assert objects.put_file(source, seen.append) == (hashlib.sha256(data).hexdigest(), size)
    assert sum(seen) == size
    return data, hashlib.sha256(data).hexdigest()


def test_put_file_in_one_request_streams_and_reports_progress(
        store: tuple[S3Objects, S3Refs], tmp_path: Path) -> None:
    objects, _ = store
    data, oid = _put_random_file(objects, tmp_path / "model.bin", 3 << 20, [])
    out = io.BytesIO()
    assert objects.copy_to(oid, out) == len(data)
    assert out.getvalue() == data


def _multipart(s3_url: str) -> tuple[S3Objects, S3Refs]:
    # S3 (and moto) refuse parts under 5 MiB but the last: 12 MiB go up as 5 + 5 + 2.
    return open_s3(s3_url, multipart_threshold=4 << 20, part_size=5 << 20)


def test_a_large_file_goes_up_in_parts_to_its_final_key(s3_admin: Any, s3_url: str,
                                                        tmp_path: Path) -> None:
    objects, _ = _multipart(s3_url)
    source = tmp_path / "big.bin"
    seen: list[int] = []
    data, oid = _put_random_file(objects, source, 12 << 20, seen)
    assert seen == [5 << 20, 5 << 20, 2 << 20]
    bucket, prefix = _split(s3_url)
    head = s3_admin.head_object(Bucket=bucket, Key=f"{prefix}/objects/{oid}")
    assert head["ETag"].endswith('-3"')  # a multipart object of three parts
    out = io.BytesIO()
    assert objects.copy_to(oid, out, seen.append) == len(data)
    assert out.getvalue() == data
    # Stored already: hashed, found, not uploaded again; progress still adds up.
    seen.clear()
    assert objects.store_file(source, seen.append) == (oid, len(data), False)
    assert seen == [len(data)]
    assert s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_a_file_that_changes_during_its_upload_is_not_stored(
        s3_admin: Any, s3_url: str, tmp_path: Path) -> None:
    objects, _ = _multipart(s3_url)
    source = tmp_path / "moving.bin"
    original = os.urandom(12 << 20)
    source.write_bytes(original)
    first = hashlib.sha256(original).hexdigest()

    def rewrite_the_tail(n: int) -> None:  # after the first part, once
        if n != 5 << 20 or source.read_bytes() != original:
            return
        with open(source, "r+b") as fh:
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
            fh.seek(-1, os.SEEK_END)
            fh.write(bytes([last[0] ^ 1]))

    with pytest.raises(ConflictError, match="changed while it was being stored"):
        objects.put_file(source, rewrite_the_tail)
    assert not objects.contains(first)
    assert list(objects.ids()) == []
    bucket, _ = _split(s3_url)
    assert s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_missing_objects_are_reported_as_missing(store: tuple[S3Objects, S3Refs]) -> None:
    objects, _ = store
    oid = "a" * 64
    assert not objects.contains(oid)
    assert not objects.verify(oid)
    with pytest.raises(ObjectMissing, match=f"objects/{oid}"):
        objects.get_bytes(oid)
    with pytest.raises(ObjectMissing):
        objects.copy_to(oid, io.BytesIO())
    with pytest.raises(IntegrityError, match="malformed object id"):
        objects.get_bytes("../refs/x")


def test_every_read_verifies(s3_admin: Any, s3_url: str,
                             store: tuple[S3Objects, S3Refs]) -> None:
    objects, _ = store
    oid = objects.put_bytes(b"the model")
    assert objects.verify(oid)
    bucket, prefix = _split(s3_url)
    s3_admin.put_object(Bucket=bucket, Key=f"{prefix}/objects/{oid}", Body=b"the modem")
    assert objects.contains(oid)
    assert not objects.verify(oid)
    with pytest.raises(IntegrityError, match=f"corrupt.*s3://{bucket}/{prefix}/objects/{oid}"):
        objects.get_bytes(oid)
    with pytest.raises(IntegrityError, match="corrupt"):
        objects.copy_to(oid, io.BytesIO())


def test_remove_deletes_and_tolerates_absence(store: tuple[S3Objects, S3Refs],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    objects, _ = store
    kept = sorted(objects.put_bytes(bytes([i])) for i in range(5))
    drop = objects.put_bytes(b"drop")
    objects.remove(drop)
    objects.remove(drop)
    assert not objects.contains(drop)
    monkeypatch.setattr(s3, "LIST_PAGE", 2)  # five ids come back over three pages
    assert list(objects.ids()) == kept


def test_stat_tells_when_an_object_was_last_stored_or_reused(
        s3_admin: Any, s3_url: str, store: tuple[S3Objects, S3Refs]) -> None:
    objects, _ = store
    assert objects.stat("a" * 64) is None
    oid = objects.put_bytes(b"weights")
    first = objects.stat(oid)
    assert first is not None and first[1] == len(b"weights")
    assert abs(first[0] - time.time()) < 60
    time.sleep(1.1)  # HeadObject's Last-Modified counts whole seconds
    assert objects.put_bytes(b"weights") == oid  # re-used: a mark is written
    second = objects.stat(oid)
    assert second is not None and second[0] > first[0]
    bucket, prefix = _split(s3_url)
    objects.remove(oid)
    assert objects.stat(oid) is None
    assert "Contents" not in s3_admin.list_objects_v2(Bucket=bucket, Prefix=prefix)


@pytest.mark.parametrize("strikes", [1, 99])
def test_an_object_removed_while_it_is_reused_is_stored_again(
        s3_admin: Any, s3_url: str, aws_env: str, monkeypatch: pytest.MonkeyPatch,
        strikes: int) -> None:
    objects, _ = open_s3(s3_url)
    oid = objects.put_bytes(b"shared weights")
    bucket, prefix = _split(s3_url)
    key = f"{prefix}/objects/{oid}"
    puts: list[str] = []

    def gc_strikes(method: str, path: str, status: str) -> None:
        if not path.endswith(key):
            return
        if method == "PUT":
            puts.append(status[:3])
            if status.startswith("412") and len(puts) <= strikes:  # gc deletes it right then
                s3_admin.delete_object(Bucket=bucket, Key=key)
        elif method == "HEAD" and status.startswith("404") and strikes > 1:
            # ... and another writer stores it again, for gc to strike again.
            s3_admin.put_object(Bucket=bucket, Key=key, Body=b"shared weights")

    layer = Faults(moto_app(), answered=gc_strikes)
    server = LoopbackServer(layer)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        if strikes == 1:
            assert open_s3(s3_url)[0].put_bytes(b"shared weights") == oid
            assert puts == ["412", "200"]
            assert objects.get_bytes(oid) == b"shared weights"
        else:
            with pytest.raises(ConflictError, match="found missing 5 times"):
                open_s3(s3_url)[0].put_bytes(b"shared weights")
            assert puts == ["412"] * 5
    finally:
        server.close()


def test_the_rest_of_the_protocol(s3_url: str, store: tuple[S3Objects, S3Refs]) -> None:
    objects, refs = store
    objects.sync()  # S3 acknowledges durable writes: nothing to do, nothing to fail
    assert objects.where("a" * 64) == f"{s3_url}/objects/{'a' * 64}"
    assert refs.where(REF) == f"{s3_url}/refs/{REF}"
    with refs.locked(REF):  # no lock on S3: the swap alone decides
        assert refs.compare_and_swap(REF, None, b"x")


# -- refs ----------------------------------------------------------------------------------

def test_create_if_absent_then_replace_if_the_token_matches(
        s3_admin: Any, s3_url: str, store: tuple[S3Objects, S3Refs]) -> None:
    _, refs = store
    assert refs.read(REF) is None
    assert refs.read_versioned(REF) == (None, None)
    assert refs.compare_and_swap(REF, None, b"state 1") is True
    assert refs.compare_and_swap(REF, None, b"state 2") is False  # exists now
    body, token = refs.read_versioned(REF)
    assert body == b"state 1" and token is not None
    assert refs.compare_and_swap(REF, token, b"state 2") is True
    assert refs.compare_and_swap(REF, token, b"state 3") is False  # stale token
    assert refs.read(REF) == b"state 2"
    bucket, prefix = _split(s3_url)
    stored = s3_admin.get_object(Bucket=bucket, Key=f"{prefix}/refs/{REF}")["Body"].read()
    assert stored == b"state 2"


def test_ref_bodies_are_opaque_bytes_up_to_one_mib(store: tuple[S3Objects, S3Refs]) -> None:
    _, refs = store
    assert refs.compare_and_swap("models/empty", None, b"")
    assert refs.read("models/empty") == b""
    binary = bytes(range(256)) * 4096  # exactly 1 MiB, every byte value
    assert refs.compare_and_swap(REF, None, binary)
    assert refs.read(REF) == binary
    with pytest.raises(ValueError, match="at most"):
        refs.compare_and_swap(REF, refs.read_versioned(REF)[1], binary + b"x")
    assert refs.read(REF) == binary


def test_a_ref_too_large_to_be_ours_is_refused(
        s3_admin: Any, s3_url: str, store: tuple[S3Objects, S3Refs]) -> None:
    _, refs = store
    bucket, prefix = _split(s3_url)
    s3_admin.put_object(Bucket=bucket, Key=f"{prefix}/refs/{REF}", Body=b"x" * (2 << 20))
    with pytest.raises(IntegrityError, match="larger than"):
        refs.read(REF)


def test_malformed_ref_names_are_refused(store: tuple[S3Objects, S3Refs]) -> None:
    _, refs = store
    for name in ("../x", "models/../../x", "models//x", "models/x.lock"):
        with pytest.raises(ValueError, match="malformed ref name"):
            refs.compare_and_swap(name, None, b"x")


def test_delete_if_the_token_matches(store: tuple[S3Objects, S3Refs]) -> None:
    _, refs = store
    refs.compare_and_swap(REF, None, b"a")
    _, token = refs.read_versioned(REF)
    assert refs.delete_if(REF, None) is False
    refs.compare_and_swap(REF, token, b"b")
    assert refs.delete_if(REF, token) is False  # moved meanwhile
    _, token = refs.read_versioned(REF)
    assert refs.delete_if(REF, token) is True
    assert refs.read_versioned(REF) == (None, None)
    assert refs.delete_if(REF, token) is False  # gone: S3 answers 404
    assert refs.compare_and_swap(REF, token, b"c") is False  # replace needs it there
    assert refs.compare_and_swap(REF, None, b"c") is True  # can be created again


def test_names_lists_the_refs_directly_under_a_prefix(store: tuple[S3Objects, S3Refs],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _, refs = store
    for name in ("models/b", "models/a", "models/c", "models/a/stage", "modelsx/d"):
        assert refs.compare_and_swap(name, None, name.encode())
    monkeypatch.setattr(s3, "LIST_PAGE", 2)
    assert list(refs.names("models")) == ["models/a", "models/b", "models/c"]
    assert list(refs.names("models/")) == ["models/a", "models/b", "models/c"]
    assert list(refs.names("models/a")) == ["models/a/stage"]
    assert list(refs.names("other")) == []


def _race(refs: S3Refs, expected: str | None, bodies: list[bytes]) -> list[bytes]:
    """Every body written at once with one token, each by its own thread; the winners."""
    wins: list[bytes] = []
    start = threading.Barrier(len(bodies))

    def write(body: bytes) -> None:
        start.wait()
        if refs.compare_and_swap(REF, expected, body):
            wins.append(body)

    threads = [threading.Thread(target=write, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wins


def test_of_racing_writers_holding_one_token_exactly_one_wins(
        store: tuple[S3Objects, S3Refs]) -> None:
    _, refs = store
    wins = _race(refs, None, [f"creator {i}".encode() for i in range(8)])
    assert len(wins) == 1 and refs.read(REF) == wins[0]
    for round_ in range(5):
        _, token = refs.read_versioned(REF)
        wins = _race(refs, token, [f"round {round_} writer {i}".encode() for i in range(6)])
        assert len(wins) == 1, f"round {round_}: {wins}"
        assert refs.read(REF) == wins[0]


def increment(refs: S3Refs, times: int) -> int:
    """Add one to the counter in REF ``times`` times, re-reading after each lost swap.

    Returns:
        How many swaps were lost on the way.
    """
    lost = 0
    for _ in range(times):
        while True:
            body, token = refs.read_versioned(REF)
            assert body is not None
            if refs.compare_and_swap(REF, token, str(int(body) + 1).encode()):
                break
            lost += 1
    return lost


def test_racing_read_modify_swap_threads_lose_no_update(
        store: tuple[S3Objects, S3Refs]) -> None:
    _, refs = store
    refs.compare_and_swap(REF, None, b"0")
    threads = [threading.Thread(target=increment, args=(refs, 10)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert refs.read(REF) == b"40"


def _increment_in_a_process(url: str, times: int, lost: Any) -> None:
    _, refs = open_s3(url)
    lost.put(increment(refs, times))


def test_racing_processes_lose_no_update(s3_url: str, store: tuple[S3Objects, S3Refs]) -> None:
    _, refs = store
    refs.compare_and_swap(REF, None, b"0")
    lost = MP.Queue()
    procs = [MP.Process(target=_increment_in_a_process, args=(s3_url, 20, lost))
             for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert refs.read(REF) == b"80"
    assert sum(lost.get(timeout=5) for _ in procs) > 0  # they did race


# -- what only object storage has ----------------------------------------------------------

def test_a_missing_bucket_is_not_found(aws_env: str) -> None:
    objects, refs = open_s3("s3://no-such-bucket-here/reg")
    for attempt in (lambda: objects.get_bytes("a" * 64), lambda: objects.contains("a" * 64),
                    lambda: list(objects.ids()), lambda: refs.read(REF),
                    lambda: refs.compare_and_swap(REF, None, b"x")):
        with pytest.raises(NotFound, match="'no-such-bucket-here' does not exist.*create it") \
                as caught:
            attempt()
        assert caught.value.exit_code == EXIT_NOT_FOUND


def test_refused_credentials_are_a_policy_denial(s3_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from moto import settings

    # moto checks credentials only once this many requests have been served: none, now.
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000")
    objects, refs = open_s3(s3_url)
    for attempt in (lambda: objects.put_bytes(b"x"), lambda: refs.read(REF),
                    lambda: objects.contains("a" * 64)):
        with pytest.raises(PolicyDenied, match="refused access.*AWS_ACCESS_KEY_ID") as caught:
            attempt()
        assert caught.value.exit_code == EXIT_POLICY


def test_missing_credentials_are_a_usage_error(s3_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    objects, _ = open_s3(s3_url)
    with pytest.raises(UsageError, match="no usable AWS credentials"):
        objects.put_bytes(b"x")


def test_server_errors_are_retried(s3_url: str, faults: Faults) -> None:
    objects, refs = open_s3(s3_url, max_attempts=4)
    assert refs.compare_and_swap("models/warm", None, b"probe done")
    faults.fail_before(3)
    oid = objects.put_bytes(b"after three 500s")
    assert objects.get_bytes(oid) == b"after three 500s"
    faults.fail_before(3)
    assert refs.compare_and_swap(REF, None, b"one")
    assert refs.read(REF) == b"one"


def test_a_server_that_keeps_failing_is_a_conflict_not_a_crash(s3_url: str,
                                                              faults: Faults) -> None:
    objects, _ = open_s3(s3_url, max_attempts=2)
    faults.fail_before(2)
    before = faults.requests
    with pytest.raises(ConflictError, match="kept failing.*after 2 attempts.*InternalError") \
            as caught:
        objects.put_bytes(b"x")
    assert caught.value.exit_code == EXIT_CONFLICT
    assert faults.requests - before == 2


def test_an_unreachable_endpoint_is_a_conflict(s3_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    objects, _ = open_s3(s3_url, max_attempts=2)
    with pytest.raises(ConflictError, match="cannot reach S3.*after 2 attempts"):
        objects.get_bytes("a" * 64)


def test_a_connection_cut_mid_body_is_a_conflict(s3_url: str, faults: Faults) -> None:
    objects, refs = open_s3(s3_url)
    oid = objects.put_bytes(os.urandom(1 << 20))
    assert refs.compare_and_swap(REF, None, b"x" * 1000)
    for read in (lambda: objects.get_bytes(oid), lambda: objects.copy_to(oid, io.BytesIO()),
                 lambda: refs.read(REF)):
        faults.cut_next_body()
        with pytest.raises(ConflictError, match="cannot reach S3"):
            read()


def test_a_bad_endpoint_or_profile_is_a_usage_error(s3_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "not a url")
    with pytest.raises(UsageError, match="cannot open.*Invalid endpoint"):
        open_s3(s3_url)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    with pytest.raises(UsageError, match="cannot open.*no-such-profile"):
        open_s3(s3_url)


def test_a_write_whose_answer_was_lost_still_counts(s3_url: str, faults: Faults) -> None:
    # The write lands, the client hears 500 and retries, and the retry is refused (412) by
    # the write itself: the ref holds our body, so the swap was won.
    objects, refs = open_s3(s3_url)
    faults.fail_after(1)  # an object: the retry's 412 means "there", which it is
    oid = objects.put_bytes(b"landed")
    assert objects.get_bytes(oid) == b"landed"
    assert refs.compare_and_swap("models/warm", None, b"probe done")
    assert refs.delete_if("models/warm", refs.read_versioned("models/warm")[1])  # probed too
    faults.fail_after(1)
    assert refs.compare_and_swap(REF, None, b"mine") is True
    _, token = refs.read_versioned(REF)
    faults.fail_after(1)
    assert refs.compare_and_swap(REF, token, b"mine again") is True
    _, token = refs.read_versioned(REF)
    faults.fail_after(1)
    assert refs.delete_if(REF, token) is True
    assert refs.read(REF) is None


SWAP = "If-None-Match: * on PutObject, If-Match on PutObject"
DELETE = "If-Match on DeleteObject"


@pytest.mark.parametrize(("conditions", "swap_lacks", "delete_lacks"), [
    ("ignore", SWAP, DELETE),
    ("reject", SWAP, DELETE),
    ("ignore-on-delete", None, DELETE),
])
def test_an_endpoint_without_conditional_writes_is_refused(
        s3_admin: Any, s3_url: str, aws_env: str, monkeypatch: pytest.MonkeyPatch,
        conditions: str, swap_lacks: str | None, delete_lacks: str) -> None:
    layer = Faults(moto_app(), conditions=conditions)
    server = LoopbackServer(layer)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        _, refs = open_s3(s3_url)
        if swap_lacks is None:
            assert refs.compare_and_swap(REF, None, b"x")
        else:
            with pytest.raises(UsageError, match="does not implement conditional writes") \
                    as caught:
                refs.compare_and_swap(REF, None, b"x")
            assert caught.value.exit_code == EXIT_USAGE
            assert f"did not honour {swap_lacks})" in str(caught.value)
        token = refs.read_versioned(REF)[1]
        with pytest.raises(UsageError, match=f"did not honour {delete_lacks}\\)"):
            refs.delete_if(REF, token or '"abc"')  # the conditional delete probed now
        before = layer.requests
        with pytest.raises(UsageError, match=f"did not honour {delete_lacks}\\)"):
            refs.delete_if(REF, token or '"abc"')
        assert layer.requests == before  # the verdict is kept: no second probe
        assert refs.read(REF) == (None if swap_lacks else b"x")  # nothing else was written
        bucket, prefix = _split(s3_url)
        listed = s3_admin.list_objects_v2(Bucket=bucket).get("Contents", [])
        assert [o["Key"] for o in listed] == ([] if swap_lacks else [f"{prefix}/refs/{REF}"])
    finally:
        server.close()
    # The same bucket through the honest endpoint is another verdict.
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)
    _, refs = open_s3(s3_url)
    assert refs.compare_and_swap("models/other", None, b"x")
    assert refs.delete_if("models/other", refs.read_versioned("models/other")[1])


def test_the_probe_repeats_the_creation_of_the_object_just_stored(
        s3_admin: Any, s3_url: str, faults: Faults, monkeypatch: pytest.MonkeyPatch) -> None:
    # A change stores its commit, then swaps the ref: the probe sends that commit again
    # with each condition (both refused by an honest endpoint), so a process's first
    # change costs two requests more, not five, and leaves no probe key behind.
    from modelreg.storage import s3 as s3_module

    monkeypatch.setattr(s3_module, "_VERDICTS", {})
    objects, refs = open_s3(s3_url)
    before = faults.requests
    oid = objects.put_bytes(b"a commit")
    assert refs.compare_and_swap(REF, None, b"one")
    assert faults.requests - before == 1 + 2 + 1
    bucket, prefix = _split(s3_url)
    keys = [o["Key"] for o in s3_admin.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(keys) == [f"{prefix}/objects/{oid}", f"{prefix}/refs/{REF}"]
    assert objects.get_bytes(oid) == b"a commit"
    before = faults.requests
    assert refs.compare_and_swap(REF, refs.read_versioned(REF)[1], b"two")
    assert faults.requests - before == 2  # the read and the swap: the verdict is kept
