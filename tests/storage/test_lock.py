"""Lock files: storage/lock.py."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import os
import socket
import stat
import time
from pathlib import Path

import pytest

from modelreg.errors import EXIT_CONFLICT, ConflictError, LockHeld
from modelreg.storage.atomic import write_atomic
from modelreg.storage.lock import (
    DEFAULT_STALE_AFTER,
    RECORD_SIZE,
    UNREADABLE_STALE_AFTER,
    Lock,
    LockInfo,
    acquire,
    break_lock,
    is_stale,
    lock_path_for,
    locked,
    read_info,
    stale_after_setting,
)
from tests.storage.conftest import MP as _MP


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    return tmp_path / "refs" / "models" / "churn.lock"


@pytest.fixture(autouse=True)
def _no_lock_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELREG_LOCK_TIMEOUT", raising=False)
    monkeypatch.delenv("MODELREG_LOCK_STALE_AFTER", raising=False)


def _write_owner(lock: Path, *, pid: int, host: str, token: str = "theirs") -> None:
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"pid": pid, "host": host, "time": time.time(), "token": token}))


def _dead_pid() -> int:
    """A pid that belonged to a process of ours which has exited and been reaped."""
    proc = _MP.Process(target=os._exit, args=(0,))
    proc.start()
    proc.join()
    assert proc.pid is not None
    return proc.pid


# -- basics --------------------------------------------------------------------------------


def test_lock_path_for() -> None:
    assert lock_path_for(Path("/s/refs/models/churn")) == Path("/s/refs/models/churn.lock")


def test_every_lock_record_has_one_size(lock: Path, tmp_dir: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A network file system may keep the size of an earlier lock at the same name (sshfs
    # does): with one size for every record, a stale size still reads the whole record.
    sizes = set()
    for clock in (1.0, 1795443753.5, 1795443753.123456):
        monkeypatch.setattr(time, "time", lambda c=clock: c)
        with acquire(lock, tmp_dir, timeout=0) as held:
            raw = lock.read_bytes()
            sizes.add(len(raw))
            assert json.loads(raw)["token"] == held.token
            assert held.still_held()
    assert sizes == {RECORD_SIZE}


def test_acquire_creates_lock_with_owner_record(lock: Path, tmp_dir: Path) -> None:
    before = time.time()
    held = acquire(lock, tmp_dir, timeout=0)
    assert isinstance(held, Lock)
    assert held.path == lock
    record = json.loads(lock.read_bytes())
    assert set(record) == {"pid", "host", "time", "token"}
    assert record["pid"] == os.getpid()
    assert record["host"] == socket.gethostname()
    assert record["token"] == held.token
    assert len(held.token) == 32
    assert before - 1 <= record["time"] <= time.time() + 1
    info = read_info(lock)
    assert info is not None
    assert (info.pid, info.host, info.token) == (os.getpid(), socket.gethostname(), held.token)
    assert held.still_held()
    assert stat.S_IMODE(lock.stat().st_mode) == 0o644  # others may see whose it is
    assert lock.stat().st_nlink == 1  # the staged record's temp name is gone
    assert list(tmp_dir.iterdir()) == []
    held.release()
    assert not lock.exists()
    assert not held.still_held()


def test_acquire_creates_missing_parent_directories(tmp_path: Path, tmp_dir: Path) -> None:
    lock = tmp_path / "a" / "b" / "c.lock"
    with acquire(lock, tmp_dir, timeout=0):
        assert lock.is_file()
    assert not lock.exists()


def test_tokens_differ_between_acquisitions(lock: Path, tmp_dir: Path) -> None:
    tokens = set()
    for _ in range(5):
        with acquire(lock, tmp_dir, timeout=0) as held:
            tokens.add(held.token)
    assert len(tokens) == 5


def test_second_acquire_times_out_with_lock_held(lock: Path, tmp_dir: Path) -> None:
    first = acquire(lock, tmp_dir, timeout=0)
    before = lock.read_bytes()
    with pytest.raises(LockHeld) as excinfo:
        acquire(lock, tmp_dir, timeout=0.2)
    err = excinfo.value
    assert err.exit_code == EXIT_CONFLICT == 4
    assert isinstance(err, ConflictError)
    assert err.lock_path == str(lock)
    assert str(lock) in str(err)
    assert f"pid {os.getpid()}" in str(err)
    assert "remove" in str(err)
    # The failed attempt did not disturb the holder.
    assert lock.read_bytes() == before
    assert first.still_held()
    first.release()
    assert not lock.exists()


def test_timeout_from_environment(
    lock: Path, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELREG_LOCK_TIMEOUT", "0")
    with acquire(lock, tmp_dir, timeout=0), pytest.raises(LockHeld):
        acquire(lock, tmp_dir)


def test_locked_context_releases_even_on_error(lock: Path, tmp_dir: Path) -> None:
    seen: list[bool] = []

    def interrupted() -> None:
        with locked(lock, tmp_dir, timeout=0) as held:
            seen.append(held.still_held())
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert seen == [True]
    assert not lock.exists()


def test_with_block_on_lock_releases(lock: Path, tmp_dir: Path) -> None:
    with pytest.raises(RuntimeError), acquire(lock, tmp_dir, timeout=0):
        raise RuntimeError("boom")
    assert not lock.exists()


# -- staleness -----------------------------------------------------------------------------


def _child_takes_lock_and_dies(lock: str, tmp_dir: str) -> None:
    acquire(Path(lock), Path(tmp_dir), timeout=5)
    os._exit(0)  # no release, no cleanup: a crash


def test_lock_of_dead_process_is_recovered_immediately(lock: Path, tmp_dir: Path) -> None:
    proc = _MP.Process(target=_child_takes_lock_and_dies, args=(str(lock), str(tmp_dir)))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    info = read_info(lock)
    assert info is not None
    assert info.pid == proc.pid
    assert is_stale(info, DEFAULT_STALE_AFTER)
    # timeout=0: no waiting at all is needed to take over a dead owner's lock.
    with acquire(lock, tmp_dir, timeout=0) as held:
        assert json.loads(lock.read_bytes())["token"] == held.token
    assert list(tmp_dir.iterdir()) == []  # the broken lock was not left lying around


def test_lock_of_unreaped_zombie_is_recovered(lock: Path, tmp_dir: Path) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to recognise zombies")
    proc = _MP.Process(target=_child_takes_lock_and_dies, args=(str(lock), str(tmp_dir)))
    proc.start()
    try:
        # Wait for the exit without reaping: the child stays a zombie with a live pid.
        assert multiprocessing.connection.wait([proc.sentinel], 60)
        # The sentinel fires as the child closes its files, a moment before the kernel
        # marks it a zombie; wait for that state (a poll, not a timing assertion).
        assert proc.pid is not None
        stat_file = Path(f"/proc/{proc.pid}/stat")
        deadline = time.monotonic() + 60
        while stat_file.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "child never became a zombie"
            time.sleep(0.001)
        os.kill(proc.pid, 0)  # the pid still exists
        with acquire(lock, tmp_dir, timeout=0) as held:
            assert held.still_held()
    finally:
        proc.join(60)


def test_lock_with_old_mtime_is_stale_even_if_owner_alive(lock: Path, tmp_dir: Path) -> None:
    _write_owner(lock, pid=os.getpid(), host=socket.gethostname())
    past = time.time() - DEFAULT_STALE_AFTER - 60
    os.utime(lock, (past, past))
    info = read_info(lock)
    assert info is not None
    assert is_stale(info, DEFAULT_STALE_AFTER)
    with acquire(lock, tmp_dir, timeout=0) as held:
        assert json.loads(lock.read_bytes())["token"] == held.token


def test_stale_after_from_environment(
    lock: Path, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert stale_after_setting() == DEFAULT_STALE_AFTER
    monkeypatch.setenv("MODELREG_LOCK_STALE_AFTER", "10")
    assert stale_after_setting() == 10.0
    monkeypatch.setenv("MODELREG_LOCK_STALE_AFTER", "not a number")
    assert stale_after_setting() == DEFAULT_STALE_AFTER
    monkeypatch.setenv("MODELREG_LOCK_STALE_AFTER", "10")
    _write_owner(lock, pid=os.getpid(), host=socket.gethostname())
    past = time.time() - 30
    os.utime(lock, (past, past))
    with acquire(lock, tmp_dir, timeout=0):
        pass


def test_fresh_lock_of_live_process_is_not_broken(lock: Path, tmp_dir: Path) -> None:
    _write_owner(lock, pid=os.getpid(), host=socket.gethostname())
    before = lock.read_bytes()
    inode = lock.stat().st_ino
    info = read_info(lock)
    assert info is not None
    assert not is_stale(info, DEFAULT_STALE_AFTER)
    with pytest.raises(LockHeld):
        acquire(lock, tmp_dir, timeout=0.2)
    assert lock.read_bytes() == before
    assert lock.stat().st_ino == inode


def test_fresh_lock_from_another_host_is_not_broken(lock: Path, tmp_dir: Path) -> None:
    # A pid on another host cannot be probed, even if no such pid exists here.
    _write_owner(lock, pid=_dead_pid(), host=socket.gethostname() + "-elsewhere")
    with pytest.raises(LockHeld) as excinfo:
        acquire(lock, tmp_dir, timeout=0.1)
    assert "-elsewhere" in str(excinfo.value)
    assert lock.exists()


@pytest.mark.parametrize("content", [b"", b"garbage", b'{"pid": "x"}', b"[1, 2]"])
def test_unreadable_fresh_lock_is_respected(lock: Path, tmp_dir: Path, content: bytes) -> None:
    # An empty lock may be one whose owner has not written its record yet.
    lock.parent.mkdir(parents=True)
    lock.write_bytes(content)
    info = read_info(lock)
    assert info is not None
    assert (info.pid, info.host, info.token) == (None, None, None)
    with pytest.raises(LockHeld) as excinfo:
        acquire(lock, tmp_dir, timeout=0.1)
    assert "an unknown process" in str(excinfo.value)
    assert lock.read_bytes() == content


@pytest.mark.parametrize("age", [UNREADABLE_STALE_AFTER + 2, 10_000])
def test_unreadable_old_lock_is_stale(lock: Path, tmp_dir: Path, age: float) -> None:
    # A lock appears with its record in it, so one that names nobody after a few seconds
    # was left by a crash (a power loss, an older writer); it need not wait out two minutes.
    lock.parent.mkdir(parents=True)
    lock.write_bytes(b"")
    then = time.time() - age
    os.utime(lock, (then, then))
    with acquire(lock, tmp_dir, timeout=0) as held:
        assert held.still_held()


def test_read_info_missing_lock_is_none(lock: Path) -> None:
    assert read_info(lock) is None


def test_describe_names_pid_and_host() -> None:
    info = LockInfo(pid=42, host="box", created=0.0, token="t", mtime=time.time())
    assert info.describe().startswith("pid 42 on box, ")


def test_break_puts_back_a_lock_replaced_since_it_was_judged(lock: Path, tmp_dir: Path) -> None:
    # The lock judged stale had another token: the file there now is a new, live lock.
    _write_owner(lock, pid=os.getpid(), host=socket.gethostname(), token="live")
    live = lock.read_bytes()
    info = read_info(lock)
    assert info is not None
    judged = LockInfo(info.pid, info.host, info.created, "dead", 0.0)
    break_lock(lock, judged, tmp_dir)
    assert lock.read_bytes() == live
    assert list(tmp_dir.iterdir()) == []


def test_break_removes_the_lock_judged(lock: Path, tmp_dir: Path) -> None:
    _write_owner(lock, pid=os.getpid(), host=socket.gethostname())
    info = read_info(lock)
    assert info is not None
    break_lock(lock, info, tmp_dir)
    assert not lock.exists()
    assert list(tmp_dir.iterdir()) == []
    break_lock(lock, info, tmp_dir)  # already gone: nothing to do


def _hold_until_told(lock: str, tmp_dir: str, taken, go) -> None:  # type: ignore[no-untyped-def]
    held = acquire(Path(lock), Path(tmp_dir), timeout=30)
    taken.set()
    go.wait(30)
    held.release()


def test_break_leaves_a_live_lock_taken_after_the_judgement(lock: Path, tmp_dir: Path) -> None:
    # A waiter reads the owner record of A, A releases and exits, B takes the lock; the
    # waiter now finds A dead. Judged on A's record, the lock is stale, but the lock there
    # is B's: it must not be moved, not even for the instant of a rename and a link back
    # (B checks its lock just before it writes, and would give up: "taken over").
    procs = []
    first_taken, first_go = _MP.Event(), _MP.Event()
    first = _MP.Process(target=_hold_until_told,
                        args=(str(lock), str(tmp_dir), first_taken, first_go))
    first.start()
    procs.append(first)
    try:
        assert first_taken.wait(30)
        judged = read_info(lock)
        assert judged is not None and judged.pid == first.pid
        first_go.set()
        first.join(30)
        second_taken, second_go = _MP.Event(), _MP.Event()
        second = _MP.Process(target=_hold_until_told,
                             args=(str(lock), str(tmp_dir), second_taken, second_go))
        second.start()
        procs.append(second)
        assert second_taken.wait(30)
        before = lock.stat()
        live = lock.read_bytes()
        assert is_stale(judged, DEFAULT_STALE_AFTER)  # A is dead
        assert break_lock(lock, judged, tmp_dir) is False
        after = lock.stat()
        assert lock.read_bytes() == live
        assert (after.st_ino, after.st_ctime_ns) == (before.st_ino, before.st_ctime_ns)
        second_go.set()
        second.join(30)
        assert second.exitcode == 0
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(10)


def test_break_puts_back_a_live_lock_swapped_in_at_the_rename(
    lock: Path, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two breakers of one dead owner's lock: the other one removes it and a live owner
    # takes the name between our second look and our rename. What we moved is not the lock
    # judged stale, so it goes back.
    dead = _dead_pid()
    _write_owner(lock, pid=dead, host=socket.gethostname(), token="dead")
    judged = read_info(lock)
    assert judged is not None and is_stale(judged, DEFAULT_STALE_AFTER)
    real_rename = os.rename

    def rename_after_a_takeover(src: Path, dst: Path) -> None:
        Path(src).unlink()
        _write_owner(Path(src), pid=os.getpid(), host=socket.gethostname(), token="live")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename_after_a_takeover)
    assert break_lock(lock, judged, tmp_dir) is False
    info = read_info(lock)
    assert info is not None and info.token == "live"
    assert list(tmp_dir.iterdir()) == []


def test_a_lock_taken_after_a_long_wait_does_not_look_old(
    lock: Path, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A lock's age is its file's mtime. A waiter that staged its record when it began to
    # wait would publish a lock already as old as its wait: with a wait longer than the
    # stale age (a raised MODELREG_LOCK_TIMEOUT), others would break it at once.
    import threading

    from modelreg.storage import lock as lock_module

    monkeypatch.setattr(lock_module, "RESTAGE_AFTER", 0.3)
    holder = acquire(lock, tmp_dir, timeout=0)
    got: list[Lock] = []
    waiter = threading.Thread(target=lambda: got.append(acquire(lock, tmp_dir, timeout=60)))
    waiter.start()
    time.sleep(2.4)
    released_at = time.time()
    holder.release()
    waiter.join(60)
    assert got and got[0].still_held()
    # Staged at the start of the wait, the lock would be 2.4 s older than its release.
    assert lock.stat().st_mtime > released_at - 1.2
    got[0].release()
    assert list(tmp_dir.iterdir()) == []


# -- release -------------------------------------------------------------------------------


def test_release_leaves_a_lock_that_is_no_longer_ours(lock: Path, tmp_dir: Path) -> None:
    held = acquire(lock, tmp_dir, timeout=0)
    # Our lock was broken as stale and someone else took it.
    lock.unlink()
    _write_owner(lock, pid=os.getpid(), host=socket.gethostname(), token="someone-else")
    theirs = lock.read_bytes()
    assert not held.still_held()
    held.release()
    assert lock.read_bytes() == theirs


def test_release_twice_and_after_removal_is_harmless(lock: Path, tmp_dir: Path) -> None:
    held = acquire(lock, tmp_dir, timeout=0)
    held.release()
    held.release()
    assert not lock.exists()
    again = acquire(lock, tmp_dir, timeout=0)
    held.release()  # the old handle must not remove the new owner's lock
    assert again.still_held()
    again.release()


# -- mutual exclusion with real processes --------------------------------------------------

_WORKERS = 4
_INCREMENTS = 50


def _increment(counter: str, tmp_dir: str, n: int, start) -> None:  # type: ignore[no-untyped-def]
    path, tmp = Path(counter), Path(tmp_dir)
    lock = lock_path_for(path)
    start.wait()
    for _ in range(n):
        held = acquire(lock, tmp, timeout=120)
        try:
            value = int(path.read_bytes())
            write_atomic(path, f"{value + 1}\n".encode(), tmp)
        finally:
            held.release()


def test_processes_increment_a_counter_under_the_lock(tmp_path: Path, tmp_dir: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_bytes(b"0\n")
    start = _MP.Event()
    procs = [
        _MP.Process(target=_increment, args=(str(counter), str(tmp_dir), _INCREMENTS, start))
        for _ in range(_WORKERS)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * _WORKERS
    assert int(counter.read_bytes()) == _WORKERS * _INCREMENTS == 200
    assert not lock_path_for(counter).exists()
    assert list(tmp_dir.iterdir()) == []


# -- a lock never appears without its owner record -----------------------------------------


def _take_and_release_forever(lock: str, tmp_dir: str) -> None:
    path, tmp = Path(lock), Path(tmp_dir)
    while True:
        acquire(path, tmp, timeout=60).release()


def test_sigkill_never_leaves_a_lock_without_its_owner(lock: Path, tmp_dir: Path) -> None:
    # A lock file that exists but names nobody could only be waited out (stale after two
    # minutes); one with a record of a dead process is taken over at once. Kill a process
    # that takes and releases the lock in a loop at many instants: whatever it leaves must
    # be no lock at all, or a whole record naming it.
    import random
    import signal

    rng = random.Random(6)
    for _ in range(40):
        proc = _MP.Process(target=_take_and_release_forever, args=(str(lock), str(tmp_dir)))
        proc.start()
        time.sleep(rng.uniform(0.02, 0.08))
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(60)
        info = read_info(lock)
        if info is not None:
            assert info.pid == proc.pid, lock.read_bytes()
            assert is_stale(info, DEFAULT_STALE_AFTER)
        with acquire(lock, tmp_dir, timeout=0):
            pass
        assert not lock.exists()


def test_waiter_whose_staged_record_is_removed_still_takes_the_lock(
    lock: Path, tmp_dir: Path
) -> None:
    # `gc --grace 0` may delete a waiting process's staged owner record from tmp/: the
    # waiter writes it again and takes the lock once it is free, with a whole record.
    import threading

    holder = acquire(lock, tmp_dir, timeout=0)
    got: list[Lock] = []
    waiter = threading.Thread(target=lambda: got.append(acquire(lock, tmp_dir, timeout=30)))
    waiter.start()
    deadline = time.monotonic() + 10
    while not [p for p in tmp_dir.iterdir() if p.name.endswith("-lock")]:
        assert time.monotonic() < deadline, "the waiter never staged its record"
        time.sleep(0.001)
    for p in tmp_dir.iterdir():
        p.unlink()
    holder.release()
    waiter.join(30)
    assert got and got[0].still_held()
    assert json.loads(lock.read_bytes())["token"] == got[0].token
    got[0].release()
    assert not lock.exists()
    assert list(tmp_dir.iterdir()) == []


def test_link_made_despite_an_exists_error_counts_as_taken(
    lock: Path, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Over NFS, LINK can be made and yet reported as EEXIST (a retransmission after a lost
    # reply). The lock is then the staged record itself: the taker must see that it holds
    # it rather than wait for itself until the timeout. The lost reply is played by a link
    # that is made and then reported as existing.
    real_link = os.link

    def link_then_lose_the_reply(src: Path, dst: Path) -> None:
        real_link(src, dst)
        raise FileExistsError(17, "File exists")

    monkeypatch.setattr(os, "link", link_then_lose_the_reply)
    held = acquire(lock, tmp_dir, timeout=0)
    assert held.still_held()
    assert json.loads(lock.read_bytes())["token"] == held.token
    assert list(tmp_dir.iterdir()) == []
    # Someone else's lock (another inode) is not mistaken for ours.
    monkeypatch.setattr(os, "link", real_link)
    with pytest.raises(LockHeld):
        acquire(lock, tmp_dir, timeout=0)
    assert held.still_held()
    assert list(tmp_dir.iterdir()) == []


def test_a_file_system_without_hard_links_is_refused_not_raced(
    lock: Path, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # write_new falls back to check-then-rename where link(2) is refused; a lock must not,
    # or two takers could both hold it.
    def no_hard_links(src: Path, dst: Path) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)
    with pytest.raises(PermissionError):
        acquire(lock, tmp_dir, timeout=0)
    assert not lock.exists()
    assert list(tmp_dir.iterdir()) == []


def test_a_lock_is_not_fsynced(
    lock: Path, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Locks are held for milliseconds; a crash may lose one, and an fsync would slow every
    # change to a model (docs/layout.md: "lock files, which are not fsynced").
    lock.parent.mkdir(parents=True)  # (a directory the write path creates is fsynced)
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    with acquire(lock, tmp_dir, timeout=0):
        pass
    assert synced == []
