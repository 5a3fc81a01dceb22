"""In-process A/B of `ObjectStore.put_file` (W4): the old loop, the new one, and `cp` + `sync`.

    .venv/bin/python -m bench.put_file_ab [--mib 1024] [--rounds 6] [--variants old,new,...]

Variants, all writing a durable copy of the same file on the same file system:

- ``old``: the loop `put_file` had before: read 1 MiB, sha256 it, write it; then fsync.
- ``new``: `ObjectStore.put_file` as it is now (copy_file_range, the written bytes hashed by
  a second thread, fsync while the hash catches up), including what the others skip: the
  chmod, the rename into a new fan-out directory and the two directory fsyncs.
- ``source``: the design not taken: hash the *source* in a second thread alongside the
  kernel copy, compare the source's stat before and after, and re-hash the stored copy when
  it changed or was modified less than 2 s before the copy started ("racily clean"). The
  output says how many of its runs had to re-hash.
- ``aged``: ``source`` with the file's mtime set 10 s back before the run, so that the racy
  rule does not fire: the speed that design would have on a model written a while ago.
- ``cp``: ``cp FILE COPY && sync COPY`` in a child shell, the W4 floor.

One warm-up round, then ``--rounds`` rounds; each round runs every variant once, the order
alternating round by round. As in W4, a new 16-byte head before each run makes new content,
and ``sync`` runs (untimed) before each timing, so the file is in the page cache and no run
pays for another's writeback. Printed: median and min–max of each variant, and the median
and range of its per-round ratio to ``cp``. Then the peak RSS of a fresh process storing
the file with ``put_file``. The scratch directory is under ``MODELREG_BENCH_DIR`` or the
system's temporary directory; it needs about three times the file's size.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from modelreg.storage.copying import KERNEL_COPY_CALL
from modelreg.storage.objects import ObjectStore

MIB = 1 << 20
RACY_NS = 2_000_000_000
rehashed = 0  # runs of ``source`` and ``aged`` that had to re-hash the stored copy


def old_loop(source: Path, dest: Path) -> str:
    """The put_file loop before kernel copies (write side only: no rename)."""
    h = hashlib.sha256()
    with open(source, "rb") as src, open(dest, "wb") as dst:
        view = memoryview(bytearray(MIB))
        while n := src.readinto(view):
            h.update(view[:n])
            dst.write(view[:n])
        dst.flush()
        os.fsync(dst.fileno())
    return h.hexdigest()


def _hash_fd(fd: int, h: hashlib._Hash) -> None:
    view = memoryview(bytearray(MIB))
    pos = 0
    while n := os.preadv(fd, [view], pos):
        h.update(view[:n])
        pos += n


def source_hash(source: Path, dest: Path) -> str:
    """The alternative: hash the source alongside the copy, guarded by stat."""
    global rehashed
    h = hashlib.sha256()
    start_ns = time.time_ns()
    with open(source, "rb") as src, open(dest, "wb") as dst:
        before = os.fstat(src.fileno())
        thread = threading.Thread(target=_hash_fd, args=(src.fileno(), h))
        thread.start()
        while os.copy_file_range(src.fileno(), dst.fileno(), KERNEL_COPY_CALL):
            pass
        os.fsync(dst.fileno())
        thread.join()
        after = os.fstat(src.fileno())
    key = ("st_ino", "st_dev", "st_size", "st_mtime_ns", "st_ctime_ns")
    changed = any(getattr(before, k) != getattr(after, k) for k in key)
    if changed or start_ns - before.st_mtime_ns < RACY_NS:
        rehashed += 1
        h = hashlib.sha256()
        fd = os.open(dest, os.O_RDONLY)
        try:
            _hash_fd(fd, h)
        finally:
            os.close(fd)
    return h.hexdigest()


def cp_sync(source: Path, dest: Path) -> str:
    subprocess.run(["bash", "-c", 'cp "$0" "$1" && sync "$1"', source, dest], check=True)
    return ""


def file_system(path: Path) -> str:
    """The type of the file system holding ``path``, from /proc/mounts (else "?")."""
    best, kind = "", "?"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        mount = fields[1]
        inside = str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, f"{fields[2]} ({fields[0]} on {mount})"
    return kind


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--variants", default="old,new,source,aged,cp")
    args = parser.parse_args()

    where = os.environ.get("MODELREG_BENCH_DIR")
    scratch = Path(tempfile.mkdtemp(prefix="put_file_ab-", dir=where))
    try:
        big = scratch / "big.bin"
        chunk = os.urandom(MIB)
        with open(big, "wb") as fh:
            for _ in range(args.mib):
                fh.write(chunk)
        store = ObjectStore(scratch / "objects", scratch / "tmp")
        dest = scratch / "copy.bin"

        def new(source: Path, dest: Path) -> str:
            oid, _ = store.put_file(source)
            return oid

        variants: dict[str, Callable[[Path, Path], str]] = {
            "old": old_loop, "new": new, "source": source_hash, "aged": source_hash,
            "cp": cp_sync,
        }
        names = args.variants.split(",")
        samples: dict[str, list[float]] = {name: [] for name in names}
        serial = 0
        for round_no in range(args.rounds + 1):
            for name in names if round_no % 2 == 0 else names[::-1]:
                with open(big, "r+b") as fh:
                    fh.write(f"{serial:016d}".encode())
                serial += 1
                if name == "aged":
                    past = time.time() - 10
                    os.utime(big, (past, past))
                # Unlinks are untimed: with the `discard` mount option one takes 0.3 s here.
                dest.unlink(missing_ok=True)
                shutil.rmtree(store.root, ignore_errors=True)
                os.sync()
                start = time.perf_counter()
                variants[name](big, dest)
                elapsed = time.perf_counter() - start
                if round_no:
                    samples[name].append(elapsed)
        dest.unlink(missing_ok=True)

        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"{args.mib} MiB file on {file_system(scratch)}, in {scratch}; {args.rounds} "
              f"rounds after a warm-up; load average now {load}")
        for name in names:
            v = samples[name]
            line = (f"  {name:7s} median {statistics.median(v):.3f} s  "
                    f"(min {min(v):.3f}, max {max(v):.3f})")
            if "cp" in samples and name != "cp":
                ratios = sorted(a / b for a, b in zip(v, samples["cp"], strict=True))
                line += (f"   / cp: median {statistics.median(ratios):.2f}x "
                         f"(range {ratios[0]:.2f}-{ratios[-1]:.2f})")
            print(line)
        if "source" in samples or "aged" in samples:
            runs = (args.rounds + 1) * (("source" in samples) + ("aged" in samples))
            print(f"  source/aged re-hashed the stored copy in {rehashed} of {runs} runs")

        code = ("import resource, sys; from pathlib import Path; "
                "from modelreg.storage.objects import ObjectStore; "
                "ObjectStore(Path(sys.argv[2]), Path(sys.argv[3])).put_file(Path(sys.argv[1])); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
        with open(big, "r+b") as fh:
            fh.write(f"{serial:016d}".encode())
        out = subprocess.run([sys.executable, "-c", code, big, scratch / "rss-objects",
                              scratch / "tmp"], capture_output=True, text=True, check=True)
        print(f"  peak RSS of a fresh process running put_file: {int(out.stdout) / 1024:.0f} MiB"
              f" (this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
              " MiB)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
