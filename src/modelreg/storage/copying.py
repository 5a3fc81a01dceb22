"""Copying bytes while hashing them: the machinery behind ``put_file`` and ``copy_to``.

Two copies, one result: the sha256 of the bytes written and their count.

- :func:`copy_stream` reads, hashes and writes ``CHUNK_SIZE`` at a time in user space. It
  streams an object out (``ObjectStore.copy_to``, which compares the digest with the
  object's name) and copies small or unusual files in.
- :func:`copy_into_file` copies a file into a temporary file: by the kernel
  (``copy_file_range``, with a second thread hashing what was written) for regular files of
  ``KERNEL_COPY_MIN`` bytes and more, else by :func:`copy_stream`.

This module writes nothing of its own: it fills a file its caller opened (in the store, a
temporary file from ``storage.atomic.staged``, which the caller then publishes).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from modelreg.storage.hashing import CHUNK_SIZE, Progress, new_hasher

__all__ = ["KERNEL_COPY_CALL", "KERNEL_COPY_MIN", "copy_into_file", "copy_stream"]

# Files of this size and more are copied by the kernel (see _copy_in_kernel); smaller ones
# through the user-space loop, where a thread and a second descriptor would cost more than
# they save.
KERNEL_COPY_MIN = 8 << 20
# Bytes asked of one copy_file_range call: few system calls, and progress every 64 MiB.
KERNEL_COPY_CALL = 64 << 20
# copy_file_range failing with one of these before any byte is copied means "not here" (no
# such system call, another file system, a FUSE or NFS mount that refuses it), not an I/O
# error: the user-space loop does the copy instead.
_NO_KERNEL_COPY = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ETXTBSY}
)


def copy_stream(src: BinaryIO, dst: BinaryIO, progress: Progress | None = None) -> tuple[str, int]:
    """Read, hash and write ``CHUNK_SIZE`` at a time until ``src`` ends, in constant memory.

    Args:
        src: The source, at the position to copy from.
        dst: A writable binary stream.
        progress: Called with the byte count of each chunk.

    Returns:
        The sha256 of the bytes copied and their count.
    """
    h = new_hasher()
    size = 0
    view = memoryview(bytearray(CHUNK_SIZE))
    while True:
        n = src.readinto(view)  # type: ignore[attr-defined]
        if not n:
            break
        chunk = view[:n]
        h.update(chunk)
        dst.write(chunk)
        size += n
        if progress is not None:
            progress(n)
    return h.hexdigest(), size


def copy_into_file(
    src: BinaryIO,
    dst: BinaryIO,
    dst_path: Path,
    progress: Progress | None = None,
    *,
    sync: Callable[[], None] | None = None,
) -> tuple[str, int]:
    """Copy ``src`` into the empty file ``dst``, hashing the bytes written.

    The digest is that of the bytes that landed in ``dst``, whatever happens to ``src``
    meanwhile: a file that grows, shrinks or is rewritten during the copy yields the bytes
    that were read, under their own digest, and the size returned is the size written.
    Regular files of ``KERNEL_COPY_MIN`` bytes and more are copied by the kernel and hashed
    by a second thread (see :func:`_copy_in_kernel`); the rest by :func:`copy_stream`.

    Args:
        src: The source, at its start.
        dst: The destination, empty, open for writing (not appending).
        dst_path: Where ``dst`` is (the hashing thread opens it again, read-only).
        progress: Called with the byte count of each chunk or copy call; the counts add up
            to the size returned.
        sync: Called once every byte is in ``dst`` while the hash of a kernel copy catches
            up (the caller's fsync: ``Staged.sync``), so that the two overlap. Not called
            after a user-space copy, whose hash is done when the last byte is written.

    Returns:
        The sha256 of the bytes in ``dst`` and their count.
    """
    st = os.fstat(src.fileno())
    if stat.S_ISREG(st.st_mode) and st.st_size >= KERNEL_COPY_MIN:
        copied = _copy_in_kernel(src.fileno(), dst.fileno(), dst_path, progress, sync)
        if copied is not None:
            return copied
    return copy_stream(src, dst, progress)


def _copy_in_kernel(
    src_fd: int,
    dst_fd: int,
    dst_path: Path,
    progress: Progress | None,
    sync: Callable[[], None] | None,
) -> tuple[str, int] | None:
    """Copy with ``copy_file_range`` while a second thread hashes the bytes written.

    The calling thread asks the kernel for ``KERNEL_COPY_CALL`` bytes at a time (no copy
    through user space; a reflink on btrfs and XFS, which copy_file_range tries first, a
    server-side copy on NFS 4.2 and SMB) and publishes how far the destination is filled.
    A :class:`_TrailingHash` thread re-reads each published range of the *destination*
    (from the page cache after a plain copy) and hashes it; hashlib and the system calls
    release the GIL. ``sync`` (the fsync) runs while the hash catches up, so that the whole
    takes about as long as ``cp`` and ``sync``. Measured with bench/put_file_ab.py (1 GiB on
    ext4, 6-8 interleaved rounds, load averages 1.4-3): the median put took 0.78-0.89 s
    against ``cp`` + sync 0.78-0.85 s (median per-round ratio 0.99-1.10x) in four runs,
    1.27x and 1.47x in two while the disk's speed swung; the old loop took 1.9-2.5 s.

    Design choice: hash the bytes written, not the source alongside the copy. The name is
    then the digest of what is stored by construction, whatever happens to the source. The
    alternative needs a stat guard (inode, size, mtime, ctime before and after) and a
    re-hash of the stored copy when they differ or when the source was modified less than
    2 s before the copy (git's "racily clean" rule), so its correctness rests on
    timestamps, which are coarse on some file systems and cached by NFS clients. It was
    no faster (0.79-0.84 s in the same rounds, within the noise), and a model registered
    just after it was written, as in benchmark W4, is racy every time: 1.46-1.51 s with
    the second hash.

    Args:
        src_fd: The source, at its start.
        dst_fd: The destination, empty.
        dst_path: The destination's path (opened again, read-only, by the hashing thread).
        progress: Called with the byte count of each copy call.
        sync: Called after the last copy call, before waiting for the hash.

    Returns:
        The sha256 of the bytes in the destination and their count (fewer than the
        source's size if it shrank meanwhile), or None when ``copy_file_range`` is missing,
        refuses these files, or copies nothing on its first call (as it does for some
        pseudo-files): nothing has been written then, and the caller copies in user space.

    Raises:
        OSError: The copy or the hash failed after the first byte.
    """
    copy_file_range: Callable[[int, int, int], int] | None = getattr(
        os, "copy_file_range", None
    )
    if copy_file_range is None:
        return None
    try:
        n = copy_file_range(src_fd, dst_fd, KERNEL_COPY_CALL)
    except OSError as exc:
        if exc.errno in _NO_KERNEL_COPY:
            return None
        raise
    if n == 0:
        return None
    hasher = _TrailingHash()
    rfd = os.open(dst_path, os.O_RDONLY)
    thread: threading.Thread | None = None
    size = 0
    try:
        thread = threading.Thread(target=hasher.run, args=(rfd,), name="modelreg-hash",
                                  daemon=True)
        thread.start()
        while n:
            size += n
            hasher.publish(n)
            if progress is not None:
                progress(n)
            n = copy_file_range(src_fd, dst_fd, KERNEL_COPY_CALL)
        hasher.finish()
        if sync is not None:
            sync()  # while the hash catches up
        thread.join()
    except BaseException:
        # KeyboardInterrupt from a progress callback included: the hasher stops after its
        # current chunk, before the caller closes and removes the file.
        hasher.finish(abandon=True)
        raise
    finally:
        if thread is not None and thread.is_alive():
            thread.join()
        if thread is None or not thread.is_alive():
            # Else a second Ctrl-C interrupted the join: leave the descriptor to the
            # process rather than close it under a thread that may still read it.
            os.close(rfd)
    return hasher.result(size)


class _TrailingHash:
    """The hashing side of :func:`_copy_in_kernel`: sha256 of a file as it is filled.

    The copier calls :meth:`publish` after each copied range and :meth:`finish` at the end;
    :meth:`run`, in its own thread, waits for published bytes and reads them with
    ``os.preadv`` into one reusable ``CHUNK_SIZE`` buffer, so memory stays constant. The
    copier closes the descriptor once the thread has ended.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._published = 0
        self._finished = False
        self._abandoned = False
        self._hash = new_hasher()
        self._hashed = 0
        self._error: BaseException | None = None

    def publish(self, n: int) -> None:
        """Announce ``n`` more bytes written after those already announced."""
        with self._cond:
            self._published += n
            self._cond.notify()

    def finish(self, *, abandon: bool = False) -> None:
        """Announce the end of the copy; with ``abandon``, stop without hashing the rest."""
        with self._cond:
            self._finished = True
            self._abandoned = self._abandoned or abandon
            self._cond.notify()

    def run(self, fd: int) -> None:
        """Hash published ranges of ``fd`` until the copy is finished and all is hashed."""
        try:
            self._hash_published(fd)
        except BaseException as exc:  # handed to the copier by result()
            self._error = exc

    def _hash_published(self, fd: int) -> None:
        view = memoryview(bytearray(CHUNK_SIZE))
        pos = 0
        while True:
            with self._cond:
                while pos == self._published and not self._finished:
                    self._cond.wait()
                if self._abandoned:
                    return
                end = self._published
            if pos == end:
                return  # finished, and everything published is hashed
            while pos < end:
                if self._abandoned:
                    return
                n = os.preadv(fd, [view[: min(len(view), end - pos)]], pos)
                if n == 0:
                    raise OSError(
                        errno.EIO, "the destination file is shorter than the bytes copied"
                    )
                self._hash.update(view[:n])
                pos += n
                self._hashed = pos

    def result(self, size: int) -> tuple[str, int]:
        """Return the digest and ``size`` once the thread has ended.

        Raises:
            OSError: Reading the copy back failed, or did not reach ``size`` bytes.
        """
        if self._error is not None:
            raise self._error
        if self._hashed != size:
            raise OSError(errno.EIO, f"hashed {self._hashed} of {size} bytes copied")
        return self._hash.hexdigest(), size
