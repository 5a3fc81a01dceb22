"""gc on S3 loses nothing that other processes commit while it runs, however it is paused.

A store on moto's S3 (tests/s3server.py: one thread, on loopback) holds VERSIONS versions of
one model and ORPHANS objects nothing refers to, older than gc's grace period. `modelreg gc
--grace 2` runs as a real process through a second endpoint over the same moto state: a
layer that counts gc's requests and, when the chosen one has been answered, stops gc
(SIGSTOP) before gc reads the answer. Meanwhile other processes, through the plain endpoint,
register a new model, register two of the orphans again (objects gc found unreachable and is
about to delete: the re-use mark of docs/s3.md) and promote. Then gc resumes (SIGCONT); it
exits 0, `modelreg fsck` exits 0, and every version pulls back byte for byte.

The instants are fractions of the requests a whole gc makes on the same store, measured
first (tests/registry/test_gc_races.py takes fractions of a measured duration; a count pins
each instant to the same step of gc on every run and machine): its first request (before it
takes its cutoff), inside its walk, inside its removals, inside its second walk; and the
instant that matters most, between gc's last look at a re-used orphan and its deletion.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import modelreg
from tests.helpers import run_cli

pytest.importorskip("boto3")
pytest.importorskip("moto")

VERSIONS = 30
ORPHANS = 20
GRACE = 2
CASES = ("whole", "first", "walk", "removals", "second-walk", "decided")


class Gate:
    """Counts the requests gc makes; stops gc once the chosen one has been answered."""

    def __init__(self) -> None:
        self.arm(lambda n, method, path: False)

    def arm(self, stop_at: Callable[[int, str, str], bool]) -> None:
        self.count = 0
        self.stop_at = stop_at
        self.pid: int | None = None
        self.started = threading.Event()
        self.stopped = threading.Event()

    def __call__(self, method: str, path: str, status: str) -> None:
        self.started.wait(10)  # gc's pid is known before its first request is judged
        self.count += 1
        if not self.stopped.is_set() and self.stop_at(self.count, method, path):
            assert self.pid is not None
            os.kill(self.pid, signal.SIGSTOP)
            self.stopped.set()


@dataclass
class S3:
    plain: str
    watched: str
    gate: Gate
    bucket: str
    scratch: Path
    orphans: list[bytes] = field(default_factory=list)
    orphan_ids: list[str] = field(default_factory=list)

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        from tests.s3server import client_env

        return client_env(endpoint or self.plain, self.scratch)

    def url(self, case: str) -> str:
        return f"s3://{self.bucket}/{case}"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3]:
    """Every case's copy of one store, its orphans older than the grace period."""
    from tests.s3server import Faults, LoopbackServer, admin, moto_app, new_bucket

    app = moto_app()
    plain = LoopbackServer(app)
    gate = Gate()
    watched = LoopbackServer(Faults(app, answered=gate))
    scratch = tmp_path_factory.mktemp("s3gc")
    s = S3(plain.url, watched.url, gate, new_bucket(plain.url, "gc"), scratch)
    base = s.url("base")
    with pytest.MonkeyPatch.context() as m:
        for k, v in s.env().items():
            m.setenv(k, v)
        reg, _ = modelreg.init(base)
        blob = scratch / "blob.bin"
        for i in range(1, VERSIONS + 1):
            blob.write_bytes(f"version {i}".encode())
            modelreg.register("shared", [blob], registry=reg, git=False, force=True,
                              actor="a@example.com")
        for i in range(ORPHANS):
            s.orphans.append(os.urandom(512) + bytes([i]))
            s.orphan_ids.append(reg.objects.put_bytes(s.orphans[-1]))
    client = admin(plain.url)
    keys = [k["Key"] for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=s.bucket, Prefix="base/") for k in page.get("Contents", ())]
    for case in CASES:
        for key in keys:
            client.copy_object(Bucket=s.bucket, Key=f"{case}/{key.removeprefix('base/')}",
                               CopySource={"Bucket": s.bucket, "Key": key})
    time.sleep(GRACE)  # the copies' dates are their own: let every object grow old
    yield s
    watched.close()
    plain.close()


def _gc(s: S3, case: str) -> subprocess.Popen[str]:
    """Start `modelreg gc` on a case's store, through the watched endpoint."""
    gc = subprocess.Popen(
        [sys.executable, "-m", "modelreg", "-R", s.url(case), "gc", "--grace", str(GRACE),
         "--json"], env={**os.environ, **s.env(s.watched)}, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    s.gate.pid = gc.pid
    s.gate.started.set()
    return gc


@pytest.fixture(scope="module")
def whole_gc(s3: S3) -> tuple[int, dict[str, Any]]:
    """A gc left alone: the requests it makes, and its report."""
    s3.gate.arm(lambda n, method, path: False)
    gc = _gc(s3, "whole")
    out, err = gc.communicate(timeout=120)
    assert gc.returncode == 0, err
    return s3.gate.count, json.loads(out)


def _check_store(s: S3, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 extra: dict[str, bytes]) -> None:
    """fsck exits 0; every version of every model pulls back byte for byte."""
    fsck = run_cli("-R", s.url(case), "fsck", env=s.env())
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    for k, v in s.env().items():
        monkeypatch.setenv(k, v)
    reg = modelreg.open_registry(s.url(case))
    expected = {f"shared@{i}": ("blob.bin", f"version {i}".encode())
                for i in range(1, VERSIONS + 1)}
    expected.update({ref: (f"{ref.replace('@', '-')}.bin", data)
                     for ref, data in extra.items()})
    for ref, (name, data) in expected.items():
        dest = tmp_path / "pulled" / ref
        modelreg.pull(ref, dest, registry=reg)
        assert (dest / name).read_bytes() == data, ref


def test_gc_on_s3_removes_what_nothing_reaches_and_only_that(
        s3: S3, whole_gc: tuple[int, dict[str, Any]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _, report = whole_gc
    assert set(s3.orphan_ids) <= set(report["objects"])
    assert report["bytes_freed"] >= sum(map(len, s3.orphans))
    _check_store(s3, "whole", tmp_path, monkeypatch, {})
    again = run_cli("-R", s3.url("whole"), "gc", "--grace", "0", "--json", env=s3.env())
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["objects"] == []


def _meanwhile(s: S3, case: str, tmp_path: Path) -> dict[str, bytes]:
    """Register (two of them re-using orphans) and promote, in processes of their own.

    Returns:
        The bytes registered, by the version they make.
    """
    files = {"fresh@1": os.urandom(4096), "reused@1": s.orphans[0],
             f"shared@{VERSIONS + 1}": s.orphans[1]}
    commands = [("promote", f"shared@{VERSIONS}", "--to", "staging")]
    for ref, data in files.items():
        path = tmp_path / f"{ref.replace('@', '-')}.bin"
        path.write_bytes(data)
        commands.append(("register", ref.split("@")[0], str(path), "--no-git"))
    procs = [subprocess.Popen([sys.executable, "-m", "modelreg", "-R", s.url(case), *args],
                              env={**os.environ, **s.env()}, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args in commands]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    return files


@pytest.mark.parametrize(("case", "fraction"), [
    ("first", 0.0),  # its first request: before it takes its cutoff
    ("walk", 0.15),
    ("removals", 0.55),
    ("second-walk", 0.9),
    ("decided", None),  # its last look at orphan 0 (the re-use mark), before deleting it
])
def test_a_paused_gc_on_s3_loses_nothing_committed_meanwhile(
        s3: S3, whole_gc: tuple[int, dict[str, Any]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, case: str, fraction: float | None) -> None:
    total, _ = whole_gc
    if fraction is not None:
        at = max(1, int(fraction * total))
        s3.gate.arm(lambda n, method, path: n == at)
    else:
        mark = f"/reused/{s3.orphan_ids[0]}"
        looks: list[str] = []

        def decided(n: int, method: str, path: str) -> bool:
            if method == "HEAD" and path.endswith(mark):
                looks.append(path)  # the first when it lists candidates, the second last
            return len(looks) == 2

        s3.gate.arm(decided)
    gc = _gc(s3, case)
    try:
        assert s3.gate.stopped.wait(120), "gc ended before the instant it was to stop at"
        made = _meanwhile(s3, case, tmp_path)
        if case == "first":  # what the commits wrote is older than gc's cutoff will be
            time.sleep(GRACE + 0.5)
    finally:
        gc.send_signal(signal.SIGCONT)
    out, err = gc.communicate(timeout=120)
    assert gc.returncode == 0, err
    _check_store(s3, case, tmp_path, monkeypatch, made)
    removed = json.loads(out)["objects"]
    assert s3.orphan_ids[0] not in removed and s3.orphan_ids[1] not in removed  # in use now
    assert set(s3.orphan_ids[2:]) <= set(removed)  # and the rest is still collected
    shown = modelreg.show(f"shared@{VERSIONS}", registry=s3.url(case))
    assert shown.stage == "staging"


def test_a_removal_tells_a_reuse_made_while_it_ran(s3: S3,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # What gc's removal of an object reads after deleting it: the re-use mark (docs/s3.md).
    from modelreg.storage.s3 import open_s3

    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    objects, _ = open_s3(s3.url("marks"))
    oid = objects.put_bytes(b"never re-used")
    assert objects.remove_unless_reused(oid, time.time() - 60) is True
    assert objects.stat(oid) is None
    oid = objects.put_bytes(b"re-used")
    assert objects.put_bytes(b"re-used") == oid  # the re-use writes its mark
    assert objects.remove_unless_reused(oid, time.time() - 60) is False  # a writer may name it
    assert not objects.contains(oid)  # deleted all the same: the caller stores it again
    assert objects.put_bytes(b"re-used") == oid and objects.get_bytes(oid) == b"re-used"
    assert objects.remove_unless_reused(oid, time.time() + 60) is True  # an old mark goes
    assert objects.stat(oid) is None
