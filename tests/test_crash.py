"""SIGKILL at random instants while registering never leaves a store fsck rejects."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import modelreg
from modelreg.registry import Registry
from tests.helpers import run_cli

WORKER = r"""
import os, sys
import modelreg
store, src, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
for i in range(start, start + 1000):
    with open(src, "ab") as fh:
        fh.write(os.urandom(64))
    modelreg.register("crashy", [src], registry=store, params={"i": i}, git=False)
"""


def _wait_until_ready(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdout is not None
    if proc.stdout.readline() != b"ready\n":
        proc.wait()
        raise AssertionError(proc.stderr.read() if proc.stderr else "the worker died")


def test_sigkill_during_register_leaves_consistent_store(registry: Registry,
                                                         tmp_path: Path) -> None:
    store = registry.layout.root
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(2 << 20))
    rng = random.Random(1234)
    for round_no in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(store), str(src), str(round_no * 1000)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "MODELREG_ACTOR": "killer@example.com"},
        )
        # The kill is timed from when the worker starts registering, not from its start-up:
        # on a busy machine (tests run in parallel) importing can outlast the whole window.
        _wait_until_ready(proc)
        time.sleep(rng.uniform(0.3, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
        report = modelreg.fsck(registry=store)
        assert report.ok, report.problems
    rows = modelreg.versions("crashy", registry=store)
    assert [r.version for r in rows] == list(range(1, len(rows) + 1))
    assert rows, "no version landed in 12 rounds"
    # Every version that exists is whole: pull the newest and check its digest.
    newest = modelreg.show("crashy", registry=store)
    out = tmp_path / "out"
    modelreg.pull(newest.ref, out, registry=store)
    assert newest.artifact.files[0].size == (out / "model.bin").stat().st_size

    # gc removes whatever the kills left behind, and the store stays clean.
    gc = run_cli("gc", "--grace", "0", "--json", registry=store)
    assert gc.returncode == 0, gc.stderr
    assert json.loads(gc.stdout)["dry_run"] is False
    assert list((store / "tmp").iterdir()) == []
    assert not list(store.rglob("*.lock"))
    report = modelreg.fsck(registry=store)
    assert report.ok and not report.notes, report
    again = json.loads(run_cli("gc", "--grace", "0", "--json", registry=store).stdout)
    assert again["objects"] == [] and again["tmp_files"] == []
