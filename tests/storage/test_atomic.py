"""The one write path: storage/atomic.py (house rule 1).

``staged`` is the routine; ``write_atomic``, ``write_new`` and ``atomic_file`` are it for a
byte string and for a file object, and are tested as what other packages call.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import stat
import threading
from pathlib import Path

import pytest

from modelreg.storage.atomic import (
    TMP_PREFIX,
    atomic_file,
    ensure_dir,
    fsync_dir,
    staged,
    tmp_name,
    write_atomic,
    write_new,
)
from tests.storage.conftest import MP as _MP


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(tmp_dir: Path) -> list[str]:
    return sorted(p.name for p in tmp_dir.iterdir())


# -- tmp_name / fsync_dir ------------------------------------------------------------------


def test_tmp_name_is_inside_tmp_dir_prefixed_and_unique(tmp_dir: Path) -> None:
    names = {tmp_name(tmp_dir, "model.onnx") for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert name.parent == tmp_dir
        assert name.name.startswith(f"{TMP_PREFIX}{os.getpid()}-")
        assert name.name.endswith("-model.onnx")
        assert not name.exists()


def test_tmp_name_sanitises_and_truncates_the_hint(tmp_dir: Path) -> None:
    name = tmp_name(tmp_dir, "../../etc/passwd" + "x" * 100).name
    assert "/" not in name
    assert name.count("x") <= 40
    assert tmp_name(tmp_dir).name.count("-") == 2  # no hint: no trailing "-"


def test_fsync_dir_tolerates_a_missing_directory(tmp_path: Path) -> None:
    fsync_dir(tmp_path / "nope")
    fsync_dir(tmp_path)


# -- write_atomic --------------------------------------------------------------------------


def test_write_atomic_creates_then_replaces_content(tmp_path: Path, tmp_dir: Path) -> None:
    dest = tmp_path / "sub" / "dir" / "file"
    write_atomic(dest, b"old", tmp_dir)
    assert dest.read_bytes() == b"old"
    write_atomic(dest, b"new content", tmp_dir)
    assert dest.read_bytes() == b"new content"
    assert _leftovers(tmp_dir) == []


@pytest.mark.parametrize("mode", [0o644, 0o600, 0o444, 0o640])
def test_write_atomic_sets_the_final_mode(tmp_path: Path, tmp_dir: Path, mode: int) -> None:
    dest = tmp_path / "file"
    write_atomic(dest, b"x", tmp_dir, mode=mode)
    assert _mode(dest) == mode
    # Replacing a file keeps the mode asked for, not the old file's.
    write_atomic(dest, b"y", tmp_dir, mode=0o600)
    assert _mode(dest) == 0o600
    assert dest.read_bytes() == b"y"


def test_write_atomic_default_mode_ignores_umask(tmp_path: Path, tmp_dir: Path) -> None:
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "file", b"x", tmp_dir)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "file") == 0o644


def test_write_atomic_replaces_a_read_only_file(tmp_path: Path, tmp_dir: Path) -> None:
    dest = tmp_path / "file"
    write_atomic(dest, b"one", tmp_dir, mode=0o444)
    write_atomic(dest, b"two", tmp_dir, mode=0o444)
    assert dest.read_bytes() == b"two"


def test_write_atomic_empty_content(tmp_path: Path, tmp_dir: Path) -> None:
    dest = tmp_path / "file"
    write_atomic(dest, b"old", tmp_dir)
    write_atomic(dest, b"", tmp_dir)
    assert dest.read_bytes() == b""


def test_write_atomic_recreates_a_missing_tmp_dir(tmp_path: Path) -> None:
    dest = tmp_path / "file"
    dest.write_bytes(b"old")
    write_atomic(dest, b"new", tmp_path / "no-tmp")
    assert dest.read_bytes() == b"new"
    assert list((tmp_path / "no-tmp").iterdir()) == []


# -- atomic_file ---------------------------------------------------------------------------


def test_atomic_file_dest_unchanged_until_block_ends(tmp_path: Path, tmp_dir: Path) -> None:
    dest = tmp_path / "file"
    dest.write_bytes(b"old")
    with atomic_file(dest, tmp_dir, mode=0o600) as fh:
        fh.write(b"new")
        fh.flush()
        assert dest.read_bytes() == b"old"
        (temp,) = tmp_dir.iterdir()
        assert temp.name.startswith(TMP_PREFIX)
        assert temp.name.endswith("-file")
        assert _mode(temp) == 0o600  # never world-readable while incomplete
    assert dest.read_bytes() == b"new"
    assert _mode(dest) == 0o600
    assert _leftovers(tmp_dir) == []


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt, SystemExit, OSError])
@pytest.mark.parametrize("existed", [True, False])
def test_atomic_file_exception_in_block_leaves_old_content_and_no_temp(
    tmp_path: Path, tmp_dir: Path, exc_type: type[BaseException], existed: bool
) -> None:
    dest = tmp_path / "file"
    if existed:
        dest.write_bytes(b"old")

    def write_then_fail() -> None:
        with atomic_file(dest, tmp_dir) as fh:
            fh.write(b"half of the new cont")
            raise exc_type()

    with pytest.raises(exc_type):
        write_then_fail()
    if existed:
        assert dest.read_bytes() == b"old"
    else:
        assert not dest.exists()
    assert _leftovers(tmp_dir) == []


def test_atomic_file_failing_replace_removes_temp(tmp_path: Path, tmp_dir: Path) -> None:
    # The destination is a non-empty directory: os.replace fails after the data is written.
    dest = tmp_path / "file"
    dest.mkdir()
    (dest / "keep").write_bytes(b"k")

    def write() -> None:
        with atomic_file(dest, tmp_dir) as fh:
            fh.write(b"data")

    with pytest.raises(IsADirectoryError):
        write()
    assert (dest / "keep").read_bytes() == b"k"
    assert _leftovers(tmp_dir) == []


def test_atomic_file_replace_false_keeps_existing(tmp_path: Path, tmp_dir: Path) -> None:
    dest = tmp_path / "file"
    dest.write_bytes(b"first")
    with atomic_file(dest, tmp_dir, replace=False) as fh:
        fh.write(b"second")
    assert dest.read_bytes() == b"first"
    assert _leftovers(tmp_dir) == []


def test_atomic_file_replace_false_creates_missing(tmp_path: Path, tmp_dir: Path) -> None:
    dest = tmp_path / "a" / "file"
    with atomic_file(dest, tmp_dir, replace=False, mode=0o444) as fh:
        fh.write(b"first")
    assert dest.read_bytes() == b"first"
    assert _mode(dest) == 0o444


# -- write_new -----------------------------------------------------------------------------


def test_write_new_creates_with_mode(tmp_path: Path, tmp_dir: Path) -> None:
    dest = tmp_path / "x" / "y" / "file"
    assert write_new(dest, b"content", tmp_dir, mode=0o444) is True
    assert dest.read_bytes() == b"content"
    assert _mode(dest) == 0o444
    assert _leftovers(tmp_dir) == []


def test_write_new_refuses_to_overwrite(tmp_path: Path, tmp_dir: Path) -> None:
    dest = tmp_path / "file"
    dest.write_bytes(b"winner")
    os.chmod(dest, 0o640)
    assert write_new(dest, b"loser", tmp_dir, mode=0o444) is False
    assert dest.read_bytes() == b"winner"
    assert _mode(dest) == 0o640
    assert _leftovers(tmp_dir) == []


def test_write_new_does_not_follow_or_replace_a_symlink(tmp_path: Path, tmp_dir: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"target")
    dest = tmp_path / "link"
    dest.symlink_to(target)
    assert write_new(dest, b"new", tmp_dir) is False
    assert target.read_bytes() == b"target"
    assert dest.is_symlink()


def _no_hard_links(src: object, dst: object) -> None:
    raise PermissionError(1, "Operation not permitted")  # as on SMB/CIFS


def test_write_new_without_hard_links_creates(
    tmp_path: Path, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", _no_hard_links)
    dest = tmp_path / "sub" / "file"
    assert write_new(dest, b"content", tmp_dir, mode=0o444) is True
    assert dest.read_bytes() == b"content"
    assert _mode(dest) == 0o444
    assert _leftovers(tmp_dir) == []


def test_write_new_without_hard_links_keeps_existing(
    tmp_path: Path, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", _no_hard_links)
    dest = tmp_path / "file"
    dest.write_bytes(b"winner")
    assert write_new(dest, b"loser", tmp_dir) is False
    assert dest.read_bytes() == b"winner"
    assert _leftovers(tmp_dir) == []


def test_write_new_race_has_exactly_one_winner(tmp_path: Path, tmp_dir: Path) -> None:
    dest = tmp_path / "file"
    barrier = threading.Barrier(8)
    results: dict[int, bool] = {}

    def worker(i: int) -> None:
        barrier.wait()
        results[i] = write_new(dest, f"writer {i}".encode(), tmp_dir)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, won in results.items() if won]
    assert len(results) == 8
    assert len(winners) == 1
    assert dest.read_bytes() == f"writer {winners[0]}".encode()
    assert _leftovers(tmp_dir) == []


# -- staged: the routine itself ----------------------------------------------------------


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each fsync as "file" or "dir" (the real fsync still runs)."""
    seen: list[str] = []
    real = os.fsync

    def counting(fd: int) -> None:
        seen.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return seen


@pytest.mark.parametrize("replace", [True, False])
def test_staged_steps_in_order(
    tmp_path: Path, tmp_dir: Path, fsyncs: list[str], replace: bool
) -> None:
    dest = tmp_path / "file"
    with staged(tmp_dir, dest.name, mode=0o444) as tmp:
        assert tmp.path.parent == tmp_dir
        assert tmp.path.name.startswith(TMP_PREFIX) and tmp.path.name.endswith("-file")
        assert _mode(tmp.path) == 0o600  # never readable by others while incomplete
        tmp.file.write(b"content")
        assert fsyncs == []
        assert tmp.publish(dest, replace=replace) is True
        assert tmp.file.closed
    assert fsyncs == ["file", "dir"]  # the content, then the directory that gained the name
    assert dest.read_bytes() == b"content"
    assert _mode(dest) == 0o444
    assert dest.stat().st_nlink == 1
    assert _leftovers(tmp_dir) == []


@pytest.mark.parametrize("durable", [True, False])
def test_ensure_dir_fsyncs_each_parent_that_gained_an_entry(
    tmp_path: Path, fsyncs: list[str], durable: bool
) -> None:
    ensure_dir(tmp_path / "a" / "b" / "c", durable=durable)
    assert (tmp_path / "a" / "b" / "c").is_dir()
    assert fsyncs == (["dir"] * 3 if durable else [])
    ensure_dir(tmp_path / "a" / "b" / "c")
    assert len(fsyncs) == (3 if durable else 0)  # nothing created, nothing synced


def test_staged_sync_early_is_not_repeated(
    tmp_path: Path, tmp_dir: Path, fsyncs: list[str]
) -> None:
    with staged(tmp_dir, "blob") as tmp:
        tmp.file.write(b"all the bytes")
        tmp.sync()  # as put_file does while its hash catches up
        tmp.sync()
        assert fsyncs == ["file"]
        tmp.publish(tmp_path / "file")
    assert fsyncs == ["file", "dir"]


def test_staged_not_durable_skips_both_fsyncs(
    tmp_path: Path, tmp_dir: Path, fsyncs: list[str]
) -> None:
    with staged(tmp_dir, "lock", durable=False) as tmp:
        tmp.file.write(b"owner")
        assert tmp.publish(tmp_path / "x.lock", replace=False)
    assert fsyncs == []
    assert (tmp_path / "x.lock").read_bytes() == b"owner"  # flushed and closed all the same


@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt, SystemExit])
def test_staged_removes_the_temp_on_any_exception(
    tmp_path: Path, tmp_dir: Path, exc_type: type[BaseException]
) -> None:
    def write_then_fail() -> None:
        with staged(tmp_dir, "blob") as tmp:
            tmp.file.write(b"half")
            raise exc_type()

    with pytest.raises(exc_type):
        write_then_fail()
    assert _leftovers(tmp_dir) == []


def test_staged_without_publish_leaves_nothing(tmp_path: Path, tmp_dir: Path) -> None:
    with staged(tmp_dir, "blob") as tmp:
        tmp.file.write(b"not wanted after all")
    assert _leftovers(tmp_dir) == []
    assert tmp.file.closed


def test_staged_create_if_absent_may_be_retried(tmp_path: Path, tmp_dir: Path) -> None:
    # A lock taker keeps one staged record and links it again after each wait.
    dest = tmp_path / "x.lock"
    dest.write_bytes(b"held by someone")
    with staged(tmp_dir, "lock") as tmp:
        tmp.file.write(b"mine")
        assert tmp.publish(dest, replace=False) is False
        assert tmp.publish(dest, replace=False) is False
        dest.unlink()
        assert tmp.publish(dest, replace=False) is True
        assert tmp.path.exists()  # still linked under its temp name until the block ends
    assert dest.read_bytes() == b"mine"
    assert dest.stat().st_nlink == 1
    assert _leftovers(tmp_dir) == []


def test_staged_publish_after_the_temp_was_removed(tmp_path: Path, tmp_dir: Path) -> None:
    # `gc --grace 0` may remove a temp file under a waiting writer: it is told, not misled.
    with staged(tmp_dir, "lock") as tmp:
        tmp.file.write(b"x")
        tmp.path.unlink()
        with pytest.raises(FileNotFoundError):
            tmp.publish(tmp_path / "x.lock", replace=False)
    assert not (tmp_path / "x.lock").exists()


def test_create_if_absent_counts_a_link_reported_as_existing(
    tmp_path: Path, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Over NFS a retransmitted LINK whose first reply was lost reports EEXIST although the
    # link was made; the temp file's link count of 2 tells.
    real_link = os.link

    def link_then_lose_the_reply(src: Path, dst: Path) -> None:
        real_link(src, dst)
        raise FileExistsError(17, "File exists")

    monkeypatch.setattr(os, "link", link_then_lose_the_reply)
    dest = tmp_path / "file"
    assert write_new(dest, b"mine", tmp_dir) is True
    assert write_new(dest, b"other", tmp_dir) is False
    assert dest.read_bytes() == b"mine"
    assert _leftovers(tmp_dir) == []


def test_exclusive_create_refuses_to_fall_back(
    tmp_path: Path, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", _no_hard_links)
    dest = tmp_path / "x.lock"
    def publish() -> None:
        with staged(tmp_dir, "lock") as tmp:
            tmp.file.write(b"x")
            tmp.publish(dest, replace=False, exclusive=True)

    with pytest.raises(PermissionError):
        publish()
    assert not dest.exists()
    assert _leftovers(tmp_dir) == []


def test_without_hard_links_a_dangling_symlink_is_kept(
    tmp_path: Path, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "link", _no_hard_links)
    dest = tmp_path / "link"
    dest.symlink_to(tmp_path / "nowhere")
    assert write_new(dest, b"new", tmp_dir) is False
    assert dest.is_symlink()
    assert _leftovers(tmp_dir) == []


# -- crash safety with real processes ------------------------------------------------------

_SIZE = 4 << 20
_CHUNK = 16 << 10


def _content(tag: bytes) -> bytes:
    block = hashlib.sha256(tag).digest() * (_CHUNK // 32)
    return (block * (_SIZE // _CHUNK))[:_SIZE]


def _crash_writer(dest: str, tmp_dir: str, started, go) -> None:  # type: ignore[no-untyped-def]
    """Write the new content in small chunks; optionally stop halfway until told to go on."""
    data = _content(b"new")
    with atomic_file(Path(dest), Path(tmp_dir), mode=0o640) as fh:
        for i in range(0, len(data), _CHUNK):
            fh.write(data[i : i + _CHUNK])
            if i == _SIZE // 2:
                fh.flush()
                started.set()
                if go is not None:
                    go.wait()
    os._exit(0)


def _check_not_torn(dest: Path, old: bytes | None, new: bytes) -> str:
    if not dest.exists():
        assert old is None
        return "absent"
    data = dest.read_bytes()
    assert data in (old, new), f"torn file: {len(data)} bytes, neither old nor new content"
    if data == new:
        assert _mode(dest) == 0o640
        return "new"
    return "old"


@pytest.mark.parametrize("with_old", [True, False])
def test_sigkill_mid_write_never_exposes_a_partial_file(
    tmp_path: Path, tmp_dir: Path, with_old: bool
) -> None:
    """Deterministic: the writer is killed while it is halfway through its temp file."""
    dest = tmp_path / "big.bin"
    old = _content(b"old") if with_old else None
    if old is not None:
        dest.write_bytes(old)
    started, go = _MP.Event(), _MP.Event()
    proc = _MP.Process(target=_crash_writer, args=(str(dest), str(tmp_dir), started, go))
    proc.start()
    try:
        assert started.wait(60), "writer never started"
        (temp,) = tmp_dir.iterdir()  # the half-written temp file exists ...
        assert temp.stat().st_size >= _SIZE // 2
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    # ... but the destination was never touched.
    assert _check_not_torn(dest, old, _content(b"new")) == ("old" if with_old else "absent")


def test_sigkill_at_random_instants_leaves_old_or_new_never_torn(
    tmp_path: Path, tmp_dir: Path
) -> None:
    rng = random.Random(20240611)
    new = _content(b"new")
    outcomes: list[str] = []
    for round_ in range(12):
        dest = tmp_path / f"big-{round_}.bin"
        old = _content(b"old") if round_ % 3 else None
        if old is not None:
            dest.write_bytes(old)
        started = _MP.Event()
        proc = _MP.Process(target=_crash_writer, args=(str(dest), str(tmp_dir), started, None))
        proc.start()
        try:
            if round_ % 2:
                started.wait(60)  # aim at the second half of the write and the rename
            # Any instant is a valid crash point; the assertion below holds for all of them.
            proc.join(rng.uniform(0.0, 0.03))
            if proc.exitcode is None:
                os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.join(60)
        assert proc.exitcode in (0, -signal.SIGKILL)
        outcome = _check_not_torn(dest, old, new)
        if proc.exitcode == 0:
            assert outcome == "new"
        outcomes.append(outcome)
    # Leftover temp files are allowed after a crash (gc removes them), but never at dest.
    for leftover in tmp_dir.iterdir():
        assert leftover.name.startswith(TMP_PREFIX)
    assert len(outcomes) == 12
