"""Pulling a version: write its files under a destination directory, verifying every byte.

This module is imported only when a pull runs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from modelreg.errors import ConflictError, IntegrityError, UsageError
from modelreg.registry.core import Registry
from modelreg.registry.names import Ref
from modelreg.results import PullResult
from modelreg.storage.hashing import digest_file, parse_digest
from modelreg.storage.tree import check_relpath
from modelreg.types import FileInfo, Progress

__all__ = ["pull"]


def pull(reg: Registry, ref: str | Ref, dest: Path, *, force: bool = False,
         progress: Progress | None = None) -> PullResult:
    """Write the files of version ``ref`` under ``dest``, verifying every byte.

    Files are first written into a hidden staging directory inside ``dest`` and moved
    into place only after all of them verified, so a corrupt object leaves no file (and,
    if ``dest`` was created for the pull, no ``dest``).

    Args:
        reg: The registry.
        ref: The version to fetch.
        dest: The directory to write into (created if missing).
        force: Overwrite existing files whose content differs.
        progress: Receives byte counts.

    Returns:
        What was written.

    Raises:
        ConflictError: A file at ``dest`` differs and ``force`` is off.
        IntegrityError: An object is corrupt, or the tree holds an unsafe path.
    """
    info = reg.show(ref)
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} exists and is not a directory")
    created_dest = not dest.exists()
    real_dest = dest.resolve()
    plan: list[tuple[FileInfo, Path, str]] = []
    unchanged = 0
    for f in info.artifact.files:
        target = dest / check_relpath(f.path)
        if target.is_symlink():
            raise ConflictError(f"{target} is a symlink; refusing to write through it")
        if not target.parent.resolve().is_relative_to(real_dest):
            raise ConflictError(f"{target} would be written outside {dest} (through a "
                                "symlinked directory); refused")
        oid = parse_digest(f.digest)
        if oid is None:
            raise IntegrityError(f"{info.manifest}: bad digest {f.digest!r} for {f.path}")
        if target.exists():
            if not target.is_file():
                raise ConflictError(f"{target} exists and is not a file")
            if digest_file(target)[0] == oid:
                unchanged += 1
                continue
            if not force:
                raise ConflictError(
                    f"{target} exists with different content; use --force to overwrite"
                )
        plan.append((f, target, oid))
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".modelreg-pull-{os.urandom(6).hex()}"
    if progress is not None:
        progress.start(sum(f.size for f, _, _ in plan))
    try:
        staging.mkdir()
        staged = []
        for i, (_f, target, oid) in enumerate(plan):
            tmp = staging / str(i)
            with open(tmp, "xb") as fh:
                reg.objects.copy_to(
                    oid, fh, progress.advance if progress is not None else None
                )
                fh.flush()
                os.fsync(fh.fileno())
            staged.append((tmp, target))
        for tmp, target in staged:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created_dest:
            shutil.rmtree(dest, ignore_errors=True)
        raise
    finally:
        if progress is not None:
            progress.finish()
    with contextlib.suppress(OSError):
        staging.rmdir()
    return PullResult(ref=info.ref, dest=str(dest), files=info.artifact.files,
                      written=len(plan), unchanged=unchanged)
