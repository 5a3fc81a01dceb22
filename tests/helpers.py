"""Shared helpers for tests that run modelreg in real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_cli(*args: str | os.PathLike[str], registry: Path | None = None,
            cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `python -m modelreg ARGS` in a fresh process and capture its streams."""
    full_env = dict(os.environ)
    full_env.setdefault("MODELREG_ACTOR", "tester@example.com")
    if registry is not None:
        full_env["MODELREG_DIR"] = str(registry)
    if env:
        full_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "modelreg", *map(str, args)],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes (to prove nothing was written)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def flip_byte(path: Path, offset: int = 0) -> None:
    """Flip one bit of one byte of a (read-only) file in place."""
    mode = path.stat().st_mode
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))
    os.chmod(path, mode)


def count_object_reads(monkeypatch: Any) -> list[str]:
    """Record the id of every object the file-system backend reads from now on."""
    from modelreg.storage.objects import ObjectStore

    reads: list[str] = []
    real = ObjectStore.get_bytes

    def counting(self: ObjectStore, oid: str) -> bytes:
        reads.append(oid)
        return real(self, oid)

    monkeypatch.setattr(ObjectStore, "get_bytes", counting)
    return reads
