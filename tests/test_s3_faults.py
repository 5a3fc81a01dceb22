"""S3 misbehaving under the command line: never half a change, never an internal error.

`modelreg register` and `modelreg promote` run as real processes against a second endpoint
over the same moto state, a layer (tests/s3server.py's Faults) that misbehaves on the one
write that commits a change, the model's ref, after the change's objects were written: a
500 on every attempt before moto sees it (exit 4; a 500 that a retry outlives is
tests/storage/test_s3.py's), a 500 after moto did the write (the client hears that a write
failed that landed; once, and on every attempt), the connection closed with no answer
(before and after the write), an answer later than the client's read timeout; and a
connection cut mid-answer while the ref is read, after the artifact was stored. Each time
the exit code is the documented one (0, or 4: try again), the ref holds the old state or the
whole new version, `fsck` exits 0, and the command run again without faults succeeds and
leaves the expected versions, none of them twice.

For the timeout, the child process lowers the backend's read timeout (60 s) to a second
before it runs the command line: there is no AWS setting for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import modelreg
from tests.helpers import run_cli

pytest.importorskip("boto3")
pytest.importorskip("moto")

from modelreg.storage.s3 import MAX_ATTEMPTS  # noqa: E402  (after the skips: it needs boto3)

READ_TIMEOUT = 1.0
TIMED_OUT_CLI = (f"import modelreg.storage.s3 as s3; s3.READ_TIMEOUT = {READ_TIMEOUT}; "
                 "from modelreg.cli import main; main()")


@dataclass
class Endpoints:
    plain: str
    faulty: str
    layer: Any


@pytest.fixture(scope="module")
def endpoints() -> Iterator[Endpoints]:
    from tests.s3server import Faults, LoopbackServer, moto_app

    app = moto_app()
    plain = LoopbackServer(app)
    layer = Faults(app)
    faulty = LoopbackServer(layer)
    yield Endpoints(plain.url, faulty.url, layer)
    faulty.close()
    plain.close()


@dataclass
class Store:
    url: str
    env: dict[str, str]
    faulty_env: dict[str, str]
    files: dict[int, Path]
    """The file registered as each version (1 is registered before the fault)."""

    def run(self, *args: str | Path, faulty: bool = False, timeout: bool = False
            ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **(self.faulty_env if faulty else self.env)}
        head = ["-c", TIMED_OUT_CLI] if timeout else ["-m", "modelreg"]
        return subprocess.run([sys.executable, *head, "-R", self.url, *map(str, args)],
                              env=env, capture_output=True, text=True, timeout=120)

    def versions(self) -> list[int]:
        return [v.version for v in modelreg.versions("churn", registry=self.url)]

    def fsck(self) -> None:
        done = run_cli("-R", self.url, "fsck", env=self.env)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def store(endpoints: Endpoints, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    """A store with churn@1, made through the plain endpoint; the faults are off."""
    from tests.s3server import client_env, new_bucket

    endpoints.layer.reset()
    env = client_env(endpoints.plain, tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    url = f"s3://{new_bucket(endpoints.plain)}/registry"
    reg, _ = modelreg.init(url)
    files = {}
    for v in (1, 2):
        files[v] = tmp_path / f"model-{v}.bin"
        files[v].write_bytes(os.urandom(2048))
    modelreg.register("churn", [files[1]], registry=reg, git=False)
    return Store(url, env, client_env(endpoints.faulty, tmp_path), files)


def _ref_write(method: str, path: str) -> bool:
    return method == "PUT" and "/refs/models/" in path


def _ref_read(method: str, path: str) -> bool:
    return method == "GET" and "/refs/models/" in path


Arm = Callable[[Any], None]
REGISTER_FAULTS: dict[str, tuple[Callable[[str, str], bool], Arm, int, list[int]]] = {
    # what goes wrong: (on which requests, how, the exit code, the versions it leaves)
    "500 before the ref write, every attempt": (
        _ref_write, lambda f: f.fail_before(MAX_ATTEMPTS), 4, [1]),
    "500 after the ref write landed, once": (_ref_write, lambda f: f.fail_after(1), 0, [1, 2]),
    "500 after the ref write landed, every attempt": (
        _ref_write, lambda f: f.fail_after(MAX_ATTEMPTS), 4, [1, 2]),
    "no answer, the ref write never made": (_ref_write, lambda f: f.drop_next(1), 0, [1, 2]),
    "no answer, the ref write made": (
        _ref_write, lambda f: f.drop_next(1, after=True), 0, [1, 2]),
    "no answer in time, the ref write made": (
        _ref_write, lambda f: f.stall_next(READ_TIMEOUT * 1.6), 0, [1, 2]),
    "the ref read cut mid-answer, the artifact stored": (
        _ref_read, lambda f: f.cut_next_body(), 4, [1]),
}


@pytest.mark.parametrize("fault", list(REGISTER_FAULTS))
def test_register_through_a_faulty_s3(endpoints: Endpoints, store: Store, tmp_path: Path,
                                      fault: str) -> None:
    only, arm, code, left = REGISTER_FAULTS[fault]
    endpoints.layer.only = only
    arm(endpoints.layer)
    done = store.run("register", "churn", store.files[2], "--no-git", "--json", faulty=True,
                     timeout="in time" in fault)
    endpoints.layer.reset()
    assert done.returncode == code, done.stderr
    if code == 0:
        assert json.loads(done.stdout)["version"] == 2
    else:
        assert "try again" in done.stderr
    assert store.versions() == left  # the old state, or the whole new version
    store.fsck()
    again = store.run("register", "churn", store.files[2], "--no-git", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["version"] == 2  # made once, whoever made it
    assert store.versions() == [1, 2]
    for v, path in store.files.items():
        modelreg.pull(f"churn@{v}", tmp_path / f"pulled-{v}", registry=store.url)
        assert (tmp_path / f"pulled-{v}" / path.name).read_bytes() == path.read_bytes()


PROMOTE_FAULTS: dict[str, tuple[Arm, int, str]] = {
    # what goes wrong on the ref write: (how, the exit code, the stage it leaves)
    "500 before, every attempt": (lambda f: f.fail_before(MAX_ATTEMPTS), 4, "development"),
    "500 after it landed, every attempt": (lambda f: f.fail_after(MAX_ATTEMPTS), 4, "staging"),
}


@pytest.mark.parametrize("fault", list(PROMOTE_FAULTS))
def test_promote_through_a_faulty_s3(endpoints: Endpoints, store: Store, fault: str) -> None:
    arm, code, stage = PROMOTE_FAULTS[fault]
    endpoints.layer.only = _ref_write
    arm(endpoints.layer)
    done = store.run("promote", "churn@1", "--to", "staging", faulty=True)
    endpoints.layer.reset()
    assert done.returncode == code, done.stderr
    assert modelreg.show("churn@1", registry=store.url).stage == stage
    store.fsck()
    again = store.run("promote", "churn@1", "--to", "staging")
    assert again.returncode == 0, again.stderr
    _, history = modelreg.history("churn", registry=store.url)
    assert [e.action for e in history] == ["promote", "register"]  # promoted once
    assert modelreg.show("churn@staging", registry=store.url).version == 1
