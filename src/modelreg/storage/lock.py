"""Lock files that work on NFS: taken with link(2), exclusive like git's O_CREAT|O_EXCL.

A lock is a file ``<path>.lock`` holding a small JSON record of its owner (pid, host, time,
a random token). A lock is *stale* when its owner is a dead process on this host, or when it
is older than ``stale_after`` seconds (owners on other hosts cannot be probed), or when it
names no owner and is older than a few seconds. The record is written to a temp file and
linked onto the lock name (``storage.atomic.staged``, create-if-absent, without fsync), so
a lock never exists without it, and the record is written again while a taker waits, so a
lock's mtime is the moment it was taken (to within a second). A stale lock is broken only if
it still holds the record judged stale, by renaming it aside and checking that what was moved
is that lock, so two processes breaking the same stale lock cannot both take it.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from modelreg.errors import LockHeld
from modelreg.storage.atomic import staged, tmp_name

__all__ = [
    "DEFAULT_STALE_AFTER",
    "DEFAULT_TIMEOUT",
    "LOCK_MODE",
    "RECORD_SIZE",
    "RESTAGE_AFTER",
    "UNREADABLE_STALE_AFTER",
    "Lock",
    "LockInfo",
    "acquire",
    "break_lock",
    "is_stale",
    "lock_path_for",
    "read_info",
    "stale_after_setting",
]

DEFAULT_TIMEOUT = 30.0
"""Seconds to wait for a held lock before giving up with exit 4 (``MODELREG_LOCK_TIMEOUT``)."""

DEFAULT_STALE_AFTER = 120.0
"""Age in seconds after which any lock counts as abandoned (``MODELREG_LOCK_STALE_AFTER``).

Locks are held only while small metadata files are written (milliseconds), never while
large artifacts are copied, so two minutes is far beyond any live holder."""

UNREADABLE_STALE_AFTER = 10.0
"""Age in seconds after which a lock without a readable owner record counts as abandoned.

A lock appears with its record already in it (linked from a temp file), so an empty or
garbled lock is what a power loss or an interrupted older writer leaves, not a live owner."""

LOCK_MODE = 0o644
"""A lock file's mode, whatever the umask: every user of a shared store may read its owner."""

RECORD_SIZE = 512
"""Every lock file is exactly this many bytes: its JSON record padded with spaces.

Network file systems cache a file's size apart from its data (sshfs keeps a path's attributes
for up to 20 s, and does not see another client replace the file), so a reader that takes the
size of an earlier lock at the same name would read a new, longer record cut short. With
one size for every record, a stale size is still the right size."""

RESTAGE_AFTER = 1.0
"""Seconds after which a waiting taker writes its owner record again (a fresh mtime)."""

# What socket.gethostname() returns, without importing socket; a host name is at most 64
# bytes (HOST_NAME_MAX), so even escaped as JSON the owner record fits in RECORD_SIZE.
_HOST = os.uname().nodename[:64]


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        return default


@dataclass(frozen=True)
class LockInfo:
    """What a lock file says about its owner."""

    pid: int | None
    host: str | None
    created: float | None
    token: str | None
    mtime: float

    def describe(self) -> str:
        """Return a short human description of the owner."""
        who = f"pid {self.pid}" if self.pid is not None else "an unknown process"
        where = f" on {self.host}" if self.host else ""
        age = time.time() - self.mtime
        return f"{who}{where}, {age:.0f}s ago"


def stale_after_setting() -> float:
    """Return the configured stale-lock age (``MODELREG_LOCK_STALE_AFTER``, default 120 s)."""
    return _env_float("MODELREG_LOCK_STALE_AFTER", DEFAULT_STALE_AFTER)


def lock_path_for(path: Path) -> Path:
    """Return the lock file guarding ``path``.

    Args:
        path: The file the lock protects.

    Returns:
        ``<path>.lock``.
    """
    return path.with_name(path.name + ".lock")


def read_info(lock: Path) -> LockInfo | None:
    """Read a lock file's owner record; None if the lock does not exist.

    Args:
        lock: Path of the lock file.

    Returns:
        The owner record (fields None where the file is empty or unreadable).
    """
    try:
        st = lock.stat()
        raw = lock.read_bytes()
    except FileNotFoundError:
        return None
    pid = host = token = None
    created = None
    try:
        data = json.loads(raw)
        pid = int(data["pid"])
        host = str(data["host"])
        created = float(data["time"])
        token = str(data["token"])
    except (ValueError, KeyError, TypeError, RecursionError):
        pass
    return LockInfo(pid, host, created, token, st.st_mtime)


def _record(token: str) -> bytes:
    fields = {"host": _HOST, "pid": os.getpid(), "time": round(time.time(), 3),
              "token": token}
    raw = json.dumps(fields, ensure_ascii=True, separators=(", ", ": ")).encode()
    return raw.ljust(RECORD_SIZE)[:RECORD_SIZE]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed child that its parent has not reaped yet is a zombie: it holds nothing.
    with contextlib.suppress(OSError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def is_stale(info: LockInfo, stale_after: float) -> bool:
    """Judge whether a lock's owner is gone.

    Args:
        info: The lock's owner record.
        stale_after: Age in seconds beyond which any lock is stale.

    Returns:
        True if the lock may be broken.
    """
    age = time.time() - info.mtime
    if age > stale_after or (info.pid is None and age > UNREADABLE_STALE_AFTER):
        return True
    return info.host == _HOST and info.pid is not None and not _pid_alive(info.pid)


def break_lock(lock: Path, info: LockInfo, tmp_dir: Path) -> bool:
    """Remove a lock judged stale, unless it was replaced since it was judged.

    The lock is read again first: a lock judged on an owner record read a moment earlier
    (its owner alive then, dead now) may have been released and taken by a live owner
    since, and that lock must not be moved even for an instant (its holder checks it
    before it writes). The lock is identified by its owner's random token, not by inode
    number: a FUSE mount such as sshfs gives each path its own inode number.

    Args:
        lock: The lock file.
        info: What the lock said when it was judged stale.
        tmp_dir: The store's temporary directory (the lock is renamed there first).

    Returns:
        True if the lock judged stale was removed, False if something else is there now.
    """
    now = read_info(lock)
    if now is None or now.token != info.token:
        return False
    aside = tmp_name(tmp_dir, "stale-lock")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return False
    removed = True
    try:
        moved = read_info(aside)
        if moved is None or moved.token != info.token:
            # Another process broke the same stale lock and a live owner took the name
            # between our look and our rename: put it back if nobody has taken it since
            # (sshfs reports an existing name as EPERM).
            removed = False
            with contextlib.suppress(FileExistsError, PermissionError):
                os.link(aside, lock)
    finally:
        with contextlib.suppress(FileNotFoundError):
            aside.unlink()
    return removed


class Lock:
    """A held lock; release it with :meth:`release` or by leaving the ``with`` block."""

    def __init__(self, path: Path, token: str) -> None:
        self.path = path
        self.token = token

    def still_held(self) -> bool:
        """Tell whether the lock file on disk is still this lock (not broken as stale)."""
        info = read_info(self.path)
        return info is not None and info.token == self.token

    def release(self) -> None:
        """Remove the lock file if it is still ours."""
        if self.still_held():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(
    lock: Path,
    tmp_dir: Path,
    *,
    timeout: float | None = None,
    stale_after: float | None = None,
) -> Lock:
    """Take the lock file ``lock``, waiting while another live owner holds it.

    Args:
        lock: Path of the lock file to create.
        tmp_dir: The store's temporary directory (for breaking stale locks).
        timeout: Seconds to wait; defaults to ``MODELREG_LOCK_TIMEOUT`` or 30.
        stale_after: Age making a lock stale; defaults to ``MODELREG_LOCK_STALE_AFTER`` or 120.

    Returns:
        The held lock.

    Raises:
        LockHeld: The lock stayed held by a live owner for longer than ``timeout``.
    """
    if timeout is None:
        timeout = _env_float("MODELREG_LOCK_TIMEOUT", DEFAULT_TIMEOUT)
    if stale_after is None:
        stale_after = stale_after_setting()
    token = os.urandom(16).hex()
    # The record goes into a temp file first and is linked onto the lock name (the write
    # path's create-if-absent, which also applies link(2)'s NFS rule: an EEXIST while the
    # temp file has two links means the link was made), so a lock never exists without its
    # owner record: a process killed at any instant leaves either no lock or one naming it
    # (a dead owner: stale at once), never an empty lock that could only be waited out.
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        with staged(tmp_dir, "lock", mode=LOCK_MODE, durable=False) as staging:
            staging.file.write(_record(token))
            # The lock's mtime is its record's: a record staged long ago would make a lock
            # taken after a long wait look old (stale to others) the moment it is taken.
            restage_at = time.monotonic() + RESTAGE_AFTER
            while True:
                try:
                    if staging.publish(lock, replace=False, exclusive=True):
                        return Lock(lock, token)
                except FileNotFoundError:
                    if not staging.path.exists():
                        break  # removed meanwhile (`gc --grace 0`): stage it again
                    continue  # the lock's directory went away meanwhile: publish makes it
                info = read_info(lock)
                if info is None:
                    # Gone between the link and the look (released meanwhile, or a network
                    # file system's name cache still showed a removed lock): try again soon.
                    if time.monotonic() >= deadline:
                        raise LockHeld(
                            f"lock {lock} could not be taken in {timeout:.0f}s: the file "
                            "system kept refusing to create it, yet it does not appear to "
                            "exist", str(lock))
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
                    continue
                if is_stale(info, stale_after) and break_lock(lock, info, tmp_dir):
                    continue
                if time.monotonic() >= deadline:
                    raise LockHeld(
                        f"lock {lock} is held by {info.describe()}; waited {timeout:.0f}s. "
                        f"If no modelreg process is running, remove {lock} "
                        "(or run `modelreg gc`, which removes stale locks).",
                        str(lock),
                    )
                import random  # only a waiting process needs it

                time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, 0.05)
                if time.monotonic() >= restage_at:
                    break


@contextlib.contextmanager
def locked(lock: Path, tmp_dir: Path, *, timeout: float | None = None) -> Iterator[Lock]:
    """Hold ``lock`` for the duration of a ``with`` block.

    Args:
        lock: Path of the lock file.
        tmp_dir: The store's temporary directory.
        timeout: Seconds to wait for the lock.

    Yields:
        The held lock.
    """
    held = acquire(lock, tmp_dir, timeout=timeout)
    try:
        yield held
    finally:
        held.release()
