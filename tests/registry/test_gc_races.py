"""gc never deletes an object that a ref reaches when it ends, whatever the timing.

gc runs in a real process and is paused (SIGSTOP) at different instants of its work while
registers commit in other processes; after it resumes and ends, every version is whole.
Refs that are not refs (a directory, debris a network file system leaves) are reported by
fsck and make gc refuse, or are ignored, as they should.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import modelreg
from modelreg.registry import Registry
from tests.helpers import run_cli

VERSIONS = 1000


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with 1,000 versions (a walk long enough to pause gc inside it)."""
    project = tmp_path_factory.mktemp("gcbase")
    reg, _ = modelreg.init(project)
    blob = project / "blob.bin"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(os, "fsync", lambda fd: None)  # only the bytes matter here
        for i in range(VERSIONS):
            blob.write_bytes(f"version {i}".encode())
            modelreg.register("shared", [blob], registry=reg, git=False, force=True,
                              actor="a@example.com")
    return project


def _copy(base: Path, dest: Path) -> Path:
    subprocess.run(["cp", "-a", str(base), str(dest)], check=True)
    return dest


def _orphan(store: Path, data: bytes) -> str:
    """Store ``data`` as an object nothing refers to, last touched an hour ago."""
    reg = Registry.open(store)
    oid = reg.objects.put_bytes(data)
    old = time.time() - 3600
    os.utime(reg.objects.path(oid), (old, old))
    return oid


@pytest.fixture(scope="module")
def gc_seconds(base_store: Path) -> float:
    """How long a whole `gc` process takes on the base store here and now."""
    start = time.perf_counter()
    done = run_cli("gc", "--dry-run", "--grace", "2", registry=base_store)
    assert done.returncode == 0, done.stderr
    return time.perf_counter() - start


@pytest.mark.parametrize("fraction", [0.0, 0.4, 0.55, 0.7])
def test_paused_gc_loses_nothing_committed_meanwhile(base_store: Path, tmp_path: Path,
                                                     gc_seconds: float, fraction: float) -> None:
    # Paused at a fraction of the time gc takes: before its cutoff, during its walk, while
    # it moves candidates (the faster gc gets, the earlier the instants).
    pause_after = fraction * gc_seconds
    store = _copy(base_store, tmp_path / "store")
    payload = os.urandom(4096)
    orphan = _orphan(store, payload)  # an old, unreachable blob a new register re-uses
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(os.urandom(4096))
    reused = tmp_path / "reused.bin"
    reused.write_bytes(payload)

    gc = subprocess.Popen([sys.executable, "-m", "modelreg", "-R", str(store), "gc",
                           "--grace", "2", "--json"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(pause_after)
    gc.send_signal(signal.SIGSTOP)
    # On a quiet machine a late instant may come after gc has ended; then it removed the
    # orphan before the register stored it again, as it should, and only the checks that
    # nothing committed was lost below apply.
    paused = gc.poll() is None
    try:
        for name, path in (("fresh", fresh), ("reused", reused)):
            done = run_cli("register", name, path, "--no-git", registry=store)
            assert done.returncode == 0, done.stderr
        time.sleep(3)  # longer than the grace period: what the commits wrote is "old" now
    finally:
        gc.send_signal(signal.SIGCONT)
    out, err = gc.communicate(timeout=120)
    assert gc.returncode == 0, err
    if paused:
        assert orphan not in json.loads(out)["objects"]  # it is reachable now

    report = modelreg.fsck(registry=store)
    assert report.ok, report.problems
    assert [r.version for r in modelreg.versions("shared", registry=store)] == list(
        range(1, VERSIONS + 1))
    for name, path in (("fresh", fresh), ("reused", reused)):
        dest = tmp_path / f"out-{name}"
        modelreg.pull(name, dest, registry=store)
        assert (dest / path.name).read_bytes() == path.read_bytes()
    assert not list((store / ".modelreg" / "tmp").glob("gc-quarantine-*"))


def test_gc_still_removes_what_nothing_reaches(registry: Registry, tmp_path: Path) -> None:
    data = b"nobody refers to this"
    oid = _orphan(registry.layout.root, data)
    result = run_cli("gc", "--grace", "60", "--json", registry=registry.layout.root)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["objects"] == [oid]
    assert not registry.objects.contains(oid)
    assert not list(registry.layout.tmp.glob("gc-quarantine-*"))


def test_an_interrupted_gc_puts_its_quarantine_back(registry: Registry, model_file: Path
                                                    ) -> None:
    modelreg.register("m", [model_file], registry=registry, git=False)
    info = modelreg.show("m", registry=registry)
    digest = info.artifact.files[0].digest.split(":", 1)[1]
    # What a gc killed between its two walks leaves: a reachable object in quarantine.
    held = registry.layout.tmp / "gc-quarantine-999999999-dead"
    held.mkdir(parents=True)
    os.rename(registry.objects.path(digest), held / digest)
    assert not modelreg.fsck(registry=registry).ok
    result = run_cli("gc", "--grace", "0", "--json", registry=registry.layout.root)
    assert result.returncode == 0, result.stderr
    assert digest not in json.loads(result.stdout)["objects"]
    assert modelreg.fsck(registry=registry).ok
    assert hashlib.sha256(registry.objects.get_bytes(digest)).hexdigest() == digest


def test_a_ref_that_is_a_directory_fails_fsck_and_stops_gc(registry: Registry,
                                                           model_file: Path) -> None:
    modelreg.register("m", [model_file], registry=registry, git=False)
    (registry.layout.refs / "models" / "ghost").mkdir()
    fsck = run_cli("fsck", "--json", registry=registry.layout.root)
    assert fsck.returncode == 6, fsck.stderr
    problems = json.loads(fsck.stdout)["problems"]
    assert any(p["path"].endswith("refs/models/ghost") and "directory" in p["message"]
               for p in problems)
    before = sorted(p.name for p in registry.layout.objects.rglob("*") if p.is_file())
    gc = run_cli("gc", "--grace", "0", registry=registry.layout.root)
    assert gc.returncode == 6
    assert "refs/models/ghost" in gc.stderr and "gc refused" in gc.stderr
    assert sorted(p.name for p in registry.layout.objects.rglob("*") if p.is_file()) == before
    show = run_cli("show", "m", "--json", registry=registry.layout.root)
    assert show.returncode == 0, show.stderr


@pytest.mark.parametrize("debris", [".fuse_hidden0000002d00000001", ".nfs000000000abc0001"])
def test_network_file_system_debris_is_ignored_and_noted(registry: Registry,
                                                         model_file: Path, debris: str) -> None:
    modelreg.register("m", [model_file], registry=registry, git=False)
    (registry.layout.refs / "models" / debris).write_text("junk")
    for args in (("list", "--json"), ("events", "--json"), ("show", "m", "--json")):
        result = run_cli(*args, registry=registry.layout.root)
        assert result.returncode == 0, (args, result.stderr)
    fsck = run_cli("fsck", "--json", registry=registry.layout.root)
    assert fsck.returncode == 0, fsck.stderr
    report = json.loads(fsck.stdout)
    assert report["ok"] is True
    assert any(n["path"].endswith(debris) for n in report["notes"])
    gc = run_cli("gc", "--grace", "0", registry=registry.layout.root)
    assert gc.returncode == 0, gc.stderr
