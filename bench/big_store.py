"""A store of one model with many versions: what format 2 keeps per version, and `fsck` on it.

    .venv/bin/python -m bench.big_store [--versions 10000] [--dir DIR]

Builds the store in this process through `modelreg.register` (16-byte artifacts, a few
params and a metric, `os.fsync` stubbed out while building: only the bytes matter), promotes
a few old versions (each rewrites a leaf), runs `gc --grace 0`, and prints the metadata per
version (every object but the blobs, and the refs), then times whole `modelreg` processes on
it (best of three): `fsck`, `show` of `latest`, a stage and version 1, `history -n 20`,
`versions` and `list`. The figures in docs/performance.md (W3, format 2) come from it. The
store is left in ``--dir`` (default: a directory under ``MODELREG_BENCH_DIR`` or the
system's temporary directory).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import modelreg
from modelreg.registry import Registry
from modelreg.storage.objects import ObjectStore


def build(root: Path, versions: int) -> Registry:
    """Make a store at ``root`` with model ``m`` at ``versions`` versions."""
    shutil.rmtree(root, ignore_errors=True)
    reg, _ = Registry.init(root)
    artifact = root / "model.bin"
    real_fsync = os.fsync
    os.fsync = lambda fd: None
    try:
        for i in range(versions):
            artifact.write_bytes(b"%016d" % i)
            modelreg.register("m", [artifact], registry=reg, git=False, actor="ana@example.com",
                              params={"lr": 0.1, "i": i}, metrics={"auc": 0.9})
        for v in (1, versions // 20, versions // 2, versions - 100):
            if v >= 1:
                modelreg.promote(f"m@{v}", "staging", registry=reg, actor="ana@example.com")
    finally:
        os.fsync = real_fsync
    return reg


def metadata_per_version(reg: Registry, versions: int) -> float:
    """Bytes of everything but artifact blobs (objects and refs), per version."""
    store = reg.objects
    assert isinstance(store, ObjectStore)
    blobs = {v.digest.split(":")[1] for v in modelreg.versions("m", registry=reg)}
    size = sum(store.path(oid).stat().st_size for oid in store.ids() if oid not in blobs)
    size += sum(p.stat().st_size for p in reg.layout.refs.rglob("*") if p.is_file())
    return size / versions


def best_of_three(root: Path, *args: str) -> float:
    """The shortest of three runs of ``modelreg ARGS`` on the store, in seconds."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "modelreg", "-R", str(root), *args],
                              capture_output=True, text=True, check=False)
        best = min(best, time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"modelreg {' '.join(args)} failed: {done.stderr}")
    return best


def main() -> None:
    """Build the store, print what it keeps per version and how long commands take."""
    parser = argparse.ArgumentParser(prog="python -m bench.big_store", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    base = Path(os.environ.get("MODELREG_BENCH_DIR") or tempfile.gettempdir())
    root = args.dir or base / "modelreg-big-store"
    start = time.perf_counter()
    reg = build(root, args.versions)
    print(f"built {args.versions:,} versions in {time.perf_counter() - start:.0f} s "
          "(fsync stubbed)")
    removed = modelreg.gc(registry=reg, grace=0).objects
    print(f"gc removed {len(removed)} objects (the leaves the promotions replaced)")
    print(f"metadata per version after gc: {metadata_per_version(reg, args.versions):,.0f} B")
    for command in (["fsck"], ["show", "m@latest"], ["show", "m@staging"], ["show", "m@1"],
                    ["history", "m", "-n", "20"], ["versions", "m"], ["list"]):
        print(f"{' '.join(command):>20}: {best_of_three(root, *command):.3f} s")


if __name__ == "__main__":
    main()
