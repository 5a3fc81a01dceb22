"""`modelreg migrate`: the format-1 store kept as a fixture becomes format 2, nothing lost.

The fixture (tests/fixtures/format1-store.tar.gz) was written by the format-1 code, and the
JSON beside it is what that code printed for it (tests/fixtures/make_format1_store.sh).
After migration every command prints the same, but for the ids of history events, which
are the ids of format-1 commits. A kill at any instant leaves a store that opens as format
1 (and says how to migrate it) or as format 2, and `migrate` run again finishes the job.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED = FIXTURES / "format1-expected"
COMMANDS = [
    (("history", "churn"), "history-churn.json"),
    (("history", "fraud"), "history-fraud.json"),
    (("versions", "churn"), "versions-churn.json"),
    (("versions", "fraud"), "versions-fraud.json"),
    (("show", "churn@1"), "show-churn-1.json"),
    (("show", "churn@2"), "show-churn-2.json"),
    (("show", "churn@3"), "show-churn-3.json"),
    (("show", "fraud@1"), "show-fraud-1.json"),
    (("show", "fraud@2"), "show-fraud-2.json"),
    (("list",), "list.json"),
]


def format1_store(where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    with tarfile.open(FIXTURES / "format1-store.tar.gz") as tar:
        tar.extractall(where, filter="tar")
    return where / ".modelreg"


def _without_event_ids(doc: Any) -> Any:
    # A history event's id and prev name commits: format-1 commits before, format-2 after.
    if isinstance(doc, dict):
        return {k: _without_event_ids(v) for k, v in doc.items()
                if not (k in ("id", "prev") and "action" in doc)}
    if isinstance(doc, list):
        return [_without_event_ids(v) for v in doc]
    return doc


def assert_as_recorded(store: Path) -> None:
    for args, expected in COMMANDS:
        done = run_cli(*args, "--json", registry=store)
        assert done.returncode == 0, (args, done.stderr)
        want = json.loads((EXPECTED / expected).read_text())
        assert _without_event_ids(json.loads(done.stdout)) == _without_event_ids(want), args
    fsck = run_cli("fsck", registry=store)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert "2 models, 5 versions, 20 events" in fsck.stdout + fsck.stderr


def test_a_format1_store_names_the_command_that_migrates_it(tmp_path: Path) -> None:
    store = format1_store(tmp_path)
    for args in (("show", "churn@2"), ("list",), ("register", "churn", str(store / "format"))):
        done = run_cli(*args, registry=store)
        assert done.returncode == 6, args
        assert "modelreg migrate" in done.stderr


def test_migrate_brings_everything_across(tmp_path: Path) -> None:
    store = format1_store(tmp_path)
    done = run_cli("migrate", "--json", registry=store)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["status"], report["models"], report["versions"], report["events"]) == (
        "migrated", 2, 5, 20)
    assert (store / "format").read_text().strip() == "2"
    assert not (store / "objects" / "sha256").exists()
    assert not (store / "refs.v2").exists()
    assert_as_recorded(store)
    again = run_cli("migrate", "--json", registry=store)
    assert again.returncode == 0
    assert json.loads(again.stdout)["status"] == "current"
    # The migrated store takes new work: the chain goes on from the migrated history.
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights-4\n")
    assert run_cli("register", "churn", model, "--no-git", registry=store).returncode == 0
    history = json.loads(run_cli("history", "churn", "--json", registry=store).stdout)
    assert [e["seq"] for e in history["events"]][:2] == [18, 17]
    assert run_cli("gc", "--grace", "0", registry=store).returncode == 0
    assert run_cli("fsck", registry=store).returncode == 0
    # Versions that came over from format 1 are searched through their manifests.
    found = run_cli("search", "metrics.auc > 0.92", "--json", registry=store)
    assert [h["ref"] for h in json.loads(found.stdout)] == ["churn@2"]
    pulled = tmp_path / "pulled"
    assert run_cli("pull", "fraud@1", pulled, registry=store).returncode == 0
    assert (pulled / "sub" / "b.txt").read_text() == "b\n"


def test_a_kill_at_any_instant_leaves_one_format_or_the_other(tmp_path: Path) -> None:
    """SIGKILL `migrate` after growing delays; each store opens, and migrates after.

    The delays grow in steps of a sixth of a whole run until kills have landed both before
    and after the switch (a loaded machine runs slower than the probe did), at least six
    kills in all.
    """
    import os

    start = time.perf_counter()
    probe = format1_store(tmp_path / "probe")
    assert run_cli("migrate", registry=probe).returncode == 0
    whole = time.perf_counter() - start
    seen = {"1": 0, "2": 0}
    store = probe
    for i in range(40):
        if i >= 6 and seen["1"] and seen["2"]:
            break
        store = format1_store(tmp_path / f"kill-{i}")
        env = {**os.environ, "MODELREG_DIR": str(store), "MODELREG_ACTOR": "ci@example.com"}
        proc = subprocess.Popen([sys.executable, "-m", "modelreg", "migrate"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(whole * i / 6)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        fmt = (store / "format").read_text().strip()
        assert fmt in seen
        seen[fmt] += 1
        shown = run_cli("show", "churn@2", registry=store)
        if fmt == "1":
            assert shown.returncode == 6 and "modelreg migrate" in shown.stderr
        else:
            assert shown.returncode == 0, shown.stderr
        done = run_cli("migrate", registry=store)
        assert done.returncode == 0, done.stderr
        fsck = run_cli("fsck", registry=store)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert seen["1"] and seen["2"], seen
    assert_as_recorded(store)


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_damaged_format1_store_is_not_switched(tmp_path: Path, damage: str) -> None:
    store = format1_store(tmp_path)
    blob = next(p for p in (store / "objects" / "sha256").rglob("*") if p.is_file()
                and p.stat().st_size < 40 and p.read_bytes().startswith(b"weights"))
    blob.chmod(0o644)
    if damage == "missing":
        blob.unlink()
    else:
        blob.write_bytes(b"tampered\n")
    done = run_cli("migrate", registry=store)
    assert done.returncode == 6
    assert "nothing was migrated" in done.stderr or "not switched" in done.stderr
    assert (store / "format").read_text().strip() == "1"
