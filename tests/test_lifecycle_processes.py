"""Lifecycle changes from many real processes, and under SIGKILL: one winner, no drift."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import modelreg
from modelreg.registry import Registry
from tests.helpers import flip_byte, run_cli


def make_versions(reg: Registry, tmp_path: Path, n: int, stage: str = "staging") -> None:
    for i in range(1, n + 1):
        f = tmp_path / f"m{i}.bin"
        f.write_bytes(f"weights {i}".encode())
        modelreg.register("eta", [f], registry=reg, git=False, actor="sci", stage=stage)


def replayed_stages(reg: Registry) -> dict[int, str]:
    """Each version's stage according to the history alone."""
    _, events = modelreg.history("eta", registry=reg)
    stages: dict[int, str] = {}
    for e in reversed(events):
        if e.action in ("register", "promote", "archive", "rollback"):
            stages[e.version] = e.to_stage
    return stages


def assert_state_matches_history(reg: Registry) -> None:
    rows = {r.version: r.stage for r in modelreg.versions("eta", registry=reg)}
    assert rows == replayed_stages(reg)
    in_production = [v for v, s in rows.items() if s == "production"]
    assert len(in_production) <= 1
    if in_production:
        assert modelreg.show("eta@production", registry=reg).version == in_production[0]
    report = modelreg.fsck(registry=reg)
    assert report.ok, report.problems


def test_eight_processes_promote_at_once(registry: Registry, tmp_path: Path) -> None:
    make_versions(registry, tmp_path, 8)
    env = {**os.environ, "MODELREG_DIR": str(registry.layout.root)}
    procs = [
        subprocess.Popen([sys.executable, "-m", "modelreg", "promote", f"eta@{v}", "--to",
                          "production"], env={**env, "MODELREG_ACTOR": f"ci-{v}"},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for v in range(1, 9)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    rows = {r.version: r.stage for r in modelreg.versions("eta", registry=registry)}
    assert sorted(rows.values()).count("production") == 1
    assert sorted(rows.values()).count("archived") == 7
    _, events = modelreg.history("eta", registry=registry)
    promoted = sorted(e.version for e in events
                      if e.action == "promote" and e.to_stage == "production")
    assert promoted == list(range(1, 9))
    assert_state_matches_history(registry)


WORKER = r"""
import random, sys
import modelreg
store = sys.argv[1]
rng = random.Random(int(sys.argv[2]))
print("ready", flush=True)
moves = {"staging": ["production", "development"], "development": ["staging"],
         "production": ["archived"], "archived": ["staging"]}
while True:
    v = rng.randint(1, 6)
    stage = modelreg.show(f"eta@{v}", registry=store).stage
    modelreg.promote(f"eta@{v}", rng.choice(moves[stage]), registry=store, actor="chaos")
"""


def test_sigkill_during_promote_never_splits_state_and_history(registry: Registry,
                                                               tmp_path: Path) -> None:
    make_versions(registry, tmp_path, 6)
    rng = random.Random(99)
    for round_no in range(10):
        proc = subprocess.Popen([sys.executable, "-c", WORKER, str(registry.layout.root),
                                 str(round_no)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # The kill is timed from when the worker starts moving versions, not from its
        # start-up: on a busy machine (tests run in parallel) importing can outlast the window.
        assert proc.stdout is not None
        if proc.stdout.readline() != b"ready\n":
            proc.wait()
            raise AssertionError(proc.stderr.read() if proc.stderr else "the worker died")
        time.sleep(rng.uniform(0.3, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        assert_state_matches_history(registry)
    _, events = modelreg.history("eta", registry=registry)
    assert len(events) > 20, "the workers made too few moves to test anything"


def test_editing_a_promote_event_is_caught(registry: Registry, tmp_path: Path) -> None:
    make_versions(registry, tmp_path, 2)
    modelreg.promote("eta@1", "production", registry=registry, actor="a", reason="ship")
    modelreg.alias_set("eta", "champion", 1, registry=registry, actor="a")
    _, events = modelreg.history("eta", registry=registry)
    target = next(e for e in events if e.action == "promote" and e.to_stage == "production")
    oid = target.id.split(":")[1]
    path = registry.objects.path(oid)
    data = path.read_bytes()
    flip_byte(path, data.index(b"ship"))
    result = run_cli("fsck", registry=registry.layout.root)
    assert result.returncode == 6
    assert f"model eta, event {target.seq}" in result.stdout
    assert str(path) in result.stdout
    history = run_cli("history", "eta", registry=registry.layout.root)
    assert history.returncode == 6

    # Removing an event (the object is gone) is reported too.
    os.chmod(path, 0o644)
    path.unlink()
    result = run_cli("fsck", registry=registry.layout.root)
    assert result.returncode == 6
    assert "missing" in result.stdout
