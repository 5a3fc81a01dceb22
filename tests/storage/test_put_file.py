"""ObjectStore.put_file's two copy paths (storage/copying.py): the kernel copy with a trailing
hash, and the loop.

Every test checks the same invariant on the bytes on disk: the object's name is the sha256
of the bytes stored under it, the size returned is their count, and nothing is left in
``tmp/``. Sizes are chosen around ``KERNEL_COPY_MIN`` and the per-call and per-chunk sizes;
the fallback is forced by making ``os.copy_file_range`` fail as some file systems make it
fail; sources change during the copy both at chosen points (from the progress callback,
which runs between two copy calls) and from a concurrent process.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.storage import copying as copying_module
from modelreg.storage.copying import KERNEL_COPY_CALL, KERNEL_COPY_MIN
from modelreg.storage.layout import Layout, init
from modelreg.storage.objects import OBJECT_MODE, ObjectStore
from tests.storage.conftest import MP

MIB = 1 << 20
REAL_COPY_FILE_RANGE = os.copy_file_range


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return init(tmp_path / "project")[0]


@pytest.fixture
def store(layout: Layout) -> ObjectStore:
    return ObjectStore(layout.objects, layout.tmp)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the copy_file_range calls (the real ones still run)."""
    seen: list[int] = []

    def counting(src: int, dst: int, count: int, *args: int | None) -> int:
        seen.append(count)
        return REAL_COPY_FILE_RANGE(src, dst, count, *args)

    monkeypatch.setattr(os, "copy_file_range", counting)
    return seen


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _data(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _fds() -> int:
    """Open descriptors of this process (-1 where /proc/self/fd is missing)."""
    fd_dir = Path("/proc/self/fd")
    return len(list(fd_dir.iterdir())) if fd_dir.is_dir() else -1


def _hash_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "modelreg-hash"]


def _stored(store: ObjectStore, oid: str, size: int) -> bytes:
    """The object's bytes, after checking the invariant every put_file must keep."""
    path = store.path(oid)
    data = path.read_bytes()
    assert _sha(data) == oid == path.name and path.parent == store.root
    assert len(data) == size
    assert stat.S_IMODE(path.stat().st_mode) == OBJECT_MODE
    assert list(store.tmp_dir.iterdir()) == []
    assert _hash_threads() == []
    return data


def _put(store: ObjectStore, src: Path) -> tuple[str, int, list[int]]:
    seen: list[int] = []
    oid, size = store.put_file(src, seen.append)
    assert sum(seen) == size
    return oid, size, seen


def _no_kernel_copy(err: int) -> Callable[..., int]:
    def refuse(*_: object) -> int:
        raise OSError(err, os.strerror(err))

    return refuse


# -- sizes around the threshold ------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, KERNEL_COPY_MIN - 1, KERNEL_COPY_MIN, KERNEL_COPY_MIN + 1, 3 * KERNEL_COPY_MIN + 12_345],
)
def test_sizes_around_the_threshold(
    store: ObjectStore, tmp_path: Path, calls: list[int], size: int
) -> None:
    data = _data(size, size)
    src = tmp_path / "model.bin"
    src.write_bytes(data)
    fds = _fds()
    oid, stored, seen = _put(store, src)
    assert _fds() == fds
    assert (oid, stored) == (_sha(data), size)
    assert _stored(store, oid, size) == data
    assert src.read_bytes() == data
    if size >= KERNEL_COPY_MIN:
        assert calls and all(c == KERNEL_COPY_CALL for c in calls)
        assert len(seen) == -(-size // KERNEL_COPY_CALL)
    else:
        assert calls == []
    if shutil.which("sha256sum"):
        out = subprocess.run(["sha256sum", str(store.path(oid))], capture_output=True,
                             text=True, check=True)
        assert out.stdout.split()[0] == oid


def test_many_copy_calls_and_an_odd_tail(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: list[int]
) -> None:
    monkeypatch.setattr(copying_module, "KERNEL_COPY_CALL", 3 * MIB + 7)
    size = KERNEL_COPY_MIN + 5 * MIB + 333
    data = _data(size)
    src = tmp_path / "model.bin"
    src.write_bytes(data)
    oid, stored, seen = _put(store, src)
    assert (oid, stored) == (_sha(data), size)
    assert _stored(store, oid, size) == data
    assert len(seen) == -(-size // (3 * MIB + 7))
    assert all(n == 3 * MIB + 7 for n in seen[:-1])


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(0, 40_000),
    threshold=st.integers(1, 20_000),
    call=st.integers(1, 12_000),
    chunk=st.integers(1, 9_000),
    seed=st.integers(0, 2**32),
)
def test_kernel_and_user_space_copies_agree(
    size: int, threshold: int, call: int, chunk: int, seed: int
) -> None:
    data = _data(size, seed)
    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        root = Path(d)
        src = root / "src"
        src.write_bytes(data)
        mp.setattr(copying_module, "KERNEL_COPY_MIN", threshold)
        mp.setattr(copying_module, "KERNEL_COPY_CALL", call)
        mp.setattr(copying_module, "CHUNK_SIZE", chunk)
        kernel = ObjectStore(root / "a" / "objects", root / "a" / "tmp")
        oid, stored, _ = _put(kernel, src)
        assert (oid, stored) == (_sha(data), size)
        assert _stored(kernel, oid, size) == data
        mp.setattr(os, "copy_file_range", _no_kernel_copy(errno.EXDEV))
        user = ObjectStore(root / "b" / "objects", root / "b" / "tmp")
        assert _put(user, src)[:2] == (oid, size)
        assert _stored(user, oid, size) == data


# -- the fallback --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "err", [errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.ETXTBSY]
)
def test_fallback_when_the_kernel_refuses(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    data = _data(KERNEL_COPY_MIN + MIB + 17)
    src = tmp_path / "model.bin"
    src.write_bytes(data)
    monkeypatch.setattr(os, "copy_file_range", _no_kernel_copy(err))
    oid, size, seen = _put(store, src)
    assert (oid, size) == (_sha(data), len(data))
    assert _stored(store, oid, size) == data
    assert all(n <= copying_module.CHUNK_SIZE for n in seen)


def test_fallback_without_copy_file_range(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _data(KERNEL_COPY_MIN + 3)
    src = tmp_path / "model.bin"
    src.write_bytes(data)
    monkeypatch.delattr(os, "copy_file_range")
    oid, size, _ = _put(store, src)
    assert _stored(store, oid, size) == data


def test_fallback_when_the_first_call_copies_nothing(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Some pseudo-files and old kernels answer 0 at offset 0 although there are bytes.
    data = _data(KERNEL_COPY_MIN + 3)
    src = tmp_path / "model.bin"
    src.write_bytes(data)
    monkeypatch.setattr(os, "copy_file_range", lambda *_: 0)
    oid, size, _ = _put(store, src)
    assert (oid, size) == (_sha(data), len(data))
    assert _stored(store, oid, size) == data


def test_other_errors_on_the_first_call_are_raised(
    store: ObjectStore, layout: Layout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(_data(KERNEL_COPY_MIN))
    monkeypatch.setattr(os, "copy_file_range", _no_kernel_copy(errno.EIO))
    with pytest.raises(OSError, match="Input/output") as excinfo:
        store.put_file(src)
    assert excinfo.value.errno == errno.EIO
    assert list(layout.tmp.iterdir()) == []
    assert list(layout.objects.rglob("*")) == []


# -- errors and interruptions after the first byte ----------------------------------------


def test_an_error_after_the_first_byte_is_raised_and_leaves_nothing(
    store: ObjectStore, layout: Layout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(_data(KERNEL_COPY_MIN + MIB))
    monkeypatch.setattr(copying_module, "KERNEL_COPY_CALL", MIB)
    done: list[int] = []

    def fail_later(src_fd: int, dst_fd: int, count: int) -> int:
        if len(done) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        done.append(count)
        return REAL_COPY_FILE_RANGE(src_fd, dst_fd, count)

    monkeypatch.setattr(os, "copy_file_range", fail_later)
    fds = _fds()
    with pytest.raises(OSError, match="No space") as excinfo:
        store.put_file(src)
    assert _fds() == fds
    assert excinfo.value.errno == errno.ENOSPC
    assert list(layout.tmp.iterdir()) == []
    assert list(layout.objects.rglob("*")) == []
    assert _hash_threads() == []


@pytest.mark.parametrize("after", [1, 4])
def test_keyboard_interrupt_during_a_kernel_copy_leaves_nothing(
    store: ObjectStore, layout: Layout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    after: int
) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(_data(KERNEL_COPY_MIN + MIB))
    monkeypatch.setattr(copying_module, "KERNEL_COPY_CALL", MIB)
    seen: list[int] = []

    def interrupt(n: int) -> None:
        seen.append(n)
        if len(seen) == after:
            raise KeyboardInterrupt

    fds = _fds()
    with pytest.raises(KeyboardInterrupt):
        store.put_file(src, interrupt)
    assert _fds() == fds
    assert list(layout.tmp.iterdir()) == []
    assert list(layout.objects.rglob("*")) == []
    assert _hash_threads() == []


def test_existing_object_is_touched_not_rewritten(
    store: ObjectStore, tmp_path: Path, calls: list[int]
) -> None:
    data = _data(KERNEL_COPY_MIN + 1)
    src = tmp_path / "model.bin"
    src.write_bytes(data)
    oid, size, _ = _put(store, src)
    path = store.path(oid)
    inode = path.stat().st_ino
    os.utime(path, (1_000_000, 1_000_000))
    assert _put(store, src)[:2] == (oid, size)
    assert path.stat().st_ino == inode
    assert path.stat().st_mtime > 1_000_000
    # Copied again (the id is known only at the end): two calls per put, the copy and the 0.
    assert len(calls) == 4
    assert _stored(store, oid, size) == data


# -- the source changes during the copy ----------------------------------------------------


def _shrink(src: Path, data: bytes) -> None:
    os.truncate(src, len(data) // 2)


def _grow(src: Path, data: bytes) -> None:
    with open(src, "ab") as fh:
        fh.write(b"appended" * 1000)


def _rewrite_copied(src: Path, data: bytes) -> None:
    with open(src, "r+b") as fh:
        fh.write(b"X" * 100)


def _rewrite_ahead(src: Path, data: bytes) -> None:
    with open(src, "r+b") as fh:
        fh.seek(len(data) - 100)
        fh.write(b"Y" * 100)


@pytest.mark.parametrize("path", ["kernel", "user"])
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_shrink, lambda d: d[: len(d) // 2]),
        (_grow, lambda d: d + b"appended" * 1000),
        (_rewrite_copied, lambda d: d),
        (_rewrite_ahead, lambda d: d[:-100] + b"Y" * 100),
    ],
    ids=["shrink", "grow", "rewrite-copied", "rewrite-ahead"],
)
def test_source_changed_between_two_copy_calls(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str,
    change: Callable[[Path, bytes], None], expected: Callable[[bytes], bytes]
) -> None:
    # The progress callback runs between two copy calls (kernel) or chunks (user space):
    # the change lands after the first MiB is stored and before the rest is read.
    monkeypatch.setattr(copying_module, "KERNEL_COPY_CALL", MIB)
    if path == "user":
        monkeypatch.setattr(os, "copy_file_range", _no_kernel_copy(errno.EXDEV))
    data = _data(KERNEL_COPY_MIN + 5 * MIB + 11)
    src = tmp_path / "model.bin"
    src.write_bytes(data)
    seen: list[int] = []

    def progress(n: int) -> None:
        if not seen:
            change(src, data)
        seen.append(n)

    oid, size = store.put_file(src, progress)
    assert sum(seen) == size
    assert _stored(store, oid, size) == expected(data)


def _keep_changing(path: str, started: Event, stop: Event, done: Synchronized[int],
                   seed: int) -> None:
    """Rewrite, append to and truncate ``path`` until told to stop (a child process)."""
    rng = random.Random(seed)
    block = rng.randbytes(256 * 1024)
    with open(path, "r+b") as fh:
        while not stop.is_set():
            size = os.fstat(fh.fileno()).st_size
            op = rng.random()
            if op < 0.6:
                os.pwrite(fh.fileno(), block[: rng.randrange(1, len(block))],
                          rng.randrange(0, max(1, size)))
            elif op < 0.8 or size < KERNEL_COPY_MIN:
                os.pwrite(fh.fileno(), block, size)
            else:
                os.ftruncate(fh.fileno(), rng.randrange(size // 2, size))
            done.value += 1
            started.set()


@pytest.mark.parametrize("path", ["kernel", "user"])
def test_source_changed_by_another_process_during_the_copy(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    # Real concurrency: whatever bytes were stored, their sha256 must be the name. Small
    # copy calls interleave many times with the writer's changes.
    monkeypatch.setattr(copying_module, "KERNEL_COPY_CALL", 256 * 1024 + 1)
    if path == "user":
        monkeypatch.setattr(os, "copy_file_range", _no_kernel_copy(errno.EXDEV))
    src = tmp_path / "model.bin"
    original = _data(2 * KERNEL_COPY_MIN)
    during = 0
    for round_no in range(4):
        src.write_bytes(original)
        started, stop, done = MP.Event(), MP.Event(), MP.Value("q", 0)
        writer = MP.Process(target=_keep_changing,
                            args=(str(src), started, stop, done, round_no))
        writer.start()
        try:
            assert started.wait(10)
            first = done.value
            oid, size, _ = _put(store, src)
            during += done.value - first
        finally:
            stop.set()
            writer.join(10)
        assert writer.exitcode == 0
        _stored(store, oid, size)
        store.remove(oid)
    assert during > 0  # the writer changed the file while put_file ran


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd")
def test_a_missing_source_leaks_no_descriptor(store: ObjectStore, tmp_path: Path) -> None:
    before = _fds()
    for _ in range(3):
        with pytest.raises(FileNotFoundError):
            store.put_file(tmp_path / "nope")
    assert _fds() == before
    assert list(store.tmp_dir.iterdir()) == []
